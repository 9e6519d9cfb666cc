//! The connector conformance suite: the cases every destination connector passes, whatever
//! it talks to (as the store's suite is for every store backend). Each system's test gives a
//! [`Harness`] over a real instance of that system and calls [`run`].
//!
//! Every case sends records shaped `{"id": <delivery id>, "n": <i>}`, so a harness reads
//! back, per message or row, the id it arrived under (an HTTP `webhook-id`, a NATS
//! `Nats-Msg-Id`, a RabbitMQ `message_id`, a table's key column) and the `id` in its body.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_delivery::{BatchCall, Connector, Verdict};
use ferry_store::{ClaimedDelivery, DeliveryId, EventId, LaneKey};

/// One message or row as the system under test holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The id it arrived under (the connector's idempotency key).
    pub id: String,
    /// The `id` field of its body.
    pub body_id: String,
}

/// A real system behind a connector, for the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A connector to the working system (a fresh queue, stream, table or receiver).
    async fn connector(&self) -> Arc<dyn Connector>;
    /// A connector to an address where nothing answers.
    fn unreachable(&self) -> Arc<dyn Connector>;
    /// Everything the system holds now, as delivered through [`Harness::connector`].
    async fn received(&self) -> Vec<Received>;
    /// Whether the system keeps a message sent twice under one id once (NATS's duplicate
    /// window, an upsert); otherwise it keeps both copies, each under the same id.
    fn dedupes(&self) -> bool;
}

/// A claimed delivery with the record `{"id": <its id>, "n": n}`.
pub fn delivery(n: usize) -> ClaimedDelivery {
    let id = DeliveryId::new();
    let payload = format!(r#"{{"id":"{id}","n":{n}}}"#);
    ClaimedDelivery {
        id,
        event_id: EventId::new(),
        lane: LaneKey {
            flow: "conformance".into(),
            destination: "under-test".into(),
        },
        event_type: Some("conformance.test".into()),
        received_at: 0,
        headers: vec![("content-type".into(), "application/json".into())],
        payload: Bytes::from(payload),
        attempts: 0,
        round_attempts: 0,
        round_started_at: 0,
        clear_payload: None,
    }
}

/// Run every case against `harness`; panics with the case's name on the first failure.
pub async fn run(harness: &dyn Harness) {
    describes_itself(harness).await;
    delivered_means_held_under_the_delivery_id(harness).await;
    a_resend_keeps_its_id(harness).await;
    a_batch_call_delivers_every_record(harness).await;
    an_unreachable_system_is_retried(harness).await;
}

async fn describes_itself(harness: &dyn Harness) {
    let connector = harness.connector().await;
    assert!(!connector.kind().is_empty(), "describes_itself: a kind");
    assert!(
        !connector.timeout().is_zero(),
        "describes_itself: a call is bounded in time"
    );
    let record = delivery(0);
    assert!(
        connector.record_overhead(&record) < 64 * 1024,
        "describes_itself: a record's framing is bounded"
    );
}

async fn delivered_means_held_under_the_delivery_id(harness: &dyn Harness) {
    let connector = harness.connector().await;
    let record = delivery(1);
    let result = connector.send(&record, None).await;
    assert_eq!(
        result.verdict,
        Verdict::Delivered,
        "delivered_means_held: {:?}",
        result.error
    );
    let id = record.id.to_string();
    let held = harness.received().await;
    assert!(
        held.iter().any(|r| r.id == id && r.body_id == id),
        "delivered_means_held: once delivered, the system holds it under its id: {held:?}"
    );
}

async fn a_resend_keeps_its_id(harness: &dyn Harness) {
    let connector = harness.connector().await;
    let record = delivery(2);
    for _ in 0..2 {
        let result = connector.send(&record, None).await;
        assert_eq!(
            result.verdict,
            Verdict::Delivered,
            "a_resend: {:?}",
            result.error
        );
    }
    let id = record.id.to_string();
    let copies = harness
        .received()
        .await
        .into_iter()
        .filter(|r| r.body_id == id)
        .collect::<Vec<_>>();
    let expected = if harness.dedupes() { 1 } else { 2 };
    assert_eq!(copies.len(), expected, "a_resend: copies kept: {copies:?}");
    assert!(
        copies.iter().all(|r| r.id == id),
        "a_resend: every copy carries the same id"
    );
}

async fn a_batch_call_delivers_every_record(harness: &dyn Harness) {
    let connector = harness.connector().await;
    let records: Vec<ClaimedDelivery> = (10..14).map(delivery).collect();
    let members: Vec<(&ClaimedDelivery, Bytes)> =
        records.iter().map(|d| (d, d.payload.clone())).collect();
    let (result, _) = connector
        .send_batch(BatchCall {
            id: "bat_conformance",
            records: &members,
            wrap: None,
            keep_body: 0,
        })
        .await;
    assert_eq!(
        result.verdict,
        Verdict::Delivered,
        "a_batch: {:?}",
        result.error
    );
    let held = harness.received().await;
    for record in &records {
        let id = record.id.to_string();
        assert!(
            held.iter().any(|r| r.body_id == id),
            "a_batch: record {id} is held: {held:?}"
        );
    }
}

async fn an_unreachable_system_is_retried(harness: &dyn Harness) {
    let connector = harness.unreachable();
    let result = connector.send(&delivery(3), None).await;
    assert!(
        matches!(result.verdict, Verdict::Retry { .. }),
        "an_unreachable_system: retried, not {:?}",
        result.verdict
    );
    assert_eq!(
        result.error_class, "connect",
        "an_unreachable_system: its class"
    );
    assert!(result.error.is_some(), "an_unreachable_system: a reason");
}
