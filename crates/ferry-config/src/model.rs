//! The typed configuration. Field doc comments are the user documentation
//! (docs/config.md mirrors them). Every struct denies unknown fields.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::alerting::{AlertSettings, Oncall};
use crate::protection::{ProtectionSettings, SystemPolicy};
use crate::resilience::{
    AutoPauseConfig, BacklogConfig, BatchConfig, CircuitBreakerConfig, NotificationSettings,
    OrderingConfig, RateLimitConfig,
};
use crate::secret::SecretRef;
use crate::steps::{BodyFormat, ContractConfig, EnrichConfig, PullSource, SchemaDef, Step, Vrl};
use crate::tenants::Tenant;

/// The whole hub configuration, merged from every YAML file of the config directory.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The config directory it was loaded from (relative `file:` secrets resolve against it).
    pub root: PathBuf,
    pub settings: Settings,
    pub systems: BTreeMap<String, System>,
    pub flows: BTreeMap<String, Flow>,
    /// JSON Schemas by event type (or any name a step or contract refers to).
    pub schemas: BTreeMap<String, SchemaDef>,
    /// The tenants flows can run for (`flows.<name>.tenants`).
    pub tenants: BTreeMap<String, Tenant>,
}

/// One YAML file: any of the top-level sections.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub settings: Option<Settings>,
    #[serde(default)]
    pub systems: BTreeMap<String, System>,
    #[serde(default)]
    pub flows: BTreeMap<String, Flow>,
    #[serde(default)]
    pub schemas: BTreeMap<String, SchemaDef>,
    #[serde(default)]
    pub tenants: BTreeMap<String, Tenant>,
}

/// Hub-wide settings (at most one file may hold `settings:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server (ingress, admin API, health, metrics) listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the embedded store lives. `--data-dir` overrides it. Default: `./ferry-data`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Where events and deliveries are kept: the embedded store in the data dir (default),
    /// or PostgreSQL, shared by several nodes. `ferry serve --store` overrides it.
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub ingress: IngressSettings,
    #[serde(default)]
    pub delivery: DeliverySettings,
    #[serde(default)]
    pub notifications: NotificationSettings,
    /// `/metrics` (Prometheus).
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// Limits of the HTTP server: timeouts, connections, memory held by request bodies.
    #[serde(default)]
    pub server: ServerSettings,
    /// Data protection: encryption keys, the hash key, custom taxonomy, retention.
    #[serde(default)]
    pub protection: ProtectionSettings,
    /// Alert rules evaluated in the hub, with their thresholds per business-impact tier.
    #[serde(default)]
    pub alerts: AlertSettings,
    /// The teams alerts go to (by the `owner` systems and flows name), and which of each
    /// team's channels (pager, chat, digest) gets which tier.
    #[serde(default)]
    pub oncall: Oncall,
    /// OpenTelemetry traces: where Ferry's spans are exported, and how many new traces.
    #[serde(default)]
    pub tracing: TracingSettings,
    /// The hub's logs: format, where they go, and how log files rotate and are kept.
    #[serde(default)]
    pub logs: LogSettings,
}

/// `settings.store`: the store's backend. Empty (the default): the embedded SQLite store in
/// the data dir.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Keep everything in PostgreSQL: several `ferry serve` nodes on one database share
    /// the work.
    #[serde(default)]
    pub postgres: Option<PostgresStore>,
}

/// `settings.store.postgres`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStore {
    /// The connection URL (`postgres://user:password@host:5432/db`), by reference: it holds
    /// credentials.
    pub url: SecretRef,
    /// The schema Ferry's tables live in, created if missing (letters, digits and `_`).
    /// Default: the connection's (`public`).
    #[serde(default)]
    pub schema: Option<String>,
    /// Connections for reads (the admin API, claims' payloads are read by the writer).
    /// Default 4; the writer has one more.
    #[serde(default = "default_store_pool")]
    pub pool: usize,
}

