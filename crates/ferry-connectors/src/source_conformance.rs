//! The source conformance suite: the cases every queue source connector passes, whatever
//! broker it reads (as [`crate::conformance`] is for destinations). Each broker's test gives
//! a [`SourceHarness`] over a real broker and calls [`run`].
//!
//! Cases: messages come with the id they were published under; nothing acknowledged comes
//! back; everything not acknowledged comes back after a release; an acknowledgement affects
//! only the messages it names; a source whose queue does not exist yet fails, and works at
//! its next call once the queue is there; an unreachable broker is an error, not a hang;
//! `try_receive` takes what is there without waiting.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;

use crate::source::{QueueSource, SourceMessage};

/// Longest wait for an expected message.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long a batch may linger in the cases.
const LINGER: Duration = Duration::from_millis(20);

/// A real broker, for the suite.
#[async_trait]
pub trait SourceHarness: Send + Sync {
    /// A new queue (stream, topic) of its own, not created on the broker yet.
    async fn queue(&self) -> Box<dyn TestQueue>;
    /// A source of a broker address where nothing answers.
    fn unreachable(&self) -> Box<dyn QueueSource>;
}

/// One queue of the broker under test.
#[async_trait]
pub trait TestQueue: Send + Sync {
    /// Create it on the broker.
    async fn create(&self);
    /// Publish `body` under message id `id` (durably: it is in the queue when this returns).
    async fn publish(&self, id: &str, body: &[u8]);
    /// A new source connector reading it (every source of one queue shares its
    /// acknowledgements: a durable consumer, a consumer group, a queue).
    fn source(&self) -> Box<dyn QueueSource>;
}

/// Run every case against `harness`; panics with the case's name on the first failure.
pub async fn run(harness: &dyn SourceHarness) {
    messages_come_with_their_ids(harness).await;
    unacknowledged_come_back_after_release(harness).await;
    an_ack_affects_only_its_tokens(harness).await;
    try_receive_takes_what_is_there(harness).await;
    a_missing_queue_fails_then_reconnects(harness).await;
    an_unreachable_broker_is_an_error(harness).await;
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}"}}"#).into_bytes()
}

/// Receive until `n` messages came (panics after [`PATIENCE`]).
async fn take(case: &str, source: &mut dyn QueueSource, n: usize) -> Vec<SourceMessage> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < n {
        let batch = tokio::time::timeout_at(deadline, source.receive(n - got.len(), LINGER))
            .await
            .unwrap_or_else(|_| panic!("{case}: only {} of {n} messages came", got.len()));
        match batch {
            Ok(messages) => got.extend(messages),
            Err(e) => panic!("{case}: receive failed: {e}"),
        }
    }
    got
}

/// Receive until the message `marker` came; every message before it, by id.
async fn until(case: &str, source: &mut dyn QueueSource, marker: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        for m in take(case, source, 1).await {
            let id = m.id.clone().unwrap_or_default();
            source.ack(vec![m.token]).await.expect("ack");
            if id == marker {
                return before;
            }
            before.push(id);
        }
    }
}

fn ids(messages: &[SourceMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.id.clone().unwrap_or_default())
        .collect()
}

async fn messages_come_with_their_ids(harness: &dyn SourceHarness) {
    const CASE: &str = "messages_come_with_their_ids";
    let queue = harness.queue().await;
    queue.create().await;
    let sent: Vec<String> = (0..5).map(|i| format!("m-{i}")).collect();
    for id in &sent {
        queue.publish(id, &body(id)).await;
    }
    let mut source = queue.source();
    assert!(!source.kind().is_empty(), "{CASE}: a kind");
    let got = take(CASE, source.as_mut(), sent.len()).await;
    assert_eq!(ids(&got), sent, "{CASE}: in publish order, under their ids");
    for m in &got {
        let id = m.id.as_deref().unwrap_or_default();
        assert_eq!(m.payload.as_ref(), body(id).as_slice(), "{CASE}: the body");
    }
    let tokens: BTreeSet<_> = got.iter().map(|m| m.token).collect();
    assert_eq!(tokens.len(), got.len(), "{CASE}: one token per message");
    source
        .ack(got.iter().map(|m| m.token).collect())
        .await
        .expect("ack");
    source.release().await;
    // Acknowledged messages never come back: a new source sees only what follows.
    queue.publish("marker", &body("marker")).await;
    let mut again = queue.source();
    let before = until(CASE, again.as_mut(), "marker").await;
    assert!(
        before.is_empty(),
        "{CASE}: acknowledged came back: {before:?}"
    );
    again.release().await;
}

