//! The Kafka queue source against a real Kafka-protocol broker: messages received with
//! their `{topic}/{partition}/{offset}` ids, offsets committed only up to the first message
//! not acknowledged, and a new consumer of the group resuming there. Needs
//! `FERRY_TEST_KAFKA_URL` (e.g. `127.0.0.1:9092`); skips with a reason without it.

#[path = "kafka_common/mod.rs"]
mod kafka_common;

use std::time::Duration;

use ferry_connectors::kafka::{KafkaSource, KafkaSourceConfig};
use ferry_connectors::source::{QueueSource, SourceMessage};
use kafka_common::{fresh_topic, kafka_url, produce, unique};

fn source(brokers: &str, topic: &str, group: &str) -> KafkaSource {
    KafkaSource::new(KafkaSourceConfig {
        brokers: brokers.to_string(),
        topics: vec![topic.to_string()],
        group: group.to_string(),
    })
}

/// Receive until `n` messages came (a generous deadline: joining a group takes a while).
async fn receive_n(source: &mut KafkaSource, n: usize) -> Vec<SourceMessage> {
    let mut got = Vec::new();
    let wait = async {
        while got.len() < n {
            let batch = source
                .receive(n - got.len(), Duration::from_millis(200))
                .await
                .expect("receive");
            got.extend(batch);
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .unwrap_or_else(|_| panic!("{n} messages did not come"));
    got
}

async fn produce_numbered(brokers: &str, topic: &str, range: std::ops::Range<usize>) {
    let bodies: Vec<String> = range.map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    let records: Vec<(Option<&str>, &str)> = bodies.iter().map(|b| (None, b.as_str())).collect();
    produce(brokers, topic, &records).await;
}

fn bodies(messages: &[SourceMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

#[tokio::test]
async fn a_new_consumer_of_the_group_resumes_after_the_committed_offset() {
    let Some(brokers) = kafka_url() else { return };
    let topic = fresh_topic(&brokers, 1).await;
    let group = unique("ferry-group");
    produce_numbered(&brokers, &topic, 0..10).await;

    let mut first = source(&brokers, &topic, &group);
    assert_eq!(first.kind(), "kafka");
    let got = receive_n(&mut first, 10).await;
    let ids: Vec<String> = got.iter().filter_map(|m| m.id.clone()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("{topic}/0/{i}")).collect();
    assert_eq!(ids, expected, "ids are topic/partition/offset");
    assert_eq!(bodies(&got)[3], r#"{"n":3}"#);
    // The first four are committed; the rest are let go.
    first
        .ack(got.iter().take(4).map(|m| m.token).collect())
        .await
        .expect("ack");
    first.release().await;

    let mut second = source(&brokers, &topic, &group);
    let again = receive_n(&mut second, 6).await;
    let expected: Vec<String> = (4..10).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    assert_eq!(
        bodies(&again),
        expected,
        "resumes at the first not acknowledged"
    );

    // All acknowledged: a third consumer reads only what is published after.
    second
        .ack(again.iter().map(|m| m.token).collect())
        .await
        .expect("ack");
    second.release().await;
    produce_numbered(&brokers, &topic, 10..12).await;
    let mut third = source(&brokers, &topic, &group);
    let last = receive_n(&mut third, 2).await;
    assert_eq!(bodies(&last), [r#"{"n":10}"#, r#"{"n":11}"#]);
    third.release().await;
}

#[tokio::test]
async fn a_message_not_acknowledged_comes_back_with_all_after_it() {
    let Some(brokers) = kafka_url() else { return };
    let topic = fresh_topic(&brokers, 1).await;
    let group = unique("ferry-group");
    produce_numbered(&brokers, &topic, 0..10).await;

    let mut first = source(&brokers, &topic, &group);
    let got = receive_n(&mut first, 10).await;
    // Every message but the sixth (offset 5) is acknowledged, in two rounds, out of order.
    let tokens: Vec<_> = got.iter().map(|m| m.token).collect();
    first.ack(tokens[6..].to_vec()).await.expect("ack");
    first.ack(tokens[..5].to_vec()).await.expect("ack");
    first.release().await;

    // Never committed past the unacknowledged one: it comes back, first.
    let mut second = source(&brokers, &topic, &group);
    let again = receive_n(&mut second, 5).await;
    assert_eq!(
        again[0].id.as_deref(),
        Some(format!("{topic}/0/5").as_str()),
        "{:?}",
        again.iter().map(|m| &m.id).collect::<Vec<_>>()
    );
    assert_eq!(bodies(&again)[0], r#"{"n":5}"#);
    second.release().await;
}

#[tokio::test]
async fn every_partition_is_read_and_committed_on_its_own() {
    let Some(brokers) = kafka_url() else { return };
    let topic = fresh_topic(&brokers, 3).await;
    let group = unique("ferry-group");
    let bodies_in: Vec<String> = (0..30).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    let keys: Vec<String> = (0..30).map(|i| format!("k{}", i % 7)).collect();
    let records: Vec<(Option<&str>, &str)> = keys
        .iter()
        .zip(&bodies_in)
        .map(|(k, b)| (Some(k.as_str()), b.as_str()))
        .collect();
    produce(&brokers, &topic, &records).await;

    let mut first = source(&brokers, &topic, &group);
    let got = receive_n(&mut first, 30).await;
    let mut seen = bodies(&got);
    seen.sort();
    let mut expected = bodies_in.clone();
    expected.sort();
    assert_eq!(seen, expected, "every message of every partition, once");
    let partitions: std::collections::BTreeSet<String> = got
        .iter()
        .filter_map(|m| m.id.as_ref())
        .map(|id| id.rsplit_once('/').unwrap().0.to_string())
        .collect();
    assert!(
        partitions.len() > 1,
        "spread over partitions: {partitions:?}"
    );
    first
        .ack(got.iter().map(|m| m.token).collect())
        .await
        .expect("ack");
    first.release().await;

    produce_numbered(&brokers, &topic, 30..31).await;
    let mut second = source(&brokers, &topic, &group);
    let next = receive_n(&mut second, 1).await;
    assert_eq!(bodies(&next), [r#"{"n":30}"#], "nothing read twice");
    second.release().await;
}
