//! Property test of the delivery state machine on the real stores (SQLite and PostgreSQL).
//!
//! Random sequences of operations (appends fanning out to 1–3 lanes, with dedupe keys;
//! claims with random limits and leases; completions with random outcomes, including stale
//! ones; replays with random filters; `release_all_claims`) run against a `SqliteStore` in a
//! temp dir, and against a `PgStore` in a schema of its own (with `FERRY_TEST_POSTGRES_URL`
//! set; skipped with a printed reason otherwise), under a clock that only moves forward. A small in-memory model predicts every
//! answer and every delivery row; after each step the store must match the model, and these
//! invariants are checked on what the store itself reports:
//!
//! - a `delivered` delivery leaves `delivered` only through a replay;
//! - `attempts` never decreases;
//! - a retrying delivery's `next_attempt_at` is not before the time its retry was scheduled;
//! - `lane_counts` equal the counts computed from `list_deliveries`, and `lane_backlog`
//!   sums them up;
//! - no delivery is claimed while an earlier claim's lease is still live.
//!
//! Some events carry an order key (from a two-key space, so keys collide): the model holds a
//! keyed delivery back while an earlier waiting delivery of its lane and key exists, straight
//! from the definition, and predicts claims and `next_due` with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use bytes::Bytes;
use ferry_store::postgres::{PgOptions, PgStore};
use ferry_store::sqlite::{SqliteOptions, SqliteStore};
use ferry_store::{
    AppendOutcome, Attempt, DeliveryFilter, DeliveryId, DeliveryOutcome, DeliveryState,
    DeliverySummary, EventId, LaneKey, Millis, NewDelivery, NewEvent, Next, Store,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const FLOWS: [&str; 2] = ["orders", "users"];
const DESTINATIONS: [&str; 3] = ["crm", "ledger", "audit"];
const LANES: usize = FLOWS.len() * DESTINATIONS.len();
const T0: Millis = 1_700_000_000_000;

fn lane(i: usize) -> LaneKey {
    LaneKey {
        flow: FLOWS[i / DESTINATIONS.len() % FLOWS.len()].to_owned(),
        destination: DESTINATIONS[i % DESTINATIONS.len()].to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct EventSpec {
    flow: usize,
    /// Indexes into `DESTINATIONS`, distinct, 1 to 3 of them.
    destinations: Vec<usize>,
    /// A small key space, so re-sends (duplicates) happen.
    dedupe: Option<u8>,
    /// First due this long after receipt.
    due_in: Millis,
    /// The order key of its deliveries.
    order: Option<u8>,
}

#[derive(Clone, Debug)]
enum NextSpec {
    Delivered,
    Retry(Millis),
    Dead,
    Release(Millis),
}

#[derive(Clone, Debug)]
struct FilterSpec {
    flow: Option<usize>,
    destination: Option<usize>,
    state: Option<DeliveryState>,
    /// `since = now - x`.
    since_ago: Option<Millis>,
    /// `until = now - x`.
    until_ago: Option<Millis>,
    /// Pick one delivery (by index into those known) by delivery id or by event id.
    one: Option<(usize, bool)>,
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<EventSpec>),
    Advance(Millis),
    Claim {
        lane: usize,
        limit: usize,
        lease: Millis,
    },
    /// Complete some of the held claims: `(index into held claims, outcome)`.
    Complete(Vec<(usize, NextSpec)>),
    Replay(FilterSpec),
    ReleaseAll,
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    (
        0..FLOWS.len(),
        proptest::sample::subsequence(vec![0usize, 1, 2], 1..=3),
        proptest::option::weighted(0.6, 0u8..4),
        prop_oneof![Just(0), 0_i64..2_000],
        proptest::option::weighted(0.7, 0u8..2),
    )
        .prop_map(|(flow, destinations, dedupe, due_in, order)| EventSpec {
            flow,
            destinations,
            dedupe,
            due_in,
            order,
        })
}

fn next_spec() -> impl Strategy<Value = NextSpec> {
    prop_oneof![
        3 => Just(NextSpec::Delivered),
        3 => (0_i64..5_000).prop_map(NextSpec::Retry),
        1 => Just(NextSpec::Dead),
        1 => (0_i64..5_000).prop_map(NextSpec::Release),
    ]
}

fn state() -> impl Strategy<Value = DeliveryState> {
    proptest::sample::select(DeliveryState::ALL.to_vec())
}

fn filter_spec() -> impl Strategy<Value = FilterSpec> {
    (
        proptest::option::of(0..FLOWS.len()),
        proptest::option::of(0..DESTINATIONS.len()),
        proptest::option::of(state()),
        proptest::option::weighted(0.2, 0_i64..20_000),
        proptest::option::weighted(0.2, 0_i64..20_000),
        proptest::option::weighted(0.2, (any::<usize>(), any::<bool>())),
    )
        .prop_map(
            |(flow, destination, state, since_ago, until_ago, one)| FilterSpec {
                flow,
                destination,
                state,
                since_ago,
                until_ago,
                one,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(event_spec(), 1..=3).prop_map(Op::Append),
        3 => prop_oneof![Just(0_i64), 1_i64..3_000].prop_map(Op::Advance),
        5 => (0..LANES, 0usize..6, 1_i64..4_000)
            .prop_map(|(lane, limit, lease)| Op::Claim { lane, limit, lease }),
        5 => proptest::collection::vec((any::<usize>(), next_spec()), 1..=4).prop_map(Op::Complete),
        2 => filter_spec().prop_map(Op::Replay),
        1 => Just(Op::ReleaseAll),
    ]
}

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ModelDelivery {
    id: DeliveryId,
    event_id: EventId,
    lane: LaneKey,
    order_key: Option<String>,
    seq: u64,
    received_at: Millis,
    state: DeliveryState,
    next_attempt_at: Option<Millis>,
    attempts: u32,
    round_attempts: u32,
    round_started_at: Millis,
    replays: u32,
    last_error: Option<String>,
    /// When the current retry (if retrying) was scheduled.
    retry_scheduled_at: Option<Millis>,
}

#[derive(Default)]
struct Model {
    deliveries: Vec<ModelDelivery>,
    dedupe: HashMap<(String, u8), EventId>,
    seq: u64,
}

impl Model {
    fn find(&mut self, id: DeliveryId) -> &mut ModelDelivery {
        self.deliveries
            .iter_mut()
            .find(|d| d.id == id)
            .expect("known delivery")
    }

    fn matches(d: &ModelDelivery, f: &DeliveryFilter) -> bool {
        f.delivery_id.is_none_or(|id| id == d.id)
            && f.event_id.is_none_or(|id| id == d.event_id)
            && f.flow.as_ref().is_none_or(|fl| *fl == d.lane.flow)
            && f.flows.as_ref().is_none_or(|fl| fl.contains(&d.lane.flow))
            && f.destination
                .as_ref()
                .is_none_or(|de| *de == d.lane.destination)
            && f.state.is_none_or(|s| s == d.state)
            && f.since.is_none_or(|s| d.received_at >= s)
            && f.until.is_none_or(|u| d.received_at < u)
    }

    fn waiting(d: &ModelDelivery) -> bool {
        matches!(
            d.state,
            DeliveryState::Pending | DeliveryState::InFlight | DeliveryState::Retrying
        )
    }

    /// Held back: an earlier waiting delivery of the same lane and order key exists.
    fn held(&self, d: &ModelDelivery) -> bool {
        d.order_key.is_some()
            && self.deliveries.iter().any(|e| {
                e.seq < d.seq && e.lane == d.lane && e.order_key == d.order_key && Self::waiting(e)
            })
    }

    /// What `next_due` should answer for a lane.
    fn next_due(&self, lane: &LaneKey) -> Option<Millis> {
        self.deliveries
            .iter()
            .filter(|d| d.lane == *lane && Self::waiting(d) && !self.held(d))
            .filter_map(|d| d.next_attempt_at)
            .min()
    }
}

fn attempt(now: Millis) -> Attempt {
    Attempt {
        started_at: now,
        latency_ms: 3,
        status: Some(503),
        error_class: Some("http_5xx".into()),
        error: Some("HTTP 503".into()),
        response_excerpt: None,
    }
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

async fn snapshot(store: &dyn Store) -> BTreeMap<DeliveryId, DeliverySummary> {
    store
        .list_deliveries(&DeliveryFilter::default(), None, 100_000)
        .await
        .expect("list")
        .into_iter()
        .map(|s| (s.id, s))
        .collect()
}

/// The backend a run is on.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    /// In a fresh schema of the database at this URL, dropped after the run.
    Postgres(&'static str),
}

/// What keeps a run's store: its temp dir, or its schema (dropped on drop).
enum Place {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Schema { url: &'static str, name: String },
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Place::Schema { url, name } = self {
            let (url, name) = (*url, name.clone());
            // The blocking client runs its own runtime: off the test's runtime threads.
            let _ = std::thread::spawn(move || {
                if let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls) {
                    let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
                }
            })
            .join();
        }
    }
}

async fn open(backend: Backend) -> (Box<dyn Store>, Place) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let opts = SqliteOptions {
                checkpoint_interval: std::time::Duration::ZERO,
                read_connections: 1,
                // Hundreds of stores: no 8 MiB disk reserve for each.
                reserve_bytes: 0,
                ..SqliteOptions::default()
            };
            let store = SqliteStore::open(dir.path(), opts).expect("open store");
            (Box::new(store), Place::Dir(dir))
        }
        Backend::Postgres(url) => {
            let name = format!("ferry_prop_{}", uuid::Uuid::now_v7().simple());
            let mut opts = PgOptions::new(url);
            opts.schema = Some(name.clone());
            opts.read_connections = 1;
            let store = PgStore::open(opts).await.expect("open store");
            (Box::new(store), Place::Schema { url, name })
        }
    }
}

