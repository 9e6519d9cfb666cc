//! A destination's `enrich` through the real server, against a local "CRM" answering
//! customer lookups: the answer merged into the event before the `map`, cached by URL (a
//! second event for the same customer makes no request), a slow or failing lookup retried
//! until it succeeds, a `404` dead-lettered, and the egress guard applied to lookups.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use common::*;
use ferry::enrich::{EnrichPlan, Enricher, Lookups};
use ferry_delivery::EgressPolicy;
use ferry_store::{ClaimedDelivery, DeliveryId, EventId, LaneKey};
use serde_json::{Value, json};

const CRM_TOKEN: &str = "crm-secret-token";

/// One lookup the CRM saw: the customer id and the `authorization` header.
#[derive(Debug, Clone)]
struct Lookup {
    customer: String,
    authorization: Option<String>,
}

#[derive(Default)]
struct CrmInner {
    seen: Vec<Lookup>,
    /// Answers to come before the normal ones: a delay, or a status.
    script: Vec<Scripted>,
}

#[derive(Clone, Copy)]
enum Scripted {
    Slow(Duration),
    Status(u16),
}

/// A CRM on loopback: `GET /customers/{id}` answers `c1` and `c2`, `c3` with a key twice,
/// `404` for anyone else.
#[derive(Clone)]
struct Crm {
    addr: SocketAddr,
    inner: Arc<Mutex<CrmInner>>,
}

impl Crm {
    async fn start() -> Self {
        let inner = Arc::new(Mutex::new(CrmInner::default()));
        let app = Router::new()
            .route("/customers/{id}", axum::routing::get(customer))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Crm { addr, inner }
    }

    fn url_template(&self) -> String {
        format!("http://{}/customers/{{{{ event.customer.id }}}}", self.addr)
    }

    fn script(&self, answers: &[Scripted]) {
        self.inner.lock().unwrap().script.extend_from_slice(answers);
    }

    fn seen(&self) -> Vec<Lookup> {
        self.inner.lock().unwrap().seen.clone()
    }

    fn lookups_of(&self, customer: &str) -> usize {
        self.seen()
            .iter()
            .filter(|l| l.customer == customer)
            .count()
    }
}

