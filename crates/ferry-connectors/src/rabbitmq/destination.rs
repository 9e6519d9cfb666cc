//! The RabbitMQ destination connector.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_config::RabbitmqDestination;
use ferry_delivery::{AttemptResult, BatchCall, Connector, Rendered, Verdict};
use ferry_store::ClaimedDelivery;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::address::Address;
use crate::outcome::{Failure, all_or_first_failure, record_body, timed};
use crate::stored_header;

/// AMQP delivery mode of a message the broker writes to disk.
const PERSISTENT: u8 = 2;

/// The longest routing key (an AMQP short string).
const MAX_ROUTING_KEY: usize = 255;

/// Publishes deliveries to one exchange with a routing key (one, or a template rendered per
/// delivery: a template like an HTTP URL's), waiting for publisher confirms.
///
/// The connection and its confirm-mode channel are made at the first publish and kept;
/// when either breaks, the next publish opens new ones.
pub struct RabbitmqConnector {
    config: RabbitmqDestination,
    /// The password, resolved at start (never logged).
    password: Option<SecretString>,
    routing_key: Address,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl fmt::Debug for RabbitmqConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitmqConnector")
            .field("exchange", &self.config.exchange)
            .field("routing_key", &self.routing_key.source())
            .field("timeout", &self.config.timeout)
            .finish()
    }
}

impl RabbitmqConnector {
    /// A connector for `config`, with its password resolved (not connected yet).
    pub fn new(config: RabbitmqDestination, password: Option<SecretString>) -> Self {
        let check = if config.exchange.is_empty() {
            queue_name_fault
        } else {
            routing_key_fault
        };
        Self {
            routing_key: Address::new("routing key", &config.routing_key, check),
            config,
            password,
            channel: Mutex::new(None),
        }
    }

    /// The broker URL with the credentials put in (kept out of config and logs).
    fn uri(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.config.url) else {
            return self.config.url.clone();
        };
        if let Some(user) = &self.config.username {
            let _ = url.set_username(user);
            let _ = url.set_password(self.password.as_ref().map(|p| p.expose_secret()));
        }
        url.to_string()
    }

    /// A channel in confirm mode, opening the connection first if need be.
    async fn channel(&self) -> Result<Channel, Failure> {
        let mut held = self.channel.lock().await;
        if let Some((conn, channel)) = held.as_ref()
            && conn.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        *held = None;
        let connect = async {
            let conn = Connection::connect(&self.uri(), ConnectionProperties::default()).await?;
            let channel = conn.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>((conn, channel))
        };
        let opened = tokio::time::timeout(self.config.timeout, connect)
            .await
            .map_err(|_| Failure::retry("connect", "connecting to RabbitMQ timed out".into()))?
            .map_err(|e| {
                tracing::warn!(routing_key = %self.routing_key.source(), error = %e, "cannot connect to RabbitMQ");
                Failure::retry("connect", format!("cannot connect to RabbitMQ: {e}"))
            })?;
        let channel = opened.1.clone();
        *held = Some(opened);
        Ok(channel)
    }

    /// The message's properties: persistent, the delivery id as `message_id` and
    /// `webhook-id`, the content type, and the event's trace context as headers.
    fn properties(delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> BasicProperties {
        let id = delivery.id.to_string();
        let content_type = rendered
            .and_then(|r| r.content_type.as_ref())
            .and_then(|v| v.to_str().ok())
            .or_else(|| stored_header(delivery, "content-type"))
            .unwrap_or("application/json");
        let mut headers = FieldTable::default();
        headers.insert(
            "webhook-id".into(),
            AMQPValue::LongString(LongString::from(id.as_str())),
        );
        for name in [
            "traceparent",
            "tracestate",
            ferry_delivery::synthetic::HEADER,
        ] {
            if let Some(value) = stored_header(delivery, name) {
                headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
            }
        }
        BasicProperties::default()
            .with_message_id(id.as_str().into())
            .with_delivery_mode(PERSISTENT)
            .with_content_type(content_type.into())
            .with_headers(headers)
    }

    /// Publish one message with the routing key of `delivery` (sending `body`) and wait for
    /// the broker's confirm.
    async fn publish(
        &self,
        delivery: &ClaimedDelivery,
        properties: BasicProperties,
        body: Bytes,
    ) -> Result<(), Failure> {
        let routing_key = self.routing_key.resolve(delivery, &body)?;
        let channel = self.channel().await?;
        let publish = async {
            let options = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            channel
                .basic_publish(
                    self.config.exchange.as_str().into(),
                    routing_key.as_ref().into(),
                    options,
                    &body,
                    properties,
                )
                .await?
                .await
        };
        let confirmation = tokio::time::timeout(self.config.timeout, publish)
            .await
            .map_err(|_| Failure::retry("timeout", "no confirm from RabbitMQ in time".into()))?
            .map_err(|e| Failure::retry("publish", format!("RabbitMQ publish failed: {e}")))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            // `mandatory`: no queue is bound for this routing key. Sending again cannot help
            // until the topology changes: the delivery is dead-lettered with the reason.
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(Failure {
                    class: "unroutable",
                    error: format!(
                        "RabbitMQ returned the message: {} {}",
                        returned.reply_code, returned.reply_text
                    ),
                    verdict: Verdict::Permanent,
                    excerpt: None,
                })
            }
            Confirmation::Nack(None) => Err(Failure::retry(
                "nack",
                "RabbitMQ refused the message (nack)".into(),
            )),
            Confirmation::NotRequested => Err(Failure::retry(
                "publish",
                "the channel is not in confirm mode".into(),
            )),
        }
    }
}

#[async_trait]
impl Connector for RabbitmqConnector {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn timeout(&self) -> Duration {
        // Connecting, then the publish and its confirm: each bounded by the timeout.
        self.config.timeout.saturating_mul(2)
    }

    async fn send(&self, delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> AttemptResult {
        let body = record_body(delivery, rendered);
        timed(self.publish(delivery, Self::properties(delivery, rendered), body)).await
    }

    /// Every record is published at once on the confirm channel; the call succeeds when the
    /// broker confirmed them all (a retried call publishes the records again, with the same
    /// `message_id`s).
    async fn send_batch(&self, call: BatchCall<'_>) -> (AttemptResult, Option<Bytes>) {
        let publishes = call.records.iter().map(|(delivery, body)| {
            self.publish(delivery, Self::properties(delivery, None), body.clone())
        });
        (timed(all_or_first_failure(publishes)).await, None)
    }
}

/// Why a rendered routing key is unusable (not quoted), if it is.
fn routing_key_fault(key: &str) -> Option<&'static str> {
    (key.len() > MAX_ROUTING_KEY).then_some("it is longer than 255 bytes")
}

/// Why a rendered routing key of the default exchange, a queue's name, is unusable.
fn queue_name_fault(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("it is empty, and with the default exchange it names a queue")
    } else {
        routing_key_fault(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_routing_keys() {
        assert_eq!(routing_key_fault(""), None);
        assert!(queue_name_fault("").is_some());
        assert_eq!(queue_name_fault("orders-eu"), None);
        assert!(routing_key_fault(&"k".repeat(256)).is_some());
    }
}
