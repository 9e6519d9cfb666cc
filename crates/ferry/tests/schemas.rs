//! The `validate` step through the real server: violations answered `422` with every
//! pointer and nothing stored, unknown types accepted or refused, `$ref` between config
//! schemas; and `ferry validate` on schema problems.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const ORDER: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["type", "order_id", "customer"],
  "properties": {
    "type": { "type": "string" },
    "order_id": { "type": "integer" },
    "customer": { "$ref": "customer.json" }
  }
}"#;

const CUSTOMER: &str = r#"{
  "$id": "https://schemas.example.com/customer.json",
  "type": "object",
  "required": ["email"],
  "properties": {
    "email": { "type": "string", "format": "email",
               "x-ferry-category": "user.contact.email", "x-ferry-subject": true }
  }
}"#;

/// A hub whose `orders` flow validates by event type (`/type`) with `unknown_type`.
async fn hub_with(unknown_type: &str) -> (tempfile::TempDir, TestReceiver, ferry::hub::RunningHub) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let rx = TestReceiver::start().await;
    write_config_with(
        &cfg,
        Some("/type"),
        &format!("    steps:\n      - validate: {{ unknown_type: {unknown_type} }}\n"),
        &http_destination("sink", &rx.url("/in"), 3),
    );
    write_schemas(
        &cfg,
        &[
            ("order.created", "schemas/order.json", ORDER),
            ("customer", "schemas/customer.json", CUSTOMER),
        ],
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    (dir, rx, hub)
}

