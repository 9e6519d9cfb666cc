//! Queue sources under test: a real NATS JetStream stream or RabbitMQ queue of its own per
//! test, a config whose flow reads it, and the scenarios both sources must pass (see
//! `nats_source.rs`, `rabbitmq_source.rs`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

/// The Kafka test helpers the connector tests use (one copy per test binary).
#[path = "../../../ferry-connectors/tests/kafka_common/mod.rs"]
pub mod kafka_common;

/// A broker holding one queue (or stream) for one test.
pub enum Broker {
    Nats {
        url: String,
        js: async_nats::jetstream::Context,
        stream: String,
        subject: String,
    },
    Rabbit {
        url: String,
        channel: lapin::Channel,
        _conn: lapin::Connection,
        queue: String,
    },
    Kafka {
        brokers: String,
        topic: String,
    },
}

/// The consumer group the hub's Kafka source joins for `topic`.
fn kafka_group(topic: &str) -> String {
    format!("ferry-{topic}")
}

fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl Broker {
    /// A fresh stream on `FERRY_TEST_NATS_URL`, or `None` (after saying why the test skips).
    pub async fn nats() -> Option<Broker> {
        let url = match std::env::var("FERRY_TEST_NATS_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                eprintln!("skipped: FERRY_TEST_NATS_URL is not set (e.g. nats://127.0.0.1:4222)");
                return None;
            }
        };
        let client = async_nats::connect(&url).await.expect("NATS is reachable");
        let js = async_nats::jetstream::new(client);
        let id = unique();
        let (stream, subject) = (format!("FERRY_SRC_{id}"), format!("ferry.src.{id}"));
        js.create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            max_age: Duration::from_secs(900),
            ..Default::default()
        })
        .await
        .expect("stream created");
        Some(Broker::Nats {
            url,
            js,
            stream,
            subject,
        })
    }

    /// A fresh durable queue on `FERRY_TEST_AMQP_URL`, or `None` (after saying why).
    pub async fn rabbit() -> Option<Broker> {
        let url = match std::env::var("FERRY_TEST_AMQP_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                eprintln!(
                    "skipped: FERRY_TEST_AMQP_URL is not set (e.g. amqp://127.0.0.1:5672/%2f)"
                );
                return None;
            }
        };
        let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
            .await
            .expect("RabbitMQ is reachable");
        let channel = conn.create_channel().await.expect("channel");
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let queue = format!("ferry-src-{}", unique());
        channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("queue declared");
        Some(Broker::Rabbit {
            url,
            channel,
            _conn: conn,
            queue,
        })
    }

    /// A fresh topic of 3 partitions on `FERRY_TEST_KAFKA_URL`, or `None` (after saying why).
    pub async fn kafka() -> Option<Broker> {
        let brokers = kafka_common::kafka_url()?;
        let topic = kafka_common::fresh_topic(&brokers, 3).await;
        Some(Broker::Kafka { brokers, topic })
    }

    /// The flow's `source:` block (indented for [`write_queue_config`]), with `extra`
    /// settings (e.g. `batch: 10`).
    pub fn source_yaml(&self, extra: &[&str]) -> String {
        let mut yaml = match self {
            Broker::Nats {
                url,
                stream,
                subject,
                ..
            } => format!(
                "      nats:\n        system: src\n        url: \"{url}\"\n        stream: {stream}\n        consumer: ferry-{stream}\n        subject: {subject}\n        event_type: /type\n"
            ),
            Broker::Rabbit { url, queue, .. } => format!(
                "      rabbitmq:\n        system: src\n        url: \"{url}\"\n        username: guest\n        password: {{ file: amqp-password }}\n        queue: {queue}\n        event_type: /type\n"
            ),
            Broker::Kafka { brokers, topic } => format!(
                "      kafka:\n        system: src\n        brokers: \"{brokers}\"\n        topics: [{topic}]\n        group: {}\n        event_type: /type\n",
                kafka_group(topic)
            ),
        };
        for line in extra {
            yaml.push_str(&format!("        {line}\n"));
        }
        yaml
    }

    /// Publish `body` under message id `id` (`Nats-Msg-Id`, AMQP `message_id`), durably.
    pub async fn publish(&self, id: &str, body: &str) {
        self.publish_all(&[(id.to_string(), body.to_string())])
            .await;
    }

    /// Publish many, each under its id, waiting for every broker confirmation at the end.
    /// (Kafka has no message id: a record is known by its topic, partition and offset, so
    /// the id is its key.)
    pub async fn publish_all(&self, messages: &[(String, String)]) {
        match self {
            Broker::Kafka { brokers, topic } => {
                let records: Vec<(Option<&str>, &str)> = messages
                    .iter()
                    .map(|(id, body)| (Some(id.as_str()), body.as_str()))
                    .collect();
                kafka_common::produce(brokers, topic, &records).await;
            }
            Broker::Nats { js, subject, .. } => {
                let mut acks = Vec::with_capacity(messages.len());
                for (id, body) in messages {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", id.as_str());
                    acks.push(
                        js.publish_with_headers(subject.clone(), headers, body.clone().into())
                            .await
                            .expect("publish"),
                    );
                }
                for ack in acks {
                    ack.await.expect("stored by the stream");
                }
            }
            Broker::Rabbit { channel, queue, .. } => {
                let mut confirms = Vec::with_capacity(messages.len());
                for (id, body) in messages {
                    confirms.push(
                        channel
                            .basic_publish(
                                "".into(),
                                queue.as_str().into(),
                                lapin::options::BasicPublishOptions::default(),
                                body.as_bytes(),
                                lapin::BasicProperties::default()
                                    .with_message_id(id.as_str().into())
                                    .with_content_type("application/json".into())
                                    .with_delivery_mode(2),
                            )
                            .await
                            .expect("publish"),
                    );
                }
                for confirm in confirms {
                    confirm.await.expect("confirmed");
                }
            }
        }
    }

    /// Messages the broker still holds for Ferry: NATS, those after the consumer's ack
    /// floor; RabbitMQ, those ready in the queue (not handed to a consumer).
    pub async fn held(&self) -> u64 {
        match self {
            Broker::Kafka { brokers, topic } => {
                let (brokers, topic) = (brokers.clone(), topic.clone());
                tokio::task::spawn_blocking(move || kafka_held(&brokers, &topic))
                    .await
                    .unwrap()
            }
            Broker::Nats { js, stream, .. } => {
                let name = format!("ferry-{stream}");
                let mut stream = js.get_stream(stream).await.expect("stream");
                let last = stream
                    .info()
                    .await
                    .expect("stream info")
                    .state
                    .last_sequence;
                let floor = match stream
                    .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&name)
                    .await
                {
                    Ok(mut consumer) => {
                        consumer
                            .info()
                            .await
                            .expect("consumer info")
                            .ack_floor
                            .stream_sequence
                    }
                    Err(_) => 0,
                };
                last - floor
            }
            Broker::Rabbit { channel, queue, .. } => {
                let declared = channel
                    .queue_declare(
                        queue.as_str().into(),
                        lapin::options::QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        lapin::types::FieldTable::default(),
                    )
                    .await
                    .expect("queue");
                u64::from(declared.message_count())
            }
        }
    }

    /// The broker's URL (for naming in assertions).
    pub fn url(&self) -> &str {
        match self {
            Broker::Nats { url, .. } | Broker::Rabbit { url, .. } => url,
            Broker::Kafka { brokers, .. } => brokers,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let cleanup: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match self {
            // Topics of tansu's memory storage go with the broker; nothing to remove.
            Broker::Kafka { .. } => return,
            Broker::Nats { js, stream, .. } => {
                let (js, stream) = (js.clone(), stream.clone());
                Box::pin(async move {
                    let _ = js.delete_stream(&stream).await;
                })
            }
            Broker::Rabbit { channel, queue, .. } => {
                let (channel, queue) = (channel.clone(), queue.clone());
                Box::pin(async move {
                    let _ = channel
                        .queue_delete(
                            queue.as_str().into(),
                            lapin::options::QueueDeleteOptions::default(),
                        )
                        .await;
                })
            }
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(cleanup);
        }
    }
}

