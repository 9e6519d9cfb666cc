//! One lane: the loop that claims due deliveries of one (flow, destination), sends them
//! through the lane's connector under a concurrency limit, and writes the outcomes back to
//! the store in batches.
//!
//! Memory is bounded by the *prefetch*: a lane holds at most `2 × concurrency` claimed
//! deliveries at a time (queued for a send permit, in flight, or with their outcome queued
//! for the flusher); a batching lane `max_items × (concurrency + 1)`, one full batch per send
//! plus the one being filled. A claimed delivery gives its prefetch slot back once its
//! outcome is queued for the flusher (a queue of at most `max(prefetch, 256)` outcomes,
//! without payloads, and a full queue keeps the slot), so the backlog stays on disk however
//! large it grows, and a slow commit does not keep the lane from sending.
//!
//! By concern:
//! - `driver`: the loop (gate, prefetch slots, idle sleeps) and the drain when stopped;
//! - `claim`: claiming from the store and taking deliveries claimed at ingress;
//! - `attempt`: one delivery's attempt (bulkhead, gate, lease check, render, call);
//! - `conclude`: the outcome of an attempt (retry, dead letter, local failure), counted
//!   and logged;
//! - `pause`: auto-pause;
//! - `flush`: committing outcomes in batches, and releases;
//! - `batched`: a batching lane ([`BatchSpec`]) hands its claimed deliveries there instead
//!   of sending each in a task of its own.

mod attempt;
mod batched;
mod claim;
mod conclude;
mod driver;
mod flush;
mod instruments;
mod pause;

use std::sync::Arc;
use std::time::Duration;

use ferry_store::{LaneKey, Millis, Store};
use metrics::Label;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::batch::BatchSpec;
use crate::connector::Connector;
use crate::fresh::Fresh;
use crate::gate::SharedGate;
use crate::render::Render;
use crate::retry::RetryPolicy;
use driver::{Lane, Turn};
use instruments::LaneMetrics;

/// Claimed-but-unfinished deliveries a lane may hold, per unit of concurrency.
const PREFETCH_FACTOR: usize = 2;
/// Longest sleep when the lane has nothing due (a safety poll: wake-ups and `next_due`
/// normally come first).
pub(crate) const IDLE_POLL: Duration = Duration::from_secs(1);
/// Shortest sleep when idle, so a store that keeps reporting work it then doesn't hand out
/// cannot make the lane spin.
const MIN_IDLE: Duration = Duration::from_millis(5);
/// Lease beyond the worst-case wait (one timeout for a send permit, one for the send).
const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// A queued delivery whose lease ends within `timeout + LEASE_SAFETY` is released instead
/// of sent, so it is never sent after another claimer may have taken it.
const LEASE_SAFETY: Duration = Duration::from_secs(10);

/// Everything a lane needs, handed over by the engine.
pub(crate) struct LaneConfig {
    pub store: Arc<dyn Store>,
    pub key: LaneKey,
    pub connector: Arc<dyn Connector>,
    pub retry: RetryPolicy,
    pub concurrency: usize,
    /// The permits its sends acquire (`concurrency` of them, or this node's share).
    pub sends: Arc<Semaphore>,
    /// Notified by `DeliveryEngine::wake` and by the lane's own flusher.
    pub wake: Arc<Notify>,
    /// Cancelled: stop claiming, release queued deliveries, let in-flight ones finish.
    pub stop: CancellationToken,
    /// Cancelled: abort in-flight sends and release them too.
    pub abort: CancellationToken,
    /// Longest idle sleep ([`IDLE_POLL`]; tests make it long to prove the wake-ups work).
    pub idle_poll: Duration,
    /// Breaker, rate limit, 429 hold and pause: consulted before claiming and sending.
    pub gate: SharedGate,
    /// Send several deliveries per call.
    pub batch: Option<BatchSpec>,
    /// Computes what each delivery sends.
    pub render: Option<Arc<dyn Render>>,
    /// Deliveries ingress claimed for this lane in their append (see `fresh`).
    pub fresh: Option<mpsc::Receiver<Fresh>>,
    /// The destination's system (for the audit trail).
    pub system: Option<String>,
    /// The lane's attempt totals, shared with the engine's readers.
    pub tally: Arc<crate::tally::AttemptTally>,
}

