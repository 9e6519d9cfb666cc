//! The RabbitMQ source: `basic.consume` with manual acknowledgements and `basic.qos`
//! prefetch, so the broker never hands Ferry more than `prefetch` unacknowledged messages.
//!
//! A message's id is its AMQP `message_id` property (when set). Acknowledgements use
//! `multiple` when the tokens are every message held up to the newest of them (the usual
//! case: a batch acknowledged whole), else one per message. [`QueueSource::release`] closes
//! the channel and the connection: the broker requeues every unacknowledged message at
//! once. A killed hub's connection drops, with the same effect.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_config::RabbitmqSource;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use secrecy::{ExposeSecret, SecretString};

use crate::source::{AckToken, QueueSource, SourceError, SourceMessage};

/// Longest wait to connect and set up the consumer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Consumes one queue. Connects at the first `receive` and again after any error.
pub struct RabbitmqSourceConnector {
    config: RabbitmqSource,
    /// The password, resolved at start (never logged).
    password: Option<SecretString>,
    connection: Option<Connected>,
    /// Messages handed out and not acknowledged: token → delivery tag on the current
    /// channel. Tags are per channel, so a new channel starts an empty map.
    held: BTreeMap<AckToken, u64>,
    next_token: u64,
}

struct Connected {
    conn: Connection,
    channel: Channel,
    consumer: Consumer,
}

impl fmt::Debug for RabbitmqSourceConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitmqSourceConnector")
            .field("queue", &self.config.queue)
            .field("prefetch", &self.config.prefetch)
            .field("connected", &self.connection.is_some())
            .field("held", &self.held.len())
            .finish()
    }
}

impl RabbitmqSourceConnector {
    /// A source for `config`, with its password resolved (not connected yet).
    pub fn new(config: RabbitmqSource, password: Option<SecretString>) -> Self {
        Self {
            config,
            password,
            connection: None,
            held: BTreeMap::new(),
            next_token: 0,
        }
    }

    fn error(&self, what: &str, e: impl fmt::Display) -> SourceError {
        SourceError::new(format!(
            "RabbitMQ queue `{}`: {what}: {e}",
            self.config.queue
        ))
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

    async fn connect(&mut self) -> Result<(), SourceError> {
        if self.connection.is_some() {
            return Ok(());
        }
        self.held.clear();
        let uri = self.uri();
        let queue = self.config.queue.clone();
        let prefetch = u16::try_from(self.config.prefetch).unwrap_or(u16::MAX);
        let setup = async move {
            let conn = Connection::connect(&uri, ConnectionProperties::default()).await?;
            let channel = conn.create_channel().await?;
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>(Connected {
                conn,
                channel,
                consumer,
            })
        };
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, setup)
            .await
            .map_err(|_| self.error("cannot connect", "timed out"))?
            .map_err(|e| self.error("cannot consume", e))?;
        tracing::info!(queue = %self.config.queue, "RabbitMQ source connected");
        self.connection = Some(connected);
        Ok(())
    }

    /// Hand a delivery out: its id, body, headers and a token; keep its tag.
    fn hand_out(&mut self, delivery: Delivery) -> SourceMessage {
        let props = &delivery.properties;
        let id = props
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .filter(|id| !id.is_empty());
        let mut headers = Vec::new();
        if let Some(content_type) = props.content_type() {
            headers.push(("content-type".to_owned(), content_type.as_str().to_owned()));
        }
        if let Some(table) = props.headers() {
            for (name, value) in table.inner() {
                let text = match value {
                    AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    AMQPValue::ShortString(s) => s.as_str().to_owned(),
                    _ => continue,
                };
                headers.push((name.as_str().to_ascii_lowercase(), text));
            }
        }
        let token = AckToken(self.next_token);
        self.next_token += 1;
        self.held.insert(token, delivery.delivery_tag);
        SourceMessage {
            id,
            payload: Bytes::from(delivery.data),
            headers,
            token,
        }
    }

