//! Delivery through the real server to real receivers on loopback: success, each retry class,
//! Retry-After, permanent failure to the DLQ, replay, and a stable `webhook-id`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

async fn hub_with(dests: &str) -> (tempfile::TempDir, ferry::hub::RunningHub) {
    let dir = tempfile::tempdir().unwrap();
    write_config(&dir.path().join("cfg"), dests);
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    (dir, hub)
}

fn webhook_ids(rx: &TestReceiver) -> Vec<String> {
    rx.received()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect()
}

async fn delivery_state(hub: std::net::SocketAddr, id: &str) -> Value {
    admin_get(hub, &format!("/admin/v1/deliveries/{id}")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_reaches_every_destination_with_its_body_and_an_idempotency_key() {
    let a = TestReceiver::start().await;
    let b = TestReceiver::start().await;
    let (_d, hub) = hub_with(
        &(http_destination("a", &a.url("/a"), 3) + &http_destination("b", &b.url("/b"), 3)),
    )
    .await;
    let body = "{\"type\":\"order.created\",\"total\":42}";
    assert_eq!(send(hub.addr(), "msg_1", body).await.status().as_u16(), 202);
    wait_until(10, "both receivers", || async {
        a.count() == 1 && b.count() == 1
    })
    .await;
    for rx in [&a, &b] {
        let r = &rx.received()[0];
        assert_eq!(r.body, body.as_bytes());
        assert_eq!(r.headers["content-type"], "application/json");
        let id = r.headers["webhook-id"].to_str().unwrap();
        assert!(id.starts_with("dlv_"), "{id}");
        assert_eq!(r.headers["idempotency-key"].to_str().unwrap(), id);
    }
    assert_ne!(
        webhook_ids(&a),
        webhook_ids(&b),
        "each destination has its own delivery id"
    );
    wait_until(10, "delivered state", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 2
    })
    .await;
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn retryable_statuses_are_retried_with_the_same_webhook_id_until_delivered() {
    let rx = TestReceiver::start().await;
    rx.script([500, 502, 503, 408, 409, 425].map(Answer::status));
    let (_d, hub) = hub_with(&http_destination("sink", &rx.url("/in"), 10)).await;
    assert_eq!(
        send(hub.addr(), "msg_r", "{\"type\":\"x\"}")
            .await
            .status()
            .as_u16(),
        202
    );
    wait_until(15, "7 attempts", || async { rx.count() == 7 }).await;
    let ids = webhook_ids(&rx);
    assert!(
        ids.iter().all(|i| i == &ids[0]),
        "webhook-id changed across retries: {ids:?}"
    );
    let list = deliveries(hub.addr(), "").await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id, ids[0]);
    wait_until(10, "delivered", || async {
        delivery_state(hub.addr(), &id).await["summary"]["state"] == "delivered"
    })
    .await;
    let d = delivery_state(hub.addr(), &id).await;
    let statuses: Vec<u64> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![500, 502, 503, 408, 409, 425, 200]);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_and_timeouts_are_retried() {
    // A port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let slow = TestReceiver::start().await;
    // The first answer comes far later than the hub's 2 s time-out, so it cannot beat the
    // time-out however late the hub gets to its timer.
    slow.script([Answer {
        status: 200,
        retry_after: None,
        delay: Duration::from_secs(60),
    }]);
    let (_d, hub) = hub_with(
        &(http_destination("down", &format!("http://{closed}/x"), 2)
            + &http_destination("slow", &slow.url("/s"), 2)),
    )
    .await;
    send(hub.addr(), "msg_t", "{\"type\":\"x\"}").await;
    wait_until(20, "both lanes settled", || async {
        let l = deliveries(hub.addr(), "").await;
        l.len() == 2
            && l.iter()
                .all(|d| d["state"] == "dead" || d["state"] == "delivered")
    })
    .await;
    let down = deliveries(hub.addr(), "destination=down").await;
    let d = delivery_state(hub.addr(), down[0]["id"].as_str().unwrap()).await;
    assert_eq!(d["summary"]["state"], "dead");
    assert!(
        d["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["error_class"] == "connect"),
        "{d}"
    );
    let s = deliveries(hub.addr(), "destination=slow").await;
    let d = delivery_state(hub.addr(), s[0]["id"].as_str().unwrap()).await;
    assert_eq!(d["attempts"][0]["error_class"], "timeout", "{d}");
    assert_eq!(
        d["summary"]["state"], "delivered",
        "second attempt answers at once: {d}"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let rx = TestReceiver::start().await;
    rx.script([Answer {
        status: 429,
        retry_after: Some("2"),
        delay: Duration::ZERO,
    }]);
    let (_d, hub) = hub_with(&http_destination("sink", &rx.url("/in"), 5)).await;
    send(hub.addr(), "msg_429", "{\"type\":\"x\"}").await;
    wait_until(15, "second attempt", || async { rx.count() == 2 }).await;
    let r = rx.received();
    let gap = r[1].at - r[0].at;
    // Backoff alone would retry within 100 ms; Retry-After asked for 2 s.
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, before Retry-After"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_goes_to_the_dlq_and_replay_delivers_it_with_the_same_key() {
    let rx = TestReceiver::start().await;
    rx.script([Answer::status(400)]);
    let (_d, hub) = hub_with(&http_destination("sink", &rx.url("/in"), 10)).await;
    send(hub.addr(), "msg_p", "{\"type\":\"x\"}").await;
    wait_until(10, "dead letter", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;
    assert_eq!(rx.count(), 1, "a 400 must not be retried");
    let dead = &deliveries(hub.addr(), "state=dead").await[0];
    assert!(
        dead["last_error"].as_str().unwrap().contains("400"),
        "{dead}"
    );
    let id = dead["id"].as_str().unwrap().to_string();

    let r = admin_post(
        hub.addr(),
        "/admin/v1/replay",
        serde_json::json!({"delivery_id": id}),
    )
    .await;
    assert_eq!(r["replayed"], 1);
    wait_until(10, "replayed delivery", || async {
        delivery_state(hub.addr(), &id).await["summary"]["state"] == "delivered"
    })
    .await;
    let ids = webhook_ids(&rx);
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "replay must keep the webhook-id");
    let d = delivery_state(hub.addr(), &id).await;
    assert_eq!(d["summary"]["replays"], 1);
    assert_eq!(
        d["attempts"].as_array().unwrap().len(),
        2,
        "attempt history kept across replay"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_stop_at_max_attempts_and_the_delivery_is_dead_with_every_attempt() {
    let rx = TestReceiver::start().await;
    rx.set_default(Answer::status(503));
    let (_d, hub) = hub_with(&http_destination("sink", &rx.url("/in"), 3)).await;
    send(hub.addr(), "msg_m", "{\"type\":\"x\"}").await;
    wait_until(10, "dead", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;
    assert_eq!(rx.count(), 3);
    let id = deliveries(hub.addr(), "state=dead").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = delivery_state(hub.addr(), &id).await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 3);
    assert!(
        d["summary"]["last_error"].as_str().unwrap().contains("503"),
        "{d}"
    );
    // Replay by flow and time range puts it back.
    rx.set_default(Answer::status(200));
    let r = admin_post(
        hub.addr(),
        "/admin/v1/replay",
        serde_json::json!({"flow": "orders", "since": "1h", "state": "dead"}),
    )
    .await;
    assert_eq!(r["replayed"], 1);
    wait_until(10, "delivered after replay", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 1
    })
    .await;
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_are_signed_per_standard_webhooks() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let secret = "whsec_ZGVtby1jcm0tc2lnbmluZy1zZWNyZXQtMzJieXRlcyE=";
    write_config(
        &cfg,
        &format!(
            "      sink:\n        system: dst\n        http:\n          url: {}\n          signing:\n            standard_webhooks: {{ secret: {{ file: out-secret }} }}\n",
            rx.url("/in")
        ),
    );
    std::fs::write(cfg.join("out-secret"), secret).unwrap();
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    send(hub.addr(), "msg_s", "{\"type\":\"x\"}").await;
    wait_until(10, "delivery", || async { rx.count() == 1 }).await;
    let r = &rx.received()[0];
    use ferry_signature::SignatureScheme;
    let verifier = ferry_signature::schemes::StandardWebhooks::new(
        ferry_signature::SigningKey::from_standard_webhooks(secret).unwrap(),
        300,
    );
    verifier
        .verify(&r.headers, &r.body, now_secs())
        .expect("outbound signature verifies");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_refuses_calls_without_the_token() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub_with(&http_destination("sink", &rx.url("/in"), 3)).await;
    for (method, path) in [
        ("GET", "/admin/v1/lanes"),
        ("GET", "/admin/v1/deliveries"),
        (
            "GET",
            "/admin/v1/deliveries/dlv_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b",
        ),
        (
            "GET",
            "/admin/v1/events/fev_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b",
        ),
        ("POST", "/admin/v1/replay"),
    ] {
        let url = format!("http://{}{path}", hub.addr());
        let req = if method == "GET" {
            client().get(&url)
        } else {
            client()
                .post(&url)
                .json(&serde_json::json!({"flow": "orders"}))
        };
        let resp = req.try_clone().unwrap().send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{method} {path} without token");
        let resp = req.bearer_auth("wrong").send().await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            401,
            "{method} {path} with a wrong token"
        );
    }
    hub.shutdown().await.unwrap();
}

/// A hub stopped while clients hold keep-alive connections open lets go of its data dir
/// before `shutdown` returns: the next hub in the same process opens the same store at
/// once, every time, and delivers what the last one accepted.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_hub_releases_its_store_for_the_next_one_at_once() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let data = dir.path().join("data");
    write_config(&cfg, &http_destination("a", &rx.url("/a"), 3));
    // One client for every request: its pooled connections stay open across requests.
    let keep_alive = client();
    for round in 0..3 {
        let hub = start_hub(&cfg, &data).await;
        for i in 0..10 {
            let id = format!("msg_{round}_{i}");
            let body = format!("{{\"type\":\"order.created\",\"n\":{i}}}");
            let mut req = keep_alive
                .post(format!("http://{}/ingest/orders", hub.addr()))
                .body(body.clone());
            for (k, v) in signed(&id, &body) {
                req = req.header(k, v);
            }
            assert_eq!(req.send().await.unwrap().status().as_u16(), 202);
        }
        let listed = keep_alive
            .get(format!("http://{}/admin/v1/deliveries?limit=1", hub.addr()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status().as_u16(), 200);
        hub.shutdown().await.unwrap();
    }
    let hub = start_hub(&cfg, &data).await;
    wait_until(15, "all 30 events delivered", || async { rx.count() >= 30 }).await;
    hub.shutdown().await.unwrap();
}