/// Kafka: records after the hub's group's committed offsets, over every partition.
fn kafka_held(brokers: &str, topic: &str) -> u64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", kafka_group(topic))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    let mut list = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        list.add_partition(topic, p.id());
    }
    let committed = consumer
        .committed_offsets(list, timeout)
        .expect("committed offsets");
    let mut held = 0;
    for element in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(topic, element.partition(), timeout)
            .expect("watermarks");
        let done = match element.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        held += u64::try_from(high - done).unwrap_or(0);
    }
    held
}

/// Write a config directory whose flow `flow` reads `source_yaml` (see
/// [`Broker::source_yaml`]) through `steps_yaml` (indented by four spaces) to an HTTP
/// destination at `url` with fast retries and `dest_extra` (indented by eight spaces).
pub fn write_queue_config(
    dir: &Path,
    flow: &str,
    source_yaml: &str,
    steps_yaml: &str,
    url: &str,
    dest_extra: &str,
) {
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.join("amqp-password"), "guest").unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        "settings:\n  listen: 127.0.0.1:0\n  admin:\n    token: { file: admin-token }\n  delivery:\n    shutdown_grace: 2s\n    egress_allow: [127.0.0.0/8]\nsystems:\n  src: { owner: team-a }\n  dst: { owner: team-b, policy: { data_use: essential.service, receives: [user, system] } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("flows/queue.yaml"),
        format!(
            "flows:\n  {flow}:\n    source:\n{source_yaml}{steps_yaml}    destinations:\n      hook:\n        system: dst\n        http:\n          url: \"{url}\"\n          timeout: 2s\n          connect_timeout: 1s\n        circuit_breaker: {{ enabled: false }}\n        retry:\n          max_attempts: 100\n          initial_backoff: 20ms\n          max_backoff: 100ms\n{dest_extra}"
        ),
    )
    .unwrap();
}