async fn problem(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_violation_lists_every_pointer_and_nothing_is_stored() {
    let (_d, rx, hub) = hub_with("accept").await;
    let body = r#"{"type": "order.created", "order_id": "seven", "customer": {"email": "nope"}}"#;
    let resp = send(hub.addr(), "msg_bad", body).await;
    let problem = problem(resp, 422, "schema_violation").await;
    let mut pointers: Vec<&str> = problem["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pointer"].as_str().unwrap())
        .collect();
    pointers.sort();
    assert_eq!(pointers, ["/customer/email", "/order_id"], "{problem}");
    assert!(
        problem["violations"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("2 violations"),
        "{problem}"
    );
    assert!(deliveries(hub.addr(), "flow=orders").await.is_empty());
    let text = metrics_text(hub.addr()).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("ferry_ingress_rejected_total")
                && l.contains("reason=\"schema_violation\"")
                && l.contains("flow=\"orders\"")),
        "rejection not counted:\n{text}"
    );

    // The same event made valid is accepted and delivered.
    let good =
        r#"{"type": "order.created", "order_id": 7, "customer": {"email": "a@example.com"}}"#;
    assert_eq!(send(hub.addr(), "msg_good", good).await.status(), 202);
    wait_until(30, "delivery", || async { rx.count() == 1 }).await;
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_types_are_accepted_or_refused_as_configured() {
    let (_d, _rx, hub) = hub_with("accept").await;
    let body = r#"{"type": "order.shipped", "anything": true}"#;
    assert_eq!(send(hub.addr(), "msg_1", body).await.status(), 202);
    let untyped = r#"{"no_type": 1}"#;
    assert_eq!(send(hub.addr(), "msg_2", untyped).await.status(), 202);
    hub.shutdown().await.unwrap();

    let (_d, _rx, hub) = hub_with("reject").await;
    let resp = send(hub.addr(), "msg_1", body).await;
    let refused = problem(resp, 422, "unknown_event_type").await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("order.shipped"),
        "{refused}"
    );
    let resp = send(hub.addr(), "msg_2", untyped).await;
    problem(resp, 422, "unknown_event_type").await;
    assert!(deliveries(hub.addr(), "flow=orders").await.is_empty());
    // A known type is still validated and accepted.
    let good =
        r#"{"type": "order.created", "order_id": 7, "customer": {"email": "a@example.com"}}"#;
    assert_eq!(send(hub.addr(), "msg_3", good).await.status(), 202);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_schema_applies_whatever_the_type() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let rx = TestReceiver::start().await;
    write_config_with(
        &cfg,
        None,
        "    steps:\n      - validate: { schema: customer }\n",
        &http_destination("sink", &rx.url("/in"), 3),
    );
    write_schemas(&cfg, &[("customer", "schemas/customer.json", CUSTOMER)]);
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let resp = send(hub.addr(), "m1", r#"{"email": 5}"#).await;
    let problem = problem(resp, 422, "schema_violation").await;
    assert_eq!(problem["violations"][0]["pointer"], "/email");
    assert_eq!(
        send(hub.addr(), "m2", r#"{"email": "x@example.com"}"#)
            .await
            .status(),
        202
    );
    hub.shutdown().await.unwrap();
}

fn ferry_validate(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("validate")
        .arg(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn ferry_validate_accepts_refs_between_config_schemas() {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(
        dir.path(),
        Some("/type"),
        "    steps:\n      - validate: {}\n",
        &http_destination("sink", "http://127.0.0.1:9/in", 3),
    );
    write_schemas(
        dir.path(),
        &[
            ("order.created", "schemas/order.json", ORDER),
            ("customer", "schemas/customer.json", CUSTOMER),
        ],
    );
    // The customer's email is classified: the receiving system's policy must allow it.
    let settings = std::fs::read_to_string(dir.path().join("ferry.yaml")).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        settings.replace(
            "dst: { owner: team-b }",
            "dst: { owner: team-b, policy: { data_use: essential.service, receives: [user.contact.email] } }",
        ),
    )
    .unwrap();
    let (ok, text) = ferry_validate(dir.path());
    assert!(ok, "{text}");
}

#[test]
fn ferry_validate_reports_schema_problems_in_their_files() {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(
        dir.path(),
        Some("/type"),
        "    steps:\n      - validate: { schema: order.creatd }\n",
        &http_destination("sink", "http://127.0.0.1:9/in", 3),
    );
    let remote = "{\n  \"properties\": {\n    \"c\": { \"$ref\": \"https://example.com/customer.json\" }\n  }\n}\n";
    let annotated = "{\n  \"properties\": {\n    \"email\": { \"x-ferry-category\": \"contact.email\" }\n  }\n}\n";
    write_schemas(
        dir.path(),
        &[
            ("order.created", "schemas/order.json", remote),
            ("customer", "schemas/customer.json", annotated),
        ],
    );

    // The undeclared name is a YAML error, reported first (schema files are read once the
    // YAML is valid).
    let (ok, text) = ferry_validate(dir.path());
    assert!(!ok);
    assert!(
        text.contains("flows.orders.steps.0.validate.schema")
            && text.contains("did you mean `order.created`?"),
        "{text}"
    );

    write_config_with(
        dir.path(),
        Some("/type"),
        "    steps:\n      - validate: { schema: order.created }\n",
        &http_destination("sink", "http://127.0.0.1:9/in", 3),
    );
    let (ok, text) = ferry_validate(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("schemas/order.json:3:20: #/properties/c/$ref")
            && text.contains("is refused"),
        "remote $ref not refused at its place:\n{text}"
    );
    assert!(
        text.contains("schemas/customer.json:3:36: #/properties/email/x-ferry-category")
            && text.contains("fideslang top-level category"),
        "malformed annotation not reported at its place:\n{text}"
    );
    assert!(text.contains("2 errors"), "{text}");
}

#[test]
fn serve_refuses_to_start_on_schema_problems() {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(
        dir.path(),
        Some("/type"),
        "",
        &http_destination("sink", "http://127.0.0.1:9/in", 3),
    );
    write_schemas(dir.path(), &[("x", "x.json", "{ not json")]);
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config"])
        .arg(dir.path())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("x.json:1:3") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
}

/// An amount between 0 and 100.
const BOUNDED_AMOUNT: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["amount"],
  "properties": { "amount": { "type": "integer", "minimum": 0, "maximum": 100 } }
}"#;

/// The value of the series `name{labels…}` on the hub's `/metrics` page (0 when absent).
async fn counter(hub: std::net::SocketAddr, name: &str, labels: &[&str]) -> u64 {
    metrics_text(hub)
        .await
        .lines()
        .find(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Found by a security review: with the key repeated, validation read the last value (`5`)
/// and let the event through with the raw body, so a receiver keeping the first value got
/// `-999999`. A duplicate key is refused before any step reads the body.
#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_key_cannot_slip_past_validation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let rx = TestReceiver::start().await;
    write_config_with(
        &cfg,
        None,
        "    steps:\n      - validate: { schema: payment }\n",
        &http_destination("sink", &rx.url("/in"), 3),
    );
    write_schemas(&cfg, &[("payment", "schemas/payment.json", BOUNDED_AMOUNT)]);
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();
    let rejected = ["flow=\"orders\"", "reason=\"malformed_json\""];

    // Out of bounds alone: a schema violation.
    let resp = send(addr, "m1", r#"{"amount":-999999}"#).await;
    problem(resp, 422, "schema_violation").await;

    let before = counter(addr, "ferry_ingress_rejected_total", &rejected).await;
    let resp = send(addr, "m2", r#"{"amount":-999999,"amount":5}"#).await;
    let refused = problem(resp, 400, "malformed_json").await;
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.contains(r#"duplicate key "amount" in the object at "" (the root)"#),
        "{refused}"
    );
    assert_eq!(refused["key"], "amount");
    assert_eq!(refused["pointer"], "");
    assert_eq!(refused["flow"], "orders");
    assert_eq!(
        counter(addr, "ferry_ingress_rejected_total", &rejected).await,
        before + 1
    );

    // Nested, and spelled with an escape: refused the same way.
    let resp = send(addr, "m3", r#"{"amount":5,"meta":{"a":1,"\u0061":2}}"#).await;
    let refused = problem(resp, 400, "malformed_json").await;
    assert_eq!(refused["key"], "a");
    assert_eq!(refused["pointer"], "/meta");

    // Nothing was stored or delivered; a valid event still is.
    assert!(deliveries(addr, "flow=orders").await.is_empty());
    assert_eq!(send(addr, "m4", r#"{"amount":5}"#).await.status(), 202);
    wait_until(5, "the valid event delivered", || async { rx.count() == 1 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 1, "a refused event reached the receiver");
    assert_eq!(&rx.received()[0].body[..], br#"{"amount":5}"#);
    hub.shutdown().await.unwrap();
}
