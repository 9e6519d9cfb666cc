//! Logs you can keep, through the binary: `settings.logs` writes JSON lines to a file that
//! rotates by size and keeps `keep_files` rotated files; every line about an event carries
//! its trace id; and at every level (`RUST_LOG=trace`) no secret of the config and no
//! classified value of an event reaches the log, whatever happens to the event.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

const BEARER: &str = "dst-bearer-token-7f3c9a1e5b2d4f6a8c0e";
const METRICS_TOKEN: &str = "metrics-token-2b4d6f8a0c1e3g5i7k9m1o3q";
const HASH_KEY: &str = "log-test-hash-key-0123456789abcdef012345";
/// 32 bytes, base64.
const KEK: &str = "bG9nLXRlc3Qta2VrLTAxMjM0NTY3ODlhYmNkZWYwMTI=";
const EMAIL: &str = "jane.zqx-classified@example.org";
const NAME: &str = "Qwzyx Classifiedname";
/// A classified field's value that breaks its schema (a phone number that is not one).
const BAD_PHONE: &str = "Qwzyx Phone-Secret";
const TRACE: &str = "5cf92f3577b34da6a3ce929d0e0e4799";

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["type", "customer"],
  "properties": {
    "type": { "type": "string" },
    "customer": {
      "type": "object",
      "properties": {
        "email": { "type": "string", "x-ferry-category": "user.contact.email", "x-ferry-subject": true },
        "name": { "type": "string", "x-ferry-category": "user.name" },
        "phone": { "type": "string", "pattern": "^[0-9+ ]+$", "x-ferry-category": "user.contact.phone_number" }
      }
    }
  }
}"#;

fn write_logging_config(cfg: &Path, url: &str, logs: &Path) {
    write_config_with(
        cfg,
        Some("/type"),
        "    steps:\n      - validate: {}\n",
        &format!(
            "      crm:\n        system: dst\n        http:\n          url: {url}\n          timeout: 2s\n          connect_timeout: 1s\n          auth: {{ bearer: {{ token: {{ file: bearer }} }} }}\n        retry: {{ max_attempts: 2, initial_backoff: 20ms, max_backoff: 50ms }}\n"
        ),
    );
    write_schemas(cfg, &[("order.created", "schemas/order.json", SCHEMA)]);
    std::fs::write(cfg.join("bearer"), BEARER).unwrap();
    std::fs::write(cfg.join("metrics-token"), METRICS_TOKEN).unwrap();
    std::fs::write(cfg.join("hash-key"), HASH_KEY).unwrap();
    std::fs::write(cfg.join("kek"), KEK).unwrap();
    let path = cfg.join("ferry.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "settings:\n",
        &format!(
            "settings:\n  logs:\n    format: json\n    to: file\n    file: {{ path: {}, max_bytes: 4096, keep_files: 2 }}\n  metrics: {{ token: {{ file: metrics-token }} }}\n  protection:\n    hash_key: {{ file: hash-key }}\n    keys:\n      - {{ id: k1, key: {{ file: kek }} }}\n",
            logs.join("ferry.log").display()
        ),
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_files_rotate_carry_trace_ids_and_never_hold_a_secret_or_a_classified_value() {
    let rx = TestReceiver::start().await;
    // The destination fails twice first (the failures are logged about).
    rx.script([Answer::status(500), Answer::status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    let logs = dir.path().join("logs");
    write_logging_config(&cfg, &rx.url("/crm"), &logs);
    let (child, hub) = spawn_ferry_env(
        &cfg,
        &dir.path().join("data"),
        &dir.path().join("stdout.log"),
        &[("RUST_LOG", "trace")],
    );
    let mut child = KillOnDrop(child);

    let event = |n: u32| {
        json!({"type": "order.created", "customer": {"email": EMAIL, "name": NAME, "phone": "+49 30 1234"}, "n": n})
            .to_string()
    };
    // Accepted with a caller's trace context; delivered after two failures (dead for the
    // first event: two attempts allowed), then delivered.
    for n in 0..6 {
        let body = event(n);
        let id = format!("evt_log_{n}");
        let mut request = client()
            .post(format!("http://{hub}/ingest/orders"))
            .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
            .body(body.clone());
        for (k, v) in signed(&id, &body) {
            request = request.header(k, v);
        }
        assert_eq!(request.send().await.unwrap().status(), 202);
    }
    // Refused: a wrong signature, and a schema violation on a classified field.
    let body = event(99);
    let res = client()
        .post(format!("http://{hub}/ingest/orders"))
        .header("webhook-id", "evt_bad")
        .header("webhook-timestamp", now_secs().to_string())
        .header("webhook-signature", format!("v1,{}", "A".repeat(44)))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let bad = json!({"type": "order.created", "customer": {"email": EMAIL, "phone": BAD_PHONE}})
        .to_string();
    let mut request = client()
        .post(format!("http://{hub}/ingest/orders"))
        .body(bad.clone());
    for (k, v) in signed("evt_schema", &bad) {
        request = request.header(k, v);
    }
    assert_eq!(request.send().await.unwrap().status(), 422);
    // The operator side: a wrong admin token, the metrics scrape with its token.
    let res = client()
        .get(format!("http://{hub}/admin/v1/lanes"))
        .bearer_auth("not-the-admin-token-but-long-enough-0000")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    let res = client()
        .get(format!("http://{hub}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_until(15, "five deliveries", || async {
        rx.received()
            .iter()
            .filter(|r| r.headers.get("authorization").is_some())
            .count()
            >= 7
    })
    .await;
    stop_gracefully(&mut child.0);

    // Rotation and retention on disk: the active file and at most two rotated ones, none
    // over the size limit.
    let mut files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let rotated: Vec<_> = files.iter().filter(|f| !f.ends_with("ferry.log")).collect();
    assert!(logs.join("ferry.log").exists(), "{files:?}");
    assert_eq!(
        rotated.len(),
        2,
        "trace logging rotated the file, keeping two: {files:?}"
    );
    for file in &files {
        // Over the limit only with a single line longer than it.
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.len() <= 4096 || text.lines().count() == 1, "{file:?}");
    }

    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    // Every line is a JSON object; those about an event carry its trace id.
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let traced: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["trace_id"] == TRACE)
        .collect();
    assert!(!traced.is_empty(), "no line carries the trace id");
    // Every level was on: the attempts' debug lines, refusals, and trace lines.
    for wanted in ["delivery attempt", "webhook refused"] {
        assert!(
            traced.iter().any(|l| l["fields"]["message"] == wanted)
                || lines.iter().any(|l| l["fields"]["message"] == wanted),
            "no `{wanted}` line"
        );
    }
    assert!(lines.iter().any(|l| l["level"] == "TRACE"));
    assert!(
        traced
            .iter()
            .any(|l| l["fields"]["message"] == "delivery attempt"),
        "the attempts' lines carry the event's trace id"
    );
    let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
    let admin = std::fs::read_to_string(cfg.join("admin-token")).unwrap();
    // The redaction guarantee, at trace level.
    for secret in [
        admin.trim(),
        SOURCE_SECRET,
        SOURCE_SECRET.trim_start_matches("whsec_"),
        BEARER,
        METRICS_TOKEN,
        HASH_KEY,
        KEK,
        EMAIL,
        NAME,
        BAD_PHONE,
    ] {
        assert!(!text.contains(secret), "`{secret}` is in the log files");
        assert!(!stdout.contains(secret), "`{secret}` is on stdout/stderr");
    }
}