const fn default_store_pool() -> usize {
    4
}

/// `settings.logs`: how `ferry serve` logs. `RUST_LOG` sets the level (default `info`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (human-readable) or `json` (one object per line, for log shippers). Default
    /// `text`; `--log-json` makes it `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// Where lines go: `stderr` (default), `stdout`, or `file` (then `file:` says where).
    #[serde(default)]
    pub to: LogTarget,
    /// The log file, its rotation and its retention (with `to: file`).
    #[serde(default)]
    pub file: Option<LogFile>,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogTarget {
    #[default]
    Stderr,
    Stdout,
    File,
}

/// A rotated log file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// The file written to (relative paths from the working directory), e.g.
    /// `/var/log/ferry/ferry.log`. Rotated files sit beside it as `ferry.log.<UTC time>`.
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes. Default 104857600 (100 MiB).
    #[serde(default = "default_log_max_bytes")]
    pub max_bytes: u64,
    /// Rotate when the file is this old. Default 1d.
    #[serde(default = "default_log_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Rotated files kept at most (the oldest deleted first). Default 10.
    #[serde(default = "default_log_keep_files")]
    pub keep_files: usize,
    /// Rotated files older than this are deleted. Default: kept until `keep_files` drops them.
    #[serde(default, with = "humantime_serde")]
    pub keep_for: Option<Duration>,
}

const fn default_log_max_bytes() -> u64 {
    100 * 1024 * 1024
}

const fn default_log_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

const fn default_log_keep_files() -> usize {
    10
}

/// `settings.tracing`: Ferry's spans (ingress, signature check, steps, store commit, each
/// delivery attempt) exported over OTLP/HTTP. Without `otlp_endpoint` no span is exported
/// and a valid inbound `traceparent` is passed on as it came.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// The OTLP/HTTP (protobuf) traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded (0 to 1); a caller's sampled `traceparent` is always
    /// followed. Default 1.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Longest one export call may take. Default 10s.
    #[serde(default = "default_trace_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `service.name` of the spans. Default `ferry`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Spans waiting for export at most; beyond it new spans are dropped, never ingest
    /// slowed. Default 4096.
    #[serde(default = "default_trace_queue")]
    pub max_queue: usize,
}

impl Default for TracingSettings {
    fn default() -> Self {
        TracingSettings {
            otlp_endpoint: None,
            sample_ratio: default_sample_ratio(),
            timeout: default_trace_timeout(),
            service_name: default_service_name(),
            max_queue: default_trace_queue(),
        }
    }
}

const fn default_sample_ratio() -> f64 {
    1.0
}

const fn default_trace_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_service_name() -> String {
    "ferry".to_string()
}

const fn default_trace_queue() -> usize {
    4096
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: None,
            store: StoreSettings::default(),
            admin: AdminSettings::default(),
            ingress: IngressSettings::default(),
            delivery: DeliverySettings::default(),
            notifications: NotificationSettings::default(),
            metrics: MetricsSettings::default(),
            server: ServerSettings::default(),
            protection: ProtectionSettings::default(),
            alerts: AlertSettings::default(),
            oncall: Oncall::default(),
            tracing: TracingSettings::default(),
            logs: LogSettings::default(),
        }
    }
}

/// `/metrics` (Prometheus exposition).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Bearer token a scraper must present on `/metrics` (at least 32 bytes). Without one,
    /// `/metrics` is open to whoever reaches its listener (see `settings.admin.listen` to
    /// keep it off the public one).
    #[serde(default)]
    pub token: Option<SecretRef>,
}

