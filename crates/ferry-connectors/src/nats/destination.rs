//! The NATS JetStream destination connector.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::{HeaderMap, jetstream};
use async_trait::async_trait;
use bytes::Bytes;
use ferry_config::NatsDestination;
use ferry_delivery::{AttemptResult, BatchCall, Connector, Rendered, Verdict};
use ferry_store::ClaimedDelivery;
use tokio::sync::OnceCell;

use crate::address::Address;
use crate::outcome::{Failure, all_or_first_failure, record_body, timed};
use crate::stored_header;

/// Publishes deliveries to a subject of a NATS server (one, or a template rendered per
/// delivery: a template like an HTTP URL's), waiting for JetStream's ack.
///
/// The connection is made at the first publish (so a hub starts while NATS is down, and
/// `ferry test` never connects) and kept; the client reconnects by itself after a loss.
pub struct NatsConnector {
    config: NatsDestination,
    subject: Address,
    stream: OnceCell<jetstream::Context>,
}

impl fmt::Debug for NatsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConnector")
            .field("subject", &self.subject.source())
            .field("timeout", &self.config.timeout)
            .field("connected", &self.stream.initialized())
            .finish()
    }
}

impl NatsConnector {
    /// A connector for `config` (not connected yet).
    pub fn new(config: NatsDestination) -> Self {
        Self {
            subject: Address::new("subject", &config.subject, subject_fault),
            config,
            stream: OnceCell::new(),
        }
    }

    /// The JetStream context, connecting first if need be. A failed connection is not kept:
    /// the next attempt tries again.
    async fn context(&self) -> Result<&jetstream::Context, Failure> {
        self.stream
            .get_or_try_init(|| async {
                let servers: Vec<&str> = self.config.url.split(',').map(str::trim).collect();
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(self.config.timeout)
                    .connect(servers.as_slice())
                    .await
                    .map_err(|e| {
                        tracing::warn!(subject = %self.subject.source(), error = %e, "cannot connect to NATS");
                        Failure {
                            class: "connect",
                            error: format!("cannot connect to NATS: {e}"),
                            verdict: Verdict::Retry { retry_after: None },
                            excerpt: None,
                        }
                    })?;
                Ok(jetstream::ContextBuilder::new()
                    .timeout(self.config.timeout)
                    .build(client))
            })
            .await
    }

    /// The headers of one message: the delivery id as `Nats-Msg-Id` and `webhook-id`, the
    /// content type, and the event's trace context.
    fn headers(delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> HeaderMap {
        let id = delivery.id.to_string();
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert("webhook-id", id.as_str());
        let content_type = rendered
            .and_then(|r| r.content_type.as_ref())
            .and_then(|v| v.to_str().ok())
            .or_else(|| stored_header(delivery, "content-type"))
            .unwrap_or("application/json");
        headers.insert("content-type", content_type);
        for name in [
            "traceparent",
            "tracestate",
            ferry_delivery::synthetic::HEADER,
        ] {
            if let Some(value) = stored_header(delivery, name) {
                headers.insert(name, value);
            }
        }
        headers
    }

    /// Publish one message to the subject of `delivery` (sending `body`) and wait for its
    /// acknowledgement.
    async fn publish(
        &self,
        delivery: &ClaimedDelivery,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(), Failure> {
        let subject = self.subject.resolve(delivery, &body)?.into_owned();
        let stream = self.context().await?;
        let ack = stream
            .publish_with_headers(subject, headers, body)
            .await
            .map_err(|e| failure(&e))?;
        ack.await.map(drop).map_err(|e| failure(&e))
    }
}

/// Why a rendered subject cannot be published to (the subject not quoted), if it cannot:
/// the rules of `ferry validate` for a literal one.
fn subject_fault(subject: &str) -> Option<&'static str> {
    if subject.is_empty() {
        Some("it is empty")
    } else if subject.split('.').any(str::is_empty) {
        Some("it has an empty token (`..`, or a `.` at an end)")
    } else if subject.contains(['*', '>']) {
        Some("it has a wildcard")
    } else if !subject
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        Some("it has a character other than letters, digits, `.`, `-` and `_`")
    } else {
        None
    }
}

/// How a failed publish is judged. A message too large for the server never fits: dead.
/// Everything else (no connection, no stream for the subject yet, no ack in time) may pass:
/// retried, and counted by the breaker like any destination's failures.
fn failure(e: &PublishError) -> Failure {
    let (class, verdict) = match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => ("too_large", Verdict::Permanent),
        PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence => {
            ("rejected", Verdict::Permanent)
        }
        PublishErrorKind::StreamNotFound => ("no_stream", Verdict::Retry { retry_after: None }),
        PublishErrorKind::TimedOut => ("timeout", Verdict::Retry { retry_after: None }),
        PublishErrorKind::BrokenPipe => ("connect", Verdict::Retry { retry_after: None }),
        PublishErrorKind::MaxAckPending | PublishErrorKind::Other => {
            ("publish", Verdict::Retry { retry_after: None })
        }
    };
    Failure {
        class,
        error: format!("NATS publish failed: {e}"),
        verdict,
        excerpt: None,
    }
}

#[async_trait]
impl Connector for NatsConnector {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn timeout(&self) -> Duration {
        // Connecting, then the publish and its ack: each bounded by the timeout.
        self.config.timeout.saturating_mul(2)
    }

    async fn send(&self, delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> AttemptResult {
        let body = record_body(delivery, rendered);
        timed(self.publish(delivery, Self::headers(delivery, rendered), body)).await
    }

    /// Every record is published at once, each with its own `Nats-Msg-Id`, and the call
    /// succeeds when the stream acknowledged them all. When some fail, the whole call is
    /// retried; the records already stored are then dropped by the duplicate window.
    async fn send_batch(&self, call: BatchCall<'_>) -> (AttemptResult, Option<Bytes>) {
        let publishes = call.records.iter().map(|(delivery, body)| {
            self.publish(delivery, Self::headers(delivery, None), body.clone())
        });
        (timed(all_or_first_failure(publishes)).await, None)
    }
}

#[cfg(test)]
mod tests {
    use super::subject_fault;

    #[test]
    fn rendered_subjects() {
        assert_eq!(subject_fault("orders.eu"), None);
        assert!(subject_fault("").is_some());
        assert!(subject_fault("orders.").is_some());
        assert!(subject_fault("orders.*").is_some());
        assert!(subject_fault("orders.eu west").is_some());
    }
}
