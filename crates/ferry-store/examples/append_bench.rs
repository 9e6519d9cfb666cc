//! Ad-hoc throughput check of the SQLite store's group commit (not a test):
//! `cargo run --release -p ferry-store --example append_bench -- [events] [tasks] [bytes] [checkpoint_ms]`.
//! Each task appends one event (with one delivery) per call, like one webhook per request.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ferry_store::sqlite::{SqliteOptions, SqliteStore};
use ferry_store::{DeliveryId, EventId, NewDelivery, NewEvent, Store};

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let events = args.next().unwrap_or(100_000);
    let tasks = args.next().unwrap_or(64);
    let size = args.next().unwrap_or(1024);
    let mut opts = SqliteOptions::default();
    if let Some(ms) = args.next() {
        opts.checkpoint_interval = std::time::Duration::from_millis(ms as u64);
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path(), opts).expect("open"));
    let payload = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let store = Arc::clone(&store);
        let payload = payload.clone();
        let n = events / tasks + usize::from(t < events % tasks);
        set.spawn(async move {
            for i in 0..n {
                let ev = NewEvent {
                    id: EventId::new(),
                    flow: "bench".into(),
                    source: "bench".into(),
                    dedupe_key: Some(format!("{t}-{i}")),
                    event_type: Some("bench.event".into()),
                    received_at: i as i64,
                    headers: vec![("content-type".into(), "application/json".into())],
                    payload: payload.clone(),
                    deliveries: vec![NewDelivery {
                        id: DeliveryId::new(),
                        destination: "sink".into(),
                        due_at: i as i64,
                        order_key: None,
                        claimed_until: None,
                    }],
                    dedupe_window: None,
                    audit: Default::default(),
                };
                store.append(vec![ev]).await.expect("append");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = store.commit_stats();
    println!(
        "{events} appends of {size} B from {tasks} tasks in {secs:.2}s: {:.0} appends/s, \
         {} commits ({:.1} appends/commit)",
        events as f64 / secs,
        stats.commits,
        stats.commands as f64 / stats.commits.max(1) as f64
    );
}