/// Limits of the HTTP server, against slow or half-sent requests and connection floods.
/// They apply to every listener (ingress, and the admin listener if separate).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Most connections open at once; a connection beyond it is answered `503` with
    /// `Retry-After` and closed. Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A request's headers must arrive within this time of the connection opening (or of
    /// the request's first byte on a kept-alive connection). Default 10s.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request body must arrive within this time of its headers. Default 30s.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Slowest accepted body upload, in bytes per second, counted from the headers after a
    /// 2 s grace: a body arriving slower is refused `408`. Default 4096.
    #[serde(default = "default_min_body_rate")]
    pub min_body_rate: u64,
    /// A connection with no bytes read or written for this long is closed (kept-alive
    /// connections between requests, connections that never send anything). Default 60s.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most bytes of request bodies held in memory at once, over all requests; a body that
    /// does not fit is refused `503` with `Retry-After`. Default 64 MiB.
    #[serde(default = "default_body_memory")]
    pub body_memory: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            min_body_rate: default_min_body_rate(),
            idle_timeout: default_idle_timeout(),
            body_memory: default_body_memory(),
        }
    }
}

const fn default_max_connections() -> usize {
    1024
}
const fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
const fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
const fn default_min_body_rate() -> u64 {
    4096
}
const fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
const fn default_body_memory() -> usize {
    64 * 1024 * 1024
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The admin API (`/admin/v1/...`), used by `ferry dlq` and `ferry replay`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token that every admin call must present (at least 32 bytes of entropy, e.g.
    /// `openssl rand -hex 32`). Without one, the admin API refuses every call.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// A separate address for the admin API and `/metrics` (e.g. `127.0.0.1:9090`), so that
    /// only ingress (`/ingest/...`) and `/healthz`, `/readyz` face the network on `listen`.
    /// Default: everything on `listen`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Inbound webhook handling shared by all flows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressSettings {
    /// Largest accepted request body, in bytes (a flow may lower or raise it). Default 1 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for IngressSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

const fn default_max_body_bytes() -> usize {
    1024 * 1024
}

/// Delivery-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// On SIGTERM, how long in-flight deliveries may take to finish before they are released
    /// back to the store for the next start. Default 10s.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The egress allow-list (SSRF guard). Outbound calls to loopback, private, link-local,
    /// CGNAT and cloud-metadata addresses are refused unless the address is in one of these
    /// networks (`127.0.0.0/8`, `::1/128`, `10.1.2.3`) or the URL's host is named here
    /// (`hooks.internal.example`). The check is made on the resolved address at connect
    /// time. Applies to every destination; a destination may add its own entries.
    #[serde(default)]
    pub egress_allow: Vec<String>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            shutdown_grace: default_shutdown_grace(),
            egress_allow: Vec::new(),
        }
    }
}

const fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

/// A connected tool or service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// What the system is, in a sentence.
    #[serde(default)]
    pub description: Option<String>,
    /// Owning team.
    #[serde(default)]
    pub owner: Option<String>,
    /// On-call contact (channel, rota or address).
    #[serde(default)]
    pub oncall: Option<String>,
    /// Business-impact tier.
    #[serde(default)]
    pub tier: Tier,
    /// Entities this system is the system of record for (`customer`, `invoice`...).
    /// `ferry validate` warns when two systems claim the same entity.
    #[serde(default)]
    pub records: Vec<String>,
    /// What the system may receive and how other classified data is protected on the way
    /// to it. Without a policy a system may receive no classified field.
    #[serde(default)]
    pub policy: Option<SystemPolicy>,
    /// How long data is kept: for a source, how long Ferry keeps the events it sent (purged
    /// once their deliveries are finished); for a destination, what it declares it keeps.
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
}

/// Business-impact tier of a system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Critical,
    High,
    #[default]
    Low,
}

