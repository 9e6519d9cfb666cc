//! Transforms through the real server: the VRL steps at ingress (`filter`, `route`,
//! `split`), and what a destination receives, rendered when it is sent (`map`, URL, header
//! and body templates, outgoing contracts). Plus `ferry validate` on a broken program.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// A destination with fast retries: `http_extra` goes under `http:` (8-space indent for its
/// keys is added), `extra` under the destination.
fn dest(name: &str, url: &str, http_extra: &[&str], extra: &str) -> String {
    let mut out = format!(
        "      {name}:\n        system: dst\n        http:\n          url: \"{url}\"\n          timeout: 2s\n          connect_timeout: 1s\n"
    );
    for line in http_extra {
        out.push_str(&format!("          {line}\n"));
    }
    out.push_str(
        "        retry:\n          max_attempts: 3\n          initial_backoff: 20ms\n          max_backoff: 100ms\n",
    );
    out.push_str(extra);
    out
}

/// A block of VRL (or text) as a YAML literal block at `indent` spaces under `key`.
fn block(key: &str, indent: usize, text: &str) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!("{pad}{key}: |\n");
    for line in text.lines() {
        out.push_str(&format!("{pad}  {line}\n"));
    }
    out
}

async fn hub(flow_yaml: &str, dests: &str) -> (tempfile::TempDir, ferry::hub::RunningHub) {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(&dir.path().join("cfg"), Some("/type"), flow_yaml, dests);
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    (dir, hub)
}

