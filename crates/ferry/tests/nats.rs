//! The `nats` destination against a real NATS server with JetStream: delivered only after the
//! stream acknowledged, the delivery id as `Nats-Msg-Id` (a replay is kept once by the
//! stream's duplicate window), and a server that cannot be reached retried, not lost.
//! Needs `FERRY_TEST_NATS_URL` (e.g. `nats://127.0.0.1:4222`); skips with a reason without it.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use common::*;
use futures_util::StreamExt;

/// The NATS server to test against, or `None` (the test then says why it skips).
fn nats_url() -> Option<String> {
    match std::env::var("FERRY_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: FERRY_TEST_NATS_URL is not set (e.g. nats://127.0.0.1:4222)");
            None
        }
    }
}

/// A stream of its own for one test: name and subject unique to this run.
async fn fresh_stream(url: &str) -> (jetstream::Context, String, String) {
    let client = async_nats::connect(url).await.expect("NATS is reachable");
    let js = jetstream::new(client);
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let name = format!("FERRY_TEST_{unique}");
    let subject = format!("ferry.test.{unique}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("stream created");
    (js, name, subject)
}

fn nats_destination(name: &str, url: &str, subject: &str) -> String {
    format!(
        "      {name}:\n        system: dst\n        nats:\n          url: {url}\n          subject: {subject}\n          timeout: 2s\n        retry:\n          max_attempts: 50\n          initial_backoff: 50ms\n          max_backoff: 200ms\n"
    )
}

/// Every message of `stream`: (Nats-Msg-Id, webhook-id, body).
async fn messages(js: &jetstream::Context, stream: &str) -> Vec<(String, String, String)> {
    let stream = js.get_stream(stream).await.unwrap();
    let consumer = stream
        .create_consumer(consumer::pull::Config::default())
        .await
        .unwrap();
    let count = stream.get_info().await.unwrap().state.messages as usize;
    let mut batch = consumer
        .fetch()
        .max_messages(count.max(1))
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(Ok(message)) = batch.next().await {
        let headers = message.headers.clone().unwrap_or_default();
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        out.push((
            header("Nats-Msg-Id"),
            header("webhook-id"),
            String::from_utf8_lossy(&message.payload).into_owned(),
        ));
    }
    out
}

async fn stored_messages(js: &jetstream::Context, stream: &str) -> u64 {
    let stream = js.get_stream(stream).await.unwrap();
    stream.get_info().await.unwrap().state.messages
}

#[tokio::test]
async fn deliveries_are_published_acknowledged_and_kept_once_across_replays() {
    let Some(url) = nats_url() else { return };
    let (js, stream, subject) = fresh_stream(&url).await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_config(cfg.path(), &nats_destination("queue", &url, &subject));
    let hub = start_hub(cfg.path(), data.path()).await;

    let bodies: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"type":"order.created","n":{i}}}"#))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(
            send(hub.addr(), &format!("evt-{i}"), body).await.status(),
            202
        );
    }
    wait_until(30, "three deliveries delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 3
    })
    .await;
    // Delivered means acknowledged: the stream holds each event once, under its delivery id.
    let got = messages(&js, &stream).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let ids: Vec<String> = deliveries(hub.addr(), "state=delivered")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    for (msg_id, webhook_id, body) in &got {
        assert!(ids.contains(msg_id), "{msg_id} is a delivery id");
        assert_eq!(msg_id, webhook_id);
        assert!(bodies.contains(body), "{body}");
    }

    // A replay sends each again with the same id; the stream keeps it once.
    replay_delivered_and_wait(hub.addr(), 3).await;
    assert_eq!(stored_messages(&js, &stream).await, 3);
    hub.shutdown().await.unwrap();
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_retried_and_never_dead_lettered_early() {
    let Some(_) = nats_url() else { return };
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    write_config(
        cfg.path(),
        &nats_destination("queue", "nats://127.0.0.1:1", "ferry.nowhere"),
    );
    let hub = start_hub(cfg.path(), data.path()).await;
    assert_eq!(
        send(hub.addr(), "evt-down", r#"{"type":"t"}"#)
            .await
            .status(),
        202
    );
    wait_until(30, "a failed attempt recorded", || async {
        let d = deliveries(hub.addr(), "").await;
        d.len() == 1 && d[0]["attempts"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let d = &deliveries(hub.addr(), "").await[0];
    assert_ne!(d["state"], "dead", "{d}");
    assert_ne!(d["state"], "delivered", "{d}");
    let shown = admin_get(
        hub.addr(),
        &format!("/admin/v1/deliveries/{}", d["id"].as_str().unwrap()),
    )
    .await;
    let attempts = shown["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["error_class"], "connect", "{shown}");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_batching_destination_publishes_every_record_once() {
    let Some(url) = nats_url() else { return };
    let (js, stream, subject) = fresh_stream(&url).await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let destination =
        nats_destination("queue", &url, &subject) + "        batch: { max_items: 4, linger: 1h }\n";
    write_config(cfg.path(), &destination);
    let hub = start_hub(cfg.path(), data.path()).await;
    // Eight events make two full batches of four (the long linger holds no partial one).
    for i in 0..8 {
        let body = format!(r#"{{"type":"t","n":{i}}}"#);
        assert_eq!(
            send(hub.addr(), &format!("b-{i}"), &body).await.status(),
            202
        );
    }
    wait_until(30, "eight deliveries delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 8
    })
    .await;
    let got = messages(&js, &stream).await;
    assert_eq!(got.len(), 8);
    let mut ids: Vec<&String> = got.iter().map(|(id, _, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "each record under its own delivery id");
    hub.shutdown().await.unwrap();
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn a_subject_template_publishes_each_event_to_its_own_subject() {
    let Some(url) = nats_url() else { return };
    let client = async_nats::connect(&url).await.expect("NATS is reachable");
    let js = jetstream::new(client);
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let stream = format!("FERRY_TEST_{unique}");
    let base = format!("ferry.test.{unique}");
    js.create_stream(stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{base}.>")],
        ..Default::default()
    })
    .await
    .expect("stream created");
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let subject = format!("'{base}.{{{{ event.region }}}}.{{{{ event_type }}}}'");
    write_config(cfg.path(), &nats_destination("queue", &url, &subject));
    let hub = start_hub(cfg.path(), data.path()).await;

    for (id, body) in [
        ("eu", r#"{"type":"order","region":"eu"}"#),
        ("us", r#"{"type":"order","region":"us"}"#),
        // Renders `… .eu west.order`: not a subject.
        ("bad", r#"{"type":"order","region":"eu west"}"#),
        // No `region`: the template fails.
        ("none", r#"{"type":"order"}"#),
    ] {
        assert_eq!(send(hub.addr(), id, body).await.status(), 202);
    }
    wait_until(30, "two delivered, two dead", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 2
            && deliveries(hub.addr(), "state=dead").await.len() == 2
    })
    .await;

    // Each message is on the subject its event named.
    let consumer = js
        .get_stream(&stream)
        .await
        .unwrap()
        .create_consumer(consumer::pull::Config::default())
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(2)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(Ok(message)) = batch.next().await {
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        got.push((message.subject.to_string(), body["region"].to_string()));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            (format!("{base}.eu.order"), "\"eu\"".to_string()),
            (format!("{base}.us.order"), "\"us\"".to_string()),
        ]
    );

    // The failures are permanent, say which template, and do not quote the event.
    for dead in deliveries(hub.addr(), "state=dead").await {
        let id = dead["id"].as_str().unwrap();
        let detail = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
        let attempts = detail["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "not retried: {detail}");
        assert_eq!(attempts[0]["error_class"], "template_failed", "{detail}");
        let error = attempts[0]["error"].as_str().unwrap();
        assert!(error.contains("the subject template"), "{error}");
        assert!(error.contains("{{ event.region }}"), "{error}");
        assert!(!error.contains("eu west"), "{error}");
    }
    hub.shutdown().await.unwrap();
    js.delete_stream(&stream).await.unwrap();
}

/// `ferry validate --skip-secrets` on `dir`: success, and everything it printed.
fn validate(dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["validate", "--skip-secrets"])
        .arg(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[test]
fn ferry_validate_locates_a_broken_subject_template() {
    let cfg = tempfile::tempdir().unwrap();
    let server = "nats://127.0.0.1:4222";
    let dest = nats_destination("queue", server, "'orders.{{ event.region }'");
    write_config(cfg.path(), &dest);
    let (ok, text) = validate(cfg.path());
    assert!(!ok, "{text}");
    let yaml = std::fs::read_to_string(cfg.path().join("flows/orders.yaml")).unwrap();
    let line = yaml.lines().position(|l| l.contains("subject:")).unwrap() + 1;
    assert!(
        text.contains(&format!("flows/orders.yaml:{line}:")),
        "{text}"
    );
    assert!(
        text.contains("the subject template does not compile"),
        "{text}"
    );

    // A template whose literal part is no subject is refused as well.
    let dest = nats_destination("queue", server, "'orders.*.{{ event.region }}'");
    write_config(cfg.path(), &dest);
    let (ok, text) = validate(cfg.path());
    assert!(!ok, "{text}");
    assert!(text.contains("wildcard"), "{text}");

    let dest = nats_destination("queue", server, "'orders.{{ event.region }}'");
    write_config(cfg.path(), &dest);
    let (ok, text) = validate(cfg.path());
    assert!(ok, "a good template passes: {text}");
}