/// One attempt's longest time: rendering (its lookups) and then the call.
fn attempt_timeout(connector: &dyn Connector, render: Option<&Arc<dyn Render>>) -> Duration {
    let render_budget = render.map_or(Duration::ZERO, |r| r.time_budget());
    connector.timeout().saturating_add(render_budget)
}

/// How long a claim of this lane lasts: beyond the worst-case wait for a send permit and the
/// send itself (rendering included), and a batch's linger.
pub(crate) fn lease(
    connector: &dyn Connector,
    render: Option<&Arc<dyn Render>>,
    batch: Option<&BatchSpec>,
) -> Duration {
    let lease = attempt_timeout(connector, render)
        .saturating_mul(2)
        .saturating_add(LEASE_MARGIN);
    match batch {
        Some(spec) => lease.saturating_add(spec.linger),
        None => lease,
    }
}

/// What a delivery task shares with its lane.
struct Ctx {
    store: Arc<dyn Store>,
    gate: SharedGate,
    key: LaneKey,
    connector: Arc<dyn Connector>,
    retry: RetryPolicy,
    sends: Arc<Semaphore>,
    stop: CancellationToken,
    abort: CancellationToken,
    timeout_ms: Millis,
    labels: Vec<Label>,
    /// The lane's per-attempt metric handles.
    metrics: LaneMetrics,
    render: Option<Arc<dyn Render>>,
    /// The destination's system (for the audit trail).
    system: Option<String>,
}

/// Run a lane until it is stopped, then drain it: every claimed delivery ends with an
/// outcome (or a release) handed to the store before this returns.
pub(crate) async fn run(cfg: LaneConfig) {
    let mut lane = Lane::new(cfg);
    while lane.turn().await == Turn::Again {}
    lane.drain().await;
}

/// The names only the unit tests below use.
#[cfg(test)]
use {
    conclude::LogThrottle,
    ferry_store::ClaimedDelivery,
    ferry_store::now_millis,
    flush::{STORE_BACKOFF_MAX, STORE_BACKOFF_MIN, StoreBackoff},
};

