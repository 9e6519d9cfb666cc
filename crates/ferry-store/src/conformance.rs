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
//! - listing is ordered by event receive time, ties in insertion order.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use crate::{
    AppendOutcome, Attempt, ClaimedDelivery, DeliveryFilter, DeliveryId, DeliveryOutcome,
    DeliveryState, DeliverySummary, EventId, LaneCounts, LaneKey, Millis, NewDelivery, NewEvent,
    Next, Store, StoreError,
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
            claim_returns_due_oldest_first_within_limit,
            claim_respects_lease,
            complete_records_outcomes,
            retry_claimable_only_at_its_time,
            complete_on_non_in_flight_keeps_state,
            delivered_leaves_only_by_replay,
            replay_by_delivery_and_event_id,
            replay_by_flow_and_state,
            replay_by_time_range,
            replay_resets_round_keeps_history,
            list_deliveries_filters,
            list_deliveries_cursor_paging,
            lane_counts_by_state,
            release_all_claims_returns_in_flight,
            next_due_is_earliest_waiting,
            payload_bytes_round_trip,
            ping_answers,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_case(async {
                    let (store, guard) = $factory().await;
                    $crate::conformance::$case(store).await;
                    drop(guard);
                });
            }
        )*
    };
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
            })
            .collect(),
    }
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
    DeliveryOutcome { id, attempt, next }
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

