//! The `rabbitmq` destination against a real RabbitMQ: delivered only once the broker
//! confirmed, persistent, the delivery id as `message_id` across replays; an unroutable
//! message dead-lettered with the broker's reason; an unreachable broker retried.
//! Needs `FERRY_TEST_AMQP_URL` (e.g. `amqp://127.0.0.1:5672/%2f`, user and password
//! `guest`); skips with a reason without it.

mod common;

use common::*;
use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

/// The broker to test against, or `None` (the test then says why it skips).
fn amqp_url() -> Option<String> {
    match std::env::var("FERRY_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: FERRY_TEST_AMQP_URL is not set (e.g. amqp://127.0.0.1:5672/%2f)");
            None
        }
    }
}

/// The broker URL with the test broker's `guest` credentials, for the test's own client.
fn with_guest(url: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).unwrap();
    parsed.set_username("guest").unwrap();
    parsed.set_password(Some("guest")).unwrap();
    parsed.to_string()
}

fn rabbitmq_destination(name: &str, url: &str, routing_key: &str) -> String {
    format!(
        "      {name}:\n        system: dst\n        rabbitmq:\n          url: \"{url}\"\n          username: guest\n          password: {{ file: amqp-password }}\n          routing_key: {routing_key}\n          timeout: 2s\n        retry:\n          max_attempts: 50\n          initial_backoff: 50ms\n          max_backoff: 200ms\n"
    )
}

#[tokio::test]
async fn deliveries_are_confirmed_persistent_and_carry_their_id() {
    let Some(url) = amqp_url() else { return };
    let conn = Connection::connect(&with_guest(&url), ConnectionProperties::default())
        .await
        .expect("RabbitMQ is reachable");
    let channel = conn.create_channel().await.unwrap();
    let queue = format!("ferry-test-{}", uuid::Uuid::now_v7().simple());
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_config(cfg.path(), &rabbitmq_destination("queue", &url, &queue));
    std::fs::write(cfg.path().join("amqp-password"), "guest\n").unwrap();
    let hub = start_hub(cfg.path(), data.path()).await;
    for i in 0..3 {
        let body = format!(r#"{{"type":"order.created","n":{i}}}"#);
        assert_eq!(
            send(hub.addr(), &format!("r-{i}"), &body).await.status(),
            202
        );
    }
    wait_until(30, "three deliveries delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 3
    })
    .await;
    let ids: Vec<String> = deliveries(hub.addr(), "state=delivered")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();

    // Confirmed means in the queue: each message persistent, under its delivery id.
    let mut seen = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let props = &message.delivery.properties;
        assert_eq!(props.delivery_mode(), &Some(2), "persistent");
        let id = props.message_id().as_ref().unwrap().to_string();
        assert!(ids.contains(&id), "{id} is a delivery id");
        let body = String::from_utf8_lossy(&message.delivery.data).into_owned();
        assert!(body.contains("order.created"), "{body}");
        seen.push(id);
    }
    assert_eq!(seen.len(), 3);

    // A replay publishes each again with the same message id.
    replay_delivered_and_wait(hub.addr(), 3).await;
    let mut again = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let id = message.delivery.properties.message_id().as_ref().unwrap();
        again.push(id.to_string());
    }
    again.sort();
    seen.sort();
    assert_eq!(again, seen, "the same ids across a replay");
    hub.shutdown().await.unwrap();
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unroutable_message_is_dead_lettered_with_the_brokers_reason() {
    let Some(url) = amqp_url() else { return };
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let nowhere = format!("ferry-no-such-queue-{}", uuid::Uuid::now_v7().simple());
    write_config(cfg.path(), &rabbitmq_destination("queue", &url, &nowhere));
    std::fs::write(cfg.path().join("amqp-password"), "guest\n").unwrap();
    let hub = start_hub(cfg.path(), data.path()).await;
    assert_eq!(
        send(hub.addr(), "r-x", r#"{"type":"t"}"#).await.status(),
        202
    );
    wait_until(30, "the delivery dead-lettered", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;
    let id = deliveries(hub.addr(), "state=dead").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
    let attempt = &shown["attempts"][0];
    assert_eq!(attempt["error_class"], "unroutable", "{shown}");
    assert!(
        attempt["error"].as_str().unwrap().contains("NO_ROUTE"),
        "{shown}"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_broker_is_retried() {
    let Some(_) = amqp_url() else { return };
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_config(
        cfg.path(),
        &rabbitmq_destination("queue", "amqp://127.0.0.1:1/%2f", "q"),
    );
    std::fs::write(cfg.path().join("amqp-password"), "guest\n").unwrap();
    let hub = start_hub(cfg.path(), data.path()).await;
    assert_eq!(
        send(hub.addr(), "r-down", r#"{"type":"t"}"#).await.status(),
        202
    );
    wait_until(30, "a failed attempt recorded", || async {
        let d = deliveries(hub.addr(), "").await;
        d.len() == 1 && d[0]["attempts"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let d = &deliveries(hub.addr(), "").await[0];
    assert_ne!(d["state"], "dead", "{d}");
    let shown = admin_get(
        hub.addr(),
        &format!("/admin/v1/deliveries/{}", d["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(shown["attempts"][0]["error_class"], "connect", "{shown}");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_routing_key_template_sends_each_event_to_its_own_queue() {
    let Some(url) = amqp_url() else { return };
    let conn = Connection::connect(&with_guest(&url), ConnectionProperties::default())
        .await
        .expect("RabbitMQ is reachable");
    let channel = conn.create_channel().await.unwrap();
    let prefix = format!("ferry-test-{}", uuid::Uuid::now_v7().simple());
    let queues = [format!("{prefix}-eu"), format!("{prefix}-us")];
    for queue in &queues {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let key = format!("'{prefix}-{{{{ event.region }}}}'");
    write_config(cfg.path(), &rabbitmq_destination("queue", &url, &key));
    std::fs::write(cfg.path().join("amqp-password"), "guest\n").unwrap();
    let hub = start_hub(cfg.path(), data.path()).await;
    for (id, region) in [("a", "eu"), ("b", "us"), ("c", "eu")] {
        let body = format!(r#"{{"type":"order","region":"{region}","id":"{id}"}}"#);
        assert_eq!(send(hub.addr(), id, &body).await.status(), 202);
    }
    // No `region`: the template fails, for good.
    assert_eq!(
        send(hub.addr(), "d", r#"{"type":"order"}"#).await.status(),
        202
    );
    wait_until(30, "three delivered, one dead", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 3
            && deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;

    for (queue, expected) in queues.iter().zip([vec!["a", "c"], vec!["b"]]) {
        let mut ids = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let body: serde_json::Value = serde_json::from_slice(&message.delivery.data).unwrap();
            ids.push(body["id"].as_str().unwrap().to_string());
        }
        ids.sort();
        assert_eq!(ids, expected, "queue {queue}");
    }
    let dead = deliveries(hub.addr(), "state=dead").await;
    let id = dead[0]["id"].as_str().unwrap();
    let detail = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["error_class"], "template_failed", "{detail}");
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .contains("the routing key template"),
        "{detail}"
    );
    hub.shutdown().await.unwrap();
    for queue in &queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
}
