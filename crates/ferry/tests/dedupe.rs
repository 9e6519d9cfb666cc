//! The `dedupe` step end to end: an event whose key was seen within the window is answered
//! like a duplicate and not stored, also after a restart; after the window it is stored.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

async fn post(hub: std::net::SocketAddr, id: &str, order: &str) -> (u16, Value) {
    let body = format!("{{\"type\":\"order.created\",\"order_id\":\"{order}\"}}");
    let resp = send(hub, id, &body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// A hub on a fresh config whose `dedupe` step remembers keys for `window`.
fn dedupe_config(dir: &std::path::Path, rx: &TestReceiver, window: &str) {
    write_config_with(
        dir,
        Some("/type"),
        &format!("    steps:\n      - dedupe: {{ key: .order_id, window: {window} }}\n"),
        &http_destination("sink", &rx.url("/in"), 3),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedupe_step_drops_keys_seen_within_the_window_across_restarts() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    // A window no test run outlasts, however slow the machine (a restart included).
    dedupe_config(&cfg, &rx, "1h");
    let hub = start_hub(&cfg, &data).await;
    let addr = hub.addr();

    let (status, first) = post(addr, "m1", "o-1").await;
    assert_eq!(status, 202, "{first}");
    // Another sender event id, same key: within the window.
    let (status, again) = post(addr, "m2", "o-1").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        again["event_id"], first["event_id"],
        "names the first event"
    );
    let (status, other) = post(addr, "m3", "o-2").await;
    assert_eq!(status, 202, "{other}");

    // The window survives a restart.
    hub.shutdown().await.unwrap();
    let hub = start_hub(&cfg, &data).await;
    let addr = hub.addr();
    let (status, body) = post(addr, "m4", "o-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event_id"], first["event_id"]);

    wait_until(30, "two deliveries", || async { rx.count() == 2 }).await;
    assert_eq!(deliveries(addr, "flow=orders").await.len(), 2);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedupe_step_stores_a_key_again_after_its_window() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    dedupe_config(&cfg, &rx, "1s");
    let hub = start_hub(&cfg, &data).await;
    let addr = hub.addr();

    let (status, first) = post(addr, "m1", "o-1").await;
    assert_eq!(status, 202, "{first}");
    // The window runs from the first event's receipt, before this sleep began: waiting
    // longer than the window is enough, however slow the machine.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = post(addr, "m2", "o-1").await;
    assert_eq!(status, 202, "{body}");
    assert_ne!(body["event_id"], first["event_id"]);

    wait_until(30, "two deliveries", || async { rx.count() == 2 }).await;
    assert_eq!(deliveries(addr, "flow=orders").await.len(), 2);
    hub.shutdown().await.unwrap();
}
