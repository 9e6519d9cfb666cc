//! The backend-agnostic conformance suite for [`Store`].
//!
//! Every case is a test body written only against `Arc<dyn Store>`: it panics when the
//! backend breaks the contract. A backend runs the whole suite with
//! [`conformance_suite!`](crate::conformance_suite), given an async factory that returns a
//! fresh, empty store and a guard that keeps its resources (e.g. a temp dir) alive:
//!
//! ```ignore
//! async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) { /* ... */ }
//! ferry_store::conformance_suite!(fresh);
//! ```
//!
//! Contract details pinned here beyond the trait docs:
//! - a new delivery's round starts at its event's `received_at`;
//! - a lease ends at `lease_until`: the delivery is claimable again once `now >= lease_until`;
//! - an attempt is always recorded and counted in `attempts` (so `attempts` equals the number
//!   of attempt rows), but `round_attempts` and the state change only for in-flight
//!   deliveries; outcomes for unknown deliveries are ignored;
//! - listing is ordered by event receive time, ties in insertion order;
//! - a claim skips deliveries held back by their order key, and so does `next_due`;
//! - events are listed in id order; a sender id matches as [`crate::sender_id_matches`];
//! - a delivery's attempt filters (`min_attempts`, `error_class`, `status`) look at every
//!   attempt it ever made, across replays.
//!
//! Cases read `lane_counts`, `lane_backlog` and `lane_pauses` only for the flows they
//! created, so a backend may run them against one shared database.
//!
//! Durability across a restart is checked by a second, smaller suite,
//! [`conformance_reopen_suite!`](crate::conformance_reopen_suite), for backends that can
//! close a store and open the same data again ([`Reopen`]).
//!
//! A factory may return `Option<(store, guard)>` instead: `None` skips the case (for a
//! backend whose server is not configured here; the factory prints why).
//!
//! Readiness under failing commits (a full disk) is checked by
//! [`conformance_fault_suite!`](crate::conformance_fault_suite), for backends whose commits
//! can be made to fail on purpose ([`CommitFaults`]).

mod append;
mod audit;
mod datakeys;
mod delivery;
mod lanes;
mod ordering;
mod pull;
mod readiness;
mod reads;
mod rejected;
mod replay;
mod retention;
mod search;
mod windows;

pub use append::*;
pub use audit::*;
pub use datakeys::*;
pub use delivery::*;
pub use lanes::*;
pub use ordering::*;
pub use pull::*;
pub use readiness::*;
pub use reads::*;
pub use rejected::*;
pub use replay::*;
pub use retention::*;
pub use search::*;
pub use windows::*;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::{
    AppendOutcome, Attempt, ClaimedDelivery, DedupeWindow, DeliveryAudit, DeliveryFilter,
    DeliveryId, DeliveryOutcome, DeliveryState, DeliverySummary, EventAudit, EventId, LaneBacklog,
    LaneCounts, LaneKey, LanePause, Millis, NewDelivery, NewEvent, Next, PullCheckpoint,
    PullRunUpdate, PullState, Store, StoreError,
};

