//! Throughput of the Kafka connectors against a real broker, the way the hub drives them:
//! the destination per event (`--concurrency` sends in flight, as a lane's bulkhead) and
//! batched (`send_batch` calls of `--batch` records, `--concurrency` calls in flight), then
//! the queue source reading everything back in one consumer group (receive, then ack,
//! batches of up to 1000). No hub and no store: the connector and the broker only.
//!
//! ```text
//! cargo run --release -p ferry-connectors --example kafka_throughput -- \
//!     --brokers 127.0.0.1:9092 --events 50000 --concurrency 64 --batch 100
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_config::KafkaDestination;
use ferry_connectors::conformance::delivery;
use ferry_connectors::kafka::{KafkaConnector, KafkaSource, KafkaSourceConfig};
use ferry_connectors::source::QueueSource;
use ferry_delivery::{BatchCall, Connector, Verdict};
use ferry_store::ClaimedDelivery;
use futures_util::StreamExt;
use futures_util::stream;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

struct Args {
    brokers: String,
    events: usize,
    concurrency: usize,
    batch: usize,
    partitions: i32,
}

fn args() -> Args {
    let mut out = Args {
        brokers: "127.0.0.1:9092".into(),
        events: 50_000,
        concurrency: 64,
        batch: 100,
        partitions: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<usize>().expect("a number");
        match flag.as_str() {
            "--brokers" => out.brokers = value.clone(),
            "--events" => out.events = number(),
            "--concurrency" => out.concurrency = number().max(1),
            "--batch" => out.batch = number().max(1),
            "--partitions" => out.partitions = i32::try_from(number()).expect("partitions"),
            other => panic!("unknown flag {other}"),
        }
    }
    out
}

async fn create_topic(brokers: &str, partitions: i32) -> String {
    let topic = format!("ferry-bench-{}", uuid::Uuid::now_v7().simple());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    for result in created {
        result.expect("topic created");
    }
    topic
}

fn connector(brokers: &str, topic: &str) -> Arc<KafkaConnector> {
    let config = KafkaDestination {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
        key: Some("{{ event.id }}".into()),
        timeout: Duration::from_secs(30),
    };
    Arc::new(KafkaConnector::new(config).expect("connector"))
}

fn rate(n: usize, took: Duration) -> String {
    format!(
        "{n} in {:.2}s = {:.0}/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    )
}

async fn per_event(a: &Args, topic: &str) -> Duration {
    let connector = connector(&a.brokers, topic);
    let records: Vec<ClaimedDelivery> = (0..a.events).map(delivery).collect();
    // One warm-up send: connecting and the producer id are not throughput.
    assert_eq!(
        connector.send(&records[0], None).await.verdict,
        Verdict::Delivered
    );
    let start = Instant::now();
    let failed = stream::iter(&records[1..])
        .map(|d| {
            let connector = connector.clone();
            async move { connector.send(d, None).await.verdict != Verdict::Delivered }
        })
        .buffer_unordered(a.concurrency)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    assert_eq!(failed, 0, "every send delivered");
    start.elapsed()
}

async fn batched(a: &Args, topic: &str) -> Duration {
    let connector = connector(&a.brokers, topic);
    let records: Vec<ClaimedDelivery> = (0..a.events).map(delivery).collect();
    assert_eq!(
        connector.send(&records[0], None).await.verdict,
        Verdict::Delivered
    );
    let start = Instant::now();
    let calls: Vec<Vec<(&ClaimedDelivery, Bytes)>> = records[1..]
        .chunks(a.batch)
        .map(|chunk| chunk.iter().map(|d| (d, d.payload.clone())).collect())
        .collect();
    let failed = stream::iter(&calls)
        .map(|members| {
            let connector = connector.clone();
            async move {
                let call = BatchCall {
                    id: "bat_bench",
                    records: members,
                    wrap: None,
                    keep_body: 0,
                };
                connector.send_batch(call).await.0.verdict != Verdict::Delivered
            }
        })
        .buffer_unordered(a.concurrency)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    assert_eq!(failed, 0, "every batch delivered");
    start.elapsed()
}

/// Read `n` messages of `topic` in a new group, acknowledging each batch: (first message
/// in, all read and committed).
async fn consume(a: &Args, topic: &str, n: usize) -> Duration {
    let mut source = KafkaSource::new(KafkaSourceConfig {
        brokers: a.brokers.clone(),
        topics: vec![topic.to_string()],
        group: format!("ferry-bench-{}", uuid::Uuid::now_v7().simple()),
    });
    let mut read = 0;
    let mut start = None;
    while read < n {
        let batch = source
            .receive(1000, Duration::from_millis(5))
            .await
            .expect("receive");
        start.get_or_insert_with(Instant::now);
        read += batch.len();
        source
            .ack(batch.into_iter().map(|m| m.token).collect())
            .await
            .expect("ack");
    }
    let took = start.map(|s| s.elapsed()).unwrap_or_default();
    source.release().await;
    took
}

#[tokio::main]
async fn main() {
    let a = args();
    println!(
        "kafka at {}: {} small JSON events, {} partitions, {} in flight, batches of {}",
        a.brokers, a.events, a.partitions, a.concurrency, a.batch
    );
    let topic = create_topic(&a.brokers, a.partitions).await;
    let took = per_event(&a, &topic).await;
    println!("destination, per event: {}", rate(a.events - 1, took));
    let took = batched(&a, &topic).await;
    println!("destination, batched:   {}", rate(a.events - 1, took));
    let total = 2 * a.events;
    let took = consume(&a, &topic, total).await;
    println!("source, receive + ack:  {}", rate(total, took));
}
