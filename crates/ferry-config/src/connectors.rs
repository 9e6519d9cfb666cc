//! Configuration of the destination kinds other than HTTP: each kind is one optional key of a
//! destination (`nats:`, `kafka:` …), and a destination has exactly one kind; and of the source kinds
//! beyond webhooks and HTTP pulls: queue sources (`source: { nats: … }`, see [`queue_source`])
//! and PostgreSQL tables (`postgres:`).

use std::time::Duration;

use serde::Deserialize;

mod postgres_source;

pub use postgres_source::{MAX_SOURCE_COLUMNS, PostgresCursor, PostgresSource, table_problem};

mod queue_source;

pub use queue_source::{
    KafkaSource, MAX_SOURCE_BATCH, NatsSource, RabbitmqSource, jetstream_name_problem,
    queue_name_problem, subject_filter_problem,
};

/// Publish each delivery to NATS JetStream and wait for the stream's acknowledgement.
///
/// The message carries the delivery id as `Nats-Msg-Id` (JetStream's duplicate window then
/// keeps a retried or replayed delivery once), `webhook-id`, `content-type` and the event's
/// `traceparent` as headers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsDestination {
    /// The server, e.g. `nats://127.0.0.1:4222` (several: comma-separated).
    pub url: String,
    /// The subject to publish to; a stream must capture it. Letters, digits and `.-_`,
    /// tokens separated by `.`, no wildcards.
    pub subject: String,
    /// Longest wait for the stream's acknowledgement of one publish (a batch: of all its
    /// publishes). Default 10s.
    #[serde(default = "default_nats_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

const fn default_nats_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Publish each delivery to RabbitMQ (AMQP 0-9-1) with publisher confirms, persistent, and
/// `mandatory` so an unroutable message comes back instead of vanishing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitmqDestination {
    /// The broker, e.g. `amqp://127.0.0.1:5672/%2f` (`amqps://` for TLS). No password here:
    /// give it as `password`.
    pub url: String,
    /// The user name, if the broker needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// The password, by reference.
    #[serde(default)]
    pub password: Option<crate::SecretRef>,
    /// The exchange to publish to. Default `""`: the default exchange, where the routing key
    /// is a queue's name.
    #[serde(default)]
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// Longest wait to connect and for one publish's confirm. Default 10s.
    #[serde(default = "default_nats_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// Upsert each delivery's (mapped) record into a PostgreSQL table: reverse ETL, or a
/// warehouse load. The record's top-level fields are the columns; a row with the same
/// `key` is updated, so a replay never duplicates a row and a replay after a mapping fix
/// updates it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresDestination {
    /// The connection URL (`postgres://user:password@host/db`), by reference: it holds
    /// credentials.
    pub url: crate::SecretRef,
    /// The table, `name` or `schema.name` (lowercase letters, digits and `_`).
    pub table: String,
    /// The conflict key: columns with a unique constraint (or the primary key).
    pub key: Vec<String>,
    /// Most connections open at once. Default 4.
    #[serde(default = "default_pool")]
    pub pool: usize,
    /// Longest time for one upsert (a batch: its transaction). Default 10s.
    #[serde(default = "default_nats_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

const fn default_pool() -> usize {
    4
}

/// Produce each delivery to a Kafka topic with the idempotent producer (`acks=all`), and
/// count it delivered once every in-sync replica has it.
///
/// The record carries the delivery id as `webhook-id` and `idempotency-key`, `content-type`
/// and the event's `traceparent`/`tracestate` as headers; its key is `key`, rendered per
/// record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaDestination {
    /// The bootstrap brokers, `host:port`, comma-separated (e.g. `127.0.0.1:9092`).
    pub brokers: String,
    /// The topic to produce to (letters, digits, `.`, `_` and `-`).
    pub topic: String,
    /// The record key: a literal, or a template over the record sent (e.g.
    /// `{{ event.customer_id }}`). Records with one key go to one partition, so they keep
    /// their order. Default: no key (the producer spreads records over partitions).
    #[serde(default)]
    pub key: Option<String>,
    /// Longest wait for the brokers' acknowledgement of one record (a batch: of all its
    /// records). Default 10s.
    #[serde(default = "default_nats_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// Why a Kafka bootstrap broker list is unusable, if it is.
pub fn brokers_problem(brokers: &str) -> Option<String> {
    if brokers.trim().is_empty() {
        return Some("no brokers: give `host:port`, comma-separated".to_string());
    }
    for one in brokers.split(',').map(str::trim) {
        if one.contains("://") {
            return Some(format!(
                "`{one}`: brokers are `host:port`, without a scheme (e.g. `127.0.0.1:9092`)"
            ));
        }
        if one.contains('@') {
            return Some(format!(
                "`{one}` holds credentials: they never go inline in config"
            ));
        }
        let Some((host, port)) = one.rsplit_once(':') else {
            return Some(format!("`{one}` has no port (e.g. `{one}:9092`)"));
        };
        if host.is_empty() {
            return Some(format!("`{one}` has no host"));
        }
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Some(format!("`{one}`: `{port}` is not a port"));
        }
    }
    None
}