/// Expands to one test per conformance case, each on a fresh store from `$factory` (an async
/// fn returning `(Arc<dyn Store>, Guard)`), on a multi-threaded Tokio runtime.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            append_stores_event_and_deliveries,
            dedupe_within_flow_not_across_flows,
            dedupe_inside_one_append_call,
            append_rejects_reused_ids_atomically,
            concurrent_appends_all_stored,
            append_then_runs_at_commit_even_if_abandoned,
            claim_returns_due_oldest_first_within_limit,
            claim_respects_lease,
            stale_claim_outcome_does_not_undo_a_newer_claim,
            append_can_claim_for_the_lane,
            complete_records_outcomes,
            retry_claimable_only_at_its_time,
            release_for_later_keeps_the_round,
            complete_on_non_in_flight_keeps_state,
            delivered_leaves_only_by_replay,
            replay_by_delivery_and_event_id,
            replay_by_flow_and_state,
            replay_by_time_range,
            replay_resets_round_keeps_history,
            list_deliveries_filters,
            list_deliveries_cursor_paging,
            list_and_replay_by_any_of_flows,
            lane_counts_by_state,
            lane_counts_follow_release_replay_and_stale_outcomes,
            release_all_claims_returns_in_flight,
            next_due_is_earliest_waiting,
            payload_bytes_round_trip,
            ping_answers,
            order_key_claims_one_at_a_time_in_append_order,
            order_key_retrying_head_holds_only_its_key,
            order_key_dead_head_releases_the_next,
            order_key_leaves_unordered_deliveries_alone,
            order_keys_are_per_lane,
            order_key_replay_holds_later_deliveries_again,
            lane_backlog_counts_waiting_and_oldest,
            lane_pauses_set_overwrite_resume,
            dedupe_window_within_window_deduplicated,
            dedupe_window_after_window_stored_again,
            dedupe_window_and_dedupe_key_together,
            dedupe_window_rolled_back_with_its_call,
            append_page_commits_events_with_cursor,
            append_page_is_atomic_and_checks_its_cursor,
            pull_runs_are_recorded,
            list_events_by_sender_id,
            list_deliveries_by_sender_id,
            list_deliveries_by_attempts_class_and_status,
            replay_is_kept_in_the_history,
            rejected_are_stored_with_their_batch,
            rejected_roll_back_with_their_batch,
            rejected_list_newest_first_paged,
            rejected_replay_marks_once,
            data_keys_create_or_get,
            data_keys_concurrent_creation_agree,
            data_keys_rewrap_in_pages,
            data_keys_shred_one_subject,
            audit_records_every_movement,
            audit_records_only_what_was_committed,
            audit_admin_action_refuses_store_kinds,
            observed_datamap_counts_deliveries,
            rejected_replay_is_audited,
            purge_removes_expired_finished_events,
            purge_by_category_takes_the_shortest_retention,
            purge_is_bounded,
            holdings_per_source_system,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_case(async {
                    let Some((store, guard)) =
                        $crate::conformance::Available::available($factory().await)
                    else {
                        return;
                    };
                    $crate::conformance::$case(store).await;
                    drop(guard);
                });
            }
        )*
    };
}

/// A backend whose stores can be closed and opened again on the same data, for the cases
/// of [`conformance_reopen_suite!`](crate::conformance_reopen_suite).
#[async_trait::async_trait]
pub trait Reopen: Send {
    /// Close `store` (this is its last handle) and open the same data again.
    async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store>;
}

/// Expands to one test per durability case, each on a fresh store from `$factory` (an async
/// fn returning `(Arc<dyn Store>, impl Reopen)`), on a multi-threaded Tokio runtime.
#[macro_export]
macro_rules! conformance_reopen_suite {
    ($factory:expr) => {
        $crate::conformance_reopen_suite!(@cases $factory;
            dedupe_window_survives_reopen,
            pull_state_survives_reopen,
            audit_chain_survives_reopen,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_case(async {
                    let Some((store, mut reopen)) =
                        $crate::conformance::Available::available($factory().await)
                    else {
                        return;
                    };
                    $crate::conformance::$case(store, &mut reopen).await;
                });
            }
        )*
    };
}

/// Expands to one test per readiness case, each on a fresh store from `$factory` (an async
/// fn returning `(Arc<dyn Store>, impl CommitFaults)`), on a multi-threaded Tokio runtime.
#[macro_export]
macro_rules! conformance_fault_suite {
    ($factory:expr) => {
        $crate::conformance_fault_suite!(@cases $factory;
            ping_reports_failed_commits_until_one_succeeds,
            audit_chain_skips_failed_commits,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_case(async {
                    let Some((store, mut faults)) =
                        $crate::conformance::Available::available($factory().await)
                    else {
                        return;
                    };
                    $crate::conformance::$case(store, &mut faults).await;
                });
            }
        )*
    };
}

/// What a suite's factory returns: a store with its guard, or `None` when the backend is not
/// available here (a server whose URL is not set): the case then passes without running,
/// and the factory says why.
#[doc(hidden)]
pub trait Available<G> {
    fn available(self) -> Option<(Arc<dyn Store>, G)>;
}
impl<G> Available<G> for (Arc<dyn Store>, G) {
    fn available(self) -> Option<(Arc<dyn Store>, G)> {
        Some(self)
    }
}
impl<G> Available<G> for Option<(Arc<dyn Store>, G)> {
    fn available(self) -> Option<(Arc<dyn Store>, G)> {
        self
    }
}

/// Runs one case on a fresh multi-threaded runtime (what `#[tokio::test(flavor =
/// "multi_thread")]` would do, without requiring the caller to name Tokio).
#[doc(hidden)]
pub fn run_case<F: std::future::Future<Output = ()>>(case: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("build a tokio runtime")
        .block_on(case);
}

const T0: Millis = 1_700_000_000_000;
const LEASE: Millis = 60_000;

/// A flow name no other case uses.
fn flow(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7().simple())
}

fn lane(flow: &str, destination: &str) -> LaneKey {
    LaneKey {
        flow: flow.to_owned(),
        destination: destination.to_owned(),
    }
}