/// One integration: a source, and the destinations each accepted event is delivered to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    #[serde(default)]
    pub description: Option<String>,
    /// Owning team (defaults to the source system's owner).
    #[serde(default)]
    pub owner: Option<String>,
    /// The flow's version, recorded with every event it accepts (audit trail). Default 1.
    #[serde(default = "default_flow_version")]
    pub version: u32,
    pub source: Source,
    /// Steps run at ingress, in order, before the event is committed: `validate`,
    /// `filter`, `route`, `split`, `dedupe`.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Destinations by name (names are unique within the flow). At least one.
    pub destinations: BTreeMap<String, Destination>,
    /// A synthetic transaction: a marked event sent through the flow on a schedule (and by
    /// `ferry probe`), which must be delivered everywhere within `expect_within`.
    #[serde(default)]
    pub synthetic: Option<Synthetic>,
    /// Run the flow once per tenant (names under `tenants:`): each copy, `<flow>@<tenant>`,
    /// with the tenant's secrets, limits and region. Webhook and pull sources only.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// The tenant this copy of a flow runs for (set when the config is loaded, never
    /// written).
    #[serde(skip)]
    pub tenant: Option<String>,
}

/// A flow's synthetic transaction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Synthetic {
    /// The event sent: a JSON file, relative to the config directory, entering the flow as
    /// its source's events do (a posted body, a queue message, a pulled record or row).
    pub payload: PathBuf,
    /// Send one this often. Without it, only `ferry probe` sends one.
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    /// Every destination must have it within this time of its acceptance, or the probe
    /// fails. Default 30s.
    #[serde(default = "default_expect_within", with = "humantime_serde")]
    pub expect_within: Duration,
}

const fn default_expect_within() -> Duration {
    Duration::from_secs(30)
}

/// How a destination gets synthetic events.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticDelivery {
    /// Send synthetic events here instead of the destination's `url` (HTTP destinations);
    /// without it they go to the real endpoint, marked `Ferry-Synthetic: true`.
    #[serde(default)]
    pub sandbox_url: Option<String>,
}

const fn default_flow_version() -> u32 {
    1
}

/// Where a flow's events come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Source {
    /// An inbound webhook: `POST /ingest/{path}`.
    Webhook(WebhookSource),
    /// A scheduled HTTP pull with a resumable cursor.
    Pull(PullSource),
    /// A PostgreSQL table read incrementally by a cursor column on a schedule.
    Postgres(crate::connectors::PostgresSource),
    /// A NATS JetStream stream, read through a durable consumer.
    Nats(crate::connectors::NatsSource),
    /// A RabbitMQ queue.
    Rabbitmq(crate::connectors::RabbitmqSource),
    /// Kafka topics, read as a member of a consumer group.
    Kafka(crate::connectors::KafkaSource),
}

/// An inbound webhook endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSource {
    /// The sending system (must be declared under `systems:`).
    pub system: String,
    /// URL path segment: events are posted to `/ingest/{path}`. Default: the flow's name.
    /// Letters, digits, `-`, `_` and `.` only.
    #[serde(default)]
    pub path: Option<String>,
    /// How requests are authenticated. Required: write `none: {}` to accept unsigned requests.
    pub signature: SignatureConfig,
    /// Where the sender's event id (used to dedupe re-sends) is read from. Default: where
    /// the signature scheme's vendor puts it ([`SignatureConfig::vendor_event_id`]), else
    /// the `webhook-id`, `svix-id` or `Idempotency-Key` header.
    #[serde(default)]
    pub event_id: Option<EventIdSource>,
    /// JSON pointer to the event type in the body (e.g. `/type`), kept with the event.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Largest accepted body for this flow, in bytes. Default: `settings.ingress.max_body_bytes`.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
}

