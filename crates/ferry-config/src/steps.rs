//! What flows do with their data: schemas per event type, the flow's steps (run at ingress,
//! before the commit), per-destination transforms (run at delivery time, so a replay after
//! a mapping fix sends the fixed payload), pull sources and outgoing contracts.
//! docs/config.md mirrors these doc comments.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::model::HeaderValue;

/// A JSON Schema (2020-12) for one event type, from a file of the config directory.
/// `$ref` resolves only to other schemas of the config, never over the network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDef {
    /// The schema file, relative to the config directory (e.g. `schemas/order.created.json`).
    pub file: String,
    /// What the event type means, in a sentence.
    #[serde(default)]
    pub description: Option<String>,
}

/// A VRL program (or expression), compiled once when the config loads.
pub type Vrl = String;

/// One step of a flow, run at ingress in order, before the event is committed. These steps
/// decide whether and how an event is stored and which destinations get it, so they run
/// before the 2xx; what a destination receives is shaped later, at delivery time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Step {
    /// Check the payload against a schema: the one named here, or else the one of the
    /// event's type. A violation is answered `422` with every violation's JSON pointer.
    Validate(ValidateStep),
    /// A VRL expression returning a boolean: `false` drops the event (answered `200` with
    /// `"dropped": true`, counted, not stored).
    Filter(Vrl),
    /// Content-based routing: destination name → VRL condition. The event goes to every
    /// destination whose condition is `true` (and to destinations not named here).
    Route(BTreeMap<String, Vrl>),
    /// A VRL expression returning an array: the event becomes one event per element
    /// (e.g. an order into its line items), each with its own deliveries.
    Split(Vrl),
    /// Drop an event whose key was already seen within `window` (persistent across
    /// restarts).
    Dedupe(DedupeStep),
}

/// The `validate` step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateStep {
    /// The schema (a name under `schemas:`). Default: the event's type.
    #[serde(default)]
    pub schema: Option<String>,
    /// What to do with an event whose type has no schema: `reject` (422) or `accept`
    /// (default).
    #[serde(default)]
    pub unknown_type: UnknownType,
}

/// What `validate` does with an event of a type without a schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownType {
    #[default]
    Accept,
    Reject,
}

/// The `dedupe` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeStep {
    /// VRL expression computing the key, e.g. `.order_id`.
    pub key: Vrl,
    /// How long a key is remembered.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

/// The `enrich` step of a destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// URL template (`minijinja`), e.g. `https://crm.example/customers/{{ event.customer_id }}`.
    pub url: String,
    /// Request headers (literals or secret references).
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// Field the JSON response is merged into (e.g. `customer` → `.customer`).
    pub into: String,
    /// Per-call timeout. Default 2s.
    #[serde(default = "default_enrich_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a response is cached by URL. Default 5m.
    #[serde(default = "default_enrich_cache", with = "humantime_serde")]
    pub cache: Duration,
}

const fn default_enrich_timeout() -> Duration {
    Duration::from_secs(2)
}
const fn default_enrich_cache() -> Duration {
    Duration::from_secs(300)
}

/// An outgoing contract.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractConfig {
    /// The schema (a name under `schemas:`) mapped outputs must satisfy.
    pub schema: String,
    /// `dlq` (default): a violating output is not sent and the delivery is dead-lettered
    /// with the violations; `warn`: it is sent and the violation logged and counted.
    #[serde(default)]
    pub on_violation: OnViolation,
}

/// What an outgoing contract violation does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnViolation {
    #[default]
    Dlq,
    Warn,
}

/// The body format of an HTTP destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// The (mapped) event as JSON.
    #[default]
    Json,
    /// A CloudEvents 1.0 structured-mode envelope (`application/cloudevents+json`) with the
    /// (mapped) event as `data`.
    Cloudevents,
}

/// A scheduled HTTP pull: polls an API on a cron schedule, following a resumable cursor;
/// each page's records become events, committed together with the cursor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullSource {
    /// The system polled (must be declared under `systems:`).
    pub system: String,
    /// The API URL (query parameters for the cursor are added to it).
    pub url: String,
    /// Request headers (literals or secret references).
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// Cron schedule (5 or 6 fields, UTC), e.g. `*/5 * * * *`.
    pub schedule: String,
    /// JSON pointer to the array of records in a response page, e.g. `/data`.
    pub records: String,
    /// How the next page is asked for.
    pub cursor: PullCursor,
    /// JSON pointer to each record's id (dedupes records seen twice), e.g. `/id`.
    #[serde(default)]
    pub record_id: Option<String>,
    /// JSON pointer to each record's event type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Per-request timeout. Default 30s.
    #[serde(default = "default_pull_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Most pages fetched per run. Default 100.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Freshness SLA: the longest acceptable time since the last successful run.
    #[serde(default, with = "humantime_serde")]
    pub freshness: Option<Duration>,
    /// Extra egress allow-list entries for this source's API.
    #[serde(default)]
    pub egress_allow: Vec<String>,
}

const fn default_pull_timeout() -> Duration {
    Duration::from_secs(30)
}
const fn default_max_pages() -> u32 {
    100
}

/// The cursor of a pull source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum PullCursor {
    /// The response names the next page: `next` is a JSON pointer to the token (absent or
    /// null: last page), sent back as query parameter `param`.
    PageToken { next: String, param: String },
    /// Ask for records updated since the largest `field` (JSON pointer into each record)
    /// seen so far, as query parameter `param`; `initial` is the first value.
    UpdatedSince {
        field: String,
        param: String,
        #[serde(default)]
        initial: Option<String>,
    },
    /// Offset paging: `param` carries the offset, `limit_param` the page size `limit`.
    Offset {
        param: String,
        limit_param: String,
        limit: u32,
    },
}

/// Templates (`minijinja`, with fuel) of an HTTP destination, beyond the plain fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTemplates {
    /// A non-JSON body, e.g. `text={{ event.message }}`; the `content-type` header should
    /// say what it is.
    #[serde(default)]
    pub body: Option<String>,
}
