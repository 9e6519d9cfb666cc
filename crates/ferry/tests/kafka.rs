//! The `kafka` destination against a real Kafka-protocol broker (tansu): delivered only after
//! the brokers acknowledged, each record under its delivery id (`webhook-id`, the same
//! across retries and replays) with its key rendered from the event, a broker that is down
//! retried until it is up, and a topic that does not exist dead-lettered with the reason.
//! Needs `FERRY_TEST_KAFKA_URL` (e.g. `127.0.0.1:9092`); the broker-restart test also needs
//! `FERRY_TEST_TANSU_BIN` (the `tansu` binary, as `.ci/run` installs it). Each test says why
//! it skips without them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::queues::kafka_common::{create_topic, fresh_topic, kafka_url, read_all, unique};
use common::*;

fn kafka_destination(name: &str, brokers: &str, topic: &str, extra: &str) -> String {
    format!(
        "      {name}:\n        system: dst\n        kafka:\n          brokers: \"{brokers}\"\n          topic: {topic}\n          key: \"{{{{ event.customer }}}}\"\n          timeout: {timeout}\n        retry:\n          max_attempts: 100\n          initial_backoff: 50ms\n          max_backoff: 500ms\n{extra}",
        timeout = "10s",
    )
}

/// The delivered deliveries' ids.
async fn delivered_ids(hub: SocketAddr) -> BTreeSet<String> {
    deliveries(hub, "state=delivered")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn deliveries_are_produced_acknowledged_keyed_and_replayed_under_their_ids() {
    let Some(brokers) = kafka_url() else { return };
    let topic = fresh_topic(&brokers, 3).await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_config(
        cfg.path(),
        &kafka_destination("stream", &brokers, &topic, ""),
    );
    let hub = start_hub(cfg.path(), data.path()).await;

    let bodies: Vec<String> = (0..6)
        .map(|i| {
            format!(
                r#"{{"type":"order.created","customer":"c{}","n":{i}}}"#,
                i % 3
            )
        })
        .collect();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (i, body) in bodies.iter().enumerate() {
        let headers: &[(&str, &str)] = if i == 0 {
            &[("traceparent", traceparent)]
        } else {
            &[]
        };
        let status = send_with(hub.addr(), &format!("evt-{i}"), body, headers)
            .await
            .status();
        assert_eq!(status, 202);
    }
    wait_until(60, "six deliveries delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 6
    })
    .await;
    // Delivered means acknowledged: the topic holds each event once, under its delivery id.
    let ids = delivered_ids(hub.addr()).await;
    let got = read_all(&brokers, &topic).await;
    assert_eq!(got.len(), 6, "{got:#?}");
    let mut partitions_of_key: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for record in &got {
        let id = record.header("webhook-id").expect("webhook-id");
        assert!(ids.contains(id), "{id} is a delivery id");
        assert_eq!(record.header("idempotency-key"), Some(id));
        assert_eq!(record.header("content-type"), Some("application/json"));
        assert!(bodies.contains(&record.body), "{}", record.body);
        let event: serde_json::Value = serde_json::from_str(&record.body).unwrap();
        let key = record.key.clone().expect("a key");
        assert_eq!(key, event["customer"], "the key template renders the event");
        if event["n"] == 0 {
            assert_eq!(record.header("traceparent"), Some(traceparent));
        }
        partitions_of_key
            .entry(key)
            .or_default()
            .insert(record.partition);
    }
    assert!(
        partitions_of_key.values().all(|p| p.len() == 1),
        "one key, one partition: {partitions_of_key:?}"
    );

    // A replay produces each again under the same delivery id.
    replay_delivered_and_wait(hub.addr(), 6).await;
    let again = read_all(&brokers, &topic).await;
    assert_eq!(again.len(), 12);
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &again {
        *copies
            .entry(record.header("webhook-id").unwrap())
            .or_default() += 1;
    }
    assert_eq!(copies.len(), 6, "{copies:?}");
    assert!(copies.values().all(|&n| n == 2), "{copies:?}");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_batching_destination_produces_every_record_once() {
    let Some(brokers) = kafka_url() else { return };
    let topic = fresh_topic(&brokers, 2).await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let batch = "        batch: { max_items: 4, linger: 1h }\n";
    write_config(
        cfg.path(),
        &kafka_destination("stream", &brokers, &topic, batch),
    );
    let hub = start_hub(cfg.path(), data.path()).await;
    // Eight events make two full batches of four (the long linger holds no partial one).
    for i in 0..8 {
        let body = format!(r#"{{"type":"t","customer":"c{i}","n":{i}}}"#);
        assert_eq!(
            send(hub.addr(), &format!("b-{i}"), &body).await.status(),
            202
        );
    }
    wait_until(60, "eight deliveries delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 8
    })
    .await;
    let got = read_all(&brokers, &topic).await;
    assert_eq!(got.len(), 8);
    let ids: BTreeSet<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 8, "each record under its own delivery id");
    assert!(
        got.iter()
            .all(|r| r.key.as_deref().is_some_and(|k| r.body.contains(k))),
        "each record keyed by its own event"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_topic_that_does_not_exist_is_dead_lettered_with_the_reason() {
    let Some(brokers) = kafka_url() else { return };
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let missing = unique("ferry-missing");
    let destination =
        kafka_destination("stream", &brokers, &missing, "").replace("timeout: 10s", "timeout: 2s");
    write_config(cfg.path(), &destination);
    let hub = start_hub(cfg.path(), data.path()).await;
    let body = r#"{"type":"t","customer":"c1"}"#;
    assert_eq!(send(hub.addr(), "evt-missing", body).await.status(), 202);
    wait_until(60, "the delivery dead-lettered", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;
    let dead = &deliveries(hub.addr(), "state=dead").await[0];
    let shown = admin_get(
        hub.addr(),
        &format!("/admin/v1/deliveries/{}", dead["id"].as_str().unwrap()),
    )
    .await;
    let attempts = shown["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "not retried: {shown}");
    assert_eq!(attempts[0]["error_class"], "unknown_topic", "{shown}");
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(
        error.contains("Unknown topic"),
        "the broker's reason: {error}"
    );
    hub.shutdown().await.unwrap();
}

/// The `tansu` binary for a broker of the test's own, or `None` (the test says why it skips).
fn tansu_bin() -> Option<PathBuf> {
    match std::env::var("FERRY_TEST_TANSU_BIN") {
        Ok(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            eprintln!("skipped: FERRY_TEST_TANSU_BIN is not set (the tansu binary)");
            None
        }
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start a tansu broker on `port` (memory storage), killed when dropped.
fn start_tansu(bin: &PathBuf, port: u16) -> KillOnDrop {
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu starts");
    KillOnDrop(child)
}

#[tokio::test]
async fn a_broker_that_is_down_is_retried_and_delivered_once_it_is_up() {
    let Some(bin) = tansu_bin() else { return };
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let topic = unique("ferry-later");
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_config(
        cfg.path(),
        &kafka_destination("stream", &brokers, &topic, ""),
    );
    let hub = start_hub(cfg.path(), data.path()).await;
    let body = r#"{"type":"t","customer":"c9"}"#;
    assert_eq!(send(hub.addr(), "evt-down", body).await.status(), 202);

    // Down: each attempt fails as a connection failure and is retried, not dead-lettered.
    wait_until(60, "a failed attempt recorded", || async {
        let d = deliveries(hub.addr(), "").await;
        d.len() == 1 && d[0]["attempts"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let id = deliveries(hub.addr(), "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
    assert_eq!(shown["attempts"][0]["error_class"], "connect", "{shown}");
    assert_ne!(shown["state"], "dead", "{shown}");

    // Up (memory storage: the topic is made as soon as the broker answers; the producer
    // waits half its timeout for a topic to appear).
    let _broker = start_tansu(&bin, port);
    wait_until(60, "the broker listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    create_topic(&brokers, &topic, 1).await;
    wait_until(90, "the delivery delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 1
    })
    .await;
    let got = read_all(&brokers, &topic).await;
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id") == Some(id.as_str())),
        "every copy under the one delivery id across retries: {got:#?}"
    );
    let shown = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
    let attempts = shown["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{shown}");
    assert_eq!(attempts.last().unwrap()["error_class"], "ok", "{shown}");
    hub.shutdown().await.unwrap();
}

#[test]
fn ferry_validate_locates_a_key_template_that_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let destination = kafka_destination("stream", "127.0.0.1:9092", "orders", "")
        .replace("{{ event.customer }}", "{{ event.customer ");
    write_config(dir.path(), &destination);
    let text = std::fs::read_to_string(dir.path().join("flows/orders.yaml")).unwrap();
    let line = text.lines().position(|l| l.contains("key:")).unwrap() + 1;
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["validate", "--skip-secrets"])
        .arg(dir.path())
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("the key template does not compile"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("flows/orders.yaml:{line}:")),
        "located at line {line}:\n{shown}"
    );
    assert!(
        shown.contains("flows.orders.destinations.stream.kafka.key"),
        "{shown}"
    );
}