/// An appended event is readable with every field, and so are its pending deliveries.
pub async fn append_stores_event_and_deliveries(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("orders");
    let mut ev = keyed(event(&f, T0, &["crm", "erp"]), "evt-1");
    ev.headers
        .push(("traceparent".into(), "00-abc-def-01".into()));
    ev.deliveries[1].due_at = T0 + 5;
    let bare = event(&f, T0 + 1, &[]);
    let out = append_ok(store, vec![ev.clone(), bare.clone()]).await;
    assert_eq!(
        out,
        vec![AppendOutcome::Stored(ev.id), AppendOutcome::Stored(bare.id)]
    );

    let got = store
        .event(ev.id)
        .await
        .expect("event")
        .expect("event stored");
    assert_eq!(got.id, ev.id);
    assert_eq!(got.flow, ev.flow);
    assert_eq!(got.source, ev.source);
    assert_eq!(got.dedupe_key, ev.dedupe_key);
    assert_eq!(got.event_type, ev.event_type);
    assert_eq!(got.received_at, ev.received_at);
    assert_eq!(got.headers, ev.headers);
    assert_eq!(got.payload, ev.payload);
    assert!(store.event(bare.id).await.expect("event").is_some());

    for (d, due) in ev.deliveries.iter().zip([T0, T0 + 5]) {
        let detail = store
            .delivery(d.id)
            .await
            .expect("delivery")
            .expect("delivery stored");
        let s = &detail.summary;
        assert_eq!(s.id, d.id);
        assert_eq!(s.event_id, ev.id);
        assert_eq!(s.lane, lane(&f, &d.destination));
        assert_eq!(s.state, DeliveryState::Pending);
        assert_eq!(s.received_at, T0);
        assert_eq!(s.attempts, 0);
        assert_eq!(s.next_attempt_at, Some(due));
        assert_eq!(s.last_error, None);
        assert_eq!(s.replays, 0);
        assert!(detail.attempts.is_empty());
    }
    let listed = list_all(
        store,
        &DeliveryFilter {
            event_id: Some(ev.id),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        id_set(ids(&listed)),
        id_set(ev.deliveries.iter().map(|d| d.id))
    );
    assert_eq!(
        list_all(store, &by_flow(&f)).await.len(),
        2,
        "the bare event has no deliveries"
    );

    assert!(store.event(EventId::new()).await.expect("event").is_none());
    assert!(
        store
            .delivery(DeliveryId::new())
            .await
            .expect("delivery")
            .is_none()
    );
}

/// Same dedupe key in the same flow is a duplicate of the first event; other flows and
/// events without a key are never duplicates.
pub async fn dedupe_within_flow_not_across_flows(store: Arc<dyn Store>) {
    let store = &*store;
    let (fa, fb) = (flow("a"), flow("b"));
    let first = keyed(event(&fa, T0, &["crm"]), "k");
    let again = keyed(event(&fa, T0 + 1, &["crm", "erp"]), "k");
    let other_flow = keyed(event(&fb, T0 + 2, &["crm"]), "k");
    assert_eq!(
        append_ok(store, vec![first.clone()]).await,
        vec![AppendOutcome::Stored(first.id)]
    );
    assert_eq!(
        append_ok(store, vec![again.clone()]).await,
        vec![AppendOutcome::Duplicate(first.id)]
    );
    assert_eq!(
        append_ok(store, vec![other_flow.clone()]).await,
        vec![AppendOutcome::Stored(other_flow.id)]
    );
    assert!(
        store.event(again.id).await.expect("event").is_none(),
        "duplicate must not be stored"
    );
    for d in &again.deliveries {
        assert!(
            store.delivery(d.id).await.expect("delivery").is_none(),
            "duplicate's delivery stored"
        );
    }
    assert_eq!(
        ids(&list_all(store, &by_flow(&fa)).await),
        vec![first.deliveries[0].id]
    );
    assert_eq!(list_all(store, &by_flow(&fb)).await.len(), 1);

    let (n1, n2) = (event(&fa, T0 + 3, &["crm"]), event(&fa, T0 + 4, &["crm"]));
    assert_eq!(
        append_ok(store, vec![n1.clone(), n2.clone()]).await,
        vec![AppendOutcome::Stored(n1.id), AppendOutcome::Stored(n2.id)]
    );
    assert_eq!(list_all(store, &by_flow(&fa)).await.len(), 3);
}

/// Duplicates within one `append` call dedupe against the earlier event of the same call.
pub async fn dedupe_inside_one_append_call(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("batch");
    let e1 = keyed(event(&f, T0, &["crm"]), "k1");
    let e2 = keyed(event(&f, T0 + 1, &["crm"]), "k1");
    let e3 = keyed(event(&f, T0 + 2, &["crm"]), "k2");
    let out = append_ok(store, vec![e1.clone(), e2.clone(), e3.clone()]).await;
    assert_eq!(
        out,
        vec![
            AppendOutcome::Stored(e1.id),
            AppendOutcome::Duplicate(e1.id),
            AppendOutcome::Stored(e3.id)
        ]
    );
    assert!(store.event(e2.id).await.expect("event").is_none());
    let listed = list_all(store, &by_flow(&f)).await;
    assert_eq!(ids(&listed), vec![e1.deliveries[0].id, e3.deliveries[0].id]);
}

/// Reusing a delivery or event id is `Invalid`, and nothing of that call is stored.
pub async fn append_rejects_reused_ids_atomically(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("ids");
    let first = event(&f, T0, &["crm"]);
    append_ok(store, vec![first.clone()]).await;

    let innocent = event(&f, T0 + 1, &["crm"]);
    let mut reuse = event(&f, T0 + 2, &["erp"]);
    reuse.deliveries[0].id = first.deliveries[0].id;
    let err = store.append(vec![innocent.clone(), reuse.clone()]).await;
    assert!(
        matches!(err, Err(StoreError::Invalid(_))),
        "reused delivery id: {err:?}"
    );
    assert!(
        store.event(innocent.id).await.expect("event").is_none(),
        "call must be atomic"
    );
    assert!(store.event(reuse.id).await.expect("event").is_none());

    let mut twice = event(&f, T0 + 3, &["crm", "erp"]);
    twice.deliveries[1].id = twice.deliveries[0].id;
    let err = store.append(vec![twice.clone()]).await;
    assert!(
        matches!(err, Err(StoreError::Invalid(_))),
        "delivery id twice in one event: {err:?}"
    );
    assert!(store.event(twice.id).await.expect("event").is_none());

    let mut same_event = event(&f, T0 + 4, &["erp"]);
    same_event.id = first.id;
    let err = store.append(vec![same_event.clone()]).await;
    assert!(
        matches!(err, Err(StoreError::Invalid(_))),
        "reused event id: {err:?}"
    );
    assert!(
        store
            .delivery(same_event.deliveries[0].id)
            .await
            .expect("delivery")
            .is_none()
    );

    assert_eq!(
        ids(&list_all(store, &by_flow(&f)).await),
        vec![first.deliveries[0].id]
    );
    assert_eq!(
        summary(store, first.deliveries[0].id)
            .await
            .lane
            .destination,
        "crm"
    );
}

/// 200 tasks appending at once: every event and delivery is stored.
pub async fn concurrent_appends_all_stored(store: Arc<dyn Store>) {
    let f = flow("burst");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200_i64 {
        let store = Arc::clone(&store);
        let f = f.clone();
        tasks.spawn(async move {
            let a = keyed(event(&f, T0 + i, &["crm"]), &format!("k{i}"));
            let b = event(&f, T0 + i, &["crm"]);
            let out = store
                .append(vec![a.clone(), b.clone()])
                .await
                .expect("append");
            assert_eq!(
                out,
                vec![AppendOutcome::Stored(a.id), AppendOutcome::Stored(b.id)]
            );
            vec![a.id, b.id]
        });
    }
    let mut events = Vec::new();
    while let Some(res) = tasks.join_next().await {
        events.extend(res.expect("append task"));
    }
    assert_eq!(events.len(), 400);
    for id in &events {
        assert!(
            store.event(*id).await.expect("event").is_some(),
            "event {id} lost"
        );
    }
    let listed = list_all(&*store, &by_flow(&f)).await;
    assert_eq!(listed.len(), 400);
    assert_eq!(id_set(ids(&listed)).len(), 400);
    let counts = lane_of(&*store, &lane(&f, "crm")).await;
    assert_eq!(counts.pending, 400);
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

/// Claims take only due deliveries of the lane, oldest due first, up to the limit, and mark
/// them in flight with the lease; they carry everything a connector needs.
pub async fn claim_returns_due_oldest_first_within_limit(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("claims"), flow("other"));
    let mut evs: Vec<NewEvent> = [30, 10, 20, 1000]
        .iter()
        .map(|&due| {
            let mut e = event(&f, T0, &["a"]);
            e.deliveries[0].due_at = T0 + due;
            e
        })
        .collect();
    evs[1].headers.push(("x-trace".into(), "t1".into()));
    evs.push(event(&f, T0, &["b"]));
    evs.push(event(&g, T0, &["a"]));
    append_ok(store, evs.clone()).await;
    let la = lane(&f, "a");
    let now = T0 + 100;

    assert!(
        store
            .claim(&la, now, 0, now + LEASE)
            .await
            .expect("claim")
            .is_empty()
    );
    let first = store.claim(&la, now, 2, now + LEASE).await.expect("claim");
    assert_eq!(
        first.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![evs[1].deliveries[0].id, evs[2].deliveries[0].id],
        "oldest due first, limited"
    );
    let c = &first[0];
    assert_eq!(c.event_id, evs[1].id);
    assert_eq!(c.lane, la);
    assert_eq!(c.event_type, evs[1].event_type);
    assert_eq!(c.received_at, T0);
    assert_eq!(c.headers, evs[1].headers);
    assert_eq!(c.payload, evs[1].payload);
    assert_eq!(
        (c.attempts, c.round_attempts, c.round_started_at),
        (0, 0, T0)
    );
    for c in &first {
        let s = summary(store, c.id).await;
        assert_eq!(s.state, DeliveryState::InFlight);
        assert_eq!(s.next_attempt_at, Some(now + LEASE));
    }

    assert_eq!(
        claim_ids(store, &la, now, 10).await,
        vec![evs[0].deliveries[0].id]
    );
    assert!(
        claim_ids(store, &la, now, 10).await.is_empty(),
        "future delivery is not due"
    );
    assert_eq!(
        state(store, evs[3].deliveries[0].id).await,
        DeliveryState::Pending
    );
    assert_eq!(
        state(store, evs[4].deliveries[0].id).await,
        DeliveryState::Pending,
        "other lane"
    );
    assert_eq!(
        state(store, evs[5].deliveries[0].id).await,
        DeliveryState::Pending,
        "other flow"
    );
    assert_eq!(
        claim_ids(store, &la, T0 + 1000, 10).await,
        vec![evs[3].deliveries[0].id]
    );
}

/// A claimed delivery is not claimed again before its lease ends, but is afterwards.
pub async fn claim_respects_lease(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("lease");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let la = lane(&f, "a");
    let id = ev.deliveries[0].id;
    let got = store.claim(&la, T0, 10, T0 + 1000).await.expect("claim");
    assert_eq!(got.len(), 1);
    assert!(
        store
            .claim(&la, T0, 10, T0 + 1000)
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(
        store
            .claim(&la, T0 + 999, 10, T0 + 5000)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store
        .claim(&la, T0 + 1000, 10, T0 + 9000)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![id],
        "expired lease"
    );
    let s = summary(store, id).await;
    assert_eq!(
        (s.state, s.next_attempt_at),
        (DeliveryState::InFlight, Some(T0 + 9000))
    );
}

/// Delivered, Retry, Dead and Release move in-flight deliveries and record attempts with
/// every field; counters follow.
pub async fn complete_records_outcomes(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("outcomes");
    let ev = event(&f, T0, &["a", "b", "c", "d", "e"]);
    append_ok(store, vec![ev.clone()]).await;
    let d: Vec<DeliveryId> = ev.deliveries.iter().map(|x| x.id).collect();
    for (i, dest) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        claim_one(store, &lane(&f, dest), T0 + 10, d[i]).await;
    }
    let ok = Attempt {
        started_at: T0 + 11,
        latency_ms: 12,
        status: Some(200),
        error_class: Some("ok".into()),
        error: None,
        response_excerpt: Some("{\"ok\":true}".into()),
    };
    let busy = attempt(
        T0 + 12,
        Some(503),
        "http_5xx",
        Some("HTTP 503 Service Unavailable"),
    );
    let bad = attempt(T0 + 13, Some(400), "http_4xx", Some("HTTP 400 Bad Request"));
    let timeout = Attempt {
        started_at: T0 + 14,
        latency_ms: 30_000,
        status: None,
        error_class: Some("timeout".into()),
        error: Some("timed out after 30s".into()),
        response_excerpt: None,
    };
    let now = T0 + 200;
    complete_ok(
        store,
        vec![
            outcome(d[0], Some(ok.clone()), Next::Delivered),
            outcome(d[1], Some(busy.clone()), Next::Retry { at: T0 + 5000 }),
            outcome(
                d[2],
                Some(bad.clone()),
                Next::Dead {
                    reason: "permanent: HTTP 400".into(),
                },
            ),
            outcome(d[3], None, Next::Release { at: T0 + 7000 }),
            outcome(d[4], Some(timeout.clone()), Next::Retry { at: T0 + 6000 }),
        ],
        now,
    )
    .await;

    let detail = |id| async move { store.delivery(id).await.expect("delivery").expect("exists") };
    let a = detail(d[0]).await;
    assert_eq!(a.summary.state, DeliveryState::Delivered);
    assert_eq!((a.summary.attempts, a.summary.next_attempt_at), (1, None));
    assert_eq!(a.summary.updated_at, now);
    assert_eq!(a.attempts, vec![ok]);

    let b = detail(d[1]).await;
    assert_eq!(b.summary.state, DeliveryState::Retrying);
    assert_eq!(b.summary.next_attempt_at, Some(T0 + 5000));
    assert_eq!(
        b.summary.last_error.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
    assert_eq!((b.summary.attempts, b.attempts.clone()), (1, vec![busy]));

    let c = detail(d[2]).await;
    assert_eq!(c.summary.state, DeliveryState::Dead);
    assert_eq!(c.summary.next_attempt_at, None);
    assert_eq!(c.summary.last_error.as_deref(), Some("permanent: HTTP 400"));
    assert_eq!(c.attempts, vec![bad]);

    let r = detail(d[3]).await;
    assert_eq!(r.summary.state, DeliveryState::Pending);
    assert_eq!(
        (r.summary.next_attempt_at, r.summary.attempts),
        (Some(T0 + 7000), 0)
    );
    assert!(r.attempts.is_empty());

    let t = detail(d[4]).await;
    assert_eq!(t.attempts, vec![timeout]);
    assert_eq!(t.summary.last_error.as_deref(), Some("timed out after 30s"));

    let retried = claim_one(store, &lane(&f, "b"), T0 + 5000, d[1]).await;
    assert_eq!(
        (
            retried.attempts,
            retried.round_attempts,
            retried.round_started_at
        ),
        (1, 1, T0)
    );
    let released = claim_one(store, &lane(&f, "d"), T0 + 7000, d[3]).await;
    assert_eq!(
        (released.attempts, released.round_attempts),
        (0, 0),
        "release counts no attempt"
    );

    // A second attempt is appended after the first, oldest first.
    let again = attempt(T0 + 5001, Some(200), "ok", None);
    complete_ok(
        store,
        vec![outcome(d[1], Some(again.clone()), Next::Delivered)],
        T0 + 5002,
    )
    .await;
    let b = detail(d[1]).await;
    assert_eq!(b.summary.state, DeliveryState::Delivered);
    assert_eq!(b.summary.attempts, 2);
    assert_eq!(b.attempts[1], again);
}

/// A retrying delivery is claimable exactly from its retry time.
pub async fn retry_claimable_only_at_its_time(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("retry");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let (la, id) = (lane(&f, "a"), ev.deliveries[0].id);
    claim_one(store, &la, T0, id).await;
    let a = attempt(T0, Some(500), "http_5xx", Some("boom"));
    complete_ok(
        store,
        vec![outcome(id, Some(a), Next::Retry { at: T0 + 5000 })],
        T0 + 1,
    )
    .await;
    assert!(claim_ids(store, &la, T0 + 1, 10).await.is_empty());
    assert!(claim_ids(store, &la, T0 + 4999, 10).await.is_empty());
    assert_eq!(
        store.next_due(&la).await.expect("next_due"),
        Some(T0 + 5000)
    );
    let c = claim_one(store, &la, T0 + 5000, id).await;
    assert_eq!((c.attempts, c.round_attempts), (1, 1));
}

/// Outcomes for deliveries that are not in flight keep their attempt but change no state;
/// outcomes for unknown deliveries are ignored.
pub async fn complete_on_non_in_flight_keeps_state(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("stale");
    let ev = event(&f, T0, &["a", "b"]);
    append_ok(store, vec![ev.clone()]).await;
    let (pending, dead) = (ev.deliveries[0].id, ev.deliveries[1].id);
    kill(store, &lane(&f, "b"), T0, dead).await;

    let a = attempt(T0 + 1, Some(200), "ok", None);
    complete_ok(
        store,
        vec![
            outcome(pending, Some(a.clone()), Next::Delivered),
            outcome(dead, Some(a.clone()), Next::Retry { at: T0 + 10 }),
            outcome(dead, None, Next::Release { at: T0 + 10 }),
            outcome(DeliveryId::new(), Some(a.clone()), Next::Delivered),
        ],
        T0 + 2,
    )
    .await;
    let p = store
        .delivery(pending)
        .await
        .expect("delivery")
        .expect("exists");
    assert_eq!(p.summary.state, DeliveryState::Pending);
    assert_eq!(p.summary.next_attempt_at, Some(T0));
    assert_eq!(p.attempts, vec![a.clone()], "the attempt is kept");
    assert_eq!(p.summary.attempts, 1);
    let d = store
        .delivery(dead)
        .await
        .expect("delivery")
        .expect("exists");
    assert_eq!(d.summary.state, DeliveryState::Dead);
    assert_eq!(d.summary.last_error.as_deref(), Some("HTTP 400"));
    assert_eq!(d.attempts.len(), 2);
    let c = claim_one(store, &lane(&f, "a"), T0 + 3, pending).await;
    assert_eq!(
        c.round_attempts, 0,
        "a stale attempt does not count in the round"
    );
}

/// Nothing but a replay moves a delivery out of `delivered`.
pub async fn delivered_leaves_only_by_replay(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("done");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let (la, id) = (lane(&f, "a"), ev.deliveries[0].id);
    claim_one(store, &la, T0, id).await;
    complete_ok(
        store,
        vec![outcome(
            id,
            Some(attempt(T0, Some(200), "ok", None)),
            Next::Delivered,
        )],
        T0 + 1,
    )
    .await;

    let a = attempt(T0 + 2, Some(500), "http_5xx", Some("late"));
    for next in [
        Next::Retry { at: T0 + 3 },
        Next::Dead {
            reason: "late".into(),
        },
        Next::Release { at: T0 + 3 },
        Next::Delivered,
    ] {
        complete_ok(store, vec![outcome(id, Some(a.clone()), next)], T0 + 2).await;
        assert_eq!(state(store, id).await, DeliveryState::Delivered);
    }
    store.release_all_claims(T0 + 4).await.expect("release");
    assert_eq!(state(store, id).await, DeliveryState::Delivered);
    assert!(
        claim_ids(store, &la, T0 + 1_000_000_000, 10)
            .await
            .is_empty()
    );
    assert_eq!(store.next_due(&la).await.expect("next_due"), None);
    let n = store
        .replay(
            &DeliveryFilter {
                delivery_id: Some(id),
                ..Default::default()
            },
            T0 + 10,
        )
        .await
        .expect("replay");
    assert_eq!(n, 1);
    let s = summary(store, id).await;
    assert_eq!(
        (s.state, s.next_attempt_at, s.replays),
        (DeliveryState::Pending, Some(T0 + 10), 1)
    );
}

/// Replay selects by delivery id and by event id.
pub async fn replay_by_delivery_and_event_id(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("replay-ids");
    let e1 = event(&f, T0, &["a", "b"]);
    let e2 = event(&f, T0 + 1, &["c"]);
    append_ok(store, vec![e1.clone(), e2.clone()]).await;
    let (d1a, d1b, d2c) = (
        e1.deliveries[0].id,
        e1.deliveries[1].id,
        e2.deliveries[0].id,
    );
    kill(store, &lane(&f, "a"), T0 + 5, d1a).await;
    kill(store, &lane(&f, "b"), T0 + 5, d1b).await;
    kill(store, &lane(&f, "c"), T0 + 5, d2c).await;

    let one = DeliveryFilter {
        delivery_id: Some(d1a),
        ..Default::default()
    };
    assert_eq!(store.replay(&one, T0 + 10).await.expect("replay"), 1);
    assert_eq!(state(store, d1a).await, DeliveryState::Pending);
    assert_eq!(state(store, d1b).await, DeliveryState::Dead);
    assert_eq!(state(store, d2c).await, DeliveryState::Dead);

    let ev2 = DeliveryFilter {
        event_id: Some(e2.id),
        ..Default::default()
    };
    assert_eq!(store.replay(&ev2, T0 + 10).await.expect("replay"), 1);
    assert_eq!(state(store, d2c).await, DeliveryState::Pending);
    assert_eq!(state(store, d1b).await, DeliveryState::Dead);

    let ev1 = DeliveryFilter {
        event_id: Some(e1.id),
        ..Default::default()
    };
    assert_eq!(
        store.replay(&ev1, T0 + 10).await.expect("replay"),
        1,
        "d1a is already pending"
    );
    assert_eq!(state(store, d1b).await, DeliveryState::Pending);
    assert_eq!(summary(store, d1a).await.replays, 1);
}

/// Replay by flow (+ state) takes delivered, retrying and dead deliveries of that flow only,
/// and leaves pending and in-flight ones alone.
pub async fn replay_by_flow_and_state(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("replay-flow"), flow("replay-other"));
    let evs: Vec<NewEvent> = ["dead", "delivered", "retrying", "pending", "in_flight"]
        .iter()
        .map(|dest| event(&f, T0, &[dest]))
        .collect();
    let other = event(&g, T0, &["dead"]);
    let mut all = evs.clone();
    all.push(other.clone());
    append_ok(store, all).await;
    let id = |i: usize| evs[i].deliveries[0].id;
    kill(store, &lane(&f, "dead"), T0, id(0)).await;
    kill(store, &lane(&g, "dead"), T0, other.deliveries[0].id).await;
    claim_one(store, &lane(&f, "delivered"), T0, id(1)).await;
    claim_one(store, &lane(&f, "retrying"), T0, id(2)).await;
    claim_one(store, &lane(&f, "in_flight"), T0, id(4)).await;
    complete_ok(
        store,
        vec![
            outcome(
                id(1),
                Some(attempt(T0, Some(200), "ok", None)),
                Next::Delivered,
            ),
            outcome(
                id(2),
                Some(attempt(T0, Some(503), "http_5xx", Some("x"))),
                Next::Retry { at: T0 + 99_999 },
            ),
        ],
        T0 + 1,
    )
    .await;

    let pending_only = DeliveryFilter {
        flow: Some(f.clone()),
        state: Some(DeliveryState::Pending),
        ..Default::default()
    };
    assert_eq!(
        store.replay(&pending_only, T0 + 5).await.expect("replay"),
        0
    );
    let in_flight_only = DeliveryFilter {
        flow: Some(f.clone()),
        state: Some(DeliveryState::InFlight),
        ..Default::default()
    };
    assert_eq!(
        store.replay(&in_flight_only, T0 + 5).await.expect("replay"),
        0
    );

    let dead_only = DeliveryFilter {
        flow: Some(f.clone()),
        state: Some(DeliveryState::Dead),
        ..Default::default()
    };
    assert_eq!(store.replay(&dead_only, T0 + 5).await.expect("replay"), 1);
    assert_eq!(state(store, id(0)).await, DeliveryState::Pending);
    assert_eq!(state(store, id(1)).await, DeliveryState::Delivered);
    assert_eq!(
        state(store, other.deliveries[0].id).await,
        DeliveryState::Dead,
        "other flow"
    );

    assert_eq!(store.replay(&by_flow(&f), T0 + 6).await.expect("replay"), 2);
    for i in 0..4 {
        assert_eq!(
            state(store, id(i)).await,
            DeliveryState::Pending,
            "delivery {i}"
        );
    }
    assert_eq!(
        summary(store, id(3)).await.replays,
        0,
        "pending is left alone"
    );
    assert_eq!(summary(store, id(3)).await.next_attempt_at, Some(T0));
    let s = summary(store, id(4)).await;
    assert_eq!(
        (s.state, s.replays),
        (DeliveryState::InFlight, 0),
        "in flight is left alone"
    );
    assert_eq!(
        state(store, other.deliveries[0].id).await,
        DeliveryState::Dead
    );
}

/// Replay by receive-time range: `since` inclusive, `until` exclusive.
pub async fn replay_by_time_range(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("replay-time");
    let evs: Vec<NewEvent> = [(0, "a"), (100, "b"), (200, "c")]
        .iter()
        .map(|&(t, dest)| event(&f, T0 + t, &[dest]))
        .collect();
    append_ok(store, evs.clone()).await;
    for e in &evs {
        let d = &e.deliveries[0];
        kill(store, &lane(&f, &d.destination), T0 + 1000, d.id).await;
    }
    let range = DeliveryFilter {
        flow: Some(f.clone()),
        since: Some(T0 + 100),
        until: Some(T0 + 200),
        ..Default::default()
    };
    assert_eq!(store.replay(&range, T0 + 2000).await.expect("replay"), 1);
    let states: Vec<DeliveryState> = {
        let mut v = Vec::new();
        for e in &evs {
            v.push(state(store, e.deliveries[0].id).await);
        }
        v
    };
    assert_eq!(
        states,
        vec![
            DeliveryState::Dead,
            DeliveryState::Pending,
            DeliveryState::Dead
        ]
    );
    let since = DeliveryFilter {
        flow: Some(f.clone()),
        since: Some(T0 + 150),
        ..Default::default()
    };
    assert_eq!(store.replay(&since, T0 + 2000).await.expect("replay"), 1);
    let until = DeliveryFilter {
        flow: Some(f.clone()),
        until: Some(T0 + 1),
        ..Default::default()
    };
    assert_eq!(store.replay(&until, T0 + 2000).await.expect("replay"), 1);
}

/// Replay starts a new round (round attempts 0, round start = now, replays + 1) and keeps
/// the attempt history; replaying an in-flight delivery does nothing.
pub async fn replay_resets_round_keeps_history(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("round");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let (la, id) = (lane(&f, "a"), ev.deliveries[0].id);
    claim_one(store, &la, T0, id).await;
    let a1 = attempt(T0, Some(503), "http_5xx", Some("one"));
    complete_ok(
        store,
        vec![outcome(id, Some(a1.clone()), Next::Retry { at: T0 + 100 })],
        T0 + 1,
    )
    .await;
    let c = claim_one(store, &la, T0 + 100, id).await;
    assert_eq!(c.round_attempts, 1);
    let a2 = attempt(T0 + 100, Some(503), "http_5xx", Some("two"));
    complete_ok(
        store,
        vec![outcome(
            id,
            Some(a2.clone()),
            Next::Dead {
                reason: "gave up".into(),
            },
        )],
        T0 + 101,
    )
    .await;

    let only = DeliveryFilter {
        delivery_id: Some(id),
        ..Default::default()
    };
    assert_eq!(store.replay(&only, T0 + 9000).await.expect("replay"), 1);
    let d = store.delivery(id).await.expect("delivery").expect("exists");
    assert_eq!(d.summary.state, DeliveryState::Pending);
    assert_eq!(d.summary.next_attempt_at, Some(T0 + 9000));
    assert_eq!((d.summary.replays, d.summary.attempts), (1, 2));
    assert_eq!(d.attempts, vec![a1, a2], "history kept");
    assert!(
        claim_ids(store, &la, T0 + 8999, 10).await.is_empty(),
        "due at replay time"
    );

    let c = claim_one(store, &la, T0 + 9000, id).await;
    assert_eq!(
        (c.attempts, c.round_attempts, c.round_started_at),
        (2, 0, T0 + 9000)
    );
    assert_eq!(
        store.replay(&only, T0 + 9001).await.expect("replay"),
        0,
        "in flight"
    );
    assert_eq!(summary(store, id).await.replays, 1);
}

/// Every filter field narrows the listing; results are oldest event first.
pub async fn list_deliveries_filters(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("list"), flow("list-other"));
    let e1 = event(&f, T0 + 300, &["a", "b"]);
    let e2 = event(&f, T0 + 100, &["a"]);
    let e3 = event(&f, T0 + 200, &["b"]);
    let e4 = event(&g, T0 + 150, &["a"]);
    append_ok(store, vec![e1.clone(), e2.clone(), e3.clone(), e4.clone()]).await;
    kill(store, &lane(&f, "b"), T0 + 250, e3.deliveries[0].id).await;

    let all_f = list_all(store, &by_flow(&f)).await;
    assert_eq!(
        ids(&all_f)[..2],
        [e2.deliveries[0].id, e3.deliveries[0].id],
        "oldest event first"
    );
    assert_eq!(
        id_set(ids(&all_f)[2..].iter().copied()),
        id_set(e1.deliveries.iter().map(|d| d.id))
    );
    assert!(
        all_f
            .windows(2)
            .all(|w| w[0].received_at <= w[1].received_at),
        "oldest first"
    );

    let check = |filter: DeliveryFilter, want: Vec<DeliveryId>| async move {
        let got = list_all(store, &filter).await;
        assert_eq!(id_set(ids(&got)), id_set(want), "filter {filter:?}");
    };
    check(
        DeliveryFilter {
            delivery_id: Some(e1.deliveries[1].id),
            ..Default::default()
        },
        vec![e1.deliveries[1].id],
    )
    .await;
    check(
        DeliveryFilter {
            event_id: Some(e1.id),
            ..Default::default()
        },
        e1.deliveries.iter().map(|d| d.id).collect(),
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            destination: Some("a".into()),
            ..Default::default()
        },
        vec![e1.deliveries[0].id, e2.deliveries[0].id],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            state: Some(DeliveryState::Dead),
            ..Default::default()
        },
        vec![e3.deliveries[0].id],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            state: Some(DeliveryState::Pending),
            ..Default::default()
        },
        vec![
            e1.deliveries[0].id,
            e1.deliveries[1].id,
            e2.deliveries[0].id,
        ],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            since: Some(T0 + 200),
            ..Default::default()
        },
        vec![
            e1.deliveries[0].id,
            e1.deliveries[1].id,
            e3.deliveries[0].id,
        ],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            until: Some(T0 + 200),
            ..Default::default()
        },
        vec![e2.deliveries[0].id],
    )
    .await;
    check(
        DeliveryFilter {
            destination: Some("a".into()),
            since: Some(T0 + 100),
            until: Some(T0 + 151),
            ..Default::default()
        },
        vec![e2.deliveries[0].id, e4.deliveries[0].id],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(flow("nothing")),
            ..Default::default()
        },
        vec![],
    )
    .await;
    let summary_listed = list_all(
        store,
        &DeliveryFilter {
            delivery_id: Some(e3.deliveries[0].id),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        summary_listed,
        vec![summary(store, e3.deliveries[0].id).await],
        "listing shows the same summary"
    );
}

