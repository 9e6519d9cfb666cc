//! Delivery resilience end to end, against local receivers that misbehave on purpose:
//! circuit breaker, 429 lane hold, rate limits, bulkheads, per-key ordering, bounded backlog,
//! pause / auto-pause with owner notification, and the metrics that show them.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

/// A destination block with fast retries plus extra YAML (indented 8 spaces, under the
/// destination).
fn destination(name: &str, url: &str, max_attempts: u32, extra: &str) -> String {
    format!("{}{extra}", http_destination(name, url, max_attempts))
}

async fn lane(hub: std::net::SocketAddr, destination: &str) -> Value {
    let lanes = admin_get(hub, "/admin/v1/lanes").await;
    lanes["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lane"]["destination"] == destination)
        .cloned()
        .unwrap_or_else(|| panic!("no lane {destination} in {lanes}"))
}

/// The value of one series on the hub's `/metrics` page (`series` as printed, labels
/// included); 0 when it is not there yet.
async fn metric(hub: std::net::SocketAddr, series: &str) -> f64 {
    let prefix = format!("{series} ");
    metrics_text(hub)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// `ferry_breaker_transitions_total` of a lane of `orders` into state `to`.
async fn transitions(hub: std::net::SocketAddr, destination: &str, to: &str) -> f64 {
    let series = format!(
        "ferry_breaker_transitions_total{{flow=\"orders\",destination=\"{destination}\",to=\"{to}\"}}"
    );
    metric(hub, &series).await
}

async fn count_in_state(hub: std::net::SocketAddr, destination: &str, state: &str) -> usize {
    deliveries(
        hub,
        &format!("flow=orders&destination={destination}&state={state}&limit=1000"),
    )
    .await
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_and_deliveries_wait_without_spending_attempts() {
    let rx = TestReceiver::start().await;
    rx.set_default(Answer::status(503));
    let dir = tempfile::tempdir().unwrap();
    write_config(
        &dir.path().join("cfg"),
        &destination(
            "brk",
            &rx.url("/"),
            5,
            "        concurrency: 2\n        circuit_breaker: { min_requests: 3, failure_ratio: 0.5, window: 30s, cool_down: 1s }\n",
        ),
    );
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();
    for i in 0..10 {
        assert_eq!(send(addr, &format!("b{i}"), "{}").await.status(), 202);
    }
    // Opened, then probed and reopened twice (each cool-down lets one probe through).
    wait_until(60, "the breaker to open and two probes to fail", || async {
        transitions(addr, "brk", "open").await >= 3.0
    })
    .await;
    // While the vendor is down the breaker keeps calls to a trickle of probes: without it,
    // 10 deliveries x 5 attempts would all be spent (and dead-lettered) within a second.
    // Before it first opened, at most `min_requests` failures plus what the lane held
    // (its prefetch: twice its concurrency) were sent; after, one probe per half-open spell.
    // (Counted by events, not by time, so a slow machine makes no difference.)
    let calls_while_down = rx.count();
    let probes = transitions(addr, "brk", "half_open").await as usize;
    assert!(
        calls_while_down <= 3 + 2 * 2 + probes,
        "the breaker let {calls_while_down} calls through to a down vendor ({probes} probes)"
    );
    assert_eq!(count_in_state(addr, "brk", "dead").await, 0);
    rx.set_default(Answer::status(200));
    wait_until(60, "all delivered after the vendor recovers", || async {
        count_in_state(addr, "brk", "delivered").await == 10
    })
    .await;
    assert_eq!(count_in_state(addr, "brk", "dead").await, 0);
    assert_eq!(lane(addr, "brk").await["gate"]["breaker"], "closed");
    let metrics = metrics_text(addr).await;
    assert!(
        metrics.contains(
            "ferry_breaker_transitions_total{flow=\"orders\",destination=\"brk\",to=\"open\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_breaker_state{flow=\"orders\",destination=\"brk\"} 0"));
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_holds_the_whole_lane() {
    let rx = TestReceiver::start().await;
    rx.script([Answer {
        status: 429,
        retry_after: Some("2"),
        delay: Duration::ZERO,
    }]);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        &dir.path().join("cfg"),
        &destination("throttled", &rx.url("/"), 5, "        concurrency: 4\n"),
    );
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();
    assert_eq!(send(addr, "first", r#"{"n":0}"#).await.status(), 202);
    // The lane has taken in the 429 (not merely sent the call) before more events arrive.
    let holds = "ferry_lane_holds_total{flow=\"orders\",destination=\"throttled\"}";
    wait_until(30, "the 429 to hold the lane", || async {
        metric(addr, holds).await >= 1.0
    })
    .await;
    let throttled_at = rx.received()[0].at;
    for i in 1..=5 {
        assert_eq!(
            send(addr, &format!("later{i}"), &format!(r#"{{"n":{i}}}"#))
                .await
                .status(),
            202
        );
    }
    wait_until(60, "all six delivered", || async {
        count_in_state(addr, "throttled", "delivered").await == 6
    })
    .await;
    // Deliveries accepted after the 429 waited for the lane's hold, not only the one that
    // was throttled.
    for r in &rx.received()[1..] {
        let waited = r.at.duration_since(throttled_at);
        assert!(
            waited >= Duration::from_millis(1800),
            "a delivery went out {waited:?} after a 429 with Retry-After: 2"
        );
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spaces_calls_and_per_key_limits_are_independent() {
    let paced_rx = TestReceiver::start().await;
    let tenants_rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dests = [
        destination(
            "paced",
            &paced_rx.url("/"),
            5,
            "        concurrency: 8\n        rate_limit: { requests: 5, per: 1s }\n",
        ),
        // One call per tenant per hour: a tenant's second event can only wait.
        destination(
            "tenants",
            &tenants_rx.url("/"),
            5,
            "        concurrency: 8\n        rate_limit: { requests: 1, per: 1h, key: /tenant }\n",
        ),
    ]
    .concat();
    write_config(&dir.path().join("cfg"), &dests);
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();
    // No call of this test can have been let through before now.
    let started = Instant::now();
    for (i, tenant) in ["a", "a", "b"].iter().enumerate() {
        let body = format!(r#"{{"n":{i},"tenant":"{tenant}"}}"#);
        assert_eq!(send(addr, &format!("r{i}"), &body).await.status(), 202);
    }
    for i in 3..8 {
        let body = format!(r#"{{"n":{i},"tenant":"c"}}"#);
        assert_eq!(send(addr, &format!("r{i}"), &body).await.status(), 202);
    }
    wait_until(60, "all paced calls and each tenant's first", || async {
        count_in_state(addr, "paced", "delivered").await == 8
            && count_in_state(addr, "tenants", "delivered").await == 3
    })
    .await;
    // 5 per second with a burst of 1: however the calls were spread, the limit let at most
    // one through at once and one more every 200 ms, so the 8th arrived at least 7 x 200 ms
    // after the start. (A lower bound: a slow machine only makes it later.)
    let mut paced: Vec<Instant> = paced_rx.received().iter().map(|r| r.at).collect();
    paced.sort();
    assert_eq!(paced.len(), 8);
    let span = paced[7].duration_since(started);
    assert!(
        span >= Duration::from_millis(1300),
        "8 calls at 5/s took {span:?}"
    );
    // Per tenant, one call an hour: one call of each tenant went out, tenant a's other
    // event waits for the limit (for an hour), and that did not hold back tenant b's, sent
    // after it.
    let mut tenants: Vec<String> = tenants_rx
        .received()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["tenant"].as_str().unwrap().to_string()
        })
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["a", "b", "c"]);
    let waits = "ferry_rate_limit_waits_total{flow=\"orders\",destination=\"tenants\"}";
    wait_until(30, "a rate-limit wait counted", || async {
        metric(addr, waits).await >= 1.0
    })
    .await;
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_destination_does_not_delay_the_others() {
    let hanging = TestReceiver::start().await;
    // Answers after the hub's time-out: no call of the hanging lane ends during the test.
    hanging.set_default(Answer {
        status: 200,
        retry_after: None,
        delay: Duration::from_secs(600),
    });
    let healthy = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dests = [
        // Times out after 5 minutes per call, 2 calls at once.
        format!(
            "      hanging:\n        system: dst\n        http: {{ url: \"{}\", timeout: 300s, connect_timeout: 1s }}\n        concurrency: 2\n",
            hanging.url("/")
        ),
        destination("healthy", &healthy.url("/"), 5, "        concurrency: 2\n"),
    ]
    .concat();
    write_config(&dir.path().join("cfg"), &dests);
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();
    for i in 0..30 {
        assert_eq!(send(addr, &format!("h{i}"), "{}").await.status(), 202);
    }
    wait_until(120, "healthy destination delivered everything", || async {
        healthy.count() >= 30
    })
    .await;
    // Every healthy delivery was done while the hanging lane had not finished a single
    // attempt and had no more calls out than its concurrency: its trouble stayed in its own
    // lane.
    let hanging_lane = lane(addr, "hanging").await;
    for state in ["delivered", "retrying", "dead"] {
        assert_eq!(hanging_lane[state], 0, "{state}: {hanging_lane}");
    }
    assert!(
        hanging.count() <= 2,
        "hanging lane exceeded its concurrency: {} calls",
        hanging.count()
    );
    hub.shutdown().await.unwrap();
}

/// A receiver for ordering: records (customer, seq) of every successful call, and answers
/// customer `a` with 503 until every delivery of the other customers has arrived (and at
/// least once). So `a`'s head keeps failing while the others go through, whatever the speed
/// of the machine: the answer depends on what the receiver has seen, not on time.
#[derive(Clone, Default)]
struct OrderedReceiver {
    inner: Arc<Mutex<OrderedInner>>,
}

#[derive(Default)]
struct OrderedInner {
    /// Deliveries of customers other than `a` to see before `a` may succeed.
    others_expected: usize,
    a_refused: usize,
    delivered: Vec<(String, u64)>,
    in_flight: HashMap<String, usize>,
    overlap: bool,
}

async fn ordered_answer(State(rx): State<OrderedReceiver>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap();
    let customer = v["customer"].as_str().unwrap().to_string();
    let seq = v["seq"].as_u64().unwrap();
    {
        let mut g = rx.inner.lock().unwrap();
        let n = g.in_flight.entry(customer.clone()).or_default();
        *n += 1;
        if *n > 1 {
            g.overlap = true;
        }
    }
    // Long enough for a second call of the same key, were one sent, to overlap this one.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut g = rx.inner.lock().unwrap();
    *g.in_flight.get_mut(&customer).unwrap() -= 1;
    let others = g.delivered.iter().filter(|(c, _)| c != "a").count();
    if customer == "a" && (g.a_refused == 0 || others < g.others_expected) {
        g.a_refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    g.delivered.push((customer, seq));
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_ordering_keeps_acceptance_order_and_a_failing_key_blocks_only_itself() {
    let rx = OrderedReceiver::default();
    // Customers b and c have 8 deliveries between them (seq 0..12, every third is a's).
    rx.inner.lock().unwrap().others_expected = 8;
    let app = Router::new()
        .fallback(ordered_answer)
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    // Retries of a's head go on (for far longer than any wait below) until b and c are in.
    write_config(
        &dir.path().join("cfg"),
        &format!(
            "      ordered:\n        system: dst\n        http: {{ url: \"{url}\", timeout: 2s, connect_timeout: 1s }}\n        retry: {{ max_attempts: 10000, initial_backoff: 50ms, max_backoff: 200ms }}\n        concurrency: 8\n        ordering: {{ key: /customer }}\n        circuit_breaker: {{ enabled: false }}\n"
        ),
    );
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();
    let mut expected: HashMap<&str, Vec<u64>> = HashMap::new();
    for seq in 0..12u64 {
        let customer = ["a", "b", "c"][(seq % 3) as usize];
        expected.entry(customer).or_default().push(seq);
        let body = json!({"customer": customer, "seq": seq}).to_string();
        assert_eq!(send(addr, &format!("o{seq}"), &body).await.status(), 202);
    }
    // Were b and c held back behind a's failing head, they would never arrive and a would
    // never succeed: this would time out.
    wait_until(
        120,
        "all delivered (b and c past a's failing head)",
        || async { count_in_state(addr, "ordered", "delivered").await == 12 },
    )
    .await;
    hub.shutdown().await.unwrap();
    let g = rx.inner.lock().unwrap();
    assert!(
        !g.overlap,
        "two deliveries of one key were in flight at once"
    );
    for (customer, seqs) in &expected {
        let got: Vec<u64> = g
            .delivered
            .iter()
            .filter(|(c, _)| c == customer)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(&got, seqs, "customer {customer} out of order");
    }
    // a's head failed at least once, and every delivery of b and c went out before a's
    // first success.
    assert!(g.a_refused >= 1);
    let first_a = g.delivered.iter().position(|(c, _)| c == "a").unwrap();
    let b_and_c_before = g.delivered[..first_a]
        .iter()
        .filter(|(c, _)| c != "a")
        .count();
    assert_eq!(b_and_c_before, 8, "{:?}", g.delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_backlog_refuses_with_503_and_retry_after() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        &dir.path().join("cfg"),
        &destination(
            "bounded",
            &rx.url("/"),
            5,
            "        backlog: { max_pending: 3, retry_after: 7s }\n",
        ),
    );
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();
    admin_post(
        addr,
        "/admin/v1/lanes/orders/bounded/pause",
        json!({"reason": "test"}),
    )
    .await;
    for i in 0..3 {
        assert_eq!(send(addr, &format!("k{i}"), "{}").await.status(), 202);
    }
    // The monitor refreshes a few times a second.
    wait_until(30, "a refusal", || async {
        let r = send(addr, "k-over", "{}").await;
        if r.status() != 503 {
            return false;
        }
        assert_eq!(r.headers()["retry-after"], "7");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "backlog_full", "{body}");
        true
    })
    .await;
    assert_eq!(rx.count(), 0, "a paused lane sent something");
    admin_post(addr, "/admin/v1/lanes/orders/bounded/resume", json!({})).await;
    wait_until(30, "backlog drained and accepting again", || async {
        send(addr, "k-after", "{}").await.status() == 202
    })
    .await;
    let metrics = metrics_text(addr).await;
    assert!(metrics.contains("reason=\"backlog_full\""), "{metrics}");
    assert!(metrics.contains("ferry_backlog_depth{flow=\"orders\",destination=\"bounded\"}"));
    assert!(
        metrics
            .contains("ferry_backlog_oldest_age_seconds{flow=\"orders\",destination=\"bounded\"}")
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_pause_notifies_the_owner_and_resume_delivers_the_backlog() {
    let vendor = TestReceiver::start().await;
    vendor.set_default(Answer::status(500));
    let owner_hook = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    write_config(
        &cfg,
        &destination(
            "autopaused",
            &vendor.url("/"),
            1000,
            "        circuit_breaker: { enabled: false }\n        auto_pause: { after: 1s }\n",
        ),
    );
    // Add the owner notification webhook to the settings.
    let settings = std::fs::read_to_string(cfg.join("ferry.yaml")).unwrap();
    let settings = settings.replace(
        "settings:\n",
        &format!(
            "settings:\n  notifications:\n    webhook: {{ url: \"{}\" }}\n",
            owner_hook.url("/owners")
        ),
    );
    std::fs::write(cfg.join("ferry.yaml"), settings).unwrap();
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();
    assert_eq!(send(addr, "p1", "{}").await.status(), 202);
    wait_until(15, "auto-paused", || async {
        lane(addr, "autopaused").await["gate"]["paused"].is_object()
    })
    .await;
    wait_until(10, "owner notified", || async { owner_hook.count() >= 1 }).await;
    let notice: Value = serde_json::from_slice(&owner_hook.received()[0].body).unwrap();
    assert_eq!(notice["type"], "destination.paused");
    assert_eq!(notice["flow"], "orders");
    assert_eq!(notice["destination"], "autopaused");
    assert_eq!(notice["system_owner"], "team-b");
    assert!(
        notice["reason"].as_str().unwrap().contains("auto-paused"),
        "{notice}"
    );
    // Paused: no more calls, and new events still accumulate durably. A call admitted just
    // before the pause may still be going out; once the lane holds no claim, none can.
    wait_until(30, "no delivery in flight", || async {
        count_in_state(addr, "autopaused", "in_flight").await == 0
    })
    .await;
    let calls = vendor.count();
    assert_eq!(send(addr, "p2", "{}").await.status(), 202);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(vendor.count(), calls, "a paused lane kept calling");
    // The vendor is back; an operator resumes.
    vendor.set_default(Answer::status(200));
    let resumed = admin_post(addr, "/admin/v1/lanes/orders/autopaused/resume", json!({})).await;
    assert_eq!(resumed["changed"], true);
    wait_until(10, "backlog delivered", || async {
        count_in_state(addr, "autopaused", "delivered").await == 2
    })
    .await;
    wait_until(10, "resume notified", || async {
        owner_hook.received().iter().any(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["type"] == "destination.resumed"
        })
    })
    .await;
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_survives_a_restart() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    write_config(&cfg, &destination("survivor", &rx.url("/"), 5, ""));
    let hub = start_hub(&cfg, &data).await;
    let addr = hub.addr();
    let paused = admin_post(
        addr,
        "/admin/v1/lanes/orders/survivor/pause",
        json!({"reason": "vendor migration"}),
    )
    .await;
    assert_eq!(paused["changed"], true);
    assert_eq!(send(addr, "s1", "{}").await.status(), 202);
    hub.shutdown().await.unwrap();

    let hub = start_hub(&cfg, &data).await;
    let addr = hub.addr();
    let l = lane(addr, "survivor").await;
    assert_eq!(l["gate"]["paused"]["reason"], "vendor migration", "{l}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 0);
    admin_post(addr, "/admin/v1/lanes/orders/survivor/resume", json!({})).await;
    wait_until(10, "delivered after resume", || async { rx.count() == 1 }).await;
    hub.shutdown().await.unwrap();
}

/// The lane's `ferry_deliveries_claimed_at_ingress_total`.
async fn claimed_at_ingress(hub: std::net::SocketAddr, destination: &str) -> u64 {
    let series = format!(
        "ferry_deliveries_claimed_at_ingress_total{{flow=\"orders\",destination=\"{destination}\"}} "
    );
    metrics_text(hub)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A lane with room takes new deliveries straight from ingress (claimed in the append);
/// a paused lane does not: they wait in the store and go out after the resume. Either way
/// each arrives once, under its delivery id, and a failed one still retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_go_straight_to_a_lane_with_room_and_through_the_store_otherwise() {
    let rx = TestReceiver::start().await;
    // The third delivery fails once, then succeeds.
    rx.script([
        Answer::status(200),
        Answer::status(200),
        Answer::status(503),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    write_config(&cfg, &destination("direct", &rx.url("/"), 5, ""));
    let hub = start_hub(&cfg, &data).await;
    let addr = hub.addr();
    for i in 0..5 {
        assert_eq!(send(addr, &format!("d{i}"), "{}").await.status(), 202);
    }
    wait_until(10, "five delivered", || async {
        count_in_state(addr, "direct", "delivered").await == 5
    })
    .await;
    assert_eq!(claimed_at_ingress(addr, "direct").await, 5);
    assert_eq!(rx.count(), 6, "five deliveries and one retry");

    admin_post(addr, "/admin/v1/lanes/orders/direct/pause", json!({})).await;
    for i in 5..8 {
        assert_eq!(send(addr, &format!("d{i}"), "{}").await.status(), 202);
    }
    assert_eq!(count_in_state(addr, "direct", "pending").await, 3);
    assert_eq!(
        claimed_at_ingress(addr, "direct").await,
        5,
        "paused: through the store"
    );
    admin_post(addr, "/admin/v1/lanes/orders/direct/resume", json!({})).await;
    wait_until(10, "all eight delivered", || async {
        count_in_state(addr, "direct", "delivered").await == 8
    })
    .await;
    let ids: std::collections::HashSet<String> = rx
        .received()
        .iter()
        .filter_map(|r| {
            r.headers
                .get("webhook-id")?
                .to_str()
                .ok()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(ids.len(), 8, "each delivery under its own webhook-id");
    hub.shutdown().await.unwrap();
}

/// Run the `ferry` binary against the hub's admin API.
async fn ferry_cli(hub: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args)
        .args(["--url", &format!("http://{hub}"), "--token", ADMIN_TOKEN]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pause_and_resume_from_the_command_line() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        &dir.path().join("cfg"),
        &destination("cli", &rx.url("/"), 5, ""),
    );
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();

    let (ok, out) = ferry_cli(addr, &["pause", "orders", "cli", "--reason", "migration"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("paused orders/cli"), "{out}");
    assert_eq!(send(addr, "c1", "{}").await.status(), 202);
    let (ok, out) = ferry_cli(addr, &["status"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("paused"), "{out}");
    assert!(out.contains("migration"), "{out}");
    let (ok, out) = ferry_cli(addr, &["status", "--json"]).await;
    assert!(ok, "{out}");
    let lanes: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(lanes[0]["gate"]["breaker"], "closed");
    assert_eq!(lanes[0]["pending"], 1);

    let (ok, out) = ferry_cli(addr, &["resume", "orders", "cli"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("resumed orders/cli"), "{out}");
    wait_until(10, "delivered after resume", || async { rx.count() == 1 }).await;
    let (ok, out) = ferry_cli(addr, &["pause", "orders", "nope"]).await;
    assert!(!ok, "pausing an unknown lane succeeded: {out}");
    assert!(out.contains("no delivery lane orders/nope"), "{out}");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_every_lane_figure_with_flow_and_destination_labels() {
    let rx = TestReceiver::start().await;
    rx.script([Answer::status(503)]);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        &dir.path().join("cfg"),
        &destination("scraped", &rx.url("/"), 5, ""),
    );
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();
    assert_eq!(send(addr, "m1", "{}").await.status(), 202);
    assert_eq!(send(addr, "m1", "{}").await.status(), 200);
    let bad = client()
        .post(format!("http://{addr}/ingest/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    wait_until(10, "delivered", || async {
        count_in_state(addr, "scraped", "delivered").await == 1
    })
    .await;
    let lane = "flow=\"orders\",destination=\"scraped\"";
    let wanted = [
        "ferry_ingress_received_total{flow=\"orders\"}".to_string(),
        "ferry_ingress_accepted_total{flow=\"orders\",outcome=\"accepted\"}".to_string(),
        "ferry_ingress_accepted_total{flow=\"orders\",outcome=\"duplicate\"}".to_string(),
        "ferry_ingress_rejected_total{flow=\"orders\",reason=\"signature_missing\"}".to_string(),
        format!("ferry_delivery_attempts_total{{{lane},outcome=\"retry\"}} 1"),
        format!("ferry_delivery_attempts_total{{{lane},outcome=\"delivered\"}} 1"),
        format!("ferry_delivery_in_flight{{{lane}}} 0"),
        format!("ferry_delivery_attempt_duration_seconds_bucket{{{lane},le=\""),
        format!("ferry_backlog_depth{{{lane}}} 0"),
        format!("ferry_backlog_oldest_age_seconds{{{lane}}} 0"),
        format!("ferry_breaker_state{{{lane}}} 0"),
        format!("ferry_lane_paused{{{lane}}} 0"),
        "ferry_store_commits_total ".to_string(),
        "ferry_store_commands_total ".to_string(),
    ];
    // The backlog gauges follow the store a few times a second: wait for them to catch up.
    wait_until(30, "every lane figure on /metrics", || async {
        let m = metrics_text(addr).await;
        wanted.iter().all(|want| m.contains(want.as_str()))
    })
    .await;
    let m = metrics_text(addr).await;
    for want in &wanted {
        assert!(m.contains(want.as_str()), "missing `{want}` in:\n{m}");
    }
    hub.shutdown().await.unwrap();
}
