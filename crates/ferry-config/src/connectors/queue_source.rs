//! Configuration of the queue sources: a flow whose events are read from a broker
//! (`source: { nats: … }`, `source: { rabbitmq: … }`, `source: { kafka: … }`). Each message goes through the flow's
//! steps and is acknowledged only after Ferry's commit.

use std::time::Duration;

use serde::Deserialize;

use crate::SecretRef;

/// Read a NATS JetStream stream through a durable pull consumer with explicit acks.
///
/// A message's id (its dedupe key) is, in order: the value at `event_id` in the payload,
/// the `Nats-Msg-Id` header, or `{stream}:{stream sequence}` (the same across redeliveries).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSource {
    /// The sending system (must be declared under `systems:`).
    pub system: String,
    /// The server, e.g. `nats://127.0.0.1:4222` (several: comma-separated).
    pub url: String,
    /// The stream to read (it must exist).
    pub stream: String,
    /// The durable consumer's name: created on first start if missing, and where the stream
    /// remembers what Ferry acknowledged.
    pub consumer: String,
    /// Only messages of this subject (wildcards `*` and `>` allowed). Default: all of the
    /// stream.
    #[serde(default)]
    pub subject: Option<String>,
    /// JSON pointer to the event id in the payload (the dedupe key). Default: the message id.
    #[serde(default)]
    pub event_id: Option<String>,
    /// JSON pointer to the event type in the payload (e.g. `/type`).
    #[serde(default)]
    pub event_type: Option<String>,
    /// Most messages taken, stored in one commit and acknowledged together. Default 500.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Longest wait for a batch to fill once its first message is in. Default 20ms.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
}

/// Consume a RabbitMQ queue with manual acknowledgements and a bounded prefetch.
///
/// A message's id (its dedupe key) is the value at `event_id` in the payload, else the AMQP
/// `message_id` property; a message with neither is stored without a dedupe key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitmqSource {
    /// The sending system (must be declared under `systems:`).
    pub system: String,
    /// The broker, e.g. `amqp://127.0.0.1:5672/%2f` (`amqps://` for TLS). No credentials
    /// here: give them as `username` and `password`.
    pub url: String,
    /// The user name, if the broker needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// The password, by reference.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// The queue to consume (it must exist).
    pub queue: String,
    /// Most unacknowledged messages the broker hands Ferry at once (1 to 65535). Default 500.
    #[serde(default = "default_prefetch")]
    pub prefetch: u32,
    /// JSON pointer to the event id in the payload (the dedupe key). Default: the message's
    /// `message_id`.
    #[serde(default)]
    pub event_id: Option<String>,
    /// JSON pointer to the event type in the payload (e.g. `/type`).
    #[serde(default)]
    pub event_type: Option<String>,
    /// Most messages stored in one commit and acknowledged together (at most `prefetch`).
    /// Default 500.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Longest wait for a batch to fill once its first message is in. Default 20ms.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
}

/// Read Kafka topics as a member of a consumer group, committing offsets only past messages
/// Ferry has committed.
///
/// A message's id (its dedupe key) is the value at `event_id` in the payload, else
/// `{topic}/{partition}/{offset}` (the same when a message is read again).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// The sending system (must be declared under `systems:`).
    pub system: String,
    /// The bootstrap brokers, `host:port`, comma-separated (e.g. `127.0.0.1:9092`).
    pub brokers: String,
    /// The topics to read (they must exist).
    pub topics: Vec<String>,
    /// The consumer group id: hubs of one group share the partitions, and the group's
    /// committed offsets say where reading resumes.
    pub group: String,
    /// JSON pointer to the event id in the payload (the dedupe key). Default: the message's
    /// topic, partition and offset.
    #[serde(default)]
    pub event_id: Option<String>,
    /// JSON pointer to the event type in the payload (e.g. `/type`).
    #[serde(default)]
    pub event_type: Option<String>,
    /// Most messages stored in one commit and acknowledged together. Default 500.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Longest wait for a batch to fill once its first message is in. Default 20ms.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
}

const fn default_batch() -> usize {
    500
}
const fn default_prefetch() -> u32 {
    500
}
const fn default_linger() -> Duration {
    Duration::from_millis(20)
}

/// Largest batch a queue source may take per commit.
pub const MAX_SOURCE_BATCH: usize = 10_000;

/// Why a NATS stream or consumer name is unusable, if it is: JetStream names have no
/// whitespace, `.`, `*`, `>`, path separators, and are at most 255 characters.
pub fn jetstream_name_problem(what: &str, name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(format!("the {what} name is empty"));
    }
    if name.len() > 255 {
        return Some(format!("the {what} name is longer than 255 characters"));
    }
    name.chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        .map(|c| {
            format!("the {what} name `{name}` has `{c}`: no spaces, `.`, `*`, `>`, `/` or `\\`")
        })
}

/// Why a subject filter is unusable, if it is (wildcards allowed).
pub fn subject_filter_problem(subject: &str) -> Option<String> {
    if subject.is_empty() {
        return Some("the subject is empty".to_string());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return Some(format!(
            "subject `{subject}` has an empty token (`..`, or a `.` at an end)"
        ));
    }
    for (i, token) in tokens.iter().enumerate() {
        if token.contains(['*', '>']) && token.len() > 1 {
            return Some(format!("subject `{subject}`: a wildcard is a whole token"));
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Some(format!("subject `{subject}`: `>` only ends a subject"));
        }
    }
    subject
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
        .map(|_| format!("subject `{subject}` has whitespace"))
}

/// Why a queue name is unusable, if it is (AMQP: 1 to 255 bytes).
pub fn queue_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("the queue name is empty".to_string())
    } else if name.len() > 255 {
        Some("the queue name is longer than 255 bytes".to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_filters() {
        assert_eq!(jetstream_name_problem("stream", "ORDERS"), None);
        assert!(jetstream_name_problem("stream", "").is_some());
        assert!(jetstream_name_problem("consumer", "a.b").is_some());
        assert_eq!(subject_filter_problem("orders.>"), None);
        assert_eq!(subject_filter_problem("orders.*.created"), None);
        assert!(subject_filter_problem("orders.>.x").is_some());
        assert!(subject_filter_problem("orders.a*").is_some());
        assert!(queue_name_problem("").is_some());
    }
}