async fn unacknowledged_come_back_after_release(harness: &dyn SourceHarness) {
    const CASE: &str = "unacknowledged_come_back_after_release";
    let queue = harness.queue().await;
    queue.create().await;
    for id in ["u-0", "u-1", "u-2"] {
        queue.publish(id, &body(id)).await;
    }
    let mut source = queue.source();
    let got = take(CASE, source.as_mut(), 3).await;
    source.ack(vec![got[0].token]).await.expect("ack");
    source.release().await;
    // The same connector reads again after a release, and gets what it did not acknowledge.
    queue.publish("marker", &body("marker")).await;
    let mut before = until(CASE, source.as_mut(), "marker").await;
    before.sort();
    assert_eq!(before, vec!["u-1", "u-2"], "{CASE}: redelivered");
    source.release().await;
}

async fn an_ack_affects_only_its_tokens(harness: &dyn SourceHarness) {
    const CASE: &str = "an_ack_affects_only_its_tokens";
    let queue = harness.queue().await;
    queue.create().await;
    for id in ["a-0", "a-1", "a-2", "a-3"] {
        queue.publish(id, &body(id)).await;
    }
    let mut source = queue.source();
    let got = take(CASE, source.as_mut(), 4).await;
    // Out of order and with gaps: the second and the fourth.
    source
        .ack(vec![got[3].token, got[1].token])
        .await
        .expect("ack");
    source.release().await;
    queue.publish("marker", &body("marker")).await;
    let mut other = queue.source();
    let mut before = until(CASE, other.as_mut(), "marker").await;
    before.sort();
    let mut expected = vec![ids(&got)[0].clone(), ids(&got)[2].clone()];
    expected.sort();
    assert_eq!(
        before, expected,
        "{CASE}: only the unacknowledged came back"
    );
    other.release().await;
}

async fn try_receive_takes_what_is_there(harness: &dyn SourceHarness) {
    const CASE: &str = "try_receive_takes_what_is_there";
    let queue = harness.queue().await;
    queue.create().await;
    let mut source = queue.source();
    let empty = tokio::time::timeout(PATIENCE, source.try_receive(10))
        .await
        .unwrap_or_else(|_| panic!("{CASE}: an empty queue makes it wait"))
        .expect("try_receive");
    assert!(empty.is_empty(), "{CASE}: nothing there, nothing taken");
    for id in ["t-0", "t-1", "t-2"] {
        queue.publish(id, &body(id)).await;
    }
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{CASE}: only {} of 3 taken",
            got.len()
        );
        let more = tokio::time::timeout(PATIENCE, source.try_receive(3 - got.len()))
            .await
            .unwrap_or_else(|_| panic!("{CASE}: it waited"))
            .expect("try_receive");
        if more.is_empty() {
            // The broker pushes asynchronously: look again shortly.
            tokio::time::sleep(LINGER).await;
        }
        got.extend(more);
    }
    assert_eq!(ids(&got), vec!["t-0", "t-1", "t-2"], "{CASE}: in order");
    source
        .ack(got.iter().map(|m| m.token).collect())
        .await
        .expect("ack");
    source.release().await;
}

async fn a_missing_queue_fails_then_reconnects(harness: &dyn SourceHarness) {
    const CASE: &str = "a_missing_queue_fails_then_reconnects";
    let queue = harness.queue().await;
    let mut source = queue.source();
    let first = tokio::time::timeout(PATIENCE, source.receive(10, LINGER))
        .await
        .unwrap_or_else(|_| panic!("{CASE}: a missing queue hangs"));
    let error = first.err().unwrap_or_else(|| panic!("{CASE}: no error"));
    assert!(!error.message.is_empty(), "{CASE}: a reason");
    queue.create().await;
    queue.publish("r-0", &body("r-0")).await;
    let got = take(CASE, source.as_mut(), 1).await;
    assert_eq!(ids(&got), vec!["r-0"], "{CASE}: read after the error");
    source.ack(vec![got[0].token]).await.expect("ack");
    source.release().await;
}

async fn an_unreachable_broker_is_an_error(harness: &dyn SourceHarness) {
    const CASE: &str = "an_unreachable_broker_is_an_error";
    let mut source = harness.unreachable();
    let result = tokio::time::timeout(PATIENCE, source.receive(10, LINGER))
        .await
        .unwrap_or_else(|_| panic!("{CASE}: an unreachable broker hangs"));
    let error = result.err().unwrap_or_else(|| panic!("{CASE}: no error"));
    assert!(!error.message.is_empty(), "{CASE}: a reason");
    source.release().await;
}
