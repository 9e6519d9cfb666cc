//! The Kafka queue source: topics read in a consumer group, offsets committed only for
//! messages Ferry committed.
//!
//! Auto-commit and the automatic offset store are off. [`QueueSource::ack`] marks messages
//! done, and per partition the offset committed is the one after the longest run of done
//! messages from the oldest one held: a message not acknowledged yet is never skipped over,
//! so after a crash, a rebalance or a [`QueueSource::release`] the group reads again from
//! it (at least once; the flow dedupes by the message id `{topic}/{partition}/{offset}`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::context::{BrokerHealth, Context};
use crate::source::{AckToken, QueueSource, SourceError, SourceMessage};

/// What a Kafka source reads.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// The bootstrap brokers, `host:port`, comma-separated.
    pub brokers: String,
    /// The topics to read.
    pub topics: Vec<String>,
    /// The consumer group id: consumers of one group share the partitions, and the group's
    /// committed offsets say where reading resumes.
    pub group: String,
}

/// One partition of a topic.
type Partition = (String, i32);

/// The messages of one partition received and not yet committed, by offset: `true` once
/// acknowledged.
#[derive(Debug, Default)]
struct Held {
    offsets: BTreeMap<i64, bool>,
    /// The offset last committed (the next one to read after a restart).
    committed: Option<i64>,
}

impl Held {
    /// After acknowledgements: the offset to commit, if the run of acknowledged messages
    /// from the oldest held grew. Those messages are no longer held.
    fn advance(&mut self) -> Option<i64> {
        let mut next = None;
        while let Some(entry) = self.offsets.first_entry() {
            if !*entry.get() {
                break;
            }
            next = Some(*entry.key() + 1);
            entry.remove();
        }
        let next = next.filter(|n| self.committed.is_none_or(|c| *n > c))?;
        self.committed = Some(next);
        Some(next)
    }
}

/// Reads topics in a consumer group; see the module doc for what is committed when.
///
/// The consumer is made (and joins the group) at the first receive, and made again after
/// [`QueueSource::release`]; librdkafka reconnects by itself.
pub struct KafkaSource {
    config: KafkaSourceConfig,
    health: Arc<BrokerHealth>,
    consumer: Option<Arc<StreamConsumer<Context>>>,
    /// Each received message's partition and offset, by token, until acknowledged.
    tokens: HashMap<AckToken, (Partition, i64)>,
    held: HashMap<Partition, Held>,
    next_token: u64,
}

impl fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSource")
            .field("brokers", &self.config.brokers)
            .field("topics", &self.config.topics)
            .field("group", &self.config.group)
            .field("held", &self.tokens.len())
            .finish()
    }
}

impl KafkaSource {
    /// A source for `config` (not connected yet).
    pub fn new(config: KafkaSourceConfig) -> Self {
        Self {
            config,
            health: Arc::default(),
            consumer: None,
            tokens: HashMap::new(),
            held: HashMap::new(),
            next_token: 0,
        }
    }

    /// The consumer, made and subscribed first if need be.
    fn consumer(&mut self) -> Result<Arc<StreamConsumer<Context>>, SourceError> {
        if let Some(consumer) = &self.consumer {
            return Ok(consumer.clone());
        }
        let context = Context {
            health: self.health.clone(),
            label: format!("group {}", self.config.group),
        };
        let consumer: StreamConsumer<Context> = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", &self.config.group)
            .set("client.id", "ferry")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group reads each topic from its start: nothing published before the
            // flow first ran is skipped.
            .set("auto.offset.reset", "earliest")
            .set("reconnect.backoff.max.ms", "2000")
            // A hub killed without leaving the group holds its partitions until this runs
            // out: 10 s (librdkafka's default is 45 s), so a restart resumes quickly.
            .set("session.timeout.ms", "10000")
            .create_with_context(context)
            .map_err(|e| SourceError::new(format!("Kafka consumer: {e}")))?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| SourceError::new(format!("cannot subscribe to {topics:?}: {e}")))?;
        let consumer = Arc::new(consumer);
        self.consumer = Some(consumer.clone());
        Ok(consumer)
    }

    /// Keep `message` until it is acknowledged; its token.
    fn hold(&mut self, topic: &str, partition: i32, offset: i64) -> AckToken {
        self.next_token += 1;
        let token = AckToken(self.next_token);
        let key = (topic.to_string(), partition);
        self.held
            .entry(key.clone())
            .or_default()
            .offsets
            .entry(offset)
            .or_insert(false);
        self.tokens.insert(token, (key, offset));
        token
    }

    /// Drop the consumer and what it held: it leaves the group (closing blocks, so off the
    /// async threads), and the group's next consumer reads from the committed offsets.
    async fn drop_consumer(&mut self) {
        self.tokens.clear();
        self.held.clear();
        if let Some(consumer) = self.consumer.take() {
            let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        }
    }
}

