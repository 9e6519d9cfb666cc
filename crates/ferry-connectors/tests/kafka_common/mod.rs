//! Test helpers for a real Kafka-protocol broker (`FERRY_TEST_KAFKA_URL`, e.g.
//! `127.0.0.1:9092`, as `.ci/run` starts it): fresh topics, and everything a topic holds.
//! Shared by the connector tests and the hub's end-to-end tests (`#[path]`).
#![allow(dead_code)]

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// The broker to test against, or `None` (the test then says why it skips).
pub fn kafka_url() -> Option<String> {
    match std::env::var("FERRY_TEST_KAFKA_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: FERRY_TEST_KAFKA_URL is not set (e.g. 127.0.0.1:9092)");
            None
        }
    }
}

/// A name unique to this run, e.g. for a topic or a group.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Create `topic` with `partitions` partitions.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    for result in results {
        result.expect("topic created");
    }
}

/// A fresh topic with `partitions` partitions: its name.
pub async fn fresh_topic(brokers: &str, partitions: i32) -> String {
    let topic = unique("ferry-test");
    create_topic(brokers, &topic, partitions).await;
    topic
}

/// One record as a topic holds it.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Record {
    /// The value of header `name`, if the record has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything `topic` holds now, partition by partition, in offset order.
pub async fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || read_all_blocking(&brokers, &topic))
        .await
        .unwrap()
}

fn read_all_blocking(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("ferry-test-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    // Read until every partition's next offset reaches its high watermark, asking the
    // broker for the watermarks again each time they are reached: a watermark read before
    // a batch's last records are visible would otherwise end the read early.
    let high_watermarks = |consumer: &BaseConsumer| -> std::collections::HashMap<i32, i64> {
        partitions
            .iter()
            .map(|&p| {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p, timeout)
                    .expect("watermarks");
                (p, high)
            })
            .collect()
    };
    let mut out = Vec::new();
    let mut next: std::collections::HashMap<i32, i64> =
        partitions.iter().map(|&p| (p, 0)).collect();
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut highs = high_watermarks(&consumer);
    loop {
        if highs.iter().all(|(p, high)| next[p] >= *high) {
            highs = high_watermarks(&consumer);
            if highs.iter().all(|(p, high)| next[p] >= *high) {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic}: partitions not read to their end: {highs:?}, next {next:?}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.expect("consume");
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_string(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        next.insert(message.partition(), message.offset() + 1);
        out.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            body: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
        });
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// Produce `bodies` to `topic` (acks=all), each under its key when given.
pub async fn produce(brokers: &str, topic: &str, records: &[(Option<&str>, &str)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // As Ferry's producer: tansu keeps only the first record of a multi-record batch.
        .set("batch.num.messages", "1")
        .create()
        .expect("producer");
    let sends = records.iter().map(|(key, body)| {
        let mut record: FutureRecord<'_, str, str> = FutureRecord::to(topic).payload(*body);
        if let Some(key) = key {
            record = record.key(*key);
        }
        producer.send(record, Duration::from_secs(10))
    });
    for result in futures_util::future::join_all(sends).await {
        result.expect("produced");
    }
}
