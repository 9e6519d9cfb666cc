//! Vendors' own event ids through the real hub: each signature scheme knows where its
//! vendor puts the id of an event (Stripe: the body's `id`; GitHub: `X-GitHub-Delivery`;
//! Standard Webhooks: `webhook-id`), so a re-sent event is stored and delivered once without
//! any `event_id` in the config; and a request with an empty signature header is answered
//! `signature_missing`.

mod common;

use common::*;
use serde_json::Value;

async fn json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resent_stripe_event_is_stored_once_by_its_body_id() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_vendor_config(&dir.path().join("cfg"), &rx);
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();

    let body = r#"{"id":"evt_1Q0bqYLkdIwHu7ix","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1"}}}"#;
    let t = now_secs();
    let sig = |t: i64| vec![("stripe-signature", stripe_signature(STRIPE_SECRET, t, body))];
    let (status, first) = json(post_to(addr, "stripe", body, &sig(t)).await).await;
    assert_eq!(status, 202, "{first}");
    // Stripe retries with the same event, signed anew (another `t`), and no id header.
    let (status, again) = json(post_to(addr, "stripe", body, &sig(t + 1)).await).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
    // Another Stripe event is another event.
    let other = body.replace("evt_1Q0bqYLkdIwHu7ix", "evt_1Q0bqYLkdIwHu7iy");
    let resp = post_to(
        addr,
        "stripe",
        &other,
        &[(
            "stripe-signature",
            stripe_signature(STRIPE_SECRET, t, &other),
        )],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 202);

    wait_until(30, "both events delivered", || async {
        deliveries(addr, "flow=stripe&state=delivered").await.len() == 2
    })
    .await;
    assert_eq!(deliveries(addr, "flow=stripe").await.len(), 2);
    assert_eq!(
        rx.received().iter().filter(|r| r.path == "/stripe").count(),
        2
    );
    // The stored dedupe key is Stripe's id.
    let ev = admin_get(
        addr,
        &format!("/admin/v1/events/{}", first["event_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(ev["dedupe_key"], "evt_1Q0bqYLkdIwHu7ix");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_github_event_is_stored_once_by_its_delivery_header() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_vendor_config(&dir.path().join("cfg"), &rx);
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();

    let body = r#"{"action":"opened","number":7}"#;
    let headers = |delivery: &str| {
        vec![
            ("x-hub-signature-256", github_signature(GITHUB_SECRET, body)),
            ("x-github-delivery", delivery.to_string()),
            ("x-github-event", "pull_request".to_string()),
        ]
    };
    let (status, first) = json(post_to(addr, "github", body, &headers("72d3162e-1")).await).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = json(post_to(addr, "github", body, &headers("72d3162e-1")).await).await;
    assert_eq!((status, &again["duplicate"]), (200, &Value::Bool(true)));
    // The same body under another delivery id is another event (GitHub sends one id per
    // event; the body alone says nothing).
    let (status, _) = json(post_to(addr, "github", body, &headers("72d3162e-2")).await).await;
    assert_eq!(status, 202);
    assert_eq!(deliveries(addr, "flow=github").await.len(), 2);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_empty_stripe_signature_is_missing_not_malformed() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_vendor_config(&dir.path().join("cfg"), &rx);
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();
    let body = r#"{"id":"evt_1","type":"invoice.paid"}"#;

    let resp = post_to(addr, "stripe", body, &[("stripe-signature", String::new())]).await;
    let (status, problem) = json(resp).await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(problem["code"], "signature_missing", "{problem}");
    // Present but without `t=`: that is malformed.
    let resp = post_to(
        addr,
        "stripe",
        body,
        &[("stripe-signature", "v1=00".into())],
    )
    .await;
    let (status, problem) = json(resp).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("signature_malformed"))
    );
    assert!(deliveries(addr, "").await.is_empty());
    hub.shutdown().await.unwrap();
}
