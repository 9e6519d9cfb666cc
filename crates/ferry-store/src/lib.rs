//! Ferry's durable store.
//!
//! [`Store`] is the one contract every backend honours; `conformance` (behind the
//! `conformance` feature, off in the production build) is the suite that proves it, run
//! against each backend. [`sqlite::SqliteStore`] is the embedded backend:
//! WAL, `synchronous=FULL`, and one writer thread doing group commit.
// `deny`, not `forbid`: one module, `sqlite::wal_gather`, is a SQLite VFS (C callbacks).
#![deny(unsafe_code)]

pub mod audit;
mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod datakeys;
mod effects;
mod model;
pub mod postgres;
mod pull;
mod rejected;
mod retention;
pub mod sqlite;

pub use audit::{AuditEntry, AuditRecord, CategorySent, DeliveryAudit, EventAudit};
pub use clock::{now_millis, unix_millis};
pub use datakeys::*;
pub use model::*;
pub use pull::*;
pub use rejected::*;
pub use retention::*;

use std::sync::Arc;

use async_trait::async_trait;

/// Errors a store can return.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (corruption, a bug, an unexpected error...). Nothing of the call
    /// was committed.
    #[error("store backend error: {0}")]
    Backend(String),
    /// The backend cannot write now: its disk is full, or the device fails or turned
    /// read-only. Nothing of the call was committed; writes work again once the cause is
    /// gone (see [`Store::ping`]).
    #[error("store cannot commit: {0}")]
    Unavailable(String),
    /// The store is shutting down or its writer has stopped.
    #[error("store is closed")]
    Closed,
    /// A caller-side mistake (e.g. an event with no deliveries is still fine, but a
    /// delivery id used twice is not).
    #[error("invalid request to the store: {0}")]
    Invalid(String),
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Work to run once an append has committed, given its outcomes (see [`Store::append_then`]).
pub type OnCommit = Box<dyn FnOnce(&[AppendOutcome]) + Send>;

