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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedupe_step_drops_keys_seen_within_the_window_across_restarts() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    write_config_with(
        &cfg,
        Some("/type"),
        "    steps:\n      - dedupe: { key: .order_id, window: 3s }\n",
        &http_destination("sink", &rx.url("/in"), 3),
    );
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

    // After the window the key is stored again.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, body) = post(addr, "m5", "o-1").await;
    assert_eq!(status, 202, "{body}");

    wait_until(10, "three deliveries", || async { rx.count() == 3 }).await;
    assert_eq!(deliveries(addr, "flow=orders").await.len(), 3);
    hub.shutdown().await.unwrap();
}
