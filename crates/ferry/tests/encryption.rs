//! Encryption at rest through the real `ferry` binary and a real SQLite store: classified
//! fields never reach the store files in clear (the database and its WAL, read as bytes)
//! while deliveries carry them; erasure of one subject nulls its fields and leaves others
//! readable; key rotation under load loses nothing; bad keys refuse to start.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::{Value, json};

const HASH_KEY: &str = "test-hash-key-0123456789abcdef0123456789abcdef";

const ORDER_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["type", "order_id", "customer"],
  "properties": {
    "type": { "type": "string" },
    "order_id": { "type": "string" },
    "customer": {
      "type": "object",
      "properties": {
        "email": { "type": "string", "x-ferry-category": "user.contact.email", "x-ferry-subject": true },
        "name": { "type": "string", "x-ferry-category": "user.name" }
      }
    },
    "lines": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": { "iban": { "type": "string", "x-ferry-category": "user.financial.bank_account" } }
      }
    }
  }
}"#;

/// The base64 text of KEK `id` (32 bytes derived from the id).
fn kek(id: &str) -> String {
    let mut bytes = [0u8; 32];
    for (i, b) in id.bytes().cycle().take(32).enumerate() {
        bytes[i] = b.wrapping_add(i as u8);
    }
    STANDARD.encode(bytes)
}

/// A config dir: the `orders` flow validating `order.created`, one HTTP destination at `url`,
/// encryption at rest with the KEKs `keys` (current first; none: encryption off).
fn write_encrypted_config(cfg: &Path, url: &str, keys: &[&str]) {
    write_config_with(
        cfg,
        Some("/type"),
        "    steps:\n      - validate: {}\n",
        &http_destination("sink", url, 5),
    );
    write_schemas(
        cfg,
        &[("order.created", "schemas/order.json", ORDER_SCHEMA)],
    );
    set_keys(cfg, keys);
}