/// An event of `flow` received at `at`, with one delivery per destination due at `at`.
fn event(flow: &str, at: Millis, destinations: &[&str]) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        flow: flow.to_owned(),
        source: "shop".to_owned(),
        dedupe_key: None,
        event_type: Some("order.created".to_owned()),
        received_at: at,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        payload: Bytes::from(format!("{{\"at\":{at}}}")),
        deliveries: destinations
            .iter()
            .map(|d| NewDelivery {
                id: DeliveryId::new(),
                destination: (*d).to_owned(),
                due_at: at,
                order_key: None,
                claimed_until: None,
            })
            .collect(),
        dedupe_window: None,
        audit: EventAudit {
            flow_version: 1,
            subject: None,
            categories: Vec::new(),
        },
    }
}

/// `ev` with every delivery under order key `key`.
fn ordered(mut ev: NewEvent, key: &str) -> NewEvent {
    for d in &mut ev.deliveries {
        d.order_key = Some(key.to_owned());
    }
    ev
}

fn keyed(mut ev: NewEvent, key: &str) -> NewEvent {
    ev.dedupe_key = Some(key.to_owned());
    ev
}

fn attempt(started_at: Millis, status: Option<u16>, class: &str, error: Option<&str>) -> Attempt {
    Attempt {
        started_at,
        latency_ms: 42,
        status,
        error_class: Some(class.to_owned()),
        error: error.map(str::to_owned),
        response_excerpt: Some(format!("excerpt {class}")),
    }
}

fn outcome(id: DeliveryId, attempt: Option<Attempt>, next: Next) -> DeliveryOutcome {
    DeliveryOutcome {
        claim: None,
        id,
        attempt,
        next,
        audit: DeliveryAudit::default(),
    }
}

async fn append_ok(store: &dyn Store, events: Vec<NewEvent>) -> Vec<AppendOutcome> {
    store.append(events).await.expect("append")
}

async fn summary(store: &dyn Store, id: DeliveryId) -> DeliverySummary {
    store
        .delivery(id)
        .await
        .expect("read delivery")
        .unwrap_or_else(|| panic!("delivery {id} not found"))
        .summary
}

async fn state(store: &dyn Store, id: DeliveryId) -> DeliveryState {
    summary(store, id).await.state
}

async fn claim_ids(
    store: &dyn Store,
    lane: &LaneKey,
    now: Millis,
    limit: usize,
) -> Vec<DeliveryId> {
    store
        .claim(lane, now, limit, now + LEASE)
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Claims exactly `id` from its lane (it must be the only due one).
async fn claim_one(
    store: &dyn Store,
    lane: &LaneKey,
    now: Millis,
    id: DeliveryId,
) -> ClaimedDelivery {
    let claimed = store
        .claim(lane, now, 10, now + LEASE)
        .await
        .expect("claim");
    assert_eq!(
        claimed.len(),
        1,
        "expected exactly one due delivery in {lane:?}"
    );
    assert_eq!(claimed[0].id, id);
    claimed.into_iter().next().expect("one claimed")
}

async fn complete_ok(store: &dyn Store, outcomes: Vec<DeliveryOutcome>, now: Millis) {
    store.complete(outcomes, now).await.expect("complete");
}

/// Makes `id` (the only due delivery of `lane`) dead.
async fn kill(store: &dyn Store, lane: &LaneKey, now: Millis, id: DeliveryId) {
    claim_one(store, lane, now, id).await;
    let a = attempt(now, Some(400), "http_4xx", Some("bad request"));
    complete_ok(
        store,
        vec![outcome(
            id,
            Some(a),
            Next::Dead {
                reason: "HTTP 400".into(),
            },
        )],
        now,
    )
    .await;
}

fn by_flow(flow: &str) -> DeliveryFilter {
    DeliveryFilter {
        flow: Some(flow.to_owned()),
        ..Default::default()
    }
}

async fn list_all(store: &dyn Store, filter: &DeliveryFilter) -> Vec<DeliverySummary> {
    store
        .list_deliveries(filter, None, 100_000)
        .await
        .expect("list")
}

fn ids(list: &[DeliverySummary]) -> Vec<DeliveryId> {
    list.iter().map(|s| s.id).collect()
}

fn id_set(ids: impl IntoIterator<Item = DeliveryId>) -> HashSet<DeliveryId> {
    ids.into_iter().collect()
}

async fn lane_of(store: &dyn Store, key: &LaneKey) -> LaneCounts {
    store
        .lane_counts()
        .await
        .expect("lane counts")
        .into_iter()
        .find(|c| &c.lane == key)
        .unwrap_or_else(|| panic!("no counts for {key:?}"))
}
