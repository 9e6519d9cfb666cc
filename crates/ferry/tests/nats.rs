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