/// Cursor paging walks the whole listing once, in order, with or without filters.
pub async fn list_deliveries_cursor_paging(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("pages");
    // Ties in receive time on purpose.
    let evs: Vec<NewEvent> = (0..25)
        .map(|i| event(&f, T0 + (i / 3), &["a", "b"]))
        .collect();
    append_ok(store, evs).await;
    for filter in [
        by_flow(&f),
        DeliveryFilter {
            flow: Some(f.clone()),
            destination: Some("b".into()),
            ..Default::default()
        },
    ] {
        let full = list_all(store, &filter).await;
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_deliveries(&filter, after, 7)
                .await
                .expect("page");
            assert!(page.len() <= 7);
            if page.is_empty() {
                break;
            }
            after = page.last().map(|s| s.id);
            paged.extend(page);
        }
        assert_eq!(
            ids(&paged),
            ids(&full),
            "pages concatenate to the full listing"
        );
        assert_eq!(id_set(ids(&paged)).len(), paged.len(), "no repeats");
        assert!(
            paged
                .windows(2)
                .all(|w| w[0].received_at <= w[1].received_at)
        );
    }
    assert_eq!(list_all(store, &by_flow(&f)).await.len(), 50);
    assert_eq!(
        store
            .list_deliveries(&by_flow(&f), None, 0)
            .await
            .expect("list")
            .len(),
        0
    );
}

