//! Ingress through the real server: bad input is refused with a precise problem, counted, and
//! nothing is stored; re-sent events are stored once.

mod common;

use common::*;
use serde_json::Value;

async fn setup() -> (tempfile::TempDir, TestReceiver, ferry::hub::RunningHub) {
    let dir = tempfile::tempdir().unwrap();
    let rx = TestReceiver::start().await;
    write_config(
        &dir.path().join("cfg"),
        &http_destination("sink", &rx.url("/in"), 3),
    );
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    (dir, rx, hub)
}

async fn problem(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

async fn nothing_stored(hub: std::net::SocketAddr) {
    assert!(
        deliveries(hub, "").await.is_empty(),
        "a refused request left deliveries behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_refused_with_its_position_and_nothing_is_stored() {
    let (_d, _rx, hub) = setup().await;
    let resp = send(hub.addr(), "msg_1", "{\"type\": \"a\",").await;
    let body = problem(resp, 400, "malformed_json").await;
    assert!(body["detail"].as_str().unwrap().contains("line 1"));
    assert_eq!(body["flow"], "orders");
    nothing_stored(hub.addr()).await;
    let metrics = client()
        .get(format!("http://{}/metrics", hub.addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferry_ingress_rejected_total")
                && l.contains("reason=\"malformed_json\"")
                && l.contains("flow=\"orders\"")),
        "rejection not counted:\n{metrics}"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_body_is_refused_by_length_and_while_streaming() {
    let (_d, _rx, hub) = setup().await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    problem(
        send(hub.addr(), "msg_big", &big).await,
        413,
        "body_too_large",
    )
    .await;
    // Chunked, without Content-Length: the limit still holds.
    let stream = futures_stream(big.clone());
    let mut req = client()
        .post(format!("http://{}/ingest/orders", hub.addr()))
        .body(stream);
    for (k, v) in signed("msg_big2", &big) {
        req = req.header(k, v);
    }
    problem(req.send().await.unwrap(), 413, "body_too_large").await;
    nothing_stored(hub.addr()).await;
    hub.shutdown().await.unwrap();
}

fn futures_stream(s: String) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = s
        .into_bytes()
        .chunks(1000)
        .map(|c| Ok(c.to_vec()))
        .collect();
    reqwest::Body::wrap_stream(tokio_stream_iter(chunks))
}

fn tokio_stream_iter(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_problems_are_refused_with_their_reason() {
    let (_d, _rx, hub) = setup().await;
    let url = format!("http://{}/ingest/orders", hub.addr());
    let body = "{\"type\":\"order.created\"}";

    // No signature headers at all.
    let resp = client().post(&url).body(body).send().await.unwrap();
    problem(resp, 401, "signature_missing").await;

    // Signed, then tampered.
    let mut req = client()
        .post(&url)
        .body("{\"type\":\"order.created\",\"amount\":1}");
    for (k, v) in signed("msg_t", body) {
        req = req.header(k, v);
    }
    problem(req.send().await.unwrap(), 401, "signature_mismatch").await;

    // A timestamp ten minutes old.
    let key = ferry_signature::SigningKey::from_standard_webhooks(SOURCE_SECRET).unwrap();
    let ts = now_secs() - 600;
    let resp = client()
        .post(&url)
        .header("webhook-id", "msg_old")
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            ferry_signature::standard_webhooks::sign(&key, "msg_old", ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    problem(resp, 401, "timestamp_stale").await;
    nothing_stored(hub.addr()).await;
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_flow_is_404_problem() {
    let (_d, _rx, hub) = setup().await;
    let resp = client()
        .post(format!("http://{}/ingest/no-such-flow", hub.addr()))
        .body("{}")
        .send()
        .await
        .unwrap();
    let body = problem(resp, 404, "unknown_flow").await;
    assert!(body["detail"].as_str().unwrap().contains("no-such-flow"));
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resent_event_is_acknowledged_again_and_stored_once() {
    let (_d, rx, hub) = setup().await;
    let body = "{\"type\":\"order.created\",\"id\":1}";
    let first = send(hub.addr(), "msg_dup", body).await;
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["duplicate"], false);
    let again = send(hub.addr(), "msg_dup", body).await;
    assert_eq!(again.status().as_u16(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
    wait_until(10, "the one delivery", || async { rx.count() >= 1 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 1, "a duplicate was delivered");
    assert_eq!(deliveries(hub.addr(), "").await.len(), 1);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_means_committed_the_event_is_readable_right_after_the_2xx() {
    let (_d, _rx, hub) = setup().await;
    let resp = send(hub.addr(), "msg_c", "{\"type\":\"order.paid\"}").await;
    assert_eq!(resp.status().as_u16(), 202);
    let body: Value = resp.json().await.unwrap();
    let id = body["event_id"].as_str().unwrap();
    let ev = admin_get(hub.addr(), &format!("/admin/v1/events/{id}")).await;
    assert_eq!(ev["event_type"], "order.paid");
    assert_eq!(ev["dedupe_key"], "msg_c");
    assert_eq!(ev["payload"]["type"], "order.paid");
    hub.shutdown().await.unwrap();
}

/// Nesting at `serde_json`'s recursion limit (128 levels) has its own refusal, `too_deep`,
/// on a flow that only validates the body and on one that reads from it alike.
#[tokio::test(flavor = "multi_thread")]
async fn json_nested_too_deep_is_refused_as_too_deep() {
    let (_d, rx, hub) = setup().await;
    let deep = format!(
        "{{\"type\":\"order.created\",\"n\":{}{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let body = problem(send(hub.addr(), "msg_deep", &deep).await, 400, "too_deep").await;
    assert!(
        body["detail"].as_str().unwrap().contains("128 levels"),
        "{body}"
    );
    assert_eq!(body["flow"], "orders");
    // 127 levels are read.
    let fine = format!(
        "{{\"type\":\"order.created\",\"n\":{}{}}}",
        "[".repeat(126),
        "]".repeat(126)
    );
    assert_eq!(send(hub.addr(), "msg_ok", &fine).await.status(), 202);
    wait_until(5, "the accepted event delivered", || async {
        rx.count() == 1
    })
    .await;
    assert_eq!(deliveries(hub.addr(), "").await.len(), 1);
    let metrics = metrics_text(hub.addr()).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferry_ingress_rejected_total")
                && l.contains("reason=\"too_deep\"")
                && l.contains("flow=\"orders\"")),
        "rejection not counted:\n{metrics}"
    );
    hub.shutdown().await.unwrap();
}
