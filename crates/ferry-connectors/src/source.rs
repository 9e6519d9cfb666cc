//! What a queue source reads through: a source connector. The hub's intake runner asks it
//! for messages, runs each through the flow's steps, commits the events (and the records
//! the flow refused) to the store, and only then acknowledges them upstream, so a crash at
//! any moment leaves every message either committed or still held by the broker.
//!
//! A connector only talks to its broker: it never decides what a message becomes. The
//! runner stops asking (the broker keeps the messages) while a flow's backlog is full.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// One message read from a queue, not yet acknowledged.
#[derive(Debug, Clone)]
pub struct SourceMessage {
    /// The message's id, stable across redeliveries: the flow's dedupe key unless the flow
    /// reads one from the payload. `None` when the broker gives none.
    pub id: Option<String>,
    /// The message body.
    pub payload: Bytes,
    /// The message's headers (names lowercase), e.g. `traceparent`, `content-type`.
    pub headers: Vec<(String, String)>,
    /// Handed back to [`QueueSource::ack`] once the message is committed.
    pub token: AckToken,
}

/// Identifies a received message to its source for acknowledgement; opaque to the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckToken(pub u64);

/// A source failure: the broker is unreachable, the subscription is gone, an ack failed.
/// The runner logs it, waits and asks again; messages not acknowledged come back.
#[derive(Debug, Clone)]
pub struct SourceError {
    /// What failed, naming the server (never credentials).
    pub message: String,
}

impl SourceError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        SourceError {
            message: message.into(),
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {}

/// A queue source connector. Implementations never panic; they reconnect by themselves
/// when asked again after an error.
#[async_trait]
pub trait QueueSource: Send {
    /// The kind, as written in config (`nats`, `rabbitmq`, `kafka`): a label for logs and
    /// metrics.
    fn kind(&self) -> &'static str;

    /// Wait for the next messages: at most `max`, returning once at least one arrived and
    /// either `max` are there or `linger` passed since the first. Waits as long as no
    /// message comes (the caller cancels the future to stop).
    async fn receive(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<SourceMessage>, SourceError>;

    /// The messages that are there now, at most `max`, without waiting for more (empty
    /// when none are). The runner calls it while the previous batch is being committed, so
    /// a busy queue is read while the store syncs; the default (nothing, ever) only turns
    /// that overlap off.
    async fn try_receive(&mut self, max: usize) -> Result<Vec<SourceMessage>, SourceError> {
        let _ = max;
        Ok(Vec::new())
    }

    /// Acknowledge messages that are committed (or stored as rejected): the broker does
    /// not deliver them again.
    async fn ack(&mut self, tokens: Vec<AckToken>) -> Result<(), SourceError>;

    /// Let go of everything received and not acknowledged, so the broker delivers it again
    /// (at shutdown).
    async fn release(&mut self);
}