fn duration_millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpConnector, HttpTarget};
    use axum::http::StatusCode;
    use bytes::Bytes;
    use ferry_store::{DeliveryId, DeliveryState, EventId, NewDelivery, NewEvent};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// A receiver answering `statuses` in order (the last one repeats).
    async fn receiver(statuses: Vec<u16>) -> (reqwest::Url, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let status = statuses[n.min(statuses.len() - 1)];
            async move { StatusCode::from_u16(status).unwrap_or(StatusCode::OK) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (
            reqwest::Url::parse(&format!("http://{addr}/")).unwrap(),
            hits,
        )
    }

    struct Running {
        store: Arc<dyn Store>,
        key: LaneKey,
        wake: Arc<Notify>,
        stop: CancellationToken,
        handle: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    /// A lane whose safety poll is a minute: anything faster must come from a wake-up.
    fn start_lane(url: reqwest::Url, retry: RetryPolicy) -> Running {
        start_lane_with(url, retry, None)
    }

    fn start_lane_with(
        url: reqwest::Url,
        retry: RetryPolicy,
        render: Option<Arc<dyn Render>>,
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            ferry_store::sqlite::SqliteStore::open(
                dir.path(),
                ferry_store::sqlite::SqliteOptions::default(),
            )
            .unwrap(),
        );
        let key = LaneKey {
            flow: "f".into(),
            destination: "d".into(),
        };
        let target = HttpTarget {
            url,
            method: reqwest::Method::POST,
            headers: Default::default(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            signing_key: None,
            egress: crate::EgressPolicy::from_entries(["127.0.0.0/8"]).unwrap(),
            format: Default::default(),
        };
        let wake = Arc::new(Notify::new());
        let abort = CancellationToken::new();
        let stop = abort.child_token();
        let handle = tokio::spawn(run(LaneConfig {
            store: store.clone(),
            key: key.clone(),
            connector: Arc::new(HttpConnector::new(target, 1).unwrap()),
            retry,
            concurrency: 1,
            sends: Arc::new(Semaphore::new(1)),
            wake: wake.clone(),
            stop: stop.clone(),
            abort,
            idle_poll: Duration::from_secs(60),
            gate: Arc::new(crate::gate::Gate::new(
                key.clone(),
                Default::default(),
                None,
                tokio::sync::broadcast::channel(4).0,
            )),
            batch: None,
            render,
            fresh: None,
            system: Some("crm".into()),
            tally: Default::default(),
        }));
        Running {
            store,
            key,
            wake,
            stop,
            handle,
            _dir: dir,
        }
    }

    async fn append(store: &dyn Store, key: &LaneKey) -> DeliveryId {
        let now = now_millis();
        let id = DeliveryId::new();
        store
            .append(vec![NewEvent {
                id: EventId::new(),
                flow: key.flow.clone(),
                source: "s".into(),
                dedupe_key: None,
                event_type: None,
                received_at: now,
                headers: vec![],
                payload: Bytes::from_static(b"{}"),
                deliveries: vec![NewDelivery {
                    id,
                    destination: key.destination.clone(),
                    due_at: now,
                    order_key: None,
                    claimed_until: None,
                }],
                dedupe_window: None,
                audit: Default::default(),
            }])
            .await
            .unwrap();
        id
    }

    /// Poll until the delivery is in `state`. The deadline is generous for a busy machine
    /// but well below the test lanes' one-minute safety poll, which the wake-up tests must
    /// not be waiting for.
    async fn wait_state(store: &dyn Store, id: DeliveryId, state: DeliveryState) -> Duration {
        let started = Instant::now();
        loop {
            let detail = store.delivery(id).await.unwrap();
            if detail.as_ref().is_some_and(|d| d.summary.state == state) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for {state:?}: {detail:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn wake_starts_work_without_waiting_for_the_poll() {
        let (url, hits) = receiver(vec![200]).await;
        let lane = start_lane(url, RetryPolicy::default());
        // Let the lane find nothing and go to sleep (for up to a minute).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let id = append(lane.store.as_ref(), &lane.key).await;
        lane.wake.notify_one();
        wait_state(lane.store.as_ref(), id, DeliveryState::Delivered).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        lane.stop.cancel();
        lane.handle.await.unwrap();
    }

    #[tokio::test]
    async fn retry_is_picked_up_when_due_without_waiting_for_the_poll() {
        let (url, hits) = receiver(vec![503, 503, 200]).await;
        let retry = RetryPolicy {
            max_attempts: 5,
            max_age: Duration::from_secs(600),
            initial_backoff: Duration::from_millis(300),
            max_backoff: Duration::from_millis(300),
        };
        let lane = start_lane(url, retry);
        let id = append(lane.store.as_ref(), &lane.key).await;
        lane.wake.notify_one();
        wait_state(lane.store.as_ref(), id, DeliveryState::Delivered).await;
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        lane.stop.cancel();
        lane.handle.await.unwrap();
    }

    #[tokio::test]
    async fn stop_ends_an_idle_lane_promptly() {
        let (url, _) = receiver(vec![200]).await;
        let lane = start_lane(url, RetryPolicy::default());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        lane.stop.cancel();
        lane.handle.await.unwrap();
        // Generous, and still half the one-minute idle sleep it must not wait out.
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    /// Fails to render payloads that say `"bad"`, uppercases the rest.
    #[derive(Debug)]
    struct Upcase;

    #[async_trait::async_trait]
    impl Render for Upcase {
        async fn render(
            &self,
            delivery: &ClaimedDelivery,
        ) -> Result<crate::Rendered, crate::RenderError> {
            let text = String::from_utf8_lossy(&delivery.payload).to_string();
            if text.contains("bad") {
                return Err(crate::RenderError::permanent("map_failed", "bad payload"));
            }
            Ok(crate::Rendered {
                body: Bytes::from(text.to_uppercase()),
                url: None,
                headers: Default::default(),
                content_type: None,
                categories_sent: vec![("user.contact.email".into(), "hash".into())],
            })
        }
    }

    async fn append_payload(
        store: &dyn Store,
        key: &LaneKey,
        payload: &'static [u8],
    ) -> DeliveryId {
        let now = now_millis();
        let id = DeliveryId::new();
        store
            .append(vec![NewEvent {
                id: EventId::new(),
                flow: key.flow.clone(),
                source: "s".into(),
                dedupe_key: None,
                event_type: None,
                received_at: now,
                headers: vec![],
                payload: Bytes::from_static(payload),
                deliveries: vec![NewDelivery {
                    id,
                    destination: key.destination.clone(),
                    due_at: now,
                    order_key: None,
                    claimed_until: None,
                }],
                dedupe_window: None,
                audit: Default::default(),
            }])
            .await
            .unwrap();
        id
    }

    /// A delivered delivery's audit entry names the lane's system and the categories its
    /// rendering says it carried; a dead one has none.
    #[tokio::test]
    async fn a_delivered_delivery_is_audited_with_what_it_carried() {
        let (url, _) = receiver(vec![200]).await;
        let lane = start_lane_with(url, RetryPolicy::default(), Some(Arc::new(Upcase)));
        let bad = append_payload(lane.store.as_ref(), &lane.key, b"{\"x\":\"bad\"}").await;
        let good = append_payload(lane.store.as_ref(), &lane.key, b"{\"x\":\"ok\"}").await;
        lane.wake.notify_one();
        wait_state(lane.store.as_ref(), bad, DeliveryState::Dead).await;
        wait_state(lane.store.as_ref(), good, DeliveryState::Delivered).await;
        let mut delivered = Vec::new();
        for r in lane.store.audit_records(None, 100).await.unwrap() {
            for e in r.parse_entries().unwrap() {
                if let ferry_store::AuditEntry::Delivered {
                    delivery,
                    destination_system,
                    categories_sent,
                    ..
                } = e
                {
                    delivered.push((delivery, destination_system, categories_sent));
                }
            }
        }
        assert_eq!(
            delivered,
            vec![(
                good,
                Some("crm".to_owned()),
                vec![ferry_store::CategorySent {
                    category: "user.contact.email".into(),
                    how: "hash".into(),
                }]
            )]
        );
        lane.stop.cancel();
        lane.handle.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_rendering_dead_letters_without_a_call_and_the_lane_goes_on() {
        let (url, hits) = receiver(vec![200]).await;
        let lane = start_lane_with(url, RetryPolicy::default(), Some(Arc::new(Upcase)));
        let bad = append_payload(lane.store.as_ref(), &lane.key, b"{\"x\":\"bad\"}").await;
        let good = append_payload(lane.store.as_ref(), &lane.key, b"{\"x\":\"ok\"}").await;
        lane.wake.notify_one();
        wait_state(lane.store.as_ref(), bad, DeliveryState::Dead).await;
        wait_state(lane.store.as_ref(), good, DeliveryState::Delivered).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1, "only the good one was sent");
        let detail = lane.store.delivery(bad).await.unwrap().unwrap();
        let attempt = &detail.attempts[0];
        assert_eq!(attempt.error_class.as_deref(), Some("map_failed"));
        assert_eq!(attempt.status, None);
        assert!(attempt.error.as_deref().unwrap().contains("bad payload"));
        lane.stop.cancel();
        lane.handle.await.unwrap();
    }

    #[test]
    fn log_throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(throttle.admit(t0), Some(0));
        for s in [0, 1, 29] {
            assert_eq!(throttle.admit(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(throttle.admit(t0 + Duration::from_secs(30)), Some(3));
        assert_eq!(throttle.admit(t0 + Duration::from_secs(31)), None);
        assert_eq!(throttle.admit(t0 + Duration::from_secs(61)), Some(1));
        assert_eq!(throttle.admit(t0 + Duration::from_secs(600)), Some(0));
    }

    #[test]
    fn store_backoff_doubles_caps_and_resets() {
        let mut b = StoreBackoff::default();
        assert_eq!(b.next(), STORE_BACKOFF_MIN);
        assert_eq!(b.next(), STORE_BACKOFF_MIN * 2);
        for _ in 0..20 {
            b.next();
        }
        assert_eq!(b.next(), STORE_BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next(), STORE_BACKOFF_MIN);
    }
}
