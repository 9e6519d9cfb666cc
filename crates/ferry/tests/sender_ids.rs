//! Finding an event by the id its sender gave it: Ferry's own ids (`fev_…`) no longer look
//! like a vendor's (Stripe's are `evt_…`), and events and deliveries are searchable by the
//! sender's id (the stored dedupe key) through the admin API, `ferry events` and
//! `ferry dlq list`.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

const STRIPE_ID: &str = "evt_1Q0bqYLkdIwHu7ix";

fn stripe_body(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","object":"event","type":"invoice.paid","data":{{"object":{{"id":"in_1"}}}}}}"#
    )
}

async fn send_stripe(hub: std::net::SocketAddr, id: &str) -> Value {
    let body = stripe_body(id);
    let sig = stripe_signature(STRIPE_SECRET, now_secs(), &body);
    let resp = post_to(hub, "stripe", &body, &[("stripe-signature", sig)]).await;
    assert_eq!(resp.status().as_u16(), 202);
    resp.json().await.unwrap()
}

async fn get(hub: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("http://{hub}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_and_deliveries_are_found_by_the_senders_id() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_vendor_config(&dir.path().join("cfg"), &rx);
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();

    let accepted = send_stripe(addr, STRIPE_ID).await;
    send_stripe(addr, "evt_1Q0bqYLkdIwHu7iy").await;
    let ferry_id = accepted["event_id"].as_str().unwrap().to_string();
    assert!(ferry_id.starts_with("fev_"), "{ferry_id}");

    let (status, page) = get(addr, &format!("/admin/v1/events?sender_id={STRIPE_ID}")).await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["id"], ferry_id.as_str());
    assert_eq!(events[0]["sender_id"], STRIPE_ID);
    assert_eq!(events[0]["flow"], "stripe");
    assert_eq!(events[0]["event_type"], "invoice.paid");
    let (_, none) = get(addr, "/admin/v1/events?sender_id=evt_unknown").await;
    assert_eq!(none["events"], json!([]));

    let found = deliveries(addr, &format!("sender_id={STRIPE_ID}")).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["event_id"], ferry_id.as_str());
    assert_eq!(deliveries(addr, "flow=stripe").await.len(), 2);

    // A vendor's id where a Ferry id belongs: refused, saying where to look it up.
    let (status, problem) = get(addr, &format!("/admin/v1/events/{STRIPE_ID}")).await;
    assert_eq!(status, 400, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("sender_id={STRIPE_ID}")),
        "{detail}"
    );
    // Ferry's id, and its old `evt_` form, both name the event.
    let hex = ferry_id.strip_prefix("fev_").unwrap();
    for id in [ferry_id.clone(), format!("evt_{hex}")] {
        let (status, ev) = get(addr, &format!("/admin/v1/events/{id}")).await;
        assert_eq!(status, 200, "{id}: {ev}");
        assert_eq!(ev["id"], ferry_id.as_str());
    }

    // Replay selects by the sender's id too.
    wait_until(30, "both delivered", || async {
        deliveries(addr, "flow=stripe&state=delivered").await.len() == 2
    })
    .await;
    let r = admin_post(addr, "/admin/v1/replay", json!({"sender_id": STRIPE_ID})).await;
    assert_eq!(r["replayed"], 1);
    hub.shutdown().await.unwrap();
}

fn ferry_cli(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--url", &format!("http://{addr}"), "--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ferry {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_finds_an_event_and_its_dead_delivery_by_the_senders_id() {
    let rx = TestReceiver::start().await;
    // The CRM refuses everything: the delivery is dead-lettered at once.
    rx.set_default(Answer::status(422));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    write_vendor_config(&cfg, &rx);
    let (child, addr) = spawn_ferry(&cfg, &dir.path().join("data"), &dir.path().join("log"));
    let _child = KillOnDrop(child);

    let accepted = send_stripe(addr, STRIPE_ID).await;
    let ferry_id = accepted["event_id"].as_str().unwrap().to_string();
    wait_until(30, "the delivery is dead", || async {
        deliveries(addr, "state=dead").await.len() == 1
    })
    .await;
    let dead_id = deliveries(addr, "state=dead").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = ferry_cli(addr, &["events", "--sender-id", STRIPE_ID]);
    assert!(out.contains(&ferry_id), "{out}");
    assert!(out.contains(STRIPE_ID), "{out}");
    assert!(out.contains(&dead_id) && out.contains("dead"), "{out}");
    let out = ferry_cli(addr, &["events", "--sender-id", STRIPE_ID, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"][0]["id"], ferry_id.as_str());
    assert_eq!(v["deliveries"][0]["state"], "dead");
    let out = ferry_cli(addr, &["events", &ferry_id]);
    assert!(
        out.contains("invoice.paid") && out.contains(&dead_id),
        "{out}"
    );

    let out = ferry_cli(addr, &["dlq", "list", "--sender-id", STRIPE_ID]);
    assert!(out.contains(&dead_id), "{out}");
    let out = ferry_cli(addr, &["dlq", "list", "--sender-id", "evt_someone_else"]);
    assert!(out.contains("No dead delivery matches"), "{out}");
    let out = ferry_cli(addr, &["events", "--sender-id", "evt_someone_else"]);
    assert!(out.contains("No event has the sender id"), "{out}");
}
