//! The `rabbitmq` source against a real RabbitMQ broker, through the hub: messages
//! acknowledged only after Ferry's commit, nothing lost across a `kill -9` under load, a
//! poison message rejected (browsable, replayable) without blocking the queue, a
//! redelivered message delivered once, and backpressure leaving messages in the queue.
//! Needs `FERRY_TEST_AMQP_URL` (e.g. `amqp://127.0.0.1:5672/%2f`); skips with a reason without it.

mod common;

use common::queues::{self, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_messages_are_acknowledged_only_after_the_commit() {
    let Some(broker) = Broker::rabbit().await else {
        return;
    };
    queues::acknowledged_only_after_the_commit(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_poison_messages_are_rejected_and_replayed() {
    let Some(broker) = Broker::rabbit().await else {
        return;
    };
    queues::poison_is_rejected_and_replayed(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_a_redelivered_message_is_delivered_once() {
    let Some(broker) = Broker::rabbit().await else {
        return;
    };
    // RabbitMQ keeps both copies: the second comes under the same `message_id`.
    queues::a_redelivered_message_is_delivered_once(broker, &[], "d-0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_backpressure_leaves_messages_in_the_queue() {
    let Some(broker) = Broker::rabbit().await else {
        return;
    };
    queues::backpressure_leaves_messages_with_the_broker(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_kill_9_under_load_loses_nothing() {
    let Some(broker) = Broker::rabbit().await else {
        return;
    };
    queues::kill_9_under_load_loses_nothing(broker, 3000).await;
}