async fn post(hub: std::net::SocketAddr, id: &str, body: Value) -> (u16, Value) {
    let resp = send(hub, id, &body.to_string()).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn bodies(rx: &TestReceiver) -> Vec<Value> {
    rx.received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_drops_events_without_storing_them() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub(
        "    steps:\n      - filter: .total > 10 ?? false\n",
        &dest("sink", &rx.url("/in"), &[], ""),
    )
    .await;
    let (status, body) = post(hub.addr(), "msg_small", json!({"type": "o", "total": 5})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event_id"], Value::Null, "{body}");
    assert_eq!(body["dropped"], true, "{body}");
    let (status, body) = post(hub.addr(), "msg_big", json!({"type": "o", "total": 50})).await;
    assert_eq!(status, 202, "{body}");
    wait_until(10, "the kept event delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 1
    })
    .await;
    assert_eq!(rx.count(), 1);
    assert_eq!(bodies(&rx)[0]["total"], 50);
    assert_eq!(
        deliveries(hub.addr(), "").await.len(),
        1,
        "the dropped event has no delivery"
    );
    let m = metrics_text(hub.addr()).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("ferry_ingress_dropped_total{flow=\"orders\"}")),
        "{m}"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_failing_at_run_time_is_answered_422_and_nothing_is_stored() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub(
        "    steps:\n      - filter: \"true\"\n      - filter: to_int!(.n) > 1\n",
        &dest("sink", &rx.url("/in"), &[], ""),
    )
    .await;
    let (status, body) = post(hub.addr(), "msg_bad", json!({"type": "o", "n": "many"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "step_failed", "{body}");
    assert_eq!(body["step"]["index"], 1, "{body}");
    assert_eq!(body["step"]["kind"], "filter", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("to_int"), "VRL's message: {detail}");
    assert!(deliveries(hub.addr(), "").await.is_empty());
    // The same event with a number passes.
    let (status, _) = post(hub.addr(), "msg_ok", json!({"type": "o", "n": "7"})).await;
    assert_eq!(status, 202);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn route_delivers_to_matching_destinations_and_always_to_unnamed_ones() {
    let audit = TestReceiver::start().await;
    let big = TestReceiver::start().await;
    let (_d, hub) = hub(
        "    steps:\n      - route:\n          big: .total > 100 ?? false\n",
        &(dest("audit", &audit.url("/a"), &[], "") + &dest("big", &big.url("/b"), &[], "")),
    )
    .await;
    let (status, body) = post(hub.addr(), "msg_1", json!({"type": "o", "total": 5})).await;
    assert_eq!(
        (status, body["deliveries"].as_u64()),
        (202, Some(1)),
        "{body}"
    );
    let (status, body) = post(hub.addr(), "msg_2", json!({"type": "o", "total": 500})).await;
    assert_eq!(
        (status, body["deliveries"].as_u64()),
        (202, Some(2)),
        "{body}"
    );
    wait_until(10, "three deliveries", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 3
    })
    .await;
    assert_eq!(audit.count(), 2);
    assert_eq!(big.count(), 1);
    assert_eq!(bodies(&big)[0]["total"], 500);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn split_makes_one_event_per_line_item_stored_together() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub(
        "    steps:\n      - split: array!(.items)\n",
        &dest("lines", &rx.url("/lines"), &[], ""),
    )
    .await;
    let order = json!({"type": "order", "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}, {"sku": "c", "qty": 3}]});
    let (status, body) = post(hub.addr(), "msg_order", order.clone()).await;
    assert_eq!(status, 202, "{body}");
    let ids = body["event_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 3, "{body}");
    assert_eq!(body["event_id"], ids[0]);
    assert_eq!(body["deliveries"], 3);
    wait_until(10, "three line items", || async { rx.count() == 3 }).await;
    let mut skus: Vec<String> = bodies(&rx)
        .iter()
        .map(|b| b["sku"].as_str().unwrap().to_string())
        .collect();
    skus.sort();
    assert_eq!(skus, ["a", "b", "c"]);
    // Each element keeps its own event, with its parent's type.
    let event = admin_get(
        hub.addr(),
        &format!("/admin/v1/events/{}", ids[1].as_str().unwrap()),
    )
    .await;
    assert!(event.to_string().contains("order"), "{event}");
    // The parent re-sent: every element is a duplicate.
    let (status, body) = post(hub.addr(), "msg_order", order).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], true, "{body}");
    assert_eq!(body["event_ids"], Value::Array(ids.clone()));
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_map_reshapes_what_the_destination_receives() {
    let rx = TestReceiver::start().await;
    let map = block(
        "map",
        8,
        ".customer_id = .customer.id\ndel(.customer)\n.total_cents = to_int!(.total) * 100\ndel(.total)",
    );
    let (_d, hub) = hub("", &dest("crm", &rx.url("/crm"), &[], &map)).await;
    let (status, _) = post(
        hub.addr(),
        "msg_m",
        json!({"type": "o", "customer": {"id": "c1"}, "total": 42}),
    )
    .await;
    assert_eq!(status, 202);
    wait_until(10, "mapped delivery", || async { rx.count() == 1 }).await;
    assert_eq!(
        bodies(&rx)[0],
        json!({"type": "o", "customer_id": "c1", "total_cents": 4200})
    );
    assert_eq!(rx.received()[0].headers["content-type"], "application/json");
    // The store keeps the raw event.
    let d = &deliveries(hub.addr(), "").await[0];
    let event = admin_get(
        hub.addr(),
        &format!("/admin/v1/events/{}", d["event_id"].as_str().unwrap()),
    )
    .await;
    assert!(event.to_string().contains("\"customer\""), "{event}");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_map_failing_at_run_time_dead_letters_and_the_lane_keeps_delivering() {
    let rx = TestReceiver::start().await;
    let map = block("map", 8, ".x = to_int!(.not_a_number)");
    let (_d, hub) = hub("", &dest("sink", &rx.url("/in"), &[], &map)).await;
    post(
        hub.addr(),
        "msg_bad",
        json!({"type": "o", "not_a_number": "abc"}),
    )
    .await;
    post(
        hub.addr(),
        "msg_good",
        json!({"type": "o", "not_a_number": "12"}),
    )
    .await;
    wait_until(10, "one dead, one delivered", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
            && deliveries(hub.addr(), "state=delivered").await.len() == 1
    })
    .await;
    assert_eq!(rx.count(), 1, "the failing mapping made no call");
    assert_eq!(bodies(&rx)[0]["x"], 12);
    let dead = &deliveries(hub.addr(), "state=dead").await[0];
    let detail = admin_get(
        hub.addr(),
        &format!("/admin/v1/deliveries/{}", dead["id"].as_str().unwrap()),
    )
    .await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "not retried: {detail}");
    assert_eq!(attempts[0]["error_class"], "map_failed", "{detail}");
    assert_eq!(attempts[0]["status"], Value::Null, "{detail}");
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(error.contains("to_int"), "VRL's message: {error}");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_after_a_mapping_fix_sends_the_fixed_payload() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    let broken = block("map", 8, ".amount = to_int!(.amount)");
    write_config_with(
        &cfg,
        Some("/type"),
        "",
        &dest("sink", &rx.url("/in"), &[], &broken),
    );
    let hub = start_hub(&cfg, &data).await;
    post(
        hub.addr(),
        "msg_fix",
        json!({"type": "o", "amount": "12.5"}),
    )
    .await;
    wait_until(10, "dead letter", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;
    let id = deliveries(hub.addr(), "state=dead").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    hub.shutdown().await.unwrap();

    let fixed = block("map", 8, ".amount = to_float!(.amount)");
    write_config_with(
        &cfg,
        Some("/type"),
        "",
        &dest("sink", &rx.url("/in"), &[], &fixed),
    );
    let hub = start_hub(&cfg, &data).await;
    admin_post(hub.addr(), "/admin/v1/replay", json!({"delivery_id": id})).await;
    wait_until(10, "replayed and delivered", || async { rx.count() == 1 }).await;
    assert_eq!(bodies(&rx)[0]["amount"], 12.5);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn url_and_header_templates_are_rendered_per_delivery() {
    let rx = TestReceiver::start().await;
    let url = format!("{}/customers/{{{{ event.customer.id }}}}", rx.url(""));
    let (_d, hub) = hub(
        "",
        &dest(
            "crm",
            &url,
            &[
                "headers:",
                "  x-customer: \"{{ event.customer.name | upper }}\"",
                "  x-delivery: \"{{ flow }}/{{ destination }}/{{ delivery_id }}\"",
                "  x-static: plain",
            ],
            "",
        ),
    )
    .await;
    post(
        hub.addr(),
        "msg_u1",
        json!({"type": "o", "customer": {"id": "c-42", "name": "ada"}}),
    )
    .await;
    post(
        hub.addr(),
        "msg_u2",
        json!({"type": "o", "customer": {"id": "a/b?c", "name": "bob"}}),
    )
    .await;
    wait_until(10, "two calls", || async { rx.count() == 2 }).await;
    let mut got: Vec<(String, String)> = rx
        .received()
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.headers["x-customer"].to_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("/customers/a%2Fb%3Fc".to_string(), "BOB".to_string()),
            ("/customers/c-42".to_string(), "ADA".to_string()),
        ],
        "values are percent-encoded into the URL"
    );
    for r in rx.received() {
        let id = r.headers["webhook-id"].to_str().unwrap();
        assert_eq!(r.headers["x-delivery"], format!("orders/crm/{id}").as_str());
        assert_eq!(r.headers["x-static"], "plain");
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_template_sends_a_non_json_body() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub(
        "",
        &dest(
            "chat",
            &rx.url("/chat"),
            &[
                "headers:",
                "  content-type: application/x-www-form-urlencoded",
                "body: \"text={{ event.message | urlencode }}&channel=ops\"",
            ],
            "",
        ),
    )
    .await;
    post(
        hub.addr(),
        "msg_b",
        json!({"type": "o", "message": "disk full!"}),
    )
    .await;
    wait_until(10, "the chat call", || async { rx.count() == 1 }).await;
    let r = &rx.received()[0];
    assert_eq!(&r.body[..], b"text=disk%20full%21&channel=ops");
    assert_eq!(
        r.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batching_destination_maps_each_record_and_dead_letters_only_the_failures() {
    let rx = TestReceiver::start().await;
    let map = block("map", 8, ".n = to_int!(.n)\ndel(.type)");
    let (_d, hub) = hub(
        "",
        &dest(
            "bulk",
            &rx.url("/bulk"),
            &[],
            // An hour's linger: the three records go in one call however slowly they came.
            &(map + "        batch: { max_items: 3, linger: 1h }\n"),
        ),
    )
    .await;
    for (id, n) in [("msg_b1", "1"), ("msg_b2", "two"), ("msg_b3", "3")] {
        post(hub.addr(), id, json!({"type": "o", "n": n})).await;
    }
    wait_until(10, "two delivered, one dead", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 2
            && deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;
    assert_eq!(rx.count(), 1, "one call for the records that mapped");
    assert_eq!(bodies(&rx)[0], json!([{"n": 1}, {"n": 3}]));
    let dead = &deliveries(hub.addr(), "state=dead").await[0];
    assert!(
        dead["last_error"].as_str().unwrap().contains("to_int"),
        "{dead}"
    );
    hub.shutdown().await.unwrap();
}

const CUSTOMER_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "email"],
  "properties": {
    "id": {"type": "string"},
    "email": {"type": "string"}
  }
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn outgoing_contracts_dead_letter_or_warn() {
    let strict = TestReceiver::start().await;
    let lenient = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let map = block("map", 8, ".id = .customer_id\ndel(.customer_id)");
    write_config_with(
        &cfg,
        Some("/type"),
        "",
        &(dest(
            "strict",
            &strict.url("/s"),
            &[],
            &(map.clone() + "        contract: { schema: crm.customer }\n"),
        ) + &dest(
            "lenient",
            &lenient.url("/l"),
            &[],
            &(map + "        contract: { schema: crm.customer, on_violation: warn }\n"),
        )),
    );
    write_schemas(
        &cfg,
        &[("crm.customer", "schemas/crm.customer.json", CUSTOMER_SCHEMA)],
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    // No email: breaks the contract.
    post(
        hub.addr(),
        "msg_c1",
        json!({"type": "c", "customer_id": "c1"}),
    )
    .await;
    // Complete: both send it.
    post(
        hub.addr(),
        "msg_c2",
        json!({"type": "c", "customer_id": "c2", "email": "a@example.com"}),
    )
    .await;
    wait_until(10, "contract outcomes", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
            && deliveries(hub.addr(), "state=delivered").await.len() == 3
    })
    .await;
    assert_eq!(strict.count(), 1, "the violating payload was not sent");
    assert_eq!(bodies(&strict)[0]["id"], "c2");
    assert_eq!(lenient.count(), 2, "warn sends anyway");
    let dead = &deliveries(hub.addr(), "state=dead").await[0];
    assert_eq!(dead["lane"]["destination"], "strict", "{dead}");
    let detail = admin_get(
        hub.addr(),
        &format!("/admin/v1/deliveries/{}", dead["id"].as_str().unwrap()),
    )
    .await;
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["error_class"], "contract_violation", "{detail}");
    let error = attempt["error"].as_str().unwrap();
    assert!(
        error.contains("crm.customer") && error.contains("email"),
        "{error}"
    );
    let m = metrics_text(hub.addr()).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("ferry_contract_violations_total{")
                && l.contains("destination=\"lenient\"")),
        "{m}"
    );
    hub.shutdown().await.unwrap();
}

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

fn validate(dir: &Path) -> (bool, String) {
    let out = ferry()
        .arg("validate")
        .arg("--skip-secrets")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn ferry_validate_locates_a_bad_program_and_shows_vrls_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    // Line 9 of flows/orders.yaml holds `.total = to_int(.total)` (fallible, unhandled).
    let map = block("map", 8, ".id = .customer.id\n.total = to_int(.total)");
    write_config_with(
        dir.path(),
        Some("/type"),
        "",
        &dest("crm", "https://crm.example.com/in", &[], &map),
    );
    let text = std::fs::read_to_string(dir.path().join("flows/orders.yaml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains(".total = to_int(.total)"))
        .unwrap()
        + 1;
    let (ok, out) = validate(dir.path());
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("flows/orders.yaml:{line}:")),
        "not located at line {line}:\n{out}"
    );
    assert!(out.contains("flows.orders.destinations.crm.map"), "{out}");
    assert!(out.contains("line 2, column 10 of the program"), "{out}");
    assert!(out.contains("error[E103]"), "VRL's own diagnostic:\n{out}");

    // A route naming a destination the flow does not have; a template that does not parse.
    let dir = tempfile::tempdir().unwrap();
    write_config_with(
        dir.path(),
        Some("/type"),
        "    steps:\n      - route:\n          crn: \"true\"\n",
        &dest("crm", "https://crm.example.com/c/{{ event.id }", &[], ""),
    );
    let (ok, out) = validate(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("`route` names `crn`"), "{out}");
    assert!(out.contains("did you mean `crm`?"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    write_config_with(
        dir.path(),
        Some("/type"),
        "",
        &dest("crm", "https://crm.example.com/c/{{ event.id }", &[], ""),
    );
    let (ok, out) = validate(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("the URL template does not compile"), "{out}");
}