    async fn receive_connected(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<SourceMessage>, SourceError> {
        self.connect().await?;
        let Some(c) = self.connection.as_mut() else {
            return Err(self.error("cannot consume", "not connected"));
        };
        let mut deliveries = Vec::new();
        let first = c.consumer.next().await;
        let mut end = None;
        match first {
            Some(Ok(d)) => deliveries.push(d),
            Some(Err(e)) => end = Some(e.to_string()),
            None => end = Some("the broker cancelled the consumer".to_owned()),
        }
        if end.is_none() {
            let deadline = tokio::time::Instant::now() + linger;
            while deliveries.len() < max {
                match tokio::time::timeout_at(deadline, c.consumer.next()).await {
                    Err(_) => break,
                    Ok(Some(Ok(d))) => deliveries.push(d),
                    Ok(Some(Err(e))) => {
                        end = Some(e.to_string());
                        break;
                    }
                    Ok(None) => {
                        end = Some("the broker cancelled the consumer".to_owned());
                        break;
                    }
                }
            }
        }
        if let Some(why) = end {
            // What was received on this channel comes back when it closes.
            return Err(self.error("consuming failed", why));
        }
        Ok(deliveries.into_iter().map(|d| self.hand_out(d)).collect())
    }

    /// The deliveries the broker already pushed (up to the prefetch), at most `max`, without
    /// waiting.
    async fn buffered(&mut self, max: usize) -> Result<Vec<SourceMessage>, SourceError> {
        use futures_util::FutureExt;
        self.connect().await?;
        let Some(c) = self.connection.as_mut() else {
            return Err(self.error("cannot consume", "not connected"));
        };
        let mut deliveries = Vec::new();
        let mut end = None;
        while deliveries.len() < max {
            // A stream's `next` not ready yet takes nothing: dropping it is safe.
            match c.consumer.next().now_or_never() {
                None => break,
                Some(Some(Ok(d))) => deliveries.push(d),
                Some(Some(Err(e))) => {
                    end = Some(e.to_string());
                    break;
                }
                Some(None) => {
                    end = Some("the broker cancelled the consumer".to_owned());
                    break;
                }
            }
        }
        if let Some(why) = end {
            return Err(self.error("consuming failed", why));
        }
        Ok(deliveries.into_iter().map(|d| self.hand_out(d)).collect())
    }

    /// Close the channel and connection: the broker requeues what was not acknowledged.
    async fn disconnect(&mut self) {
        self.held.clear();
        if let Some(c) = self.connection.take() {
            let _ = c.channel.close(200, "released".into()).await;
            let _ = c.conn.close(200, "released".into()).await;
        }
    }
}

#[async_trait]
impl QueueSource for RabbitmqSourceConnector {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    async fn receive(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<SourceMessage>, SourceError> {
        let result = self.receive_connected(max.max(1), linger).await;
        if result.is_err() {
            self.disconnect().await;
        }
        result
    }

    async fn try_receive(&mut self, max: usize) -> Result<Vec<SourceMessage>, SourceError> {
        let result = self.buffered(max.max(1)).await;
        if result.is_err() {
            self.disconnect().await;
        }
        result
    }

    async fn ack(&mut self, tokens: Vec<AckToken>) -> Result<(), SourceError> {
        let mut tags: Vec<(AckToken, u64)> = tokens
            .iter()
            .filter_map(|t| self.held.get(t).map(|tag| (*t, *tag)))
            .collect();
        if tags.is_empty() {
            return Ok(());
        }
        tags.sort_by_key(|(_, tag)| *tag);
        let Some(c) = self.connection.as_ref() else {
            return Err(self.error("acknowledging failed", "not connected"));
        };
        let newest = tags[tags.len() - 1].1;
        // `multiple` acknowledges every tag up to `newest`: only when all of them are ours.
        let held_up_to_newest = self.held.values().filter(|tag| **tag <= newest).count();
        let result = if held_up_to_newest == tags.len() {
            c.channel
                .basic_ack(newest, BasicAckOptions { multiple: true })
                .await
        } else {
            let mut result = Ok(());
            for (_, tag) in &tags {
                result = c
                    .channel
                    .basic_ack(*tag, BasicAckOptions { multiple: false })
                    .await;
                if result.is_err() {
                    break;
                }
            }
            result
        };
        match result {
            Ok(()) => {
                for (token, _) in &tags {
                    self.held.remove(token);
                }
                Ok(())
            }
            Err(e) => {
                let e = self.error("acknowledging failed", e);
                self.disconnect().await;
                Err(e)
            }
        }
    }

    async fn release(&mut self) {
        self.disconnect().await;
    }
}