/// Inbound signature scheme of a webhook source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SignatureConfig {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    StandardWebhooks {
        /// The `whsec_...` secret.
        secret: SecretRef,
        /// Allowed clock skew of `webhook-timestamp`, either way. Default 5m.
        #[serde(default = "default_tolerance", with = "humantime_serde")]
        tolerance: Duration,
    },
    /// Stripe-style: `Stripe-Signature: t=<unix>,v1=<hex>` over `{t}.{body}`.
    Stripe {
        secret: SecretRef,
        /// Allowed age of `t`. Default 5m.
        #[serde(default = "default_tolerance", with = "humantime_serde")]
        tolerance: Duration,
        /// Header name. Default `Stripe-Signature`.
        #[serde(default)]
        header: Option<String>,
    },
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github { secret: SecretRef },
    /// Generic HMAC-SHA256 of the body in a header.
    Hmac {
        secret: SecretRef,
        /// Header carrying the signature.
        header: String,
        /// `hex` (default) or `base64`.
        #[serde(default)]
        encoding: HmacEncoding,
        /// Prefix before the encoded digest, e.g. `sha256=`.
        #[serde(default)]
        prefix: Option<String>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer { token: SecretRef },
    /// `Authorization: Basic ...`.
    Basic {
        username: String,
        password: SecretRef,
    },
    /// No authentication (only for trusted networks and tests).
    None {},
}

/// Digest encoding of the generic HMAC scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HmacEncoding {
    #[default]
    Hex,
    Base64,
}

const fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}

/// Where the sender's event id comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum EventIdSource {
    /// A request header, e.g. `webhook-id` or `Idempotency-Key`.
    Header(String),
    /// A JSON pointer into the body, e.g. `/id`.
    JsonPointer(String),
}

/// One destination of a flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// The receiving system (must be declared under `systems:`).
    pub system: String,
    /// Where synthetic events go: the real endpoint, marked `Ferry-Synthetic: true`
    /// (default), or `sandbox_url`.
    #[serde(default)]
    pub synthetic: SyntheticDelivery,
    /// Deliver with an HTTP request. A destination has exactly one kind: `http`, `nats`,
    /// `rabbitmq`, `postgres` or `kafka`.
    #[serde(default)]
    pub http: Option<HttpDestination>,
    /// Publish to NATS JetStream.
    #[serde(default)]
    pub nats: Option<crate::connectors::NatsDestination>,
    /// Publish to RabbitMQ.
    #[serde(default)]
    pub rabbitmq: Option<crate::connectors::RabbitmqDestination>,
    /// Upsert into a PostgreSQL table.
    #[serde(default)]
    pub postgres: Option<crate::connectors::PostgresDestination>,
    /// Produce to a Kafka topic.
    #[serde(default)]
    pub kafka: Option<crate::connectors::KafkaDestination>,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Most deliveries of this destination in flight at once (its bulkhead). Default 16.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Circuit breaker (on by default).
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Rate limit (none by default).
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Send several events per call (off by default).
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Deliver events with the same key in acceptance order (off by default).
    #[serde(default)]
    pub ordering: Option<OrderingConfig>,
    /// Fetch related data before mapping (HTTP GET, cached), at delivery time.
    #[serde(default)]
    pub enrich: Option<EnrichConfig>,
    /// A VRL program reshaping the event for this destination, at delivery time.
    #[serde(default)]
    pub map: Option<Vrl>,
    /// The JSON Schema this destination accepts; mapped outputs are checked against it.
    #[serde(default)]
    pub contract: Option<ContractConfig>,
    /// Bounded backlog: beyond it ingress answers 503 with `Retry-After`.
    #[serde(default)]
    pub backlog: BacklogConfig,
    /// Pause the destination after it has failed continuously for a long time.
    #[serde(default)]
    pub auto_pause: AutoPauseConfig,
}

const fn default_concurrency() -> usize {
    16
}

