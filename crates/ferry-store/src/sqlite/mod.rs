//! The embedded backend: one SQLite file in the data dir.
//!
//! - WAL with `synchronous=FULL`: a mutating call returns only after its commit is fsynced.
//!   Claims and delivery outcomes are the exception: a commit of those alone skips its
//!   fsync, and the next one covers it (see `writer`); a power failure can only make Ferry
//!   send those deliveries again, with the same `webhook-id`.
//! - One writer thread does group commit: concurrent calls share one transaction and one
//!   fsync, each still atomic on its own. Claims are writes and run there too.
//! - Reads use a small pool of read-only connections and never wait for the writer.
//! - An exclusive lock on `ferry.lock` keeps a second process off the same data dir.
//! - A background thread checkpoints the WAL, off the commit path.
//! - `ping` reports whether the most recent write commit succeeded; a full disk is survived
//!   with a reserve file and a `TRUNCATE` checkpoint (see `space`), and readiness comes back
//!   once a commit succeeds again (see `health`).
//! - The data dir is `0700` and every file in it `0600`, whatever the umask (see `files`).
//! - Nothing is cached in memory per delivery: the backlog lives on disk; memory is bounded
//!   by the page caches ([`SqliteOptions::cache_size_kib`]), the queue and the batch bounds.

mod audit;
mod checkpoint;
mod codec;
mod counts;
mod datakeys;
mod datamap;
mod files;
mod health;
mod ops;
mod order;
#[cfg(target_os = "linux")]
mod paced_writeback;
mod pauses;
mod pull;
mod reader;
mod reads;
mod rejected;
mod retention;
mod schema;
mod space;
mod unix_vfs;
mod wal_gather;
mod windows;
mod writer;

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use files::{DIR_MODE, FILE_MODE};
pub use reader::{StoreReader, Verified};
pub use schema::SCHEMA_VERSION;
pub use space::{DEFAULT_RESERVE_BYTES, RESERVE_FILE};

use crate::effects::Effects;
use health::Health;
use reads::ReadPool;
use space::Space;
use writer::{Bounds, Command, Job, Stats, WriterParts};

use crate::{
    AppendOutcome, AuditEntry, AuditRecord, ClaimedDelivery, DataKeyId, DataKeyRecord,
    DataKeyStats, DeliveryDetail, DeliveryFilter, DeliveryId, DeliveryOutcome, DeliverySummary,
    EventFilter, EventId, EventSummary, LaneBacklog, LaneCounts, LaneKey, LanePause, Millis,
    NewDataKey, NewEvent, NewRejected, ObservedFilter, ObservedFlow, OnCommit, PullCheckpoint,
    PullRunUpdate, PullState, PurgeReport, RejectedId, RejectedRecord, RetentionRules,
    RewrappedKey, Store, StoreError, StoreResult, StoredEvent, SystemHoldings,
};

/// The database file inside the data dir.
pub const DB_FILE: &str = "ferry.db";
/// The lock file inside the data dir.
pub const LOCK_FILE: &str = "ferry.lock";

/// Tuning of the embedded store. `Default` suits a single hub.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a connection waits on a locked database before failing.
    pub busy_timeout: Duration,
    /// Page cache of the writer connection, in KiB (each reader gets a quarter, at least
    /// 1 MiB). Bounds the store's memory whatever the backlog.
    pub cache_size_kib: u32,
    /// Read-only connections in the read pool.
    pub read_connections: usize,
    /// Most commands merged into one commit.
    pub max_batch_commands: usize,
    /// About the most payload bytes merged into one commit (a batch stops growing once
    /// past it, so one oversized command still goes through).
    pub max_batch_bytes: usize,
    /// Commands that may wait for the writer before callers wait to enqueue.
    pub queue_capacity: usize,
    /// How often a background thread checkpoints the WAL while writes happen; zero leaves
    /// checkpoints to SQLite's automatic ones on the writer thread.
    pub checkpoint_interval: Duration,
    /// Size of the reserve file ([`RESERVE_FILE`]) kept in the data dir and given back to
    /// the file system when the disk is full, so the store can recover (see the `space`
    /// module); zero: no reserve.
    pub reserve_bytes: u64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            cache_size_kib: 32 * 1024,
            read_connections: 4,
            max_batch_commands: 2048,
            max_batch_bytes: 8 * 1024 * 1024,
            queue_capacity: 4096,
            checkpoint_interval: Duration::from_millis(250),
            reserve_bytes: DEFAULT_RESERVE_BYTES,
        }
    }
}

