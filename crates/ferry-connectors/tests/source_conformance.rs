//! The source conformance suite (`ferry_connectors::source_conformance`) run against every
//! queue source, each over a real broker: NATS JetStream and RabbitMQ when their URLs are
//! set (`FERRY_TEST_NATS_URL`, `FERRY_TEST_AMQP_URL`; each test says why it skips
//! otherwise). Every queue, stream and consumer is unique to its case.

use std::time::Duration;

use async_trait::async_trait;
use ferry_config::{NatsSource, RabbitmqSource, SecretRef};
use ferry_connectors::nats::NatsSourceConnector;
use ferry_connectors::rabbitmq::RabbitmqSourceConnector;
use ferry_connectors::source::QueueSource;
use ferry_connectors::source_conformance::{self, SourceHarness, TestQueue};

fn env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            eprintln!("skipped: {name} is not set");
            None
        }
    }
}

fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

// ---- NATS ----------------------------------------------------------------------------

struct Nats {
    url: String,
    js: async_nats::jetstream::Context,
}

struct NatsQueue {
    url: String,
    js: async_nats::jetstream::Context,
    stream: String,
    subject: String,
}

fn nats_source(url: &str, stream: &str, subject: Option<String>) -> NatsSource {
    NatsSource {
        system: "src".into(),
        url: url.to_string(),
        stream: stream.to_string(),
        consumer: format!("ferry-{stream}"),
        subject,
        event_id: None,
        event_type: None,
        batch: 100,
        linger: Duration::from_millis(20),
    }
}

#[async_trait]
impl SourceHarness for Nats {
    async fn queue(&self) -> Box<dyn TestQueue> {
        let id = unique();
        Box::new(NatsQueue {
            url: self.url.clone(),
            js: self.js.clone(),
            stream: format!("SRC_CONFORMANCE_{id}"),
            subject: format!("src.conformance.{id}"),
        })
    }
    fn unreachable(&self) -> Box<dyn QueueSource> {
        Box::new(NatsSourceConnector::new(nats_source(
            "nats://127.0.0.1:1",
            "NOWHERE",
            None,
        )))
    }
}

#[async_trait]
impl TestQueue for NatsQueue {
    async fn create(&self) {
        self.js
            .create_stream(async_nats::jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                max_age: Duration::from_secs(600),
                ..Default::default()
            })
            .await
            .expect("stream created");
    }
    async fn publish(&self, id: &str, body: &[u8]) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        self.js
            .publish_with_headers(self.subject.clone(), headers, body.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    fn source(&self) -> Box<dyn QueueSource> {
        Box::new(NatsSourceConnector::new(nats_source(
            &self.url,
            &self.stream,
            Some(self.subject.clone()),
        )))
    }
}

impl Drop for NatsQueue {
    fn drop(&mut self) {
        let (js, stream) = (self.js.clone(), self.stream.clone());
        tokio::spawn(async move {
            let _ = js.delete_stream(&stream).await;
        });
    }
}

#[tokio::test]
async fn nats_passes_the_source_suite() {
    let Some(url) = env("FERRY_TEST_NATS_URL") else {
        return;
    };
    let client = async_nats::connect(&url).await.expect("NATS is reachable");
    let harness = Nats {
        url,
        js: async_nats::jetstream::new(client),
    };
    source_conformance::run(&harness).await;
}

// ---- RabbitMQ ------------------------------------------------------------------------

struct Rabbit {
    url: String,
    channel: lapin::Channel,
    _conn: lapin::Connection,
}

struct RabbitQueue {
    url: String,
    channel: lapin::Channel,
    queue: String,
}

fn rabbit_source(url: &str, queue: &str) -> RabbitmqSource {
    RabbitmqSource {
        system: "src".into(),
        url: url.to_string(),
        username: Some("guest".into()),
        password: Some(SecretRef::Env("UNUSED".into())),
        queue: queue.to_string(),
        prefetch: 100,
        event_id: None,
        event_type: None,
        batch: 100,
        linger: Duration::from_millis(20),
    }
}

fn guest() -> Option<secrecy::SecretString> {
    Some(secrecy::SecretString::from("guest"))
}

#[async_trait]
impl SourceHarness for Rabbit {
    async fn queue(&self) -> Box<dyn TestQueue> {
        Box::new(RabbitQueue {
            url: self.url.clone(),
            channel: self.channel.clone(),
            queue: format!("src-conformance-{}", unique()),
        })
    }
    fn unreachable(&self) -> Box<dyn QueueSource> {
        Box::new(RabbitmqSourceConnector::new(
            rabbit_source("amqp://127.0.0.1:1/%2f", "q"),
            guest(),
        ))
    }
}

#[async_trait]
impl TestQueue for RabbitQueue {
    async fn create(&self) {
        use lapin::options::QueueDeclareOptions;
        self.channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("queue declared");
    }
    async fn publish(&self, id: &str, body: &[u8]) {
        use lapin::options::BasicPublishOptions;
        self.channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                body,
                lapin::BasicProperties::default()
                    .with_message_id(id.into())
                    .with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
    }
    fn source(&self) -> Box<dyn QueueSource> {
        Box::new(RabbitmqSourceConnector::new(
            rabbit_source(&self.url, &self.queue),
            guest(),
        ))
    }
}

impl Drop for RabbitQueue {
    fn drop(&mut self) {
        let (channel, queue) = (self.channel.clone(), self.queue.clone());
        tokio::spawn(async move {
            use lapin::options::QueueDeleteOptions;
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        });
    }
}

#[tokio::test]
async fn rabbitmq_passes_the_source_suite() {
    let Some(url) = env("FERRY_TEST_AMQP_URL") else {
        return;
    };
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ is reachable");
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let harness = Rabbit {
        url,
        channel,
        _conn: conn,
    };
    source_conformance::run(&harness).await;
}
