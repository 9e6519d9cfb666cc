//! `examples/event-bus`: webhook → NATS JetStream → HTTP. It validates without a warning and
//! its fixture tests pass (the real `ferry validate` and `ferry test`); and on a copy of it,
//! against a real NATS server, a signed order posted to the hub is published under its
//! region's subject, read back from the stream by the second flow and put to the CRM, while a
//! message on the bus that is not an order becomes a rejected record.
//! The hub part needs `FERRY_TEST_NATS_URL`; it skips with a reason without it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/event-bus")
}

#[test]
fn the_event_bus_example_validates_and_its_fixtures_pass() {
    let (code, stdout, stderr) = ferry_on_dir(&["validate"], &example());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("valid — 3 systems, 2 flows, 2 destinations, 0 warnings"),
        "{stdout}"
    );
    let (code, stdout, stderr) = ferry_on_dir(&["test"], &example());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
}

fn order(id: &str, region: &str, customer: &str) -> String {
    json!({"id": id, "type": "order.created", "region": region,
           "customer": {"id": customer, "email": "ada@example.com"}, "total_cents": 4200})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_go_through_the_bus_to_the_crm() {
    let Ok(url) = std::env::var("FERRY_TEST_NATS_URL") else {
        eprintln!("skipped: FERRY_TEST_NATS_URL is not set (e.g. nats://127.0.0.1:4222)");
        return;
    };
    // The example's stream and subjects, made unique to this run.
    let run = uuid::Uuid::now_v7().simple().to_string();
    let (stream, prefix) = (format!("ORDERS_{run}"), format!("orders-{run}"));
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{prefix}.>")],
        max_age: std::time::Duration::from_secs(900),
        ..Default::default()
    })
    .await
    .unwrap();

    let crm = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("event-bus");
    copy_dir(&example(), &cfg);
    std::fs::write(cfg.join("secrets/admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(cfg.join("secrets/checkout-webhook-secret"), SOURCE_SECRET).unwrap();
    let settings = std::fs::read_to_string(cfg.join("ferry.yaml")).unwrap();
    std::fs::write(
        cfg.join("ferry.yaml"),
        settings.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0"),
    )
    .unwrap();
    let flows = std::fs::read_to_string(cfg.join("flows/orders.yaml")).unwrap();
    std::fs::write(
        cfg.join("flows/orders.yaml"),
        flows
            .replace("nats://127.0.0.1:4222", &url)
            .replace("stream: ORDERS", &format!("stream: {stream}"))
            .replace("\"orders.", &format!("\"{prefix}."))
            .replace("http://127.0.0.1:9103", &crm.url("")),
    )
    .unwrap();
    let (child, addr) = spawn_ferry(&cfg, &dir.path().join("data"), &dir.path().join("log"));
    let _child = KillOnDrop(child);

    // Two orders from the checkout, signed; one that breaks the schema is refused.
    for (id, region, customer) in [("ord_1", "eu", "cus_17"), ("ord_2", "us", "cus_18")] {
        let body = order(id, region, customer);
        let resp = post_to(addr, "orders-to-bus", &body, &signed(id, &body)).await;
        assert_eq!(resp.status().as_u16(), 202);
    }
    let bad = json!({"id": "ord_3", "type": "order.created"}).to_string();
    let resp = post_to(addr, "orders-to-bus", &bad, &signed("ord_3", &bad)).await;
    assert_eq!(resp.status().as_u16(), 422);

    // The bus holds each under its region's subject.
    wait_until(30, "both orders on the bus", || async {
        let mut s = js.get_stream(stream.as_str()).await.unwrap();
        s.info().await.unwrap().state.messages == 2
    })
    .await;
    let s = js.get_stream(stream.as_str()).await.unwrap();
    let eu = s
        .get_last_raw_message_by_subject(&format!("{prefix}.eu"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&eu.payload).unwrap()["id"],
        "ord_1"
    );

    // Read back from the stream, each becomes the CRM's last order of its customer.
    wait_until(30, "the CRM is called twice", || async { crm.count() >= 2 }).await;
    let mut puts: Vec<(String, Value)> = crm
        .received()
        .iter()
        .map(|r| (r.path.clone(), serde_json::from_slice(&r.body).unwrap()))
        .collect();
    puts.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(puts[0].0, "/customers/cus_17/last-order");
    assert_eq!(
        puts[0].1,
        json!({"customer_id": "cus_17", "order_id": "ord_1", "region": "eu", "total_cents": 4200})
    );
    assert_eq!(puts[1].0, "/customers/cus_18/last-order");

    // Something else on the bus is a rejected record, not a blocked stream.
    js.publish(
        format!("{prefix}.eu"),
        json!({"id": "evt_9", "type": "cart.abandoned"})
            .to_string()
            .into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    wait_until(30, "the stray message rejected", || async {
        let listed = admin_get(addr, "/admin/v1/rejected?flow=orders-to-crm&limit=10").await;
        listed["rejected"]
            .as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["reason"] == "unknown_event_type")
    })
    .await;
    let _ = js.delete_stream(stream.as_str()).await;
}
