//! The `kafka` source against a real Kafka-protocol broker, through the hub: offsets
//! committed only after Ferry's commit (nothing lost across a `kill -9` under load is
//! `kafka_kill9.rs`, run alone), a poison
//! message rejected (browsable, replayable) without blocking its partition, a record sent
//! twice delivered once (by the payload's id), and backpressure leaving records uncommitted.
//! Needs `FERRY_TEST_KAFKA_URL` (e.g. `127.0.0.1:9092`); skips with a reason without it.

mod common;

use common::queues::{self, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_offsets_are_committed_only_after_the_commit() {
    let Some(broker) = Broker::kafka().await else {
        return;
    };
    queues::acknowledged_only_after_the_commit(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_poison_messages_are_rejected_and_replayed() {
    let Some(broker) = Broker::kafka().await else {
        return;
    };
    queues::poison_is_rejected_and_replayed(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_a_record_sent_twice_is_delivered_once() {
    let Some(broker) = Broker::kafka().await else {
        return;
    };
    // A record produced again is a new offset: the payload's `id` is the dedupe key.
    queues::a_redelivered_message_is_delivered_once(broker, &["event_id: /id"], "d-0-copy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_backpressure_leaves_records_uncommitted() {
    let Some(broker) = Broker::kafka().await else {
        return;
    };
    queues::backpressure_leaves_messages_with_the_broker(broker).await;
}
