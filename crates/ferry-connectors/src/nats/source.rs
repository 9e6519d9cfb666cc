//! The NATS JetStream source: a durable pull consumer with explicit acknowledgements.
//!
//! [`QueueSource::receive`] first asks for what is there without waiting (under load a
//! whole batch comes back in one round trip); when nothing is, it long-polls for one
//! message and then gathers more for `linger`. Every pull request is read to its end, so no
//! message is handed to this client without being handed to the runner. Each message is
//! held (with its acknowledgement handle) until the runner acknowledges it after Ferry's
//! commit; [`QueueSource::release`] naks what is held so the stream delivers it again at
//! once. A message not acknowledged at all (the hub was killed) comes back after the
//! consumer's `ack_wait`.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::{self, Message};
use async_trait::async_trait;
use ferry_config::NatsSource;
use futures_util::StreamExt;

use crate::source::{AckToken, QueueSource, SourceError, SourceMessage};

/// How long one long-poll for the first message lasts before it is asked again.
const LONG_POLL: Duration = Duration::from_secs(5);
/// How long a redelivery waits for an acknowledgement the stream never got (a killed hub).
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Longest wait to connect, and for one JetStream API call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads one stream through one durable consumer. Connects at the first `receive` and again
/// after any error.
pub struct NatsSourceConnector {
    config: NatsSource,
    connection: Option<Connected>,
    /// Messages handed out and not acknowledged yet.
    held: HashMap<AckToken, Acker>,
    next_token: u64,
}

struct Connected {
    client: async_nats::Client,
    consumer: PullConsumer,
}

impl fmt::Debug for NatsSourceConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSourceConnector")
            .field("stream", &self.config.stream)
            .field("consumer", &self.config.consumer)
            .field("connected", &self.connection.is_some())
            .field("held", &self.held.len())
            .finish()
    }
}

impl NatsSourceConnector {
    /// A source for `config` (not connected yet).
    pub fn new(config: NatsSource) -> Self {
        Self {
            config,
            connection: None,
            held: HashMap::new(),
            next_token: 0,
        }
    }

    fn error(&self, what: &str, e: impl fmt::Display) -> SourceError {
        SourceError::new(format!(
            "NATS stream `{}`, consumer `{}`: {what}: {e}",
            self.config.stream, self.config.consumer
        ))
    }

    /// The durable consumer, connecting and creating it first if need be.
    async fn consumer(&mut self) -> Result<PullConsumer, SourceError> {
        if let Some(c) = &self.connection {
            return Ok(c.consumer.clone());
        }
        let servers: Vec<&str> = self.config.url.split(',').map(str::trim).collect();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(servers.as_slice())
            .await
            .map_err(|e| self.error("cannot connect", e))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(CONNECT_TIMEOUT)
            .build(client.clone());
        let stream = js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| self.error("cannot read the stream", e))?;
        let config = pull::Config {
            durable_name: Some(self.config.consumer.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            filter_subject: self.config.subject.clone().unwrap_or_default(),
            // Room for a batch being committed while the next is read.
            max_ack_pending: (self.config.batch.max(1000) * 4) as i64,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&self.config.consumer, config)
            .await
            .map_err(|e| self.error("cannot create the consumer", e))?;
        tracing::info!(stream = %self.config.stream, consumer = %self.config.consumer, "NATS source connected");
        self.connection = Some(Connected {
            client,
            consumer: consumer.clone(),
        });
        Ok(consumer)
    }

    /// Hand a message out: its id, body, headers and a token; keep its acknowledgement.
    fn hand_out(&mut self, message: Message) -> Result<SourceMessage, SourceError> {
        let sequence_id = message
            .info()
            .map(|info| format!("{}:{}", info.stream, info.stream_sequence))
            .map_err(|e| self.error("a message without JetStream metadata", e))?;
        let (message, acker) = message.split();
        let mut headers = Vec::new();
        let mut id = None;
        if let Some(map) = &message.headers {
            for (name, values) in map.iter() {
                let name = name.to_string();
                if name.eq_ignore_ascii_case("Nats-Msg-Id") {
                    id = values.first().map(|v| v.as_str().to_owned());
                }
                if let Some(value) = values.first() {
                    headers.push((name.to_ascii_lowercase(), value.as_str().to_owned()));
                }
            }
        }
        let token = AckToken(self.next_token);
        self.next_token += 1;
        self.held.insert(token, acker);
        Ok(SourceMessage {
            id: Some(id.filter(|i| !i.is_empty()).unwrap_or(sequence_id)),
            payload: message.payload,
            headers,
            token,
        })
    }