/// The durable store behind the hub.
///
/// Every mutating call returns only after its changes are durable (committed and synced).
/// Backends may merge concurrent calls into one commit (group commit), but each call is
/// atomic on its own: all of it is stored, or none of it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Append events with their deliveries. Each event is stored atomically with all of its
    /// deliveries, or recognised as a duplicate of an earlier event of the same flow with the
    /// same `dedupe_key`, or as within the [window](NewEvent::dedupe_window) of an earlier
    /// event of the same flow with the same window key (then nothing is written for it).
    /// Outcomes are in input order.
    async fn append(&self, events: Vec<NewEvent>) -> StoreResult<Vec<AppendOutcome>>;

    /// [`Store::append`], then `on_commit` with the outcomes once the append is committed,
    /// before this call answers, and even if the caller stops waiting for the answer. Not
    /// run if the append fails. This default runs both in a task of its own.
    async fn append_then(
        self: Arc<Self>,
        events: Vec<NewEvent>,
        on_commit: OnCommit,
    ) -> StoreResult<Vec<AppendOutcome>> {
        let task = tokio::spawn(async move {
            let outcome = self.append(events).await?;
            on_commit(&outcome);
            Ok(outcome)
        });
        task.await
            .map_err(|e| StoreError::Backend(format!("the append task failed: {e}")))?
    }

    /// Append one page of a pull: its events (as [`Store::append`] does, every event of
    /// `flow`) and the cursor after it, in one transaction: both are stored, or neither.
    /// Refused ([`StoreError::Invalid`], nothing written) when an event is of another flow
    /// or the stored cursor is not [`PullCheckpoint::from`].
    async fn append_page(
        &self,
        flow: &str,
        events: Vec<NewEvent>,
        checkpoint: PullCheckpoint,
    ) -> StoreResult<Vec<AppendOutcome>>;

    /// Append a queue source's batch: its events (as [`Store::append`] does) and the
    /// records the flow refused, in one transaction: all of it is stored, or none. A
    /// rejected record whose flow already holds one with the same
    /// [`message_id`](NewRejected::message_id) is not stored again. Outcomes are the events'.
    async fn append_with_rejected(
        &self,
        events: Vec<NewEvent>,
        rejected: Vec<NewRejected>,
    ) -> StoreResult<Vec<AppendOutcome>>;

    /// Rejected records, newest first, of `flow` if given, before the `before` cursor if
    /// given (the last id of the previous page).
    async fn list_rejected(
        &self,
        flow: Option<&str>,
        before: Option<RejectedId>,
        limit: usize,
    ) -> StoreResult<Vec<RejectedRecord>>;

    /// One rejected record.
    async fn rejected(&self, id: RejectedId) -> StoreResult<Option<RejectedRecord>>;

    /// Replay a rejected record: append `events` (what the flow now makes of its payload, as
    /// [`Store::append`] does) and mark the record replayed at `at` with the first event,
    /// in one transaction, with a `rejected_replayed` audit entry naming `by`. Refused
    /// ([`StoreError::Invalid`], nothing written) when the record does not exist, was
    /// replayed already, or `events` is empty.
    async fn replay_rejected(
        &self,
        id: RejectedId,
        events: Vec<NewEvent>,
        at: Millis,
        by: &str,
    ) -> StoreResult<Vec<AppendOutcome>>;

    /// The cursor and run record of pull flow `flow`; `None` before its first run.
    async fn pull_state(&self, flow: &str) -> StoreResult<Option<PullState>>;

    /// Record that a run of pull flow `flow` started or ended. Leaves the cursor alone.
    async fn set_pull_run(&self, flow: &str, update: PullRunUpdate) -> StoreResult<()>;

    /// Claim up to `limit` deliveries of `lane` that are due at `now`: pending or retrying with
    /// `next_attempt_at <= now`, or in flight with an expired lease. Claimed deliveries become
    /// `in_flight` with their lease ending at `lease_until`. Oldest due first.
    ///
    /// A delivery with an [order key](NewDelivery::order_key) is held back while an
    /// earlier-appended delivery of the same lane and key is still waiting (pending, in
    /// flight or retrying; delivered and dead ones do not hold anything back). So the
    /// deliveries of one key are claimed one at a time, in append order, whatever their due
    /// times; a key whose head is retrying holds back only that key.
    async fn claim(
        &self,
        lane: &LaneKey,
        now: Millis,
        limit: usize,
        lease_until: Millis,
    ) -> StoreResult<Vec<ClaimedDelivery>>;

    /// Record outcomes of claimed deliveries (attempt rows and state changes), atomically per
    /// outcome. An outcome for a delivery that is not in flight (e.g. replayed meanwhile, or
    /// already delivered), or that is in flight under a newer claim than the one the outcome
    /// settles ([`DeliveryOutcome::claim`]), keeps its attempt row but does not change the
    /// state.
    async fn complete(&self, outcomes: Vec<DeliveryOutcome>, now: Millis) -> StoreResult<()>;

    /// Put every in-flight delivery back to pending, due at `now`. Used at start-up by a
    /// single-node hub that owns its store: restart is recovery. Returns how many.
    async fn release_all_claims(&self, now: Millis) -> StoreResult<u64>;

    /// The earliest `next_attempt_at` among waiting (pending, retrying, in flight) deliveries
    /// of `lane` that are not held back by their order key (see [`Store::claim`]), if any.
    /// A held-back delivery becomes claimable only when the one ahead of it settles.
    async fn next_due(&self, lane: &LaneKey) -> StoreResult<Option<Millis>>;

    /// Deliveries matching `filter`, oldest event first, after the `after` cursor if given.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<Vec<DeliverySummary>>;

    /// One delivery with all its attempts.
    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<DeliveryDetail>>;

    /// One event.
    async fn event(&self, id: EventId) -> StoreResult<Option<StoredEvent>>;

    /// Events matching `filter` in id order (time-ordered: the order they were accepted),
    /// after the `after` cursor if given. A [sender id](EventFilter::sender_id) search costs
    /// an index seek, whatever the number of events.
    async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<EventId>,
        limit: usize,
    ) -> StoreResult<Vec<EventSummary>>;

    /// Replay: move deliveries matching `filter` that are `delivered`, `retrying` or `dead`
    /// back to `pending`, due at `now`, starting a new round (round attempts reset, round start
    /// = now, replay count + 1). Pending and in-flight deliveries are left alone. Each
    /// replayed delivery keeps its attempts and gains a [`ReplayRecord`] (at `now`, asked
    /// for `by`, with the state, attempt count and last error it had). A `replayed` audit
    /// entry (the filter, the count, `by`) is written in the same transaction. Returns the
    /// number replayed.
    async fn replay(&self, filter: &DeliveryFilter, now: Millis, by: &str) -> StoreResult<u64>;

    /// Per-lane counts by state.
    async fn lane_counts(&self) -> StoreResult<Vec<LaneCounts>>;

    /// Per-lane backlog: waiting deliveries, the receive time of the oldest, and the
    /// dead-lettered deliveries, one entry per lane that has any deliveries. Polled several times a second (backpressure at ingress,
    /// metrics), so it must cost O(lanes), whatever the backlog.
    async fn lane_backlog(&self) -> StoreResult<Vec<LaneBacklog>>;

    /// Pause `lane` (`Some`, replacing any earlier pause) or resume it (`None`; resuming a
    /// lane that is not paused is a no-op). Durable when it returns. Changes no delivery.
    async fn set_lane_pause(&self, lane: &LaneKey, pause: Option<LanePause>) -> StoreResult<()>;

    /// Every paused lane with its pause.
    async fn lane_pauses(&self) -> StoreResult<Vec<(LaneKey, LanePause)>>;

    /// Record an admin action or a shredding ([`AuditEntry::is_admin_action`]) in the audit
    /// trail; durable when it returns. Refused ([`StoreError::Invalid`]) for the other
    /// kinds, which the store writes itself with the change they record.
    async fn audit_admin_action(&self, entry: AuditEntry) -> StoreResult<()>;

    /// Records of the audit trail in `seq` order, after position `after` if given, at most
    /// `limit`. Every data movement and admin action committed is in a record: written by
    /// the transaction that made the change (see [`audit`]).
    async fn audit_records(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<AuditRecord>>;

    /// The retention purge, one bounded step: delete up to `limit` events that are past
    /// their retention under `rules` at `now` (the shortest rule that applies to the event:
    /// its source system's, or one of a category it carries or a parent of it) and whose
    /// deliveries are all delivered or dead, with their deliveries and attempts, and write a
    /// `purged` audit entry naming them, in one transaction. Events past retention with a
    /// waiting delivery are kept and counted as [`PurgeReport::held`]. Call again while it
    /// deletes `limit` events.
    async fn purge_expired(
        &self,
        rules: &RetentionRules,
        now: Millis,
        limit: usize,
    ) -> StoreResult<PurgeReport>;

    /// What the store keeps per source system: its events and when the oldest arrived. One
    /// entry per system with at least one stored event, by name.
    async fn holdings(&self) -> StoreResult<Vec<SystemHoldings>>;

    /// The observed data map: per (category, flow, destination, system, protection), how
    /// many deliveries carrying the category were delivered and when the last was, as the
    /// audit trail recorded them (kept in the same transactions). Sorted by category, flow,
    /// destination.
    async fn observed_datamap(&self, filter: &ObservedFilter) -> StoreResult<Vec<ObservedFlow>>;

    /// Whether the store can commit now (for `/readyz`).
    ///
    /// `Ok` while the store answers and no commit has failed since it last proved it can
    /// commit; such a check writes nothing. Once a commit has failed (disk full, I/O
    /// error), `Err` (usually [`StoreError::Unavailable`], with the reason) until a write
    /// commits again. A check in that state may itself try a write, so readiness comes back
    /// as soon as the cause is gone, without waiting for other traffic. (The SQLite backend
    /// counts only its own 1 MiB probe write there: on a full disk a tiny commit can still
    /// fit where an event does not.)
    async fn ping(&self) -> StoreResult<()>;

    /// The live data key of each subject in `subject_refs` that has one (any order).
    async fn data_keys_of(&self, subject_refs: &[String]) -> StoreResult<Vec<DataKeyRecord>>;

    /// Create-or-get: store each key unless its subject already has a live one, then answer
    /// the live key of every subject, in input order — the stored one, which is the given
    /// key only if it was stored. Durable when it returns. This is the only way a data key is
    /// created, so two callers racing for one subject both get (and encrypt under) the
    /// same, stored key.
    async fn create_data_keys(&self, keys: Vec<NewDataKey>) -> StoreResult<Vec<DataKeyRecord>>;

    /// One data key (or its tombstone).
    async fn data_key(&self, id: DataKeyId) -> StoreResult<Option<DataKeyRecord>>;

    /// Live data keys wrapped by another key-encryption key than `kek_id`, in id order,
    /// after the `after` cursor if given: the pages of a key rotation.
    async fn data_keys_not_wrapped_by(
        &self,
        kek_id: &str,
        after: Option<DataKeyId>,
        limit: usize,
    ) -> StoreResult<Vec<DataKeyRecord>>;

    /// Replace wrapped keys (a rotation page), each only while it is live and still wrapped
    /// by its [`from_kek`](RewrappedKey::from_kek). Answers how many were replaced.
    async fn rewrap_data_keys(&self, keys: Vec<RewrappedKey>) -> StoreResult<u64>;

    /// Crypto-shred: destroy the wrapped bytes of every live key of `subject_ref` (so that
    /// the store's files no longer hold them) and keep a tombstone shredded at `at`.
    /// Answers how many keys were shredded (0: none was live).
    async fn shred_data_keys(&self, subject_ref: &str, at: Millis) -> StoreResult<u64>;

    /// Live keys per key-encryption key and the number shredded.
    async fn data_key_stats(&self) -> StoreResult<DataKeyStats>;
}
