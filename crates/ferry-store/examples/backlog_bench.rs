//! Ad-hoc timing of the per-lane reads on a large backlog (not a test):
//! `cargo run --release -p ferry-store --example backlog_bench -- [waiting] [lanes]`.
//!
//! Fills one lane with `waiting` deliveries (default 1,000,000; 64-byte payloads, appended
//! 10,000 per call), settles and retries a few so every state is present, adds `lanes - 1`
//! small lanes (default 50), then times `lane_backlog`, `lane_counts`, `next_due` and a
//! 100-delivery `claim` on the big lane.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_store::sqlite::{SqliteOptions, SqliteStore};
use ferry_store::{
    DeliveryId, DeliveryOutcome, EventId, LaneKey, Millis, NewDelivery, NewEvent, Next, Store,
};

const T0: Millis = 1_700_000_000_000;
const BATCH: usize = 10_000;

fn events(flow: &str, destination: &str, n: usize, first: usize) -> Vec<NewEvent> {
    let payload = Bytes::from(vec![b'x'; 64]);
    (first..first + n)
        .map(|i| {
            let at = T0 + i as Millis;
            NewEvent {
                id: EventId::new(),
                flow: flow.into(),
                source: "bench".into(),
                dedupe_key: None,
                event_type: Some("bench.event".into()),
                received_at: at,
                headers: Vec::new(),
                payload: payload.clone(),
                deliveries: vec![NewDelivery {
                    id: DeliveryId::new(),
                    destination: destination.into(),
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

/// Times `runs` calls of `f` (after one untimed warm-up): (first, median, max).
async fn time<T, F, Fut>(runs: usize, mut f: F) -> (Duration, Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let started = Instant::now();
    f().await;
    let first = started.elapsed();
    let mut all: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f().await;
        all.push(started.elapsed());
    }
    all.sort();
    (first, all[all.len() / 2], all[all.len() - 1])
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let waiting = args.next().unwrap_or(1_000_000);
    let lanes = args.next().unwrap_or(50).max(1);

    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open");
    let big = LaneKey {
        flow: "big".into(),
        destination: "sink".into(),
    };
    let started = Instant::now();
    let mut appended = 0;
    while appended < waiting {
        let n = BATCH.min(waiting - appended);
        store
            .append(events(&big.flow, &big.destination, n, appended))
            .await
            .expect("append");
        appended += n;
    }
    for l in 1..lanes {
        store
            .append(events(&format!("small-{l}"), "sink", 100, 0))
            .await
            .expect("append");
    }
    // Every state present in the big lane: the 3,000 oldest are claimed; 1,000 of them are
    // delivered, 1,000 dead, 500 retrying; 500 stay in flight.
    let claimed = store
        .claim(
            &big,
            T0 + waiting as Millis,
            3000,
            T0 + 10 * waiting as Millis,
        )
        .await
        .expect("claim");
    let outcomes = claimed
        .iter()
        .take(2500)
        .enumerate()
        .map(|(i, d)| DeliveryOutcome {
            claim: None,
            audit: Default::default(),
            id: d.id,
            attempt: None,
            next: match i {
                0..1000 => Next::Delivered,
                1000..2000 => Next::Dead {
                    reason: "bench".into(),
                },
                _ => Next::Retry {
                    at: T0 + 20 * waiting as Millis,
                },
            },
        })
        .collect();
    store
        .complete(outcomes, T0 + waiting as Millis)
        .await
        .expect("complete");
    println!(
        "filled {waiting} deliveries in one lane + {} small lanes in {:.1}s",
        lanes - 1,
        started.elapsed().as_secs_f64()
    );

    let backlog = store.lane_backlog().await.expect("backlog");
    let b = backlog.iter().find(|b| b.lane == big).expect("big lane");
    println!(
        "big lane: waiting {}, oldest waiting received at T0 + {} ms ({} lanes listed)",
        b.waiting,
        b.oldest_waiting_received_at.map_or(-1, |t| t - T0),
        backlog.len()
    );
    let report = |name: &str, (first, median, max): (Duration, Duration, Duration)| {
        println!("{name:<28} first {first:>10.1?}  median {median:>10.1?}  max {max:>10.1?}");
    };
    report(
        "lane_backlog() x200",
        time(200, || store.lane_backlog()).await,
    );
    report(
        "lane_counts() x200",
        time(200, || store.lane_counts()).await,
    );
    report(
        "next_due(big) x200",
        time(200, || store.next_due(&big)).await,
    );
    let now = T0 + 2 * waiting as Millis;
    report(
        "claim(big, 100) x50",
        time(50, || store.claim(&big, now, 100, now + 60_000)).await,
    );
    store.close().await.expect("close");
}