/// Lane counts by state, and the receive time of the oldest waiting delivery.
pub async fn lane_counts_by_state(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("counts");
    let la = lane(&f, "a");
    let evs: Vec<NewEvent> = (0..6).map(|i| event(&f, T0 + 10 * i, &["a"])).collect();
    let b = event(&f, T0 + 5, &["b"]);
    let done = event(&f, T0 + 1, &["c"]);
    let mut all = evs.clone();
    all.extend([b, done.clone()]);
    append_ok(store, all).await;
    let id = |i: usize| evs[i].deliveries[0].id;
    // Oldest first: 0 -> delivered, 1 -> dead, 2 -> retrying, 3 -> in flight; 4, 5 pending.
    let claimed = claim_ids(store, &la, T0 + 100, 4).await;
    assert_eq!(claimed, (0..4).map(id).collect::<Vec<_>>());
    complete_ok(
        store,
        vec![
            outcome(
                id(0),
                Some(attempt(T0, Some(200), "ok", None)),
                Next::Delivered,
            ),
            outcome(
                id(1),
                None,
                Next::Dead {
                    reason: "no".into(),
                },
            ),
            outcome(
                id(2),
                Some(attempt(T0, Some(503), "http_5xx", None)),
                Next::Retry { at: T0 + 999 },
            ),
        ],
        T0 + 101,
    )
    .await;
    claim_one(store, &lane(&f, "c"), T0 + 100, done.deliveries[0].id).await;
    complete_ok(
        store,
        vec![outcome(done.deliveries[0].id, None, Next::Delivered)],
        T0 + 101,
    )
    .await;

    let a = lane_of(store, &la).await;
    assert_eq!(
        (a.pending, a.in_flight, a.delivered, a.retrying, a.dead),
        (2, 1, 1, 1, 1)
    );
    assert_eq!(
        a.oldest_waiting_received_at,
        Some(T0 + 20),
        "the retrying one"
    );
    let b = lane_of(store, &lane(&f, "b")).await;
    assert_eq!(
        (b.pending, b.in_flight, b.delivered, b.retrying, b.dead),
        (1, 0, 0, 0, 0)
    );
    assert_eq!(b.oldest_waiting_received_at, Some(T0 + 5));
    let c = lane_of(store, &lane(&f, "c")).await;
    assert_eq!((c.pending, c.delivered), (0, 1));
    assert_eq!(c.oldest_waiting_received_at, None);
    let lanes: Vec<LaneKey> = store
        .lane_counts()
        .await
        .expect("lane counts")
        .into_iter()
        .map(|c| c.lane)
        .filter(|l| l.flow == f)
        .collect();
    assert_eq!(lanes.len(), 3, "one entry per lane: {lanes:?}");
}

