//! Batching through the real server to a batch endpoint on loopback: several events per
//! call (max items, linger, signed batch body, `ferry_batch_size`), partial failures mapped
//! back to records, a failed batch retried whole, `on_failure: split` with a record that
//! goes to the DLQ alone, and a rate limit plus batching keeping a spike inside a quota.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::Value;

/// How the batch receiver answers call number `n` (from 0) carrying `items`.
type Reply = dyn Fn(usize, &[Value]) -> (u16, String) + Send + Sync;

/// One call the batch receiver got.
#[derive(Clone, Debug)]
struct Call {
    headers: HeaderMap,
    body: Bytes,
    items: Vec<Value>,
    at: Instant,
}

impl Call {
    fn webhook_id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_string()
    }

    /// The `n` field of every record, in body order.
    fn ns(&self) -> Vec<u64> {
        self.items
            .iter()
            .map(|i| i["n"].as_u64().unwrap())
            .collect()
    }
}

type Shared = (Arc<Mutex<Vec<Call>>>, Arc<Reply>);

/// A batch API on 127.0.0.1: takes a JSON array (or `{"records": [...]}`), records every
/// call, answers as `reply` says.
#[derive(Clone)]
struct BatchReceiver {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl BatchReceiver {
    async fn start(
        reply: impl Fn(usize, &[Value]) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let reply: Arc<Reply> = Arc::new(reply);
        let app = Router::new()
            .fallback(receive)
            .with_state((calls.clone(), reply));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, calls }
    }

    fn url(&self) -> String {
        format!("http://{}/batch", self.addr)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// How often each event (by `n`) arrived.
    fn seen(&self) -> BTreeMap<u64, usize> {
        let mut seen = BTreeMap::new();
        for call in self.calls() {
            for n in call.ns() {
                *seen.entry(n).or_default() += 1;
            }
        }
        seen
    }
}

async fn receive(
    State((calls, reply)): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let parsed: Value = serde_json::from_slice(&body).expect("batch body is JSON");
    let items = match &parsed {
        Value::Array(items) => items.clone(),
        other => other["records"]
            .as_array()
            .cloned()
            .expect("wrapped batch has `records`"),
    };
    let n = {
        let mut calls = calls.lock().unwrap();
        calls.push(Call {
            headers,
            body,
            items: items.clone(),
            at: Instant::now(),
        });
        calls.len() - 1
    };
    let (status, text) = reply(n, &items);
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        text,
    )
}

fn ok() -> (u16, String) {
    (200, "{}".to_string())
}

/// A destination `name` posting to `url`, fast retries, with the given `batch:` block and
/// any further YAML lines (already indented) for the destination. (Metrics are per process:
/// a test that reads them uses a destination name of its own.)
fn batch_destination(name: &str, url: &str, max_attempts: u32, batch: &str, extra: &str) -> String {
    format!(
        "      {name}:\n        system: dst\n        http:\n          url: {url}\n          timeout: 5s\n          connect_timeout: 1s\n        retry:\n          max_attempts: {max_attempts}\n          initial_backoff: 20ms\n          max_backoff: 100ms\n        batch: {batch}\n{extra}"
    )
}

async fn hub_with(
    dests: &str,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, ferry::hub::RunningHub) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    write_config(&cfg, dests);
    for (name, content) in files {
        std::fs::write(cfg.join(name), content).unwrap();
    }
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    (dir, hub)
}

fn event(n: u64) -> String {
    format!("{{\"type\":\"order.created\",\"n\":{n}}}")
}

/// Send events `0..count`, `parallel` at a time.
async fn send_events(hub: SocketAddr, count: u64, parallel: u64) {
    let mut n = 0;
    while n < count {
        let mut batch = tokio::task::JoinSet::new();
        for m in n..(n + parallel).min(count) {
            batch.spawn(async move {
                let status = send(hub, &format!("msg_{m}"), &event(m)).await.status();
                assert_eq!(status.as_u16(), 202, "event {m}");
            });
        }
        while let Some(done) = batch.join_next().await {
            done.unwrap();
        }
        n += parallel;
    }
}