impl Destination {
    /// The destination's kinds as written in YAML (`http`, `nats`, `rabbitmq`): exactly one
    /// in a valid config.
    pub fn kinds(&self) -> Vec<&'static str> {
        [
            ("http", self.http.is_some()),
            ("nats", self.nats.is_some()),
            ("rabbitmq", self.rabbitmq.is_some()),
            ("postgres", self.postgres.is_some()),
            ("kafka", self.kafka.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, set)| set.then_some(kind))
        .collect()
    }

    /// The destination's kind, or `None` when it has none or several (`ferry validate`
    /// refuses both).
    pub fn kind(&self) -> Option<&'static str> {
        match self.kinds()[..] {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// An HTTP destination (outbound webhook or API call).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDestination {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Default `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers. Values are plain strings or secret references.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// Whole-request timeout. Default 30s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// TCP/TLS connect timeout. Default 5s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Sign requests per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`). The `webhook-id` header is always sent, signed or not.
    #[serde(default)]
    pub signing: Option<OutboundSigning>,
    /// Extra egress allow-list entries for this destination only (networks, addresses or
    /// host names), added to `settings.delivery.egress_allow`.
    #[serde(default)]
    pub egress_allow: Vec<String>,
    /// `json` (default): the (mapped) event as the body; `cloudevents`: a CloudEvents 1.0
    /// structured envelope with it as `data`.
    #[serde(default)]
    pub format: BodyFormat,
    /// A `minijinja` template for a non-JSON body (the URL and header values may be
    /// templates too: anything with `{{`).
    #[serde(default)]
    pub body: Option<String>,
    /// How the request authenticates: `basic` (user name and a password by reference),
    /// `bearer` (a token by reference) or `oauth2` (a token from a token endpoint); sent as
    /// `Authorization`.
    #[serde(default)]
    pub auth: Option<HttpAuth>,
}

/// The `Authorization` an HTTP destination sends, its secret by reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum HttpAuth {
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        username: String,
        password: SecretRef,
    },
    /// `Authorization: Bearer <token>`.
    Bearer { token: SecretRef },
    /// `Authorization: Bearer <access token>`, the token obtained from an OAuth2 token
    /// endpoint (client credentials, or a refresh token), cached and refreshed.
    Oauth2(OAuth2Auth),
}

/// OAuth2 for an HTTP destination: the client-credentials grant, or the refresh-token grant
/// when `refresh_token` is given (RFC 6749 §4.4, §6). The client authenticates to the token
/// endpoint with HTTP Basic (§2.3.1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Auth {
    /// The token endpoint, an `http://` or `https://` URL (reached through the egress guard,
    /// like the destination).
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret, by reference.
    pub client_secret: SecretRef,
    /// Space-separated scopes to ask for (sent as `scope`).
    #[serde(default)]
    pub scope: Option<String>,
    /// The API the token is for (sent as `audience`, as Auth0 and others expect).
    #[serde(default)]
    pub audience: Option<String>,
    /// A refresh token, by reference: use the refresh-token grant instead of client
    /// credentials. A new refresh token the server returns replaces it in memory.
    #[serde(default)]
    pub refresh_token: Option<SecretRef>,
}

fn default_method() -> String {
    "POST".to_string()
}
const fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
const fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A header value: a literal, or a secret reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HeaderValue {
    Literal(String),
    Secret(SecretRef),
}

/// Outbound request signing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum OutboundSigning {
    StandardWebhooks {
        /// The `whsec_...` secret shared with the receiver.
        secret: SecretRef,
    },
}

/// When and how often to retry a failed delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Most attempts in all (first try included). Default 12.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Give up on a delivery this long after it was first accepted (or last replayed).
    /// Default 24h.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Cap of the first backoff; each retry doubles the cap. Default 1s.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Largest backoff cap. Default 1h.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            max_age: default_max_age(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

const fn default_max_attempts() -> u32 {
    12
}
const fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
const fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
const fn default_max_backoff() -> Duration {
    Duration::from_secs(3600)
}

/// The path segment a webhook source listens on (`POST /ingest/{path}`): its `path`, or else
/// the flow's name.
pub fn webhook_path(flow_name: &str, src: &WebhookSource) -> String {
    src.path.clone().unwrap_or_else(|| flow_name.to_string())
}

