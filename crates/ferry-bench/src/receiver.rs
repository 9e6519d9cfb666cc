//! The destination the hub delivers to: answers 200 at once and records what arrived.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hdrhistogram::Histogram;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::payload;

/// What the receiver has seen.
#[derive(Debug)]
pub struct Sink {
    clock: Clock,
    run: Vec<u8>,
    /// Requests received (any kind); the drain loop watches it for progress.
    requests: AtomicU64,
    /// Distinct events of this run received.
    unique: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Event seq -> hash of the `webhook-id` it first arrived with.
    events: HashMap<u64, u64>,
    /// Hashes of every `webhook-id` seen (this run).
    ids: HashSet<u64>,
    e2e_us: Histogram<u64>,
    first: Option<Instant>,
    last: Option<Instant>,
    duplicate_ids: u64,
    redelivered_events: u64,
    missing_id: u64,
    foreign: u64,
    unparsable: u64,
}

/// A copy of the receiver's counters.
#[derive(Debug, Clone)]
pub struct SinkStats {
    pub requests: u64,
    pub unique: u64,
    pub e2e_us: Histogram<u64>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Deliveries whose `webhook-id` had already been received.
    pub duplicate_ids: u64,
    /// Events received again under a different `webhook-id`.
    pub redelivered_events: u64,
    /// Deliveries of this run without a `webhook-id` header.
    pub missing_id: u64,
    /// Requests carrying another run's events.
    pub foreign: u64,
    /// Requests whose body is not a bench event.
    pub unparsable: u64,
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits; auto-resize keeps larger outliers recordable.
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("constant histogram bounds are valid");
    h.auto(true);
    h
}

fn id_hash(id: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl Sink {
    pub fn new(clock: Clock, run: &str) -> Self {
        Self {
            clock,
            run: run.as_bytes().to_vec(),
            requests: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                events: HashMap::new(),
                ids: HashSet::new(),
                e2e_us: new_histogram(),
                first: None,
                last: None,
                duplicate_ids: 0,
                redelivered_events: 0,
                missing_id: 0,
                foreign: 0,
                unparsable: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters unusable for a report.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn unique(&self) -> u64 {
        self.unique.load(Ordering::Relaxed)
    }

    fn record(&self, headers: &HeaderMap, body: &[u8]) {
        let now = Instant::now();
        let now_ns = self.clock.wall_ns(now);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let Some(p) = payload::probe(body) else {
            self.lock().unparsable += 1;
            return;
        };
        if p.run != self.run.as_slice() {
            self.lock().foreign += 1;
            return;
        }
        let id = headers.get("webhook-id").map(|v| id_hash(v.as_bytes()));
        let mut g = self.lock();
        match id {
            None => g.missing_id += 1,
            Some(id) => {
                if !g.ids.insert(id) {
                    g.duplicate_ids += 1;
                }
            }
        }
        let id = id.unwrap_or(0);
        match g.events.get(&p.seq) {
            Some(&first_id) => {
                if first_id != id {
                    g.redelivered_events += 1;
                }
            }
            None => {
                g.events.insert(p.seq, id);
                let us = now_ns.saturating_sub(p.sent_ns) / 1_000;
                g.e2e_us.saturating_record(us.max(1));
                g.first.get_or_insert(now);
                g.last = Some(now);
                self.unique.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many of `accepted` (event seqs) have not arrived.
    pub fn missing(&self, accepted: &[u64]) -> u64 {
        let g = self.lock();
        accepted
            .iter()
            .filter(|s| !g.events.contains_key(s))
            .count() as u64
    }

    pub fn stats(&self) -> SinkStats {
        let g = self.lock();
        SinkStats {
            requests: self.requests(),
            unique: g.events.len() as u64,
            e2e_us: g.e2e_us.clone(),
            first: g.first,
            last: g.last,
            duplicate_ids: g.duplicate_ids,
            redelivered_events: g.redelivered_events,
            missing_id: g.missing_id,
            foreign: g.foreign,
            unparsable: g.unparsable,
        }
    }
}

async fn receive(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    sink.record(&headers, &body);
    StatusCode::OK
}

/// Bind `addr` and serve the sink on any path in the background; returns the bound address.
pub async fn start(addr: SocketAddr, sink: Arc<Sink>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the receiver"))?;
    let bound = listener.local_addr()?;
    let app = Router::new().fallback(receive).with_state(sink);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("ferry-bench: receiver stopped: {e}");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Template;

    fn headers(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h
    }

    #[test]
    fn counts_unique_duplicates_and_foreign() {
        let clock = Clock::new();
        let sink = Sink::new(clock, "0123456789abcdef");
        let t = Template::new("0123456789abcdef", 256).unwrap();
        let other = Template::new("fedcba9876543210", 256).unwrap();
        let sent = clock.now_ns();
        sink.record(&headers("dlv_1"), &t.body(sent, 1));
        sink.record(&headers("dlv_1"), &t.body(sent, 1)); // same delivery again
        sink.record(&headers("dlv_9"), &t.body(sent, 1)); // same event, new delivery id
        sink.record(&headers("dlv_2"), &t.body(sent, 2));
        sink.record(&headers("dlv_3"), &other.body(sent, 3));
        sink.record(&headers("dlv_4"), b"{}");
        let s = sink.stats();
        assert_eq!((s.requests, s.unique), (6, 2));
        assert_eq!((s.duplicate_ids, s.redelivered_events), (1, 1));
        assert_eq!((s.foreign, s.unparsable, s.missing_id), (1, 1, 0));
        assert_eq!(s.e2e_us.len(), 2);
        assert_eq!(sink.missing(&[1, 2, 3, 4]), 2);
    }
}