async fn run(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (boxed, place) = open(backend).await;
    let store = boxed.as_ref();
    let mut model = Model::default();
    let mut now = T0;
    // Claims handed out and not yet completed (a delivery may be held twice after its lease
    // expired and it was claimed again; completing the stale claim is part of the test).
    let mut held: Vec<DeliveryId> = Vec::new();
    let mut before = BTreeMap::new();

    for (step, op) in ops.iter().enumerate() {
        let ctx = format!("step {step}: {op:?}");
        let mut replayed_now = false;
        let mut claimed_now = Vec::new();
        match op {
            Op::Advance(ms) => now += ms,
            Op::Append(specs) => {
                let mut events = Vec::new();
                let mut expected = Vec::new();
                for spec in specs {
                    let flow = FLOWS[spec.flow].to_owned();
                    let id = EventId::new();
                    let key = spec.dedupe.map(|k| format!("key-{k}"));
                    let order_key = spec.order.map(|k| format!("order-{k}"));
                    let deliveries: Vec<NewDelivery> = spec
                        .destinations
                        .iter()
                        .map(|&d| NewDelivery {
                            id: DeliveryId::new(),
                            destination: DESTINATIONS[d].to_owned(),
                            due_at: now + spec.due_in,
                            order_key: order_key.clone(),
                            claimed_until: None,
                        })
                        .collect();
                    match spec
                        .dedupe
                        .and_then(|k| model.dedupe.get(&(flow.clone(), k)))
                    {
                        Some(first) => expected.push(AppendOutcome::Duplicate(*first)),
                        None => {
                            if let Some(k) = spec.dedupe {
                                model.dedupe.insert((flow.clone(), k), id);
                            }
                            for d in &deliveries {
                                model.seq += 1;
                                model.deliveries.push(ModelDelivery {
                                    id: d.id,
                                    event_id: id,
                                    lane: LaneKey {
                                        flow: flow.clone(),
                                        destination: d.destination.clone(),
                                    },
                                    order_key: d.order_key.clone(),
                                    seq: model.seq,
                                    received_at: now,
                                    state: DeliveryState::Pending,
                                    next_attempt_at: Some(d.due_at),
                                    attempts: 0,
                                    round_attempts: 0,
                                    round_started_at: now,
                                    replays: 0,
                                    last_error: None,
                                    retry_scheduled_at: None,
                                });
                            }
                            expected.push(AppendOutcome::Stored(id));
                        }
                    }
                    events.push(NewEvent {
                        id,
                        flow,
                        source: "shop".into(),
                        dedupe_key: key,
                        event_type: Some("order.created".into()),
                        received_at: now,
                        headers: vec![("content-type".into(), "application/json".into())],
                        payload: Bytes::from_static(b"{\"n\":1}"),
                        deliveries,
                        dedupe_window: None,
                        audit: Default::default(),
                    });
                }
                let got = store.append(events).await.expect("append");
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Claim {
                lane: l,
                limit,
                lease,
            } => {
                let key = lane(*l);
                let lease_until = now + lease;
                let held_back: Vec<bool> = model.deliveries.iter().map(|d| model.held(d)).collect();
                let mut due: Vec<&mut ModelDelivery> = model
                    .deliveries
                    .iter_mut()
                    .zip(held_back)
                    .filter(|(_, held_back)| !held_back)
                    .map(|(d, _)| d)
                    .filter(|d| {
                        d.lane == key
                            && matches!(
                                d.state,
                                DeliveryState::Pending
                                    | DeliveryState::InFlight
                                    | DeliveryState::Retrying
                            )
                            && d.next_attempt_at.is_some_and(|at| at <= now)
                    })
                    .collect();
                due.sort_by_key(|d| (d.next_attempt_at, d.seq));
                let mut expected = Vec::new();
                for d in due.into_iter().take(*limit) {
                    expected.push((d.id, d.attempts, d.round_attempts, d.round_started_at));
                    d.state = DeliveryState::InFlight;
                    d.next_attempt_at = Some(lease_until);
                    d.retry_scheduled_at = None;
                }
                let got = store
                    .claim(&key, now, *limit, lease_until)
                    .await
                    .expect("claim");
                let got_ids: Vec<_> = got
                    .iter()
                    .map(|c| (c.id, c.attempts, c.round_attempts, c.round_started_at))
                    .collect();
                prop_assert_eq!(got_ids, expected, "{}", ctx);
                for c in &got {
                    prop_assert_eq!(&c.lane, &key, "{}", ctx);
                    held.push(c.id);
                    claimed_now.push(c.id);
                }
            }
            Op::Complete(picks) => {
                let mut outcomes = Vec::new();
                for (pick, next) in picks {
                    if held.is_empty() {
                        break;
                    }
                    let id = held.remove(pick % held.len());
                    let (next, with_attempt) = match next {
                        NextSpec::Delivered => (Next::Delivered, true),
                        NextSpec::Retry(d) => (Next::Retry { at: now + d }, true),
                        NextSpec::Dead => (
                            Next::Dead {
                                reason: "permanent failure: HTTP 400".into(),
                            },
                            true,
                        ),
                        NextSpec::Release(d) => (Next::Release { at: now + d }, false),
                    };
                    let d = model.find(id);
                    if with_attempt {
                        d.attempts += 1;
                    }
                    if d.state == DeliveryState::InFlight {
                        d.round_attempts += u32::from(with_attempt);
                        d.retry_scheduled_at = None;
                        match &next {
                            Next::Delivered => {
                                d.state = DeliveryState::Delivered;
                                d.next_attempt_at = None;
                                d.last_error = None;
                            }
                            Next::Retry { at } => {
                                d.state = DeliveryState::Retrying;
                                d.next_attempt_at = Some(*at);
                                d.last_error = Some("HTTP 503".into());
                                d.retry_scheduled_at = Some(now);
                            }
                            Next::Dead { reason } => {
                                d.state = DeliveryState::Dead;
                                d.next_attempt_at = None;
                                d.last_error = Some(reason.clone());
                            }
                            Next::Release { at } => {
                                d.state = DeliveryState::Pending;
                                d.next_attempt_at = Some(*at);
                                d.last_error = None;
                            }
                        }
                    }
                    outcomes.push(DeliveryOutcome {
                        claim: None,
                        audit: Default::default(),
                        id,
                        attempt: with_attempt.then(|| attempt(now)),
                        next,
                    });
                }
                store.complete(outcomes, now).await.expect("complete");
            }
            Op::Replay(spec) => {
                let mut filter = DeliveryFilter {
                    flow: spec.flow.map(|f| FLOWS[f].to_owned()),
                    destination: spec.destination.map(|d| DESTINATIONS[d].to_owned()),
                    state: spec.state,
                    since: spec.since_ago.map(|x| now - x),
                    until: spec.until_ago.map(|x| now - x),
                    ..DeliveryFilter::default()
                };
                if let Some((i, by_delivery)) = spec.one
                    && !model.deliveries.is_empty()
                {
                    let d = &model.deliveries[i % model.deliveries.len()];
                    if by_delivery {
                        filter.delivery_id = Some(d.id);
                    } else {
                        filter.event_id = Some(d.event_id);
                    }
                }
                let mut expected = 0u64;
                for d in &mut model.deliveries {
                    if Model::matches(d, &filter)
                        && matches!(
                            d.state,
                            DeliveryState::Delivered
                                | DeliveryState::Retrying
                                | DeliveryState::Dead
                        )
                    {
                        expected += 1;
                        d.state = DeliveryState::Pending;
                        d.next_attempt_at = Some(now);
                        d.round_attempts = 0;
                        d.round_started_at = now;
                        d.replays += 1;
                        d.last_error = None;
                        d.retry_scheduled_at = None;
                    }
                }
                let got = store.replay(&filter, now, "test").await.expect("replay");
                prop_assert_eq!(got, expected, "{}", ctx);
                replayed_now = true;
            }
            Op::ReleaseAll => {
                let mut expected = 0u64;
                for d in &mut model.deliveries {
                    if d.state == DeliveryState::InFlight {
                        expected += 1;
                        d.state = DeliveryState::Pending;
                        d.next_attempt_at = Some(now);
                    }
                }
                let got = store.release_all_claims(now).await.expect("release");
                prop_assert_eq!(got, expected, "{}", ctx);
            }
        }

        // --- What the store reports now. ---
        let after = snapshot(store).await;

        // No delivery is claimed while an earlier claim's lease is live.
        for id in &claimed_now {
            if let Some(prev) = before.get(id) {
                let prev: &DeliverySummary = prev;
                let live = prev.state == DeliveryState::InFlight
                    && prev.next_attempt_at.is_some_and(|lease| lease > now);
                prop_assert!(!live, "{}: {} claimed twice under a live lease", ctx, id);
            }
        }
        for (id, prev) in &before {
            let cur = after.get(id);
            prop_assert!(cur.is_some(), "{}: {} disappeared", ctx, id);
            let cur = cur.unwrap();
            // Delivered is left only through a replay.
            if prev.state == DeliveryState::Delivered && cur.state != DeliveryState::Delivered {
                prop_assert!(replayed_now, "{}: {} left delivered", ctx, id);
                prop_assert_eq!(cur.replays, prev.replays + 1, "{}", ctx);
            }
            // Attempts never decrease.
            prop_assert!(
                cur.attempts >= prev.attempts,
                "{}: attempts of {} fell",
                ctx,
                id
            );
        }
        // A retry is never scheduled before the time it was scheduled at.
        for d in &model.deliveries {
            if let Some(scheduled) = d.retry_scheduled_at {
                let cur = &after[&d.id];
                prop_assert_eq!(cur.state, DeliveryState::Retrying, "{}", ctx);
                prop_assert!(
                    cur.next_attempt_at.is_some_and(|at| at >= scheduled),
                    "{}: retry of {} due {:?}, scheduled at {}",
                    ctx,
                    d.id,
                    cur.next_attempt_at,
                    scheduled
                );
            }
        }
        // Lane counts agree with the deliveries listed.
        let mut listed: BTreeMap<LaneKey, [u64; 5]> = BTreeMap::new();
        let mut oldest: BTreeMap<LaneKey, Millis> = BTreeMap::new();
        for s in after.values() {
            let slot = DeliveryState::ALL
                .iter()
                .position(|x| *x == s.state)
                .unwrap();
            listed.entry(s.lane.clone()).or_default()[slot] += 1;
            if !matches!(s.state, DeliveryState::Delivered | DeliveryState::Dead) {
                let o = oldest.entry(s.lane.clone()).or_insert(s.received_at);
                *o = (*o).min(s.received_at);
            }
        }
        let counted: BTreeMap<LaneKey, ([u64; 5], Option<Millis>)> = store
            .lane_counts()
            .await
            .expect("lane counts")
            .into_iter()
            .map(|c| {
                let n = [c.pending, c.in_flight, c.delivered, c.retrying, c.dead];
                (c.lane, (n, c.oldest_waiting_received_at))
            })
            .collect();
        let expected_counts: BTreeMap<LaneKey, ([u64; 5], Option<Millis>)> = listed
            .into_iter()
            .map(|(lane, n)| {
                let o = oldest.get(&lane).copied();
                (lane, (n, o))
            })
            .collect();
        prop_assert_eq!(&counted, &expected_counts, "{}", ctx);
        let backlog: BTreeMap<LaneKey, (u64, Option<Millis>, u64)> = store
            .lane_backlog()
            .await
            .expect("lane backlog")
            .into_iter()
            .map(|b| (b.lane, (b.waiting, b.oldest_waiting_received_at, b.dead)))
            .collect();
        let expected_backlog: BTreeMap<LaneKey, (u64, Option<Millis>, u64)> = expected_counts
            .into_iter()
            .map(|(lane, (n, oldest))| (lane, (n[0] + n[1] + n[3], oldest, n[4])))
            .collect();
        prop_assert_eq!(backlog, expected_backlog, "{}", ctx);
        for l in 0..LANES {
            let key = lane(l);
            let got = store.next_due(&key).await.expect("next_due");
            prop_assert_eq!(got, model.next_due(&key), "{}: next_due of {:?}", ctx, key);
        }

        // And every delivery is exactly what the model says.
        prop_assert_eq!(after.len(), model.deliveries.len(), "{}", ctx);
        for d in &model.deliveries {
            let s = &after[&d.id];
            let want = (
                d.event_id,
                &d.lane,
                d.state,
                d.received_at,
                d.attempts,
                d.next_attempt_at,
                d.replays,
                d.last_error.as_deref(),
            );
            let got = (
                s.event_id,
                &s.lane,
                s.state,
                s.received_at,
                s.attempts,
                s.next_attempt_at,
                s.replays,
                s.last_error.as_deref(),
            );
            prop_assert_eq!(got, want, "{}: delivery {}", ctx, d.id);
        }
        before = after;
    }

    // Every counted attempt has its attempt row.
    for d in &model.deliveries {
        let detail = store.delivery(d.id).await.expect("detail").expect("exists");
        prop_assert_eq!(detail.attempts.len() as u32, d.attempts);
    }
    // The store stops (its writer joined) before its schema goes.
    tokio::task::block_in_place(|| drop(boxed));
    drop(place);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn delivery_state_machine_holds_its_invariants(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        runtime().block_on(run(Backend::Sqlite, ops))?;
    }

    #[test]
    fn delivery_state_machine_holds_its_invariants_on_postgres(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let Some(url) = postgres_url() else { return Ok(()) };
        runtime().block_on(run(Backend::Postgres(url), ops))?;
    }
}

/// `FERRY_TEST_POSTGRES_URL`, or `None` (said once) when it is not set.
fn postgres_url() -> Option<&'static str> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    URL.get_or_init(|| {
        let url = std::env::var("FERRY_TEST_POSTGRES_URL").ok();
        if url.is_none() {
            eprintln!(
                "skipped on PostgreSQL: FERRY_TEST_POSTGRES_URL is not set (a PostgreSQL URL)"
            );
        }
        url
    })
    .as_deref()
}