impl Source {
    /// The system events come from.
    pub fn system(&self) -> &str {
        match self {
            Source::Webhook(w) => &w.system,
            Source::Pull(p) => &p.system,
            Source::Nats(n) => &n.system,
            Source::Rabbitmq(r) => &r.system,
            Source::Kafka(k) => &k.system,
            Source::Postgres(p) => &p.system,
        }
    }

    /// The source's kind as written in YAML (`webhook`, `pull`, `nats`, `rabbitmq`, `kafka`, `postgres`).
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Webhook(_) => "webhook",
            Source::Pull(_) => "pull",
            Source::Nats(_) => "nats",
            Source::Rabbitmq(_) => "rabbitmq",
            Source::Kafka(_) => "kafka",
            Source::Postgres(_) => "postgres",
        }
    }

    /// Where the event type is read, if the source reads one: a JSON pointer (a table
    /// source's column name).
    pub fn event_type_pointer(&self) -> Option<&str> {
        match self {
            Source::Webhook(w) => w.event_type.as_deref(),
            Source::Pull(p) => p.event_type.as_deref(),
            Source::Nats(n) => n.event_type.as_deref(),
            Source::Rabbitmq(r) => r.event_type.as_deref(),
            Source::Kafka(k) => k.event_type.as_deref(),
            Source::Postgres(p) => p.event_type.as_deref(),
        }
    }
}

impl SignatureConfig {
    /// The secret the scheme verifies with, and its field name (`secret`, `token` or
    /// `password`); `None` for `none`.
    pub fn secret(&self) -> Option<(&'static str, &SecretRef)> {
        match self {
            SignatureConfig::StandardWebhooks { secret, .. }
            | SignatureConfig::Stripe { secret, .. }
            | SignatureConfig::Github { secret }
            | SignatureConfig::Hmac { secret, .. } => Some(("secret", secret)),
            SignatureConfig::Bearer { token } => Some(("token", token)),
            SignatureConfig::Basic { password, .. } => Some(("password", password)),
            SignatureConfig::None {} => None,
        }
    }

    /// Where the vendor this scheme stands for puts its event id (Stripe: the body's `/id`;
    /// GitHub: `X-GitHub-Delivery`; Standard Webhooks: `webhook-id`/`svix-id`): the dedupe
    /// key when the source sets no `event_id`. `None` for the generic schemes (`hmac`,
    /// `bearer`, `basic`, `none`) and for `stripe` with another `header` (another vendor).
    pub fn vendor_event_id(&self) -> Option<ferry_signature::VendorEventId> {
        use ferry_signature::schemes::{
            GitHub, STRIPE_SIGNATURE_HEADER, StandardWebhooks, StripeStyle,
        };
        match self {
            SignatureConfig::StandardWebhooks { .. } => Some(StandardWebhooks::VENDOR_EVENT_ID),
            SignatureConfig::Stripe { header, .. } => StripeStyle::vendor_event_id_for(
                header.as_deref().unwrap_or(STRIPE_SIGNATURE_HEADER),
            ),
            SignatureConfig::Github { .. } => Some(GitHub::VENDOR_EVENT_ID),
            SignatureConfig::Hmac { .. }
            | SignatureConfig::Bearer { .. }
            | SignatureConfig::Basic { .. }
            | SignatureConfig::None {} => None,
        }
    }

    /// The scheme's name as written in YAML (`standard_webhooks`, `hmac`...).
    pub fn scheme(&self) -> &'static str {
        match self {
            SignatureConfig::StandardWebhooks { .. } => "standard_webhooks",
            SignatureConfig::Stripe { .. } => "stripe",
            SignatureConfig::Github { .. } => "github",
            SignatureConfig::Hmac { .. } => "hmac",
            SignatureConfig::Bearer { .. } => "bearer",
            SignatureConfig::Basic { .. } => "basic",
            SignatureConfig::None {} => "none",
        }
    }
}