/// Every in-flight delivery goes back to pending, due now, with no attempt counted.
pub async fn release_all_claims_returns_in_flight(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("release"), flow("release-other"));
    let evs: Vec<NewEvent> = (0..3).map(|i| event(&f, T0 + i, &["a"])).collect();
    let other = event(&g, T0, &["b"]);
    let done = event(&f, T0, &["c"]);
    let mut all = evs.clone();
    all.extend([other.clone(), done.clone()]);
    append_ok(store, all).await;
    assert_eq!(claim_ids(store, &lane(&f, "a"), T0 + 10, 10).await.len(), 3);
    claim_one(store, &lane(&g, "b"), T0 + 10, other.deliveries[0].id).await;
    claim_one(store, &lane(&f, "c"), T0 + 10, done.deliveries[0].id).await;
    complete_ok(
        store,
        vec![outcome(done.deliveries[0].id, None, Next::Delivered)],
        T0 + 11,
    )
    .await;

    assert_eq!(
        store.release_all_claims(T0 + 500).await.expect("release"),
        4
    );
    for id in evs.iter().chain([&other]).map(|e| e.deliveries[0].id) {
        let s = summary(store, id).await;
        assert_eq!(
            (s.state, s.next_attempt_at, s.attempts),
            (DeliveryState::Pending, Some(T0 + 500), 0)
        );
    }
    assert_eq!(
        state(store, done.deliveries[0].id).await,
        DeliveryState::Delivered
    );
    assert_eq!(
        store.release_all_claims(T0 + 600).await.expect("release"),
        0
    );
    let again = store
        .claim(&lane(&f, "a"), T0 + 500, 10, T0 + 9000)
        .await
        .expect("claim");
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|c| c.round_attempts == 0));
}