/// [`send_events`] while the destination's lane is paused, then resume it: the lane finds
/// every event waiting at once, so how they are batched does not depend on how fast this
/// machine accepted them (against the linger).
async fn send_events_at_once(hub: SocketAddr, destination: &str, count: u64, parallel: u64) {
    let lane = format!("/admin/v1/lanes/orders/{destination}");
    admin_post(
        hub,
        &format!("{lane}/pause"),
        serde_json::json!({"reason": "batch test"}),
    )
    .await;
    send_events(hub, count, parallel).await;
    admin_post(hub, &format!("{lane}/resume"), serde_json::json!({})).await;
}

async fn count_state(hub: SocketAddr, state: &str) -> usize {
    deliveries(hub, &format!("state={state}&limit=1000"))
        .await
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_sent_in_signed_batches_of_at_most_max_items() {
    let rx = BatchReceiver::start(|_, _| ok()).await;
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let dest = batch_destination(
        "signed",
        &rx.url(),
        3,
        "{ max_items: 10, linger: 1s, wrap: records }",
        "",
    )
    .replace(
        "          connect_timeout: 1s\n",
        "          connect_timeout: 1s\n          signing:\n            standard_webhooks: { secret: { file: out-secret } }\n",
    );
    let (_d, hub) = hub_with(&dest, &[("out-secret", secret)]).await;
    send_events_at_once(hub.addr(), "signed", 25, 5).await;
    wait_until(20, "25 events delivered", || async {
        count_state(hub.addr(), "delivered").await == 25
    })
    .await;

    let calls = rx.calls();
    let seen = rx.seen();
    assert_eq!(seen.len(), 25, "every event arrived: {seen:?}");
    assert!(
        seen.values().all(|&c| c == 1),
        "each exactly once: {seen:?}"
    );
    assert!(
        calls.iter().all(|c| c.items.len() <= 10),
        "max_items exceeded: {:?}",
        calls.iter().map(|c| c.items.len()).collect::<Vec<_>>()
    );
    // Without the linger every event would go in a call of its own.
    assert!(
        (3..=5).contains(&calls.len()),
        "{} calls for 25 events: {:?}",
        calls.len(),
        calls.iter().map(|c| c.items.len()).collect::<Vec<_>>()
    );

    // One id per batch, signed over the batch body.
    let key = ferry_signature::SigningKey::from_standard_webhooks(secret).unwrap();
    for call in &calls {
        let id = call.webhook_id();
        assert!(id.starts_with("bat_"), "{id}");
        assert_eq!(call.headers["idempotency-key"].to_str().unwrap(), id);
        assert_eq!(call.headers["content-type"], "application/json");
        let ts: i64 = call.headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let expected = ferry_signature::standard_webhooks::sign(&key, &id, ts, &call.body);
        assert_eq!(
            call.headers["webhook-signature"].to_str().unwrap(),
            expected
        );
    }

    let metrics = client()
        .get(format!("http://{}/metrics", hub.addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count_line = metrics
        .lines()
        .find(|l| {
            l.starts_with("ferry_batch_size_count")
                && l.contains("flow=\"orders\"")
                && l.contains("destination=\"signed\"")
        })
        .unwrap_or_else(|| panic!("no ferry_batch_size:\n{metrics}"));
    assert!(
        count_line.ends_with(&format!(" {}", calls.len())),
        "{count_line}"
    );
    assert!(
        metrics.contains("ferry_batch_size_bucket{") && metrics.contains("le=\"10\""),
        "explicit buckets expected:\n{metrics}"
    );
    // Each record of a batch is a delivery in the audit trail, with its destination system.
    let mut delivered = Vec::new();
    for r in hub.store().audit_records(None, 1000).await.unwrap() {
        for e in r.parse_entries().unwrap() {
            if let ferry_store::AuditEntry::Delivered {
                destination,
                destination_system,
                ..
            } = e
            {
                delivered.push((destination, destination_system));
            }
        }
    }
    assert_eq!(delivered.len(), 25);
    assert!(
        delivered
            .iter()
            .all(|(d, s)| d == "signed" && s.as_deref() == Some("dst")),
        "{delivered:?}"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_named_in_a_partial_failure_are_retried_alone_and_the_others_delivered() {
    let rx = BatchReceiver::start(|n, _| {
        if n == 0 {
            (
                200,
                r#"{"accepted":2,"errors":[{"index":1,"message":"invalid email"}]}"#.to_string(),
            )
        } else {
            (200, r#"{"accepted":1,"errors":[]}"#.to_string())
        }
    })
    .await;
    let dest = batch_destination(
        "sink",
        &rx.url(),
        5,
        "{ max_items: 3, linger: 2s, failed_items: /errors }",
        "",
    );
    let (_d, hub) = hub_with(&dest, &[]).await;
    send_events_at_once(hub.addr(), "sink", 3, 3).await;
    wait_until(20, "3 delivered", || async {
        count_state(hub.addr(), "delivered").await == 3
    })
    .await;

    let calls = rx.calls();
    assert_eq!(
        calls.len(),
        2,
        "one batch, then the failed record: {calls:?}"
    );
    let first = calls[0].ns();
    assert_eq!(first.len(), 3);
    assert_eq!(
        calls[1].ns(),
        vec![first[1]],
        "only the record at index 1 is retried"
    );

    // Its first attempt says why, its second delivered it.
    let all = deliveries(hub.addr(), "state=delivered").await;
    let retried: Vec<_> = all.iter().filter(|d| d["attempts"] == 2).collect();
    assert_eq!(retried.len(), 1, "{all:?}");
    assert!(
        all.iter().filter(|d| d["attempts"] == 1).count() == 2,
        "{all:?}"
    );
    let id = retried[0]["id"].as_str().unwrap();
    let detail = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
    assert_eq!(detail["event"]["payload"]["n"], first[1], "{detail}");
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["error_class"], "batch_item", "{detail}");
    assert_eq!(attempt["status"], 200, "{detail}");
    assert!(
        attempt["response_excerpt"]
            .as_str()
            .unwrap()
            .contains("invalid email"),
        "{detail}"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_retried_whole_with_the_same_webhook_id() {
    let rx = BatchReceiver::start(|n, _| if n == 0 { (503, "{}".into()) } else { ok() }).await;
    let dest = batch_destination("sink", &rx.url(), 5, "{ max_items: 5, linger: 1s }", "");
    let (_d, hub) = hub_with(&dest, &[]).await;
    send_events_at_once(hub.addr(), "sink", 5, 5).await;
    wait_until(20, "5 delivered", || async {
        count_state(hub.addr(), "delivered").await == 5
    })
    .await;
    let calls = rx.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let (mut a, mut b) = (calls[0].ns(), calls[1].ns());
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, vec![0, 1, 2, 3, 4]);
    assert_eq!(a, b, "the batch is retried whole");
    assert_eq!(
        calls[0].webhook_id(),
        calls[1].webhook_id(),
        "same records, same id"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_sends_each_record_alone_and_only_the_bad_one_is_dead_lettered() {
    // Batches fail; alone, record 2 is refused for good and the others are accepted.
    let rx = BatchReceiver::start(|_, items| {
        if items.len() > 1 {
            (500, r#"{"error":"something in there"}"#.to_string())
        } else if items[0]["n"] == 2 {
            (400, r#"{"error":"record 2 is invalid"}"#.to_string())
        } else {
            ok()
        }
    })
    .await;
    let dest = batch_destination(
        "sink",
        &rx.url(),
        5,
        "{ max_items: 4, linger: 2s, on_failure: split }",
        "",
    );
    let (_d, hub) = hub_with(&dest, &[]).await;
    send_events_at_once(hub.addr(), "sink", 4, 4).await;
    wait_until(20, "3 delivered and 1 dead", || async {
        count_state(hub.addr(), "delivered").await == 3
            && count_state(hub.addr(), "dead").await == 1
    })
    .await;
    // Nothing more happens: the dead record is not retried.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = rx.calls();
    assert_eq!(calls.len(), 5, "one batch, then four singles: {calls:?}");
    assert_eq!(calls[0].items.len(), 4);
    let mut singles: Vec<u64> = calls[1..].iter().flat_map(Call::ns).collect();
    singles.sort_unstable();
    assert_eq!(singles, vec![0, 1, 2, 3], "each record alone, right away");
    let dead = deliveries(hub.addr(), "state=dead").await;
    let id = dead[0]["id"].as_str().unwrap();
    let detail = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
    assert_eq!(detail["event"]["payload"]["n"], 2, "{detail}");
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("400"),
        "{dead:?}"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_and_a_rate_limit_keep_a_spike_inside_the_quota() {
    let rx = BatchReceiver::start(|_, _| ok()).await;
    let dest = batch_destination(
        "sink",
        &rx.url(),
        5,
        "{ max_items: 50, linger: 200ms }",
        "        rate_limit: { requests: 2, per: 1s }\n",
    );
    let (_d, hub) = hub_with(&dest, &[]).await;
    // The spike: 300 events are waiting when the lane starts sending (however fast this
    // machine accepts them).
    admin_post(
        hub.addr(),
        "/admin/v1/lanes/orders/sink/pause",
        serde_json::json!({"reason": "spike test"}),
    )
    .await;
    send_events(hub.addr(), 300, 10).await;
    // No call can be let through before this instant.
    let resumed = Instant::now();
    admin_post(
        hub.addr(),
        "/admin/v1/lanes/orders/sink/resume",
        serde_json::json!({}),
    )
    .await;
    wait_until(60, "300 delivered", || async {
        count_state(hub.addr(), "delivered").await == 300
    })
    .await;

    let calls = rx.calls();
    let seen = rx.seen();
    assert_eq!(seen.len(), 300);
    assert!(seen.values().all(|&c| c == 1), "each exactly once");
    let sizes: Vec<usize> = calls.iter().map(|c| c.items.len()).collect();
    assert!(sizes.iter().all(|&s| s <= 50), "{sizes:?}");
    // 300 calls without batching (150s at this limit); 6 full batches with.
    assert!(calls.len() <= 7, "{} calls (sizes {sizes:?})", calls.len());
    // Within the limit (2 per second, a burst of 1): counted from the resume, the k-th call
    // cannot have been let through before k x 500 ms, so it cannot have arrived before.
    // (Arrival times only ever lag, so a slow machine cannot make this fail; 5 % off the
    // bound allow for the limiter's clock not being this test's.)
    let mut arrivals: Vec<Duration> = calls.iter().map(|c| c.at.duration_since(resumed)).collect();
    arrivals.sort();
    for (k, at) in arrivals.iter().enumerate() {
        assert!(
            *at >= Duration::from_millis(475) * k as u32,
            "call {k} arrived {at:?} after the resume: {arrivals:?}"
        );
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_keep_joining_a_batch_while_its_call_waits_for_the_rate_limit() {
    let rx = BatchReceiver::start(|_, _| ok()).await;
    let dest = batch_destination(
        "sink",
        &rx.url(),
        5,
        "{ max_items: 100, linger: 50ms }",
        "        rate_limit: { requests: 2, per: 1s }\n",
    );
    let (_d, hub) = hub_with(&dest, &[]).await;
    // A steady trickle: about one event per linger period, for a few seconds.
    let started = Instant::now();
    for n in 0..50 {
        assert_eq!(
            send(hub.addr(), &format!("msg_{n}"), &event(n))
                .await
                .status(),
            202
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent_in = started.elapsed();
    wait_until(20, "50 delivered", || async {
        count_state(hub.addr(), "delivered").await == 50
    })
    .await;
    let calls = rx.calls();
    let sizes: Vec<usize> = calls.iter().map(|c| c.items.len()).collect();
    // Cutting a batch at each linger would make about one call per event, and at 2 calls/s
    // the last would arrive some 20s late. Instead each call takes everything that arrived
    // while it waited: about two calls per second of trickle.
    let most = (sent_in.as_secs_f64() * 2.0).ceil() as usize + 2;
    assert!(
        calls.len() <= most,
        "{} calls for {sent_in:?} of events, at most {most} expected (sizes {sizes:?})",
        calls.len()
    );
    assert_eq!(rx.seen().len(), 50);
    hub.shutdown().await.unwrap();
}