    /// Read one pull request to its end.
    async fn drain(
        &mut self,
        batch: Result<pull::Batch, impl fmt::Display>,
        out: &mut Vec<SourceMessage>,
    ) -> Result<(), SourceError> {
        let mut batch = batch.map_err(|e| self.error("a pull request failed", e))?;
        while let Some(next) = batch.next().await {
            let message = next.map_err(|e| self.error("reading a message failed", e))?;
            out.push(self.hand_out(message)?);
        }
        Ok(())
    }

    /// What the stream has for the consumer now, at most `max` (one no-wait pull request).
    async fn available(&mut self, max: usize) -> Result<Vec<SourceMessage>, SourceError> {
        let consumer = self.consumer().await?;
        let mut out = Vec::new();
        let fetched = consumer.fetch().max_messages(max).messages().await;
        self.drain(fetched, &mut out).await?;
        Ok(out)
    }

    async fn receive_connected(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<SourceMessage>, SourceError> {
        // What is there now, without waiting.
        let mut out = self.available(max).await?;
        if !out.is_empty() {
            return Ok(out);
        }
        let consumer = self.consumer().await?;
        // Nothing: wait for one, then gather more for `linger`.
        loop {
            let polled = consumer
                .batch()
                .max_messages(1)
                .expires(LONG_POLL)
                .messages()
                .await;
            self.drain(polled, &mut out).await?;
            if !out.is_empty() {
                break;
            }
        }
        let first = Instant::now();
        if max > 1 {
            let rest = consumer
                .batch()
                .max_messages(max - 1)
                .expires(linger.max(Duration::from_millis(1)))
                .messages()
                .await;
            self.drain(rest, &mut out).await?;
        }
        tracing::trace!(got = out.len(), lingered = ?first.elapsed(), "NATS batch received");
        Ok(out)
    }
}

#[async_trait]
impl QueueSource for NatsSourceConnector {
    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn receive(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<SourceMessage>, SourceError> {
        let result = self.receive_connected(max.max(1), linger).await;
        if result.is_err() {
            // Reconnect at the next call; what was handed out comes back after `ack_wait`
            // (or at once, if the connection still takes the naks).
            self.release().await;
            self.connection = None;
        }
        result
    }

    async fn try_receive(&mut self, max: usize) -> Result<Vec<SourceMessage>, SourceError> {
        let result = self.available(max.max(1)).await;
        if result.is_err() {
            self.release().await;
            self.connection = None;
        }
        result
    }

    async fn ack(&mut self, tokens: Vec<AckToken>) -> Result<(), SourceError> {
        let ackers: Vec<Acker> = tokens.iter().filter_map(|t| self.held.remove(t)).collect();
        for acker in &ackers {
            if let Err(e) = acker.ack().await {
                self.connection = None;
                return Err(self.error("acknowledging failed", e));
            }
        }
        // Acks are plain publishes: make sure they left before the runner moves on.
        if let Some(c) = &self.connection
            && let Err(e) = c.client.flush().await
        {
            let e = self.error("flushing acknowledgements failed", e);
            self.connection = None;
            return Err(e);
        }
        Ok(())
    }

    async fn release(&mut self) {
        // Naks the server confirmed: the messages are up for redelivery (ahead of new ones)
        // when this returns. A failed nak still comes back after `ack_wait`.
        let naks = self.held.drain().map(|(_, acker)| async move {
            let nak = acker.double_ack_with(AckKind::Nak(None));
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, nak).await;
        });
        futures_util::future::join_all(naks).await;
    }
}