/// Group-commit counters: `commands / commits` is the average batch size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed by the writer.
    pub commits: u64,
    /// Commands (store calls) carried by those commits.
    pub commands: u64,
    /// Commits made without an fsync: claims and delivery outcomes alone.
    pub deferred: u64,
}

/// The embedded SQLite store. See the [module docs](self).
///
/// Dropping it (or [`SqliteStore::close`]) lets the writer finish the queued commands,
/// stops the writer thread and then releases the data-dir lock. `Drop` waits for that
/// briefly on the current thread; prefer `close().await` in async code.
pub struct SqliteStore {
    tx: Option<mpsc::Sender<Box<dyn Command>>>,
    thread: Option<JoinHandle<()>>,
    checkpointer: Option<checkpoint::Checkpointer>,
    reads: Arc<ReadPool>,
    stats: Arc<Stats>,
    health: Arc<Health>,
    path: PathBuf,
    // Declared last: released after the writer has stopped.
    _lock: File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`: makes the dir and its files
    /// private, locks the dir, opens `ferry.db`, applies migrations, takes stock of the disk
    /// reserve and starts the writer thread.
    pub fn open(data_dir: &Path, opts: SqliteOptions) -> StoreResult<SqliteStore> {
        files::prepare_data_dir(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        // Created here, not by SQLite, so it (and the WAL and shm files SQLite gives its
        // mode) is private whatever the umask.
        files::open_private(&path)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let conn = schema::open_writer(&path, &opts)?;
        let head = audit::load_head(&conn)?;
        let stats = Arc::new(Stats::default());
        let health = Arc::new(Health::default());
        if !opts.checkpoint_interval.is_zero() {
            // Checkpoints happen on the checkpointer thread; this is only the safety net.
            conn.pragma_update(None, "wal_autocheckpoint", checkpoint::SAFETY_NET_PAGES)
                .map_err(codec::map_err)?;
        }
        let reads = Arc::new(ReadPool::open(
            path.clone(),
            opts.read_connections,
            opts.busy_timeout,
            (opts.cache_size_kib / 4).max(1024),
        )?);
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let bounds = Bounds {
            max_commands: opts.max_batch_commands,
            max_bytes: opts.max_batch_bytes,
        };
        let parts = WriterParts {
            stats: Arc::clone(&stats),
            health: Arc::clone(&health),
            space: Space::open(data_dir, opts.reserve_bytes),
            bounds,
            head,
        };
        let thread = std::thread::Builder::new()
            .name("ferry-store-writer".to_owned())
            .spawn(move || writer::run(conn, rx, parts))
            .map_err(|e| StoreError::Backend(format!("cannot start the store writer: {e}")))?;
        let checkpointer = if opts.checkpoint_interval.is_zero() {
            None
        } else {
            let stats = Arc::clone(&stats);
            let health = Arc::clone(&health);
            Some(checkpoint::spawn(
                &path,
                opts.checkpoint_interval,
                stats,
                health,
            )?)
        };
        Ok(SqliteStore {
            tx: Some(tx),
            thread: Some(thread),
            checkpointer,
            reads,
            stats,
            health,
            path,
            _lock: lock,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits and commands so far (group-commit efficiency).
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            deferred: self.stats.deferred.load(Ordering::Relaxed),
            commands: self.stats.commands.load(Ordering::Relaxed),
        }
    }

    /// Test hook: while `reason` is set, every commit fails with it (as
    /// [`StoreError::Unavailable`]), as when the disk is full; `None` heals. For fault
    /// tests such as [`conformance_fault_suite!`](crate::conformance_fault_suite).
    #[doc(hidden)]
    pub fn fail_commits(&self, reason: Option<&str>) {
        self.health.inject(reason.map(str::to_owned));
    }

    /// Finishes queued commands, stops the writer and releases the lock.
    pub async fn close(mut self) -> StoreResult<()> {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| StoreError::Backend(format!("closing the store failed: {e}")))?
                .map_err(|_| StoreError::Backend("the store writer thread panicked".to_owned()))?;
        }
        if let Some(ckpt) = self.checkpointer.take() {
            drop(ckpt.stop);
            let _ = tokio::task::spawn_blocking(move || ckpt.thread.join()).await;
        }
        Ok(())
    }

    /// Sends `work` to the writer and waits for its committed result.
    async fn write<T, F>(&self, cost: usize, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&rusqlite::Connection, &mut Effects) -> StoreResult<T> + Send + 'static,
    {
        self.send(cost, true, work).await
    }

    /// Like [`write`](Self::write), for work whose loss in a power failure only repeats
    /// work: the commit may skip its fsync when nothing else in its batch needs one.
    async fn write_deferrable<T, F>(&self, cost: usize, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&rusqlite::Connection, &mut Effects) -> StoreResult<T> + Send + 'static,
    {
        self.send(cost, false, work).await
    }

    async fn send<T, F>(&self, cost: usize, durable: bool, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&rusqlite::Connection, &mut Effects) -> StoreResult<T> + Send + 'static,
    {
        self.send_then(cost, durable, work, None).await
    }

    /// Appends `events`; `after` runs on the writer thread with the committed outcomes.
    async fn append_with(
        &self,
        events: Vec<NewEvent>,
        after: Option<writer::After<Vec<AppendOutcome>>>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        if events.is_empty() {
            let none = Vec::new();
            if let Some(after) = after {
                after(&none);
            }
            return Ok(none);
        }
        let cost = append_cost(&events);
        self.send_then(cost, true, move |c, n| ops::append(c, n, &events), after)
            .await
    }

    /// [`send`](Self::send), with work the writer runs on the committed result (see
    /// [`Job::boxed`]).
    async fn send_then<T, F>(
        &self,
        cost: usize,
        durable: bool,
        work: F,
        after: Option<writer::After<T>>,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&rusqlite::Connection, &mut Effects) -> StoreResult<T> + Send + 'static,
    {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        let (cmd, rx) = Job::boxed(cost, durable, work, after);
        tx.send(cmd).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
        if let Some(ckpt) = self.checkpointer.take() {
            drop(ckpt.stop);
            let _ = ckpt.thread.join();
        }
    }
}

fn lock_data_dir(data_dir: &Path) -> StoreResult<File> {
    let path = data_dir.join(LOCK_FILE);
    let file = files::open_private(&path).map_err(|e| {
        StoreError::Backend(format!("cannot open lock file {}: {e}", path.display()))
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Backend(format!(
            "data dir {} is locked: another Ferry process holds it (lock file {})",
            data_dir.display(),
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(StoreError::Backend(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

fn append_cost(events: &[NewEvent]) -> usize {
    events
        .iter()
        .map(|e| {
            256 + e.payload.len()
                + e.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
                + e.deliveries.len() * 64
        })
        .sum()
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, events: Vec<NewEvent>) -> StoreResult<Vec<AppendOutcome>> {
        self.append_with(events, None).await
    }

    /// The writer thread runs `on_commit` right after the commit, so no task is needed to
    /// see it run should the caller stop waiting.
    async fn append_then(
        self: Arc<Self>,
        events: Vec<NewEvent>,
        on_commit: OnCommit,
    ) -> StoreResult<Vec<AppendOutcome>> {
        self.append_with(events, Some(Box::new(move |outcome| on_commit(outcome))))
            .await
    }

    async fn append_page(
        &self,
        flow: &str,
        events: Vec<NewEvent>,
        checkpoint: PullCheckpoint,
    ) -> StoreResult<Vec<AppendOutcome>> {
        if let Some(other) = events.iter().find(|e| e.flow != flow) {
            return Err(StoreError::Invalid(format!(
                "a page of pull flow `{flow}` holds event {} of flow `{}`",
                other.id, other.flow
            )));
        }
        let cost = append_cost(&events) + 128;
        let flow = flow.to_owned();
        self.write(cost, move |c, n| {
            pull::check_from(c, &flow, &checkpoint)?;
            let outcomes = ops::append(c, n, &events)?;
            let stored = outcomes.iter().filter(|o| o.is_stored()).count() as u64;
            pull::advance(c, &flow, &checkpoint, stored)?;
            Ok(outcomes)
        })
        .await
    }

    async fn append_with_rejected(
        &self,
        events: Vec<NewEvent>,
        rejected: Vec<NewRejected>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        if rejected.is_empty() {
            return self.append(events).await;
        }
        let cost = append_cost(&events)
            + rejected
                .iter()
                .map(|r| 256 + r.payload.len() + r.detail.len())
                .sum::<usize>();
        self.write(cost, move |c, n| {
            let outcomes = ops::append(c, n, &events)?;
            rejected::insert(c, &rejected)?;
            Ok(outcomes)
        })
        .await
    }

    async fn list_rejected(
        &self,
        flow: Option<&str>,
        before: Option<RejectedId>,
        limit: usize,
    ) -> StoreResult<Vec<RejectedRecord>> {
        let flow = flow.map(str::to_owned);
        self.reads
            .run(move |c| rejected::list(c, flow.as_deref(), before, limit))
            .await
    }

    async fn rejected(&self, id: RejectedId) -> StoreResult<Option<RejectedRecord>> {
        self.reads.run(move |c| rejected::get(c, id)).await
    }

    async fn replay_rejected(
        &self,
        id: RejectedId,
        events: Vec<NewEvent>,
        at: Millis,
        by: &str,
    ) -> StoreResult<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Err(StoreError::Invalid(format!(
                "replaying rejected record {id} needs at least one event"
            )));
        }
        let cost = append_cost(&events) + 64;
        let by = by.to_owned();
        self.write(cost, move |c, fx| {
            let flow = rejected::check_replayable(c, id)?;
            let outcomes = ops::append(c, fx, &events)?;
            let first = outcomes[0].event_id();
            rejected::mark_replayed(c, id, at, first)?;
            fx.audit.push(AuditEntry::RejectedReplayed {
                at,
                by: by.clone(),
                rejected: id,
                flow: flow.clone(),
                events: outcomes.iter().map(|o| o.event_id()).collect(),
            });
            Ok(outcomes)
        })
        .await
    }

    async fn pull_state(&self, flow: &str) -> StoreResult<Option<PullState>> {
        let flow = flow.to_owned();
        self.reads.run(move |c| pull::state(c, &flow)).await
    }

    async fn set_pull_run(&self, flow: &str, update: PullRunUpdate) -> StoreResult<()> {
        let flow = flow.to_owned();
        self.write(64, move |c, _| pull::set_run(c, &flow, &update))
            .await
    }

    async fn claim(
        &self,
        lane: &LaneKey,
        now: Millis,
        limit: usize,
        lease_until: Millis,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let lane = lane.clone();
        self.write_deferrable(64, move |c, n| {
            ops::claim(c, n, &lane, now, limit, lease_until)
        })
        .await
    }

    async fn complete(&self, outcomes: Vec<DeliveryOutcome>, now: Millis) -> StoreResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let cost = outcomes.len() * 256;
        self.write_deferrable(cost, move |c, n| ops::complete(c, n, &outcomes, now))
            .await
    }

    async fn release_all_claims(&self, now: Millis) -> StoreResult<u64> {
        self.write(64, move |c, n| ops::release_all_claims(c, n, now))
            .await
    }

    async fn next_due(&self, lane: &LaneKey) -> StoreResult<Option<Millis>> {
        let lane = lane.clone();
        self.reads.run(move |c| reads::next_due(c, &lane)).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<Vec<DeliverySummary>> {
        let filter = filter.clone();
        self.reads
            .run(move |c| reads::list_deliveries(c, &filter, after, limit))
            .await
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<DeliveryDetail>> {
        self.reads.run(move |c| reads::delivery(c, id)).await
    }

    async fn event(&self, id: EventId) -> StoreResult<Option<StoredEvent>> {
        self.reads.run(move |c| reads::event(c, id)).await
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<EventId>,
        limit: usize,
    ) -> StoreResult<Vec<EventSummary>> {
        let filter = filter.clone();
        self.reads
            .run(move |c| reads::list_events(c, &filter, after, limit))
            .await
    }

    async fn replay(&self, filter: &DeliveryFilter, now: Millis, by: &str) -> StoreResult<u64> {
        let filter = filter.clone();
        let by = by.to_owned();
        self.write(64, move |c, n| ops::replay(c, n, &filter, now, &by))
            .await
    }

    async fn lane_counts(&self) -> StoreResult<Vec<LaneCounts>> {
        self.reads.run(reads::lane_counts).await
    }

    async fn lane_backlog(&self) -> StoreResult<Vec<LaneBacklog>> {
        self.reads.run(reads::lane_backlog).await
    }

    async fn set_lane_pause(&self, lane: &LaneKey, pause: Option<LanePause>) -> StoreResult<()> {
        let lane = lane.clone();
        self.write(64, move |c, _| pauses::set(c, &lane, pause.as_ref()))
            .await
    }

    async fn lane_pauses(&self) -> StoreResult<Vec<(LaneKey, LanePause)>> {
        self.reads.run(pauses::list).await
    }

    async fn audit_admin_action(&self, entry: AuditEntry) -> StoreResult<()> {
        if !entry.is_admin_action() {
            return Err(StoreError::Invalid(format!(
                "`{}` audit entries are written by the store with the change they record",
                entry.kind()
            )));
        }
        self.write(256, move |_, fx| {
            fx.audit.push(entry.clone());
            Ok(())
        })
        .await
    }

    async fn audit_records(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<AuditRecord>> {
        self.reads
            .run(move |c| audit::records(c, after, limit))
            .await
    }

    async fn purge_expired(
        &self,
        rules: &RetentionRules,
        now: Millis,
        limit: usize,
    ) -> StoreResult<PurgeReport> {
        let rules = rules.clone();
        self.write(64 * limit.max(1), move |c, fx| {
            retention::purge(c, fx, &rules, now, limit)
        })
        .await
    }

    async fn holdings(&self) -> StoreResult<Vec<SystemHoldings>> {
        self.reads.run(retention::holdings).await
    }

    async fn observed_datamap(&self, filter: &ObservedFilter) -> StoreResult<Vec<ObservedFlow>> {
        let filter = filter.clone();
        self.reads.run(move |c| datamap::list(c, &filter)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        let Some(unready) = self.health.unready() else {
            // The writer answers, and no commit failed since the last probe.
            return self.write(0, |_, _| Ok(())).await;
        };
        // A commit failed: only a commit can tell whether the cause is gone.
        tracing::debug!(reason = %unready.reason, "store: not ready; probing with a write");
        self.write(health::PROBE_BYTES, |c, _| health::probe(c))
            .await
            .map_err(health::not_ready)?;
        self.health.probed(unready.seen);
        Ok(())
    }

    async fn data_keys_of(&self, subject_refs: &[String]) -> StoreResult<Vec<DataKeyRecord>> {
        let subjects = subject_refs.to_vec();
        self.reads
            .run(move |c| datakeys::of_subjects(c, &subjects))
            .await
    }

    async fn create_data_keys(&self, keys: Vec<NewDataKey>) -> StoreResult<Vec<DataKeyRecord>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let cost = keys.len() * 128;
        self.write(cost, move |c, _| datakeys::create(c, &keys))
            .await
    }

    async fn data_key(&self, id: DataKeyId) -> StoreResult<Option<DataKeyRecord>> {
        self.reads.run(move |c| datakeys::get(c, id)).await
    }

    async fn data_keys_not_wrapped_by(
        &self,
        kek_id: &str,
        after: Option<DataKeyId>,
        limit: usize,
    ) -> StoreResult<Vec<DataKeyRecord>> {
        let kek_id = kek_id.to_owned();
        self.reads
            .run(move |c| datakeys::not_wrapped_by(c, &kek_id, after, limit))
            .await
    }

    async fn rewrap_data_keys(&self, keys: Vec<RewrappedKey>) -> StoreResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let cost = keys.len() * 128;
        self.write(cost, move |c, _| datakeys::rewrap(c, &keys))
            .await
    }

    async fn shred_data_keys(&self, subject_ref: &str, at: Millis) -> StoreResult<u64> {
        let subject_ref = subject_ref.to_owned();
        let n = self
            .write(64, move |c, _| datakeys::shred(c, &subject_ref, at))
            .await?;
        if n > 0 {
            self.truncate_wal().await;
        }
        Ok(n)
    }

    async fn data_key_stats(&self) -> StoreResult<DataKeyStats> {
        self.reads.run(datakeys::stats).await
    }
}

impl SqliteStore {
    /// Checkpoint the WAL into the database file and truncate it, so the WAL no longer
    /// holds page images written before (after a shred: the wrapped keys it destroyed).
    /// Best effort: a reader holding an old snapshot makes it incomplete (logged); the
    /// background checkpoints and WAL reuse overwrite those frames later.
    async fn truncate_wal(&self) {
        let path = self.path.clone();
        let health = Arc::clone(&self.health);
        let res = tokio::task::spawn_blocking(move || -> rusqlite::Result<(i64, i64, i64)> {
            let conn = rusqlite::Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            health.checkpoint(|| {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
        })
        .await;
        match res {
            Ok(Ok((0, _, _))) => tracing::debug!("store: WAL truncated after a shred"),
            Ok(Ok((_, frames, done))) => tracing::warn!(
                frames,
                done,
                "store: the WAL could not be truncated after a shred (readers busy); \
                 older frames are overwritten as the WAL is reused"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "store: WAL truncation after a shred failed"),
            Err(e) => tracing::warn!(error = %e, "store: WAL truncation after a shred failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        // Parameters stay unbound: the plan is chosen at prepare time.
        let mut rows = stmt.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().expect("plan row") {
            steps.push(row.get::<_, String>(3).expect("plan detail"));
        }
        steps.join(" | ")
    }

    /// A data file in `dir` as a Ferry whose schema had `version` migrations left it.
    fn file_at_version(dir: &std::path::Path, version: usize) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(dir.join(DB_FILE)).expect("open");
        for m in &schema::MIGRATIONS[..version] {
            conn.execute_batch(m).expect("migration");
        }
        conn.pragma_update(None, "user_version", version as i64)
            .expect("version");
        conn
    }

    /// The hot queries are index seeks that need no sort, whatever the backlog.
    #[test]
    fn hot_queries_use_their_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = schema::open_writer(&dir.path().join(DB_FILE), &SqliteOptions::default())
            .expect("open");
        for (sql, index) in [
            (ops::CLAIM_SELECT, "deliveries_due"),
            (reads::NEXT_DUE, "deliveries_due"),
            (reads::OLDEST_IN_STATE, "deliveries_lane_state"),
            (order::HAS_QUEUED, "deliveries_order_key"),
            (order::HEAD, "deliveries_order_key"),
            (order::REORDER, "deliveries_order_key"),
            (
                "SELECT id FROM events WHERE flow = ?1 AND dedupe_key = ?2",
                "events_dedupe_key",
            ),
            (windows::EXPIRED, "dedupe_windows_expiry"),
            (
                "SELECT e.id FROM events e WHERE e.dedupe_key = ?1",
                "events_dedupe_key",
            ),
        ] {
            let p = plan(&conn, sql);
            assert!(p.contains(&format!("INDEX {index} ")), "{sql}\n=> {p}");
            assert!(
                !p.contains("TEMP B-TREE") && !p.contains("SCAN"),
                "{sql}\n=> {p}"
            );
        }
    }

    /// The statements a lane runs again and again are prepared once: binding other values
    /// (every claim binds its own time and number of free slots) does not make SQLite parse
    /// and plan them again, on the writer or on a reader.
    #[test]
    fn binding_new_values_does_not_re_prepare_a_statement() {
        use rusqlite::StatementStatus;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        let writer = schema::open_writer(&path, &SqliteOptions::default()).expect("open");
        let reader = schema::open_reader(&path, Duration::from_secs(1), 1024).expect("reader");
        for conn in [&writer, &reader] {
            for sql in [
                ops::CLAIM_SELECT,
                reads::NEXT_DUE,
                retention::PURGEABLE,
                windows::EXPIRED,
            ] {
                for value in [1_i64, 64, 7, 500] {
                    let mut stmt = conn.prepare_cached(sql).expect("prepare");
                    for i in 1..=stmt.parameter_count() {
                        stmt.raw_bind_parameter(i, value + i64::try_from(i).expect("index"))
                            .expect("bind");
                    }
                    let mut rows = stmt.raw_query();
                    while rows.next().expect("step").is_some() {}
                }
                let stmt = conn.prepare_cached(sql).expect("prepare");
                assert_eq!(
                    stmt.get_status(StatementStatus::RePrepare),
                    0,
                    "re-prepared when new values were bound: {sql}"
                );
            }
        }
    }

    /// The purge's queries seek by tag and time (and find a tag's deliveries through
    /// `deliveries_event`), whatever the number of events.
    #[test]
    fn purge_queries_seek() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = schema::open_writer(&dir.path().join(DB_FILE), &SqliteOptions::default())
            .expect("open");
        for (sql, wants) in [
            (
                retention::PURGEABLE,
                vec![
                    "SEARCH t USING PRIMARY KEY (tag=? AND received_at<?)",
                    "deliveries_event",
                ],
            ),
            (
                retention::NEXT_TAG,
                vec!["SEARCH event_retention USING PRIMARY KEY (tag>? AND tag<?)"],
            ),
            (
                retention::TAG_STATS,
                vec!["SEARCH event_retention USING PRIMARY KEY (tag=?)"],
            ),
        ] {
            let p = plan(&conn, sql);
            for want in wants {
                assert!(p.contains(want), "{sql}\n=> {p}");
            }
            assert!(!p.contains("SCAN"), "{sql}\n=> {p}");
        }
    }

    /// A sender id search (the id and its derived `#`/`@` forms) seeks in
    /// `events_dedupe_key`, alone or under deliveries; never a scan of every event.
    #[test]
    fn sender_id_searches_seek() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = schema::open_writer(&dir.path().join(DB_FILE), &SqliteOptions::default())
            .expect("open");
        for sql in [
            format!("SELECT e.id FROM events e WHERE {}", codec::SENDER_MATCH),
            format!(
                "SELECT d.id FROM deliveries d WHERE {}",
                codec::SENDER_DELIVERIES
            ),
        ] {
            let p = plan(&conn, &sql);
            assert!(p.contains("INDEX events_dedupe_key "), "{sql}\n=> {p}");
            assert!(
                !p.contains("SCAN e") && !p.contains("SCAN d"),
                "{sql}\n=> {p}"
            );
        }
    }

    /// A data file written by schema V1 opens, is migrated in place, and keeps working: its
    /// deliveries have no order key and are claimed as before, new ones may have keys.
    #[tokio::test(flavor = "multi_thread")]
    async fn v1_data_file_is_upgraded() {
        use crate::{DeliveryState, NewDelivery};
        use rusqlite::params;

        const T0: Millis = 1_700_000_000_000;
        let dir = tempfile::tempdir().expect("tempdir");
        let ev = EventId::new();
        let ids = [DeliveryId::new(), DeliveryId::new(), DeliveryId::new()];
        {
            let conn = file_at_version(dir.path(), 1);
            conn.execute(
                "INSERT INTO events (id, flow, source, received_at, headers, payload)
                 VALUES (?1, 'f', 's', ?2, '[]', x'7b7d')",
                params![ev.0.as_bytes(), T0],
            )
            .expect("event");
            // Pending, in flight (lease until T0 + 1000), delivered.
            for (i, (state, next)) in [(0, Some(T0)), (1, Some(T0 + 1000)), (2, None)]
                .into_iter()
                .enumerate()
            {
                conn.execute(
                    "INSERT INTO deliveries (id, event_id, flow, destination, state,
                         next_attempt_at, round_started_at, created_at, updated_at, received_at)
                     VALUES (?1, ?2, 'f', 'd', ?3, ?4, ?5, ?5, ?5, ?5)",
                    params![ids[i].0.as_bytes(), ev.0.as_bytes(), state, next, T0],
                )
                .expect("delivery");
                conn.execute(
                    "INSERT INTO lane_state_counts VALUES ('f', 'd', ?1, 1)",
                    [state],
                )
                .expect("count");
            }
        }

        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open");
        let lane = LaneKey {
            flow: "f".into(),
            destination: "d".into(),
        };
        let backlog = store.lane_backlog().await.expect("backlog");
        assert_eq!(
            backlog
                .iter()
                .map(|b| (b.waiting, b.oldest_waiting_received_at))
                .collect::<Vec<_>>(),
            vec![(2, Some(T0))]
        );
        let claimed = store.claim(&lane, T0 + 1, 10, T0 + 60_000).await;
        let claimed: Vec<_> = claimed.expect("claim").into_iter().map(|c| c.id).collect();
        assert_eq!(claimed, vec![ids[0]]);
        let next = store.next_due(&lane).await.expect("next_due");
        assert_eq!(next, Some(T0 + 1000), "the old claim's lease");
        let d = store.delivery(ids[2]).await.expect("read").expect("kept");
        assert_eq!(d.summary.state, DeliveryState::Delivered);

        let keyed: Vec<NewEvent> = (0..2)
            .map(|i| NewEvent {
                id: EventId::new(),
                flow: "f".into(),
                source: "s".into(),
                dedupe_key: None,
                event_type: None,
                received_at: T0 + i,
                headers: Vec::new(),
                payload: bytes::Bytes::from_static(b"{}"),
                deliveries: vec![NewDelivery {
                    id: DeliveryId::new(),
                    destination: "d".into(),
                    due_at: T0 + i,
                    order_key: Some("k".into()),
                    claimed_until: None,
                }],
                dedupe_window: None,
                audit: Default::default(),
            })
            .collect();
        store.append(keyed.clone()).await.expect("append keyed");
        let claimed = store.claim(&lane, T0 + 2, 10, T0 + 60_000).await;
        let claimed: Vec<_> = claimed.expect("claim").into_iter().map(|c| c.id).collect();
        assert_eq!(claimed, vec![keyed[0].deliveries[0].id]);
        store.close().await.expect("close");

        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
        assert_eq!(
            schema::user_version(&conn).expect("version"),
            SCHEMA_VERSION
        );
        let due_sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'deliveries_due'",
                [],
                |r| r.get(0),
            )
            .expect("due index");
        assert!(due_sql.contains("held = 0"), "{due_sql}");
    }

    /// Events stored before the audit trail existed stay under their source system's
    /// retention once the file is upgraded.
    #[tokio::test(flavor = "multi_thread")]
    async fn events_from_before_the_audit_trail_keep_their_system_retention() {
        use crate::RetentionRules;
        use rusqlite::params;

        const T0: Millis = 1_700_000_000_000;
        let dir = tempfile::tempdir().expect("tempdir");
        let ev = EventId::new();
        let before = schema::MIGRATIONS
            .iter()
            .position(|m| std::ptr::eq(*m, schema::V8))
            .expect("V8 is a migration");
        {
            let conn = file_at_version(dir.path(), before);
            conn.execute(
                "INSERT INTO events (id, flow, source, received_at, headers, payload)
                 VALUES (?1, 'f', 'legacy', ?2, '[]', x'7b7d')",
                params![ev.0.as_bytes(), T0],
            )
            .expect("event");
        }
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open");
        let holdings = store.holdings().await.expect("holdings");
        assert_eq!(holdings.len(), 1);
        assert_eq!(
            (holdings[0].system.as_str(), holdings[0].events),
            ("legacy", 1)
        );
        let rules = RetentionRules {
            systems: vec![("legacy".into(), 1000)],
            categories: Vec::new(),
        };
        let report = store.purge_expired(&rules, T0 + 5000, 10).await;
        assert_eq!(report.expect("purge").events, 1);
        assert!(store.event(ev).await.expect("read").is_none());
    }

    /// Keyed events stored before V9 (under `events_dedupe` and `events_sender_id`) keep
    /// deduplicating and are still found by sender id once both indexes are replaced by
    /// `events_dedupe_key`; the same key in another flow is still a different event.
    #[tokio::test(flavor = "multi_thread")]
    async fn keyed_events_from_before_v9_still_deduplicate_and_are_found() {
        use rusqlite::params;

        const T0: Millis = 1_700_000_000_000;
        let dir = tempfile::tempdir().expect("tempdir");
        let old = EventId::new();
        let before = schema::MIGRATIONS.len() - 1;
        {
            let conn = file_at_version(dir.path(), before);
            conn.execute(
                "INSERT INTO events (id, flow, source, dedupe_key, received_at, headers, payload)
                 VALUES (?1, 'f', 's', 'evt_1', ?2, '[]', x'7b7d')",
                params![old.0.as_bytes(), T0],
            )
            .expect("event");
        }

        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open");
        crate::conformance::keys_stored_before_an_upgrade_still_work(&store, old, "f", "evt_1")
            .await;
        store.close().await.expect("close");

        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open");
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("indexes");
        assert_eq!(indexes, ["events_dedupe_key", "sqlite_autoindex_events_1"]);
    }

    /// A writer that dies (here: a panicking command) turns into `Closed`, not a crash.
    #[tokio::test(flavor = "multi_thread")]
    async fn dead_writer_answers_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open");
        let res: StoreResult<()> = store
            .write(0, |_, _| panic!("injected writer failure"))
            .await;
        assert!(matches!(res, Err(StoreError::Closed)), "{res:?}");
        assert!(matches!(store.ping().await, Err(StoreError::Closed)));
        assert!(matches!(
            store.release_all_claims(0).await,
            Err(StoreError::Closed)
        ));
        // Reads still work from the committed state.
        assert!(store.event(EventId::new()).await.expect("read").is_none());
        drop(store);
    }
}