/// `message` as the runner sees it.
fn source_message(message: &impl Message, token: AckToken) -> SourceMessage {
    let id = format!(
        "{}/{}/{}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|header| {
                    let value = header
                        .value
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    (header.key.to_ascii_lowercase(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    SourceMessage {
        id: Some(id),
        payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        headers,
        token,
    }
}

#[async_trait]
impl QueueSource for KafkaSource {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn receive(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<SourceMessage>, SourceError> {
        let consumer = self.consumer()?;
        let mut out = Vec::new();
        {
            let first = consumer
                .recv()
                .await
                .map_err(|e| SourceError::new(format!("Kafka consume failed: {e}")))?;
            let token = self.hold(first.topic(), first.partition(), first.offset());
            out.push(source_message(&first, token));
        }
        let deadline = tokio::time::Instant::now() + linger;
        while out.len() < max.max(1) {
            let Ok(next) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
                break;
            };
            // An error after the first message: hand over what arrived; the next receive
            // reports it if it lasts.
            let Ok(message) = next else { break };
            let token = self.hold(message.topic(), message.partition(), message.offset());
            out.push(source_message(&message, token));
        }
        Ok(out)
    }

    async fn ack(&mut self, tokens: Vec<AckToken>) -> Result<(), SourceError> {
        for token in tokens {
            let Some((partition, offset)) = self.tokens.remove(&token) else {
                continue;
            };
            if let Some(done) = self
                .held
                .get_mut(&partition)
                .and_then(|h| h.offsets.get_mut(&offset))
            {
                *done = true;
            }
        }
        let mut commit = TopicPartitionList::new();
        for ((topic, partition), held) in &mut self.held {
            if let Some(next) = held.advance() {
                commit
                    .add_partition_offset(topic, *partition, Offset::Offset(next))
                    .map_err(|e| SourceError::new(format!("Kafka offset: {e}")))?;
            }
        }
        if commit.count() == 0 {
            return Ok(());
        }
        let Some(consumer) = self.consumer.clone() else {
            return Ok(());
        };
        // A synchronous commit blocks until the group coordinator stored the offsets.
        tokio::task::spawn_blocking(move || consumer.commit(&commit, CommitMode::Sync))
            .await
            .map_err(|e| SourceError::new(format!("Kafka commit: {e}")))?
            .map_err(|e| {
                SourceError::new(format!(
                    "Kafka commit for group {} failed: {e}",
                    self.config.group
                ))
            })
    }

    async fn release(&mut self) {
        self.drop_consumer().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_past_a_run_of_acknowledged_offsets() {
        let mut held = Held::default();
        for offset in [5, 6, 7, 9] {
            held.offsets.insert(offset, false);
        }
        // 6 done, 5 not: nothing to commit.
        *held.offsets.get_mut(&6).unwrap() = true;
        assert_eq!(held.advance(), None);
        // 5 done: 5 and 6 are, 7 is not: commit 7 (the next to read).
        *held.offsets.get_mut(&5).unwrap() = true;
        assert_eq!(held.advance(), Some(7));
        // 9 done before 7: still 7 held, nothing new.
        *held.offsets.get_mut(&9).unwrap() = true;
        assert_eq!(held.advance(), None);
        // 7 done: the gap at 8 (compacted away) is no message held: commit 10.
        *held.offsets.get_mut(&7).unwrap() = true;
        assert_eq!(held.advance(), Some(10));
        assert!(held.offsets.is_empty());
        // A re-read older message acknowledged later never moves the commit back.
        held.offsets.insert(3, true);
        assert_eq!(held.advance(), None);
    }
}
