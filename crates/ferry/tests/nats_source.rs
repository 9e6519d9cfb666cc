//! The `nats` source against a real NATS server with JetStream, through the hub: messages
//! acknowledged only after Ferry's commit, nothing lost across a `kill -9` under load, a
//! poison message rejected (browsable, replayable) without blocking the stream, a
//! redelivered message delivered once, and backpressure leaving messages in the stream.
//! Needs `FERRY_TEST_NATS_URL` (e.g. `nats://127.0.0.1:4222`); skips with a reason without it.

mod common;

use common::queues::{self, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_messages_are_acknowledged_only_after_the_commit() {
    let Some(broker) = Broker::nats().await else {
        return;
    };
    queues::acknowledged_only_after_the_commit(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_poison_messages_are_rejected_and_replayed() {
    let Some(broker) = Broker::nats().await else {
        return;
    };
    queues::poison_is_rejected_and_replayed(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_a_redelivered_message_is_delivered_once() {
    let Some(broker) = Broker::nats().await else {
        return;
    };
    // The stream drops a re-publish under one `Nats-Msg-Id`: the copy comes under another
    // message id, and the payload's `id` is the dedupe key.
    queues::a_redelivered_message_is_delivered_once(broker, &["event_id: /id"], "d-0-copy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_backpressure_leaves_messages_in_the_stream() {
    let Some(broker) = Broker::nats().await else {
        return;
    };
    queues::backpressure_leaves_messages_with_the_broker(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_kill_9_under_load_loses_nothing() {
    let Some(broker) = Broker::nats().await else {
        return;
    };
    queues::kill_9_under_load_loses_nothing(broker, 3000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_flow_is_probed_with_a_message() {
    let Some(broker) = Broker::nats().await else {
        return;
    };
    queues::probed_with_a_message(broker).await;
}