/// Why a Kafka topic name is not one, if it is not.
pub fn topic_problem(topic: &str) -> Option<String> {
    if topic.is_empty() {
        return Some("the topic is empty".to_string());
    }
    if topic == "." || topic == ".." {
        return Some(format!("`{topic}` is not a topic name"));
    }
    if topic.len() > 249 {
        return Some(format!(
            "the topic name is {} characters long; Kafka allows 249",
            topic.len()
        ));
    }
    let bad = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    bad.map(|c| format!("topic `{topic}` has `{c}`: use letters, digits, `.`, `-` and `_`"))
}

/// Why a SQL identifier (a table, schema or column name) is refused, if it is: Ferry only
/// writes plain lowercase names, so nothing needs quoting and nothing can be injected.
pub fn identifier_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first && rest && name.len() <= 63 {
        None
    } else {
        Some(format!(
            "`{name}` is not a plain SQL name: lowercase letters, digits and `_`, not starting \
             with a digit, at most 63 characters"
        ))
    }
}

/// Why an AMQP broker URL is unusable, if it is.
pub fn amqp_url_problem(url: &str) -> Option<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Some(format!(
            "`{url}` is not a URL (e.g. `amqp://127.0.0.1:5672/%2f`)"
        ));
    };
    if !matches!(parsed.scheme(), "amqp" | "amqps") {
        return Some(format!(
            "the scheme must be `amqp` or `amqps`, not `{}`",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Some("the URL has no host".to_string());
    }
    if parsed.password().is_some() || !parsed.username().is_empty() {
        return Some(
            "credentials never go inline in the URL: give `username` and `password: { env: … }`"
                .to_string(),
        );
    }
    None
}

/// Why a NATS subject cannot be published to, if it cannot.
pub fn subject_problem(subject: &str) -> Option<String> {
    if subject.is_empty() {
        return Some("the subject is empty".to_string());
    }
    if subject.split('.').any(str::is_empty) {
        return Some(format!(
            "subject `{subject}` has an empty token (`..`, or a `.` at an end)"
        ));
    }
    if subject.contains(['*', '>']) {
        return Some(format!(
            "subject `{subject}` has a wildcard; a publish needs a full subject"
        ));
    }
    let bad = subject
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    bad.map(|c| format!("subject `{subject}` has `{c}`: use letters, digits, `.`, `-` and `_`"))
}

/// Why a NATS server URL is unusable, if it is.
pub fn url_problem(url: &str) -> Option<String> {
    for one in url.split(',') {
        let Ok(parsed) = url::Url::parse(one.trim()) else {
            return Some(format!(
                "`{one}` is not a URL (e.g. `nats://127.0.0.1:4222`)"
            ));
        };
        if !matches!(parsed.scheme(), "nats" | "tls") {
            return Some(format!(
                "`{one}`: the scheme must be `nats` or `tls`, not `{}`",
                parsed.scheme()
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Some(format!("`{one}` has no host"));
        }
        if parsed.password().is_some() {
            return Some(format!(
                "`{}` holds a password: credentials never go inline in config",
                parsed.host_str().unwrap_or_default()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_urls() {
        assert_eq!(subject_problem("orders.created"), None);
        assert!(subject_problem("orders.*").is_some());
        assert!(subject_problem("orders..x").is_some());
        assert!(subject_problem("orders created").is_some());
        assert_eq!(url_problem("nats://127.0.0.1:4222"), None);
        assert_eq!(url_problem("nats://a:4222, nats://b:4222"), None);
        assert!(url_problem("http://127.0.0.1:4222").is_some());
        assert!(url_problem("nats://u:secret@h:4222").is_some());
        assert!(url_problem("nonsense").is_some());
    }

    #[test]
    fn brokers_and_topics() {
        assert_eq!(brokers_problem("127.0.0.1:9092"), None);
        assert_eq!(brokers_problem("a:9092, b:9093"), None);
        assert!(brokers_problem("").is_some());
        assert!(brokers_problem("kafka://a:9092").is_some());
        assert!(brokers_problem("a").is_some());
        assert!(brokers_problem("a:port").is_some());
        assert!(brokers_problem("u:p@a:9092").is_some());
        assert_eq!(topic_problem("orders.created-v1_x"), None);
        assert!(topic_problem("orders created").is_some());
        assert!(topic_problem("..").is_some());
        assert!(topic_problem(&"t".repeat(250)).is_some());
    }
}