async fn customer(
    State(inner): State<Arc<Mutex<CrmInner>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let scripted = {
        let mut g = inner.lock().unwrap();
        g.seen.push(Lookup {
            customer: id.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        (!g.script.is_empty()).then(|| g.script.remove(0))
    };
    match scripted {
        Some(Scripted::Status(status)) => {
            return (StatusCode::from_u16(status).unwrap(), "scripted").into_response();
        }
        Some(Scripted::Slow(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    match id.as_str() {
        "c1" => Json(json!({"name": "Ada Lovelace", "tier": "gold"})).into_response(),
        "c2" => Json(json!({"name": "Grace Hopper", "tier": "silver"})).into_response(),
        // Two tiers: which one would the `map` read?
        "c3" => (
            [("content-type", "application/json")],
            r#"{"name": "Alan Turing", "tier": "bronze", "tier": "gold"}"#,
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "no such customer").into_response(),
    }
}

/// A hub whose `orders` flow delivers to `rx` through destination `sink` with an `enrich`
/// lookup at `crm` (timeout `timeout`). Loopback is allowed for this destination only
/// (`http.egress_allow`), not hub-wide: the lookup obeys the destination's allow-list.
async fn hub(
    crm: &Crm,
    rx: &TestReceiver,
    timeout: &str,
) -> (tempfile::TempDir, ferry::hub::RunningHub) {
    hub_with(crm, rx, timeout, "").await
}

/// [`hub`] with more of the destination (`extra`, indented 8 spaces).
async fn hub_with(
    crm: &Crm,
    rx: &TestReceiver,
    timeout: &str,
    extra: &str,
) -> (tempfile::TempDir, ferry::hub::RunningHub) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let destination = format!(
        "      sink:
        system: dst
        http:
          url: {rx}
          timeout: 2s
          connect_timeout: 1s
          egress_allow: [127.0.0.0/8]
        retry:
          max_attempts: 5
          initial_backoff: 20ms
          max_backoff: 100ms
        enrich:
          url: \"{crm}\"
          into: customer
          timeout: {timeout}
          cache: 5m
          headers:
            authorization: {{ file: crm-token }}
        map: |
          .customer_name = .customer.name
          .tier = .customer.tier
{extra}",
        rx = rx.url("/in"),
        crm = crm.url_template(),
    );
    write_config_with(&cfg, Some("/type"), "", &destination);
    std::fs::write(cfg.join("crm-token"), CRM_TOKEN).unwrap();
    let settings = std::fs::read_to_string(cfg.join("ferry.yaml")).unwrap();
    std::fs::write(
        cfg.join("ferry.yaml"),
        settings.replace("egress_allow: [127.0.0.0/8]", "egress_allow: []"),
    )
    .unwrap();
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    (dir, hub)
}

fn order(n: u32, customer: &str) -> String {
    json!({"type": "order.created", "order_id": n, "customer": {"id": customer}}).to_string()
}

fn bodies(rx: &TestReceiver) -> Vec<Value> {
    rx.received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn attempts(hub: SocketAddr, delivery: &Value) -> Vec<Value> {
    let detail = admin_get(
        hub,
        &format!("/admin/v1/deliveries/{}", delivery["id"].as_str().unwrap()),
    )
    .await;
    detail["attempts"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn lookups_are_merged_before_the_map_and_cached_by_url() {
    let (crm, rx) = (Crm::start().await, TestReceiver::start().await);
    let (_d, hub) = hub(&crm, &rx, "2s").await;

    assert_eq!(
        send(hub.addr(), "msg_1", &order(1, "c1")).await.status(),
        202
    );
    wait_until(10, "the first order delivered", || async {
        rx.count() == 1
    })
    .await;
    assert_eq!(
        send(hub.addr(), "msg_2", &order(2, "c1")).await.status(),
        202
    );
    assert_eq!(
        send(hub.addr(), "msg_3", &order(3, "c2")).await.status(),
        202
    );
    wait_until(10, "three orders delivered", || async { rx.count() == 3 }).await;

    let mut got = bodies(&rx);
    got.sort_by_key(|b| b["order_id"].as_u64());
    // The answer merged into `.customer` (its `id` kept), then the `map` read it.
    assert_eq!(
        got[0],
        json!({
            "type": "order.created",
            "order_id": 1,
            "customer": {"id": "c1", "name": "Ada Lovelace", "tier": "gold"},
            "customer_name": "Ada Lovelace",
            "tier": "gold",
        })
    );
    assert_eq!(got[1]["customer_name"], "Ada Lovelace");
    assert_eq!(got[2]["customer_name"], "Grace Hopper");
    assert_eq!(got[2]["customer"]["tier"], "silver");

    // The second order of `c1` was served from the cache.
    assert_eq!(crm.lookups_of("c1"), 1, "{:?}", crm.seen());
    assert_eq!(crm.lookups_of("c2"), 1, "{:?}", crm.seen());
    assert!(
        crm.seen()
            .iter()
            .all(|l| l.authorization.as_deref() == Some(CRM_TOKEN)),
        "the secret header goes with every lookup"
    );
    let metrics = client()
        .get(format!("http://{}/metrics", hub.addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["hit", "miss"] {
        let series = format!(
            "ferry_enrich_requests_total{{flow=\"orders\",destination=\"sink\",outcome=\"{outcome}\"}}"
        );
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_or_failing_lookup_retries_the_delivery_until_it_succeeds() {
    let (crm, rx) = (Crm::start().await, TestReceiver::start().await);
    // First lookup: far slower than the 300 ms time-out (so that, however late the hub
    // gets to its timer, the answer cannot beat it); second: a 503; then the answer.
    crm.script(&[
        Scripted::Slow(Duration::from_secs(60)),
        Scripted::Status(503),
    ]);
    let (_d, hub) = hub(&crm, &rx, "300ms").await;
    assert_eq!(
        send(hub.addr(), "msg_1", &order(1, "c2")).await.status(),
        202
    );

    wait_until(15, "delivered after two failed lookups", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 1
    })
    .await;
    assert_eq!(rx.count(), 1, "the destination was called once");
    assert_eq!(bodies(&rx)[0]["customer_name"], "Grace Hopper");
    let delivered = &deliveries(hub.addr(), "state=delivered").await[0];
    let tries = attempts(hub.addr(), delivered).await;
    let classes: Vec<&str> = tries
        .iter()
        .map(|a| a["error_class"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        classes,
        ["enrich_failed", "enrich_failed", "ok"],
        "{tries:?}"
    );
    assert!(
        tries.iter().take(2).all(|a| a["status"].is_null()),
        "no call to the destination while the lookup failed: {tries:?}"
    );
    assert_eq!(crm.lookups_of("c2"), 3);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_that_finds_nothing_dead_letters_the_delivery() {
    let (crm, rx) = (Crm::start().await, TestReceiver::start().await);
    let (_d, hub) = hub(&crm, &rx, "2s").await;
    assert_eq!(
        send(hub.addr(), "msg_1", &order(1, "c404")).await.status(),
        202
    );
    wait_until(10, "dead-lettered", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;
    let dead = &deliveries(hub.addr(), "state=dead").await[0];
    let tries = attempts(hub.addr(), dead).await;
    assert_eq!(tries.len(), 1, "not retried: {tries:?}");
    assert_eq!(tries[0]["error_class"], "enrich_not_found");
    assert_eq!(rx.count(), 0, "nothing sent");
    hub.shutdown().await.unwrap();
}

/// An answer with a duplicate key is not usable JSON: the delivery is dead-lettered as
/// `enrich_invalid`, the key named, and nothing is sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_answering_a_duplicate_key_dead_letters_the_delivery() {
    let (crm, rx) = (Crm::start().await, TestReceiver::start().await);
    let (_d, hub) = hub(&crm, &rx, "2s").await;
    assert_eq!(
        send(hub.addr(), "msg_1", &order(1, "c3")).await.status(),
        202
    );
    wait_until(10, "dead-lettered", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;
    let dead = &deliveries(hub.addr(), "state=dead").await[0];
    let tries = attempts(hub.addr(), dead).await;
    assert_eq!(tries.len(), 1, "not retried: {tries:?}");
    assert_eq!(tries[0]["error_class"], "enrich_invalid", "{tries:?}");
    let error = tries[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains(r#"duplicate key "tier""#), "{tries:?}");
    assert_eq!(rx.count(), 0, "nothing sent");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batching_destination_enriches_each_record() {
    let (crm, rx) = (Crm::start().await, TestReceiver::start().await);
    // An hour's linger: only a full batch can be sent during the test.
    let batch = "        batch: { max_items: 4, linger: 1h }\n";
    let (_d, hub) = hub_with(&crm, &rx, "2s", batch).await;
    for (n, customer) in [(1, "c1"), (2, "c2"), (3, "c1"), (4, "c1")] {
        let sent = send(hub.addr(), &format!("msg_{n}"), &order(n, customer)).await;
        assert_eq!(sent.status(), 202);
    }
    wait_until(30, "one batch call", || async { rx.count() == 1 }).await;
    let body: Value = serde_json::from_slice(&rx.received()[0].body).unwrap();
    let records = body.as_array().expect("an array");
    assert_eq!(records.len(), 4);
    for record in records {
        let expected = match record["customer"]["id"].as_str() {
            Some("c1") => "Ada Lovelace",
            _ => "Grace Hopper",
        };
        assert_eq!(record["customer_name"], expected, "{record}");
    }
    // The records were rendered together: the three of `c1` shared one lookup.
    assert_eq!(crm.lookups_of("c1"), 1, "{:?}", crm.seen());
    assert_eq!(crm.lookups_of("c2"), 1, "{:?}", crm.seen());
    hub.shutdown().await.unwrap();
}

fn claimed(payload: Value) -> ClaimedDelivery {
    ClaimedDelivery {
        id: DeliveryId::new(),
        event_id: EventId::new(),
        lane: LaneKey {
            flow: "orders".into(),
            destination: "sink".into(),
        },
        event_type: None,
        received_at: 0,
        headers: Vec::new(),
        payload: Bytes::from(payload.to_string()),
        attempts: 0,
        round_attempts: 0,
        round_started_at: 0,
        clear_payload: None,
    }
}

fn enricher(url: &str, egress: EgressPolicy) -> Enricher {
    let config: ferry_config::EnrichConfig =
        serde_json::from_value(json!({"url": url, "into": "customer"})).unwrap();
    let plan = EnrichPlan::compile(&config).unwrap();
    Enricher::new(
        plan,
        Lookups {
            egress,
            ..Lookups::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_egress_guard_applies_to_lookups() {
    let crm = Crm::start().await;
    let port = crm.addr.port();
    let event = json!({"customer": {"id": "c1"}});
    // Refused: an address literal, and a name that resolves to loopback (at connect time).
    for host in ["127.0.0.1".to_owned(), "localhost".to_owned()] {
        let url = format!("http://{host}:{port}/customers/{{{{ event.customer.id }}}}");
        let public_only = enricher(&url, EgressPolicy::default());
        let mut e = event.clone();
        let err = public_only
            .enrich(&claimed(event.clone()), &mut e)
            .await
            .unwrap_err();
        assert_eq!(err.class, "egress_refused", "{host}: {err}");
        assert!(!err.retryable, "{host}: a refusal is permanent");
        assert_eq!(e, event, "nothing merged");
    }
    assert!(crm.seen().is_empty(), "no lookup reached the CRM");

    // Allowed by the destination's list: the lookup goes through.
    let url = format!("http://127.0.0.1:{port}/customers/{{{{ event.customer.id }}}}");
    let allowed = enricher(&url, EgressPolicy::from_entries(["127.0.0.0/8"]).unwrap());
    let mut e = event.clone();
    allowed.enrich(&claimed(event), &mut e).await.unwrap();
    assert_eq!(e["customer"]["name"], "Ada Lovelace");

    // `ferry validate` refuses a lookup URL the guard would refuse, at its field.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let destination = format!(
        "{}        enrich: {{ url: \"http://10.1.2.3/customers/{{{{ event.customer.id }}}}\", into: customer }}\n",
        http_destination("sink", "https://hooks.example/in", 3)
    );
    write_config_with(&cfg, Some("/type"), "", &destination);
    let errors = ferry_config::load_dir(
        &cfg,
        &ferry_config::LoadOptions {
            resolve_secrets: true,
        },
    )
    .expect_err("refused");
    let at_url = errors
        .errors
        .iter()
        .find(|d| d.field == "flows.orders.destinations.sink.enrich.url")
        .unwrap_or_else(|| panic!("{:#?}", errors.errors));
    assert!(at_url.message.contains("10.1.2.3"), "{}", at_url.message);
}
