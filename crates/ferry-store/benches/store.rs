//! The embedded SQLite store on a real temp dir (WAL, `synchronous=FULL`: every call below
//! waits for its fsync):
//!
//! - `append_batch/N`: one `append` call carrying N events of 1 KB (one delivery each), so
//!   one commit and one fsync for N events. Throughput is in events: the per-event cost is
//!   the time per call divided by N.
//! - `complete_batch/N`: one `complete` call recording N delivered outcomes (an attempt row
//!   and a state change each) for deliveries claimed beforehand (untimed).
//! - `claim_batch/N`: one `claim` call taking N due deliveries from a lane whose backlog
//!   holds `CLAIM_BACKLOG` due deliveries without order keys; the claimed ones are released
//!   back (untimed), so every call sees the same backlog. `claim_batch/keyed/N`: the same
//!   with the deliveries spread over 1,000 order keys (N heads are claimable, the rest are
//!   held back). `claim_batch/hot_key_held/N`: a lane whose first `CLAIM_BACKLOG`
//!   deliveries share one key whose head is retrying a day later, followed by as many
//!   unordered ones: the claim must reach those without walking the held-back ones.
//!
//! `cargo bench -p ferry-store --bench store -- --measurement-time 3 --warm-up-time 1`

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferry_store::sqlite::{SqliteOptions, SqliteStore};
use ferry_store::{
    Attempt, DeliveryId, DeliveryOutcome, EventId, LaneKey, Millis, NewDelivery, NewEvent, Next,
    Store,
};

const PAYLOAD_BYTES: usize = 1024;
const T0: Millis = 1_700_000_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn lane() -> LaneKey {
    LaneKey {
        flow: "bench".into(),
        destination: "sink".into(),
    }
}

fn events(n: usize, payload: &Bytes, at: Millis) -> Vec<NewEvent> {
    (0..n)
        .map(|_| {
            let id = EventId::new();
            NewEvent {
                id,
                flow: "bench".into(),
                source: "bench".into(),
                dedupe_key: Some(id.to_string()),
                event_type: Some("order.created".into()),
                received_at: at,
                headers: vec![("content-type".into(), "application/json".into())],
                payload: payload.clone(),
                deliveries: vec![NewDelivery {
                    id: DeliveryId::new(),
                    destination: "sink".into(),
                    due_at: at,
                    order_key: None,
                    claimed_until: None,
                }],
                dedupe_window: None,
                audit: Default::default(),
            }
        })
        .collect()
}

fn append_batch(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open store");
    let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);

    let mut group = c.benchmark_group("append_batch");
    group.sample_size(10);
    for n in [1usize, 10, 100, 1000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch = events(n, &payload, T0);
                    let started = Instant::now();
                    let out = rt.block_on(store.append(batch)).expect("append");
                    total += started.elapsed();
                    assert_eq!(out.len(), n);
                }
                total
            })
        });
    }
    group.finish();
    rt.block_on(store.close()).expect("close");
}

fn complete_batch(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open store");
    let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
    let lane = lane();

    let mut group = c.benchmark_group("complete_batch");
    group.sample_size(10);
    for n in [1usize, 100] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: n fresh deliveries, claimed. Earlier ones are delivered, so
                    // the claim finds exactly these.
                    rt.block_on(store.append(events(n, &payload, T0)))
                        .expect("append");
                    let claimed = rt
                        .block_on(store.claim(&lane, T0, n, T0 + 60_000))
                        .expect("claim");
                    assert_eq!(claimed.len(), n);
                    let outcomes = claimed
                        .iter()
                        .map(|d| DeliveryOutcome {
                            claim: None,
                            audit: Default::default(),
                            id: d.id,
                            attempt: Some(Attempt {
                                started_at: T0,
                                latency_ms: 12,
                                status: Some(200),
                                error_class: Some("ok".into()),
                                error: None,
                                response_excerpt: Some("{\"ok\":true}".into()),
                            }),
                            next: Next::Delivered,
                        })
                        .collect();
                    let started = Instant::now();
                    rt.block_on(store.complete(outcomes, T0 + 1))
                        .expect("complete");
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
    rt.block_on(store.close()).expect("close");
}

/// Due deliveries waiting in each lane of `claim_batch`.
const CLAIM_BACKLOG: usize = 20_000;

/// Appends `CLAIM_BACKLOG` due deliveries to `destination`, the i-th under `key(i)`.
fn fill_lane(
    rt: &tokio::runtime::Runtime,
    store: &SqliteStore,
    payload: &Bytes,
    destination: &str,
    key: impl Fn(usize) -> Option<String>,
) -> LaneKey {
    for chunk in 0..CLAIM_BACKLOG / 1000 {
        let mut batch = events(1000, payload, T0);
        for (i, ev) in batch.iter_mut().enumerate() {
            ev.deliveries[0].destination = destination.to_owned();
            ev.deliveries[0].order_key = key(chunk * 1000 + i);
        }
        rt.block_on(store.append(batch)).expect("append");
    }
    LaneKey {
        flow: "bench".into(),
        destination: destination.to_owned(),
    }
}

fn claim_batch(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open store");
    let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
    let plain = fill_lane(&rt, &store, &payload, "sink", |_| None);
    let keyed = fill_lane(&rt, &store, &payload, "keyed", |i| {
        Some(format!("customer-{}", i % 1000))
    });
    // One key ahead of everything, its head retrying far ahead, then unordered deliveries.
    let hot = fill_lane(&rt, &store, &payload, "hot", |_| Some("hot".to_owned()));
    let head = rt
        .block_on(store.claim(&hot, T0, 1, T0 + 60_000))
        .expect("claim the head");
    let retry = head
        .iter()
        .map(|d| DeliveryOutcome {
            claim: None,
            audit: Default::default(),
            id: d.id,
            attempt: None,
            next: Next::Retry {
                at: T0 + 86_400_000,
            },
        })
        .collect();
    rt.block_on(store.complete(retry, T0))
        .expect("retry the head");
    fill_lane(&rt, &store, &payload, "hot", |_| None);

    let mut group = c.benchmark_group("claim_batch");
    group.sample_size(10);
    for (name, lane, sizes) in [
        ("", &plain, &[1usize, 100][..]),
        ("keyed/", &keyed, &[100][..]),
        ("hot_key_held/", &hot, &[100][..]),
    ] {
        for &n in sizes {
            group.throughput(Throughput::Elements(n as u64));
            let id = BenchmarkId::from_parameter(format!("{name}{n}"));
            group.bench_with_input(id, &n, |b, &n| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        let claimed = rt
                            .block_on(store.claim(lane, T0, n, T0 + 60_000))
                            .expect("claim");
                        total += started.elapsed();
                        assert_eq!(claimed.len(), n);
                        // Untimed: back to pending, due at once: the backlog stays the same.
                        let outcomes = claimed
                            .iter()
                            .map(|d| DeliveryOutcome {
                                claim: None,
                                audit: Default::default(),
                                id: d.id,
                                attempt: None,
                                next: Next::Release { at: T0 },
                            })
                            .collect();
                        rt.block_on(store.complete(outcomes, T0)).expect("release");
                    }
                    total
                })
            });
        }
    }
    group.finish();
    rt.block_on(store.close()).expect("close");
}

criterion_group!(benches, append_batch, complete_batch, claim_batch);
criterion_main!(benches);
