//! Per-destination resilience settings: circuit breaker, rate limit, batching, per-key
//! ordering, bounded backlog and auto-pause; and the hub-wide egress (SSRF) allow-list and
//! owner notifications. Defaults are the ones right for most SaaS APIs; docs/config.md
//! mirrors these doc comments.

use std::time::Duration;

use serde::Deserialize;

use crate::secret::SecretRef;

/// Circuit breaker of one destination. While open, deliveries wait without spending retry
/// attempts; after `cool_down`, `half_open_probes` sends are let through and close the
/// breaker on success or reopen it on failure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// `false` turns the breaker off. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Open when more than this share of the calls in `window` failed (0 < ratio <= 1).
    /// Failures are 5xx answers, timeouts and connection errors. Default 0.5.
    #[serde(default = "default_failure_ratio")]
    pub failure_ratio: f64,
    /// Calls needed in `window` before the ratio is judged. Default 10.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// Sliding window the ratio is computed over. Default 60s.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// How long the breaker stays open before probing. Default 30s.
    #[serde(default = "default_cool_down", with = "humantime_serde")]
    pub cool_down: Duration,
    /// Probe calls allowed while half-open. Default 1.
    #[serde(default = "default_half_open_probes")]
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_ratio: default_failure_ratio(),
            min_requests: default_min_requests(),
            window: default_window(),
            cool_down: default_cool_down(),
            half_open_probes: default_half_open_probes(),
        }
    }
}

const fn yes() -> bool {
    true
}
const fn default_failure_ratio() -> f64 {
    0.5
}
const fn default_min_requests() -> u32 {
    10
}
const fn default_window() -> Duration {
    Duration::from_secs(60)
}
const fn default_cool_down() -> Duration {
    Duration::from_secs(30)
}
const fn default_half_open_probes() -> u32 {
    1
}

/// Rate limit of one destination (GCRA): at most `requests` calls per `per`, with bursts of
/// up to `burst`. Deliveries over the limit wait; none is dropped. With `key`, the limit
/// applies per value of that JSON pointer (e.g. per tenant) instead of to the whole
/// destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Calls allowed per `per`.
    pub requests: u32,
    /// The period `requests` are counted over, e.g. `1s`, `1m`.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// Calls that may go at once after a quiet spell. Default: 1 (evenly spaced).
    #[serde(default)]
    pub burst: Option<u32>,
    /// JSON pointer into the event (e.g. `/tenant_id`): one limit per distinct value.
    /// Events without the field share one limit.
    #[serde(default)]
    pub key: Option<String>,
}

/// Batching: several deliveries sent as one call to an API that accepts many records.
/// Each call is one request through the rate limit and the circuit breaker, so a rate limit
/// counts calls, not records. Each record still has its own attempts, retries and
/// dead-letter entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records per call. Default 100.
    #[serde(default = "default_batch_items")]
    pub max_items: usize,
    /// Most body bytes per call (a single larger record is sent alone). Default 1 MiB.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: usize,
    /// How long a partial batch waits, from its first record, for more records. A call
    /// waiting for the rate limit keeps taking records until it goes. Default 1s.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// Body shape: without `wrap`, a JSON array of the events; with `wrap: records`, an
    /// object `{"records": [...]}`.
    #[serde(default)]
    pub wrap: Option<String>,
    /// What a failed batch call (no 2xx) does: `retry_batch` (default) gives every record
    /// the call's result (retried later, in a batch again, or dead-lettered together);
    /// `split` sends each record again at once in a call of its own, and each record takes
    /// its own call's result. A 429 or a transport error is never split.
    #[serde(default)]
    pub on_failure: BatchFailure,
    /// JSON pointer into a 2xx response body to an array naming the records that failed,
    /// as zero-based indexes or objects with an `index` field (e.g. `/errors`). Those
    /// records are retried (in a later batch); the others are delivered. A 2xx body that
    /// cannot be read counts every record delivered (with a warning in the log).
    #[serde(default)]
    pub failed_items: Option<String>,
}

/// How a failed batch is retried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchFailure {
    /// Every record of the failed call is retried (or dead-lettered) with it.
    #[default]
    RetryBatch,
    /// Every record of the failed call is sent again at once, alone.
    Split,
}

const fn default_batch_items() -> usize {
    100
}
const fn default_batch_bytes() -> usize {
    1024 * 1024
}
const fn default_linger() -> Duration {
    Duration::from_secs(1)
}

/// Per-key ordering: deliveries with the same key are sent one at a time, in acceptance
/// order. A key whose oldest delivery keeps failing holds back only that key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderingConfig {
    /// JSON pointer to the key in the event, e.g. `/customer/id`. Events without it are
    /// not ordered.
    pub key: String,
}

/// The destination's bounded backlog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacklogConfig {
    /// Most deliveries waiting (pending or retrying) before ingress refuses new events of
    /// the flow with `503` and `Retry-After`. Default 1,000,000.
    #[serde(default = "default_max_pending")]
    pub max_pending: u64,
    /// The `Retry-After` sent with that refusal. Default 30s.
    #[serde(default = "default_backlog_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for BacklogConfig {
    fn default() -> Self {
        Self {
            max_pending: default_max_pending(),
            retry_after: default_backlog_retry_after(),
        }
    }
}

const fn default_max_pending() -> u64 {
    1_000_000
}
const fn default_backlog_retry_after() -> Duration {
    Duration::from_secs(30)
}

/// Auto-pause: a destination that has failed every call for `after` is paused (no more
/// calls; events keep accumulating) and its owner is notified. `ferry resume` restarts it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoPauseConfig {
    /// `false` never pauses. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long the destination must have failed without a single success. Default 24h.
    #[serde(default = "default_pause_after", with = "humantime_serde")]
    pub after: Duration,
}

impl Default for AutoPauseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            after: default_pause_after(),
        }
    }
}

const fn default_pause_after() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Where the hub tells owners about destinations it paused (and resumed).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// A webhook receiving `destination.paused` / `destination.resumed` events as JSON.
    #[serde(default)]
    pub webhook: Option<NotificationWebhook>,
}

/// An owner-notification webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationWebhook {
    /// `http://` or `https://` URL. Subject to the egress allow-list like any destination.
    pub url: String,
    /// Sign notifications per Standard Webhooks with this `whsec_...` secret.
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

/// One entry of an egress allow-list: a network (CIDR or single address) or a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressAllow {
    /// Any resolved address inside this network is allowed.
    Network(ipnet::IpNet),
    /// Any address a URL with exactly this host (lower-cased, no port) resolves to is
    /// allowed.
    Host(String),
}

impl std::str::FromStr for EgressAllow {
    type Err = String;

    /// `10.0.0.0/8`, `::1/128` and `127.0.0.1` are networks; anything else that is a valid
    /// DNS name (`hooks.internal.example`, `localhost`) is a host.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let s = raw.trim();
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(EgressAllow::Network(net.trunc()));
        }
        if let Ok(ip) = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            return Ok(EgressAllow::Network(ipnet::IpNet::from(ip)));
        }
        let host = s.to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok) {
            return Ok(EgressAllow::Host(host));
        }
        Err(format!(
            "`{raw}` is neither a network (`10.0.0.0/8`, `::1`), an address nor a host name"
        ))
    }
}
