//! Configuration of the destination kinds other than HTTP: each kind is one optional key of a
//! destination (`nats:` …), and a destination has exactly one kind; and of the source kinds
//! beyond webhooks and HTTP pulls: queue sources (`source: { nats: … }`, see [`queue_source`])
//! and PostgreSQL tables (`postgres:`).

use std::time::Duration;

use serde::Deserialize;

mod postgres_source;

pub use postgres_source::{MAX_SOURCE_COLUMNS, PostgresCursor, PostgresSource, table_problem};

mod queue_source;

pub use queue_source::{
    MAX_SOURCE_BATCH, NatsSource, RabbitmqSource, jetstream_name_problem, queue_name_problem,
    subject_filter_problem,
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
}