/// Rewrite the `settings.protection` of `cfg` to list `keys`.
fn set_keys(cfg: &Path, keys: &[&str]) {
    std::fs::write(cfg.join("hash-key"), HASH_KEY).unwrap();
    let mut protection = String::new();
    if !keys.is_empty() {
        protection.push_str("  protection:\n    hash_key: { file: hash-key }\n    keys:\n");
        for id in keys {
            std::fs::write(cfg.join(format!("kek-{id}")), kek(id)).unwrap();
            protection.push_str(&format!(
                "      - {{ id: {id}, key: {{ file: kek-{id} }} }}\n"
            ));
        }
    }
    let path = cfg.join("ferry.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("  protection:\n");
    let end = text.find("systems:\n").unwrap();
    let head = &text[..start.unwrap_or(end)];
    std::fs::write(&path, format!("{head}{protection}{}", &text[end..])).unwrap();
}

fn order(n: usize, email: &str) -> Value {
    json!({
        "type": "order.created",
        "order_id": format!("ORD-MARKER-{n:05}"),
        "customer": { "email": email, "name": format!("Zyxname {n:05} Qwv") },
        "lines": [ { "iban": format!("DE89IBAN{n:08}XY"), "qty": 2 }, { "qty": 1 } ]
    })
}

/// The classified values of `order(n, email)`.
fn secrets(n: usize, email: &str) -> Vec<String> {
    vec![
        email.to_owned(),
        format!("Zyxname {n:05} Qwv"),
        format!("DE89IBAN{n:08}XY"),
    ]
}

/// A receiver that answers 200 with the request body (so the response excerpt echoes the
/// personal data back) and records every body.
#[derive(Clone, Default)]
struct Echo {
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Echo {
    async fn start(&self) -> SocketAddr {
        let app = Router::new()
            .fallback(|State(echo): State<Echo>, body: Bytes| async move {
                if let Ok(v) = serde_json::from_slice(&body) {
                    echo.bodies.lock().unwrap().push(v);
                }
                body
            })
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// The last body received for order `n`.
    fn of(&self, n: usize) -> Option<Value> {
        let id = format!("ORD-MARKER-{n:05}");
        self.bodies()
            .into_iter()
            .rev()
            .find(|b| b["order_id"] == id.as_str())
    }
}

/// `ferry serve` on `cfg` and `data`, its stderr in `data/../serve.log`.
fn serve(cfg: &Path, data: &Path) -> (Child, SocketAddr) {
    spawn_ferry(cfg, data, &data.with_extension("log"))
}

/// Stop a hub gracefully (SIGTERM) and wait for it.
fn stop(mut child: Child) {
    stop_gracefully(&mut child);
}

/// `ferry serve` that must refuse to start: its stderr.
fn refused(cfg: &Path, data: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config"])
        .arg(cfg)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "ferry serve started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The real CLI against `hub`: exit code and stdout.
fn cli(hub: SocketAddr, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--url", &format!("http://{hub}"), "--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty() || out.status.success(), "{stderr}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The store's files as bytes: the database and its WAL.
fn store_bytes(data: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    ["ferry.db", "ferry.db-wal"]
        .iter()
        .map(|f| data.join(f))
        .filter(|p| p.exists())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn post(hub: SocketAddr, n: usize, email: &str) -> u16 {
    let body = order(n, email).to_string();
    send(hub, &format!("msg_{n:05}"), &body)
        .await
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn classified_values_reach_the_receiver_but_never_the_store_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    let echo = Echo::default();
    let rx = echo.start().await;
    write_encrypted_config(&cfg, &format!("http://{rx}/in"), &["k1"]);
    let (child, hub) = serve(&cfg, &data);

    let subjects = ["ada@example.com", "bob@example.org", "ada@example.com"];
    for (n, email) in subjects.iter().enumerate() {
        assert_eq!(post(hub, n, email).await, 202);
    }
    delivered_at_least(hub, 3).await;
    // The receiver got every value as it was sent.
    for (n, email) in subjects.iter().enumerate() {
        assert_eq!(echo.of(n).as_ref(), Some(&order(n, email)), "order {n}");
    }

    // The store's files, read as bytes while the hub runs: no classified value in them, and
    // not the response excerpts (which echoed them); unclassified values are there.
    let files = store_bytes(&data);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("ferry.db-wal")),
        "a WAL to read"
    );
    for (path, bytes) in &files {
        for (n, email) in subjects.iter().enumerate() {
            for secret in secrets(n, email) {
                assert!(
                    !contains(bytes, secret.as_bytes()),
                    "`{secret}` in clear in {}",
                    path.display()
                );
            }
        }
    }
    assert!(
        files.iter().any(|(_, b)| contains(b, b"ORD-MARKER-00001")),
        "the unclassified order id is stored as it is"
    );
    assert!(files.iter().any(|(_, b)| contains(b, b"ferry:enc:v1:")));

    // Two subjects: two data keys, wrapped by k1.
    let (code, out) = cli(hub, &["keys", "status", "--json"]);
    assert_eq!(code, Some(0));
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["current_kek"], "k1");
    assert_eq!(status["data_keys"]["k1"], 2, "{status}");
    assert_eq!(status["shredded"], 0);

    // The admin API decrypts for display: the event, and the delivery's response excerpt.
    let mut shown = None;
    for d in deliveries(hub, "").await {
        let view = admin_get(
            hub,
            &format!("/admin/v1/deliveries/{}", d["id"].as_str().unwrap()),
        )
        .await;
        if view["event"]["payload"]["order_id"] == "ORD-MARKER-00000" {
            shown = Some(view);
        }
    }
    let shown = shown.expect("the delivery of order 0");
    assert_eq!(shown["event"]["payload"], order(0, "ada@example.com"));
    let excerpt = shown["attempts"][0]["response_excerpt"].as_str().unwrap();
    assert!(excerpt.contains("ada@example.com"), "{excerpt}");
    stop(child);
}

#[tokio::test(flavor = "multi_thread")]
async fn erasing_a_subject_nulls_its_fields_and_leaves_others_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    let echo = Echo::default();
    let rx = echo.start().await;
    write_encrypted_config(&cfg, &format!("http://{rx}/in"), &["k1"]);
    let (child, hub) = serve(&cfg, &data);
    assert_eq!(post(hub, 0, "ada@example.com").await, 202);
    assert_eq!(post(hub, 1, "bob@example.org").await, 202);
    delivered_at_least(hub, 2).await;
    let wrapped = wrapped_keys(&data);
    assert_eq!(wrapped.len(), 2);

    let (code, out) = cli(hub, &["erase", "--subject", "ada@example.com"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("1 data key(s) shredded"), "{out}");
    assert!(
        !out.contains("ada@example.com"),
        "the identifier is not echoed: {out}"
    );
    let (_, again) = cli(hub, &["erase", "--subject", "ada@example.com"]);
    assert!(again.contains("no data key held"), "{again}");

    // The erasure is in the audit trail, by the subject's reference, never its identifier.
    let export = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["audit", "export", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let export = String::from_utf8_lossy(&export.stdout);
    let shredded: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("\"shredded\""))
        .collect();
    assert_eq!(shredded.len(), 2, "one record per erase call: {export}");
    assert!(!export.contains("ada@example.com"), "{export}");

    // One wrapped key is left; the other's bytes are gone from the database and the WAL.
    let left = wrapped_keys(&data);
    assert_eq!(left.len(), 1);
    let gone: Vec<_> = wrapped.iter().filter(|w| !left.contains(w)).collect();
    assert_eq!(gone.len(), 1);
    for (path, bytes) in store_bytes(&data) {
        assert!(
            !contains(&bytes, gone[0]),
            "the shredded key is still in {}",
            path.display()
        );
    }

    // Replayed: ada's classified fields arrive null, the rest of her event as it was; bob's
    // event decrypts.
    let replayed = admin_post(hub, "/admin/v1/replay", json!({"flow": "orders"})).await;
    assert_eq!(replayed["replayed"], 2);
    wait_until(30, "both replays delivered", || async {
        echo.bodies().len() >= 4
    })
    .await;
    let ada = echo.of(0).unwrap();
    assert_eq!(ada["customer"]["email"], Value::Null);
    assert_eq!(ada["customer"]["name"], Value::Null);
    assert_eq!(ada["lines"][0]["iban"], Value::Null);
    assert_eq!(ada["lines"][0]["qty"], 2);
    assert_eq!(ada["order_id"], "ORD-MARKER-00000");
    assert_eq!(echo.of(1).unwrap(), order(1, "bob@example.org"));
    let metrics = metrics_text(hub).await;
    assert!(
        metrics.contains(
            "ferry_protect_shredded_fields_total{flow=\"orders\",destination=\"sink\"} 3"
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("shredded"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The admin API shows ada's fields as null too (and her excerpts as nothing).
    let events = admin_get(hub, "/admin/v1/events?flow=orders").await;
    for e in events["events"].as_array().unwrap() {
        let shown = admin_get(
            hub,
            &format!("/admin/v1/events/{}", e["id"].as_str().unwrap()),
        )
        .await;
        match shown["payload"]["order_id"].as_str().unwrap() {
            "ORD-MARKER-00000" => assert_eq!(shown["payload"]["customer"]["email"], Value::Null),
            _ => assert_eq!(shown["payload"], order(1, "bob@example.org")),
        }
    }
    let (_, status) = cli(hub, &["keys", "status"]);
    assert!(status.contains("shredded (erased subjects): 1"), "{status}");

    // Ada seen again: a new key, her new event readable.
    assert_eq!(post(hub, 2, "ada@example.com").await, 202);
    wait_until(30, "the new event delivered", || async {
        echo.of(2).is_some()
    })
    .await;
    assert_eq!(echo.of(2).unwrap(), order(2, "ada@example.com"));
    stop(child);
}

/// The wrapped data keys in the store, read with the `sqlite3` CLI.
fn wrapped_keys(data: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("sqlite3")
        .arg(data.join("ferry.db"))
        .arg("SELECT hex(wrapped) FROM data_keys WHERE wrapped IS NOT NULL ORDER BY id")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| hex::decode(l.trim()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    let echo = Echo::default();
    let rx = echo.start().await;
    write_encrypted_config(&cfg, &format!("http://{rx}/in"), &["k1"]);
    let email = |n: usize| format!("customer{}@example.com", n % 17);
    let accepted = Arc::new(Mutex::new(Vec::new()));

    // Before: events under k1.
    let (child, hub) = serve(&cfg, &data);
    for n in 0..40 {
        assert_eq!(post(hub, n, &email(n)).await, 202);
        accepted.lock().unwrap().push(n);
    }
    delivered_at_least(hub, 40).await;
    stop(child);

    // The procedure: the new KEK first, the old one kept; restart; rotate while serving.
    set_keys(&cfg, &["k2", "k1"]);
    let (child, hub) = serve(&cfg, &data);
    let next = Arc::new(AtomicUsize::new(40));
    let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sender = {
        let (next, sending, accepted) = (next.clone(), sending.clone(), accepted.clone());
        tokio::spawn(async move {
            while sending.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                // Some subjects known, some new (their keys created under k2 meanwhile).
                let who = if n % 3 == 0 {
                    format!("new{n}@example.net")
                } else {
                    email(n)
                };
                if post(hub, n, &who).await == 202 {
                    accepted.lock().unwrap().push(n);
                }
            }
        })
    };
    // Some load before the rotation starts.
    wait_until(30, "events sent during the rotation", || async {
        next.load(Ordering::Relaxed) > 60
    })
    .await;
    let (code, out) = tokio::task::spawn_blocking(move || cli(hub, &["keys", "rotate", "--json"]))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{out}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rotated["current_kek"], "k2");
    assert_eq!(rotated["rewrapped"], 17, "{rotated}");
    assert_eq!(rotated["remaining"], 0);
    let after = next.load(Ordering::Relaxed);
    wait_until(30, "events sent after the rotation", || async {
        next.load(Ordering::Relaxed) > after + 20
    })
    .await;
    sending.store(false, Ordering::Relaxed);
    sender.await.unwrap();
    // Idempotent.
    let (_, again) = cli(hub, &["keys", "rotate", "--json"]);
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        (again["rewrapped"].as_u64(), again["remaining"].as_u64()),
        (Some(0), Some(0))
    );
    stop(child);

    // The old KEK removed: the hub starts, and every accepted event is delivered with its
    // original values.
    set_keys(&cfg, &["k2"]);
    let (child, hub) = serve(&cfg, &data);
    let (_, status) = cli(hub, &["keys", "status", "--json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["to_rotate"], 0, "{status}");
    let accepted = accepted.lock().unwrap().clone();
    wait_until(60, "every accepted event delivered", || async {
        accepted.iter().all(|n| echo.of(*n).is_some())
    })
    .await;
    for n in &accepted {
        let body = echo.of(*n).unwrap();
        let who = body["customer"]["email"].as_str().unwrap().to_owned();
        assert_eq!(body, order(*n, &who), "order {n}");
        assert!(
            who == email(*n) || who == format!("new{n}@example.net"),
            "{who}"
        );
    }
    // A replay after the restart decrypts with k2 alone. (Counted from before the replay
    // is asked for: its first deliveries may arrive before the answer does.)
    let before = echo.bodies().len();
    admin_post(hub, "/admin/v1/replay", json!({"flow": "orders"})).await;
    wait_until(60, "replays delivered", || async {
        echo.bodies().len() >= before + accepted.len()
    })
    .await;
    assert!(
        echo.bodies()[before..]
            .iter()
            .all(|b| b["customer"]["email"].is_string())
    );
    stop(child);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_and_unlisted_keks_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    write_encrypted_config(&cfg, "http://127.0.0.1:9/in", &["k1"]);

    // A KEK of 16 bytes.
    std::fs::write(cfg.join("kek-k1"), STANDARD.encode([7u8; 16])).unwrap();
    let err = refused(&cfg, &data);
    assert!(err.contains("settings.protection.keys"), "{err}");
    assert!(err.contains("decodes to 16 bytes"), "{err}");

    // A KEK from an env var that is not set.
    let yaml = std::fs::read_to_string(cfg.join("ferry.yaml")).unwrap();
    std::fs::write(
        cfg.join("ferry.yaml"),
        yaml.replace("{ file: kek-k1 }", "{ env: FERRY_TEST_KEK_NOT_SET }"),
    )
    .unwrap();
    let err = refused(&cfg, &data);
    assert!(err.contains("settings.protection.keys"), "{err}");
    assert!(err.contains("FERRY_TEST_KEK_NOT_SET"), "{err}");

    // No hash key.
    set_keys(&cfg, &["k1"]);
    let yaml = std::fs::read_to_string(cfg.join("ferry.yaml")).unwrap();
    std::fs::write(
        cfg.join("ferry.yaml"),
        yaml.replace("    hash_key: { file: hash-key }\n", ""),
    )
    .unwrap();
    let err = refused(&cfg, &data);
    assert!(
        err.contains("settings.protection.hash_key is required"),
        "{err}"
    );

    // A store with data keys wrapped by k1: refused with only k2, and with no keys at all.
    set_keys(&cfg, &["k1"]);
    let (child, hub) = serve(&cfg, &data);
    assert_eq!(post(hub, 0, "ada@example.com").await, 202);
    stop(child);
    set_keys(&cfg, &["k2"]);
    let err = refused(&cfg, &data);
    assert!(err.contains("`k1` (1 data keys)"), "{err}");
    set_keys(&cfg, &[]);
    let err = refused(&cfg, &data);
    assert!(err.contains("settings.protection.keys is empty"), "{err}");
    assert!(err.contains("k1"), "{err}");
    // Back with k1 listed (second): it starts.
    set_keys(&cfg, &["k2", "k1"]);
    let (child, _hub) = serve(&cfg, &data);
    stop(child);
}

/// A queue source's events are encrypted like posted ones, and a rejected message's body is
/// stored encrypted (the "no subject" key) yet shown as received. Needs
/// `FERRY_TEST_NATS_URL`; skips with a reason without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_events_and_rejected_bodies_are_encrypted() {
    use common::queues::{Broker, write_queue_config};
    let Some(broker) = Broker::nats().await else {
        return;
    };
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    let schema = r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"},"email":{"type":"string","x-ferry-category":"user.contact.email","x-ferry-subject":true}}}"#;
    write_schemas(&cfg, &[("order", "schemas/order.json", schema)]);
    write_queue_config(
        &cfg,
        "q-enc",
        &broker.source_yaml(&[]),
        "    steps:\n      - validate: { schema: order }\n",
        &rx.url("/hook"),
        "",
    );
    set_keys(&cfg, &["k1"]);
    let hub = start_hub(&cfg, &data).await;
    broker
        .publish(
            "q-1",
            r#"{"id":"q-1","type":"order.created","email":"carol-secret@example.com"}"#,
        )
        .await;
    broker
        .publish(
            "q-bad",
            r#"{"id":"q-bad","email":"dave-secret@example.com", oops"#,
        )
        .await;
    wait_until(30, "the good message delivered", || async {
        rx.count() >= 1
    })
    .await;
    let got: Value = serde_json::from_slice(&rx.received()[0].body).unwrap();
    assert_eq!(got["email"], "carol-secret@example.com");
    let listed = admin_get(hub.addr(), "/admin/v1/rejected?flow=q-enc").await;
    let rejected = listed["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{listed}");

    for (path, bytes) in store_bytes(&data) {
        for secret in ["carol-secret@example.com", "dave-secret@example.com"] {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "`{secret}` in {}",
                path.display()
            );
        }
    }
    // Shown as received through the admin API.
    let shown = admin_get(
        hub.addr(),
        &format!("/admin/v1/rejected/{}", rejected[0]["id"].as_str().unwrap()),
    )
    .await;
    let payload = shown["payload"].as_str().unwrap();
    assert!(payload.contains("dave-secret@example.com"), "{shown}");
    hub.shutdown().await.unwrap();
}

/// A rendering that fails on a decrypted event (here a `map` that cannot convert the email)
/// dead-letters it, and what the store keeps of the failure quotes no decrypted value.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rendering_keeps_no_decrypted_value() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    let rx = TestReceiver::start().await;
    write_encrypted_config(&cfg, &rx.url("/in"), &["k1"]);
    let flow = cfg.join("flows/orders.yaml");
    let yaml = std::fs::read_to_string(&flow).unwrap();
    std::fs::write(
        &flow,
        yaml.replace(
            "        system: dst\n",
            "        system: dst\n        map: |\n          .n = to_int!(.customer.email)\n",
        ),
    )
    .unwrap();
    let hub = start_hub(&cfg, &data).await;
    assert_eq!(post(hub.addr(), 0, "erin@example.com").await, 202);
    let dead = wait_for_dead(hub.addr()).await;
    let error = dead["last_error"].as_str().unwrap();
    assert!(error.contains("map_failed"), "{error}");
    assert!(error.contains("details withheld"), "{error}");
    for (path, bytes) in store_bytes(&data) {
        assert!(
            !contains(&bytes, b"erin@example.com"),
            "in {}",
            path.display()
        );
    }
    assert_eq!(rx.count(), 0);
    hub.shutdown().await.unwrap();
}

async fn wait_for_dead(hub: SocketAddr) -> Value {
    let mut found = None;
    for _ in 0..300 {
        if let Some(d) = deliveries(hub, "state=dead").await.into_iter().next() {
            found = Some(d);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    found.expect("a dead delivery within 30 s")
}

/// A delivery handed over at ingress carries its payload in clear and renders from it: the
/// stored (encrypted) payload is not opened. Claimed from the store (no payload in clear),
/// the same delivery opens the stored one, here an envelope whose key the store never had.
#[tokio::test(flavor = "multi_thread")]
async fn a_handed_over_delivery_renders_from_its_payload_in_clear() {
    use ferry::at_rest::AtRest;
    use ferry::render::DestinationRender;
    use ferry_delivery::Render;
    use ferry_store::{ClaimedDelivery, DeliveryId, EventId, LaneKey};

    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    write_encrypted_config(&cfg, "http://127.0.0.1:9/in", &["k1"]);
    let config = ferry_config::load_dir(
        &cfg,
        &ferry_config::LoadOptions {
            resolve_secrets: true,
        },
    )
    .unwrap_or_else(|e| panic!("config: {e}"))
    .config;
    std::fs::create_dir_all(&data).unwrap();
    let store =
        Arc::new(ferry_store::sqlite::SqliteStore::open(&data, Default::default()).unwrap());
    let at_rest = AtRest::open(&config, store)
        .await
        .unwrap()
        .expect("encryption at rest on");
    let schemas = Arc::new(ferry_schema::SchemaRegistry::load(&config).unwrap());
    let render = DestinationRender::decrypt_only(schemas).with_at_rest(at_rest);

    let clear = order(0, "ada@example.com");
    let mut stored = clear.clone();
    stored["customer"]["email"] = json!("ferry:enc:v1:424242:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let mut delivery = ClaimedDelivery {
        id: DeliveryId::new(),
        event_id: EventId::new(),
        lane: LaneKey {
            flow: "orders".into(),
            destination: "sink".into(),
        },
        event_type: Some("order.created".into()),
        received_at: 0,
        headers: Vec::new(),
        payload: Bytes::from(stored.to_string()),
        attempts: 0,
        round_attempts: 0,
        round_started_at: 0,
        clear_payload: None,
    };
    let failed = render
        .render(&delivery)
        .await
        .expect_err("the stored one does not open");
    assert!(
        failed.message.contains("424242"),
        "the unknown key is named: {failed:?}"
    );
    delivery.clear_payload = Some(Bytes::from(clear.to_string()));
    let rendered = render
        .render(&delivery)
        .await
        .expect("rendered from the clear payload");
    assert_eq!(
        serde_json::from_slice::<Value>(&rendered.body).unwrap(),
        clear
    );
}