/// `next_due` is the earliest due time or lease end among waiting deliveries of the lane.
pub async fn next_due_is_earliest_waiting(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("next");
    let la = lane(&f, "a");
    assert_eq!(store.next_due(&la).await.expect("next_due"), None);
    let mut late = event(&f, T0, &["a"]);
    late.deliveries[0].due_at = T0 + 300;
    let mut early = event(&f, T0, &["a"]);
    early.deliveries[0].due_at = T0 + 100;
    let other = event(&f, T0 - 1000, &["b"]);
    append_ok(store, vec![late.clone(), early.clone(), other]).await;
    assert_eq!(store.next_due(&la).await.expect("next_due"), Some(T0 + 100));
    let c = store
        .claim(&la, T0 + 100, 1, T0 + 5000)
        .await
        .expect("claim");
    assert_eq!(c[0].id, early.deliveries[0].id);
    assert_eq!(store.next_due(&la).await.expect("next_due"), Some(T0 + 300));
    let c = store
        .claim(&la, T0 + 300, 1, T0 + 4000)
        .await
        .expect("claim");
    assert_eq!(c[0].id, late.deliveries[0].id);
    assert_eq!(
        store.next_due(&la).await.expect("next_due"),
        Some(T0 + 4000),
        "lease end"
    );
    complete_ok(
        store,
        vec![
            outcome(early.deliveries[0].id, None, Next::Delivered),
            outcome(
                late.deliveries[0].id,
                None,
                Next::Dead { reason: "x".into() },
            ),
        ],
        T0 + 301,
    )
    .await;
    assert_eq!(store.next_due(&la).await.expect("next_due"), None);
}