/// The `id` field of the bodies `rx` received, each once, in the order first received
/// (delivery is at least once: a busy machine may see an attempt time out and repeat).
pub fn received_ids(rx: &TestReceiver) -> Vec<String> {
    let mut seen = BTreeSet::new();
    rx.received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// The events the hub stored for `flow`.
pub async fn stored_events(hub: SocketAddr, flow: &str) -> usize {
    admin_get(hub, &format!("/admin/v1/events?flow={flow}&limit=1000")).await["events"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A JSON body with this `id`.
pub fn order(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"order.created","amount":10}}"#)
}

/// The value of a metric line `name{labels…}` on the hub's `/metrics`, if present.
pub async fn metric(hub: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = metrics_text(hub).await;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

// ---- scenarios ---------------------------------------------------------------------

/// Messages are delivered; while commits fail nothing is acknowledged (the broker still
/// holds every message after the hub let go), and once commits work again all arrive.
pub async fn acknowledged_only_after_the_commit(broker: Broker) {
    let rx = TestReceiver::start().await;
    let (cfg, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_queue_config(
        cfg.path(),
        "q-commit",
        &broker.source_yaml(&[]),
        "",
        &rx.url("/hook"),
        "",
    );
    let hub = start_hub(cfg.path(), data.path()).await;
    broker.publish("c-0", &order("c-0")).await;
    wait_until(30, "the first message delivered", || async {
        received_ids(&rx) == ["c-0"]
    })
    .await;
    wait_until(30, "the first message acknowledged", || async {
        broker.held().await == 0
    })
    .await;

    hub.fail_commits(Some("injected: disk full"));
    for id in ["c-1", "c-2", "c-3"] {
        broker.publish(id, &order(id)).await;
    }
    wait_until(30, "a failed commit", || async {
        metric(
            hub.addr(),
            "ferry_source_errors_total",
            &[("flow", "q-commit")],
        )
        .await
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    hub.shutdown().await.unwrap();
    assert_eq!(
        broker.held().await,
        3,
        "nothing uncommitted was acknowledged"
    );
    assert_eq!(received_ids(&rx), ["c-0"]);

    let hub = start_hub(cfg.path(), data.path()).await;
    // Kafka: the new member waits for the group to rebalance first.
    wait_until(90, "the held messages delivered", || async {
        received_ids(&rx).len() == 4
    })
    .await;
    wait_until(30, "all acknowledged", || async {
        broker.held().await == 0
    })
    .await;
    let got: BTreeSet<String> = received_ids(&rx).into_iter().collect();
    assert_eq!(got, ["c-0", "c-1", "c-2", "c-3"].map(String::from).into());
    hub.shutdown().await.unwrap();
}

/// A malformed and a schema-violating message are stored as rejected with their reasons and
/// acknowledged; the messages around them are delivered; after a config fix (and a restart)
/// the violating one replays into an event that is delivered, the malformed one is still
/// refused with `422`.
pub async fn poison_is_rejected_and_replayed(broker: Broker) {
    let rx = TestReceiver::start().await;
    let (cfg, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let strict =
        r#"{"type":"object","required":["id","amount"],"properties":{"amount":{"type":"number"}}}"#;
    let loose = r#"{"type":"object","required":["id"]}"#;
    write_schemas(cfg.path(), &[("order", "schemas/order.json", strict)]);
    let steps = "    steps:\n      - validate: { schema: order }\n";
    write_queue_config(
        cfg.path(),
        "q-poison",
        &broker.source_yaml(&[]),
        steps,
        &rx.url("/hook"),
        "",
    );
    let hub = start_hub(cfg.path(), data.path()).await;
    broker.publish("p-0", &order("p-0")).await;
    broker
        .publish("p-bad-json", "{\"id\": \"p-bad-json\", secret-value")
        .await;
    broker
        .publish(
            "p-no-amount",
            r#"{"id":"p-no-amount","type":"order.created","note":"private"}"#,
        )
        .await;
    broker.publish("p-1", &order("p-1")).await;
    // Deliveries run in parallel: compare sets.
    let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let got = || received_ids(&rx).into_iter().collect::<BTreeSet<_>>();
    wait_until(30, "the good messages delivered", || async {
        got() == set(&["p-0", "p-1"])
    })
    .await;
    wait_until(30, "everything acknowledged", || async {
        broker.held().await == 0
    })
    .await;
    let listed = admin_get(hub.addr(), "/admin/v1/rejected?flow=q-poison&limit=10").await;
    let mut rejected = listed["rejected"].as_array().unwrap().clone();
    assert_eq!(rejected.len(), 2, "{listed}");
    match &broker {
        Broker::Kafka { topic, .. } => {
            // Partitions are read in no set order, and a record's id is where it sits.
            rejected.sort_by_key(|r| r["reason"] != "schema_violation");
            for r in &rejected {
                let id = r["message_id"].as_str().unwrap();
                assert!(id.starts_with(&format!("{topic}/")), "{id}");
            }
        }
        _ => {
            // Newest first.
            assert_eq!(rejected[0]["message_id"], "p-no-amount");
            assert_eq!(rejected[1]["message_id"], "p-bad-json");
        }
    }
    assert_eq!(rejected[0]["reason"], "schema_violation");
    assert_eq!(rejected[1]["reason"], "malformed_json");
    for r in &rejected {
        let detail = r["detail"].as_str().unwrap();
        assert!(
            !detail.contains("secret-value") && !detail.contains("private"),
            "{detail}"
        );
        assert!(r["id"].as_str().unwrap().starts_with("rej_"));
    }
    let one = admin_get(
        hub.addr(),
        &format!("/admin/v1/rejected/{}", rejected[0]["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        one["payload"]["note"], "private",
        "the payload is kept for replay"
    );
    hub.shutdown().await.unwrap();

    // Fix the schema, restart, replay.
    write_schemas(cfg.path(), &[("order", "schemas/order.json", loose)]);
    let hub = start_hub(cfg.path(), data.path()).await;
    let replay = |id: &str| {
        client()
            .post(format!(
                "http://{}/admin/v1/rejected/{id}/replay",
                hub.addr()
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let fixed = replay(rejected[0]["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(fixed.status(), 200);
    let fixed: serde_json::Value = fixed.json().await.unwrap();
    assert_eq!(fixed["stored"], 1, "{fixed}");
    wait_until(30, "the replayed message delivered", || async {
        got() == set(&["p-0", "p-1", "p-no-amount"])
    })
    .await;
    let again = replay(rejected[0]["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(again.status(), 409, "replayed once");
    let still = replay(rejected[1]["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(still.status(), 422);
    let problem: serde_json::Value = still.json().await.unwrap();
    assert_eq!(problem["code"], "malformed_json", "{problem}");
    let shown = admin_get(
        hub.addr(),
        &format!("/admin/v1/rejected/{}", rejected[0]["id"].as_str().unwrap()),
    )
    .await;
    assert!(
        shown["replayed_event"]
            .as_str()
            .unwrap()
            .starts_with("fev_"),
        "{shown}"
    );
    // The audit trail: every message stored is accepted (the replayed one too), and the
    // replay names the rejected record, its event and the admin token's id.
    let mut accepted = 0;
    let mut replays = Vec::new();
    for r in hub.store().audit_records(None, 1000).await.unwrap() {
        for e in r.parse_entries().unwrap() {
            match e {
                ferry_store::AuditEntry::Accepted { flow, .. } if flow == "q-poison" => {
                    accepted += 1
                }
                ferry_store::AuditEntry::RejectedReplayed {
                    by,
                    rejected,
                    events,
                    ..
                } => replays.push((by, rejected.to_string(), events)),
                _ => {}
            }
        }
    }
    assert_eq!(accepted, 3, "p-0, p-1 and the replayed p-no-amount");
    assert_eq!(replays.len(), 1, "{replays:?}");
    let (by, rejected_id, events) = &replays[0];
    assert!(
        by.contains(&ferry::admin::token_id("admin", ADMIN_TOKEN)),
        "{by}"
    );
    assert_eq!(rejected_id, rejected[0]["id"].as_str().unwrap());
    assert_eq!(
        events.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [shown["replayed_event"].as_str().unwrap()]
    );
    hub.shutdown().await.unwrap();
}

/// The same message twice (same id) is delivered once; the second is a duplicate,
/// acknowledged.
/// `again_id` is the id the second copy is published under (the same id, or, where the
/// broker itself drops a re-publish under one id, another id with `extra` making the
/// payload's `id` the dedupe key).
pub async fn a_redelivered_message_is_delivered_once(
    broker: Broker,
    extra: &[&str],
    again_id: &str,
) {
    let rx = TestReceiver::start().await;
    let (cfg, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_queue_config(
        cfg.path(),
        "q-dedupe",
        &broker.source_yaml(extra),
        "",
        &rx.url("/hook"),
        "",
    );
    let hub = start_hub(cfg.path(), data.path()).await;
    broker.publish("d-0", &order("d-0")).await;
    wait_until(30, "delivered", || async { received_ids(&rx) == ["d-0"] }).await;
    // Sent again under the same id (a redelivery), then one more to know it was read.
    broker.publish(again_id, &order("d-0")).await;
    broker.publish("d-1", &order("d-1")).await;
    wait_until(30, "the next delivered", || async {
        received_ids(&rx).len() == 2
    })
    .await;
    wait_until(30, "the duplicate counted", || async {
        metric(
            hub.addr(),
            "ferry_source_messages_total",
            &[("flow", "q-dedupe"), ("outcome", "duplicate")],
        )
        .await
            == Some(1.0)
    })
    .await;
    assert_eq!(received_ids(&rx), ["d-0", "d-1"]);
    assert_eq!(
        stored_events(hub.addr(), "q-dedupe").await,
        2,
        "one event per id"
    );
    wait_until(30, "all acknowledged", || async {
        broker.held().await == 0
    })
    .await;
    hub.shutdown().await.unwrap();
}

/// With the destination down and a small backlog bound, the source stops taking messages
/// (the broker keeps the rest, the pause is visible); once the destination is up, all are
/// delivered and acknowledged.
pub async fn backpressure_leaves_messages_with_the_broker(broker: Broker) {
    const N: usize = 2000;
    let rx = TestReceiver::start().await;
    rx.set_default(Answer::status(503));
    let (cfg, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = broker.source_yaml(&["batch: 10", "linger: 5ms"]);
    let bound = "        backlog: { max_pending: 20 }\n";
    let source = if matches!(broker, Broker::Rabbit { .. }) {
        source.replace("queue:", "prefetch: 10\n        queue:")
    } else {
        source
    };
    write_queue_config(
        cfg.path(),
        "q-backpressure",
        &source,
        "",
        &rx.url("/hook"),
        bound,
    );
    let messages: Vec<(String, String)> = (0..N)
        .map(|i| {
            let id = format!("b-{i}");
            (id.clone(), order(&id))
        })
        .collect();
    broker.publish_all(&messages).await;
    let hub = start_hub(cfg.path(), data.path()).await;
    wait_until(60, "the source paused", || async {
        metric(
            hub.addr(),
            "ferry_source_paused",
            &[("flow", "q-backpressure")],
        )
        .await
            == Some(1.0)
    })
    .await;
    let held = broker.held().await;
    assert!(held > 0, "the broker still holds messages while paused");
    let stored = admin_get(
        hub.addr(),
        "/admin/v1/events?flow=q-backpressure&limit=1000",
    )
    .await;
    let stored = stored["events"].as_array().unwrap().len();
    assert!(
        stored < N,
        "the hub stopped taking messages: {stored} stored"
    );

    rx.set_default(Answer::status(200));
    wait_until(120, "everything delivered", || async {
        received_ids(&rx).len() == N
    })
    .await;
    wait_until(60, "everything acknowledged", || async {
        broker.held().await == 0
    })
    .await;
    wait_until(30, "the pause lifted", || async {
        metric(
            hub.addr(),
            "ferry_source_paused",
            &[("flow", "q-backpressure")],
        )
        .await
            == Some(0.0)
    })
    .await;
    hub.shutdown().await.unwrap();
}

/// `kill -9` of the real binary while it consumes `n` messages, then a restart: every
/// published id reaches the receiver at least once.
pub async fn kill_9_under_load_loses_nothing(broker: Broker, n: usize) {
    let rx = TestReceiver::start().await;
    let (cfg, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = cfg.path().join("ferry.log");
    write_queue_config(
        cfg.path(),
        "q-kill",
        &broker.source_yaml(&["batch: 100"]),
        "",
        &rx.url("/hook"),
        "",
    );
    let published: Vec<(String, String)> = (0..n)
        .map(|i| {
            let id = format!("k-{i}");
            (id.clone(), order(&id))
        })
        .collect();
    broker.publish_all(&published).await;
    let (child, _) = spawn_ferry(cfg.path(), data.path(), &log);
    let mut child = KillOnDrop(child);
    wait_until(60, "consuming under way", || async {
        received_ids(&rx).len() >= n / 10
    })
    .await;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let before = received_ids(&rx).len();
    assert!(before < n, "killed before the end ({before} of {n})");
    let (again, _) = spawn_ferry(cfg.path(), data.path(), &log);
    let _again = KillOnDrop(again);
    let want: BTreeSet<String> = published.into_iter().map(|(id, _)| id).collect();
    wait_until(180, "every published id delivered", || async {
        received_ids(&rx).into_iter().collect::<BTreeSet<_>>() == want
    })
    .await;
    wait_until(60, "everything acknowledged", || async {
        broker.held().await == 0
    })
    .await;
}

/// A queue flow's synthetic message enters as a message read from the broker does, through
/// the flow's steps to its destination, marked; each probe is its own event even though
/// the payload's `id` (the dedupe key) is the same.
pub async fn probed_with_a_message(broker: Broker) {
    let rx = TestReceiver::start().await;
    let (cfg, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(cfg.path().join("message.json"), order("synthetic")).unwrap();
    write_queue_config(
        cfg.path(),
        "q-probe",
        &broker.source_yaml(&["event_id: /id"]),
        "    synthetic: { payload: message.json, expect_within: 10s }\n",
        &rx.url("/hook"),
        "",
    );
    let hub = start_hub(cfg.path(), data.path()).await;
    for _ in 0..2 {
        let answer = admin_post(
            hub.addr(),
            "/admin/v1/probe",
            serde_json::json!({ "flows": ["q-probe"] }),
        )
        .await;
        assert_eq!(answer["results"][0]["passed"], true, "{answer}");
    }
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.headers["ferry-synthetic"] == "true"));
    assert_eq!(received_ids(&rx), ["synthetic"]);
    hub.shutdown().await.unwrap();
}