/// Payloads come back byte for byte: empty, non-UTF-8, 1 MiB; headers too.
pub async fn payload_bytes_round_trip(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("bytes");
    let mut big = vec![0_u8; 1024 * 1024];
    let mut x: u32 = 0x9e37_79b9;
    for b in &mut big {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x >> 24) as u8;
    }
    let payloads = [
        Bytes::new(),
        Bytes::from((0..=255_u8).rev().collect::<Vec<_>>()),
        Bytes::from_static(b"\xff\xfe\x00\x80not utf-8\xc3\x28"),
        Bytes::from(big),
    ];
    let la = lane(&f, "a");
    let mut evs = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let mut e = event(&f, T0 + i as Millis, &["a"]);
        e.payload = p.clone();
        e.headers = vec![
            ("content-type".into(), "application/octet-stream".into()),
            ("x-unicode".into(), "żółw — 🐢 \"quoted\" \\ back".into()),
            ("x-empty".into(), String::new()),
        ];
        evs.push(e);
    }
    append_ok(store, evs.clone()).await;
    for e in &evs {
        let got = store.event(e.id).await.expect("event").expect("stored");
        assert_eq!(got.payload.len(), e.payload.len());
        assert!(got.payload == e.payload, "payload of {} changed", e.id);
        assert_eq!(got.headers, e.headers);
    }
    let claimed = store
        .claim(&la, T0 + 10, 10, T0 + 9999)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), evs.len());
    for (c, e) in claimed.iter().zip(&evs) {
        assert_eq!(c.event_id, e.id);
        assert!(
            c.payload == e.payload,
            "claimed payload of {} changed",
            e.id
        );
        assert_eq!(c.headers, e.headers);
    }
}

/// `ping` answers on a healthy store.
pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    store.ping().await.expect("ping twice");
}
