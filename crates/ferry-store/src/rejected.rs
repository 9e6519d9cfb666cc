//! The store's vocabulary for rejected records: messages a queue source read that the flow
//! refused (malformed JSON, a schema violation, a step failing). They are stored with the
//! reason, in the same commit as the events of the batch they came in, so the source can
//! acknowledge the whole batch: a poison message never blocks a queue and never loops.
//! An operator browses them and replays one once the flow's config is fixed.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EventId, Millis};

/// Identity of a rejected record (UUID v7: time-ordered), displayed `rej_` + 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RejectedId(pub Uuid);

/// Prefix of a rejected record's id as displayed.
pub const REJECTED_ID_PREFIX: &str = "rej_";

impl RejectedId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for RejectedId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RejectedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{REJECTED_ID_PREFIX}{}", self.0.simple())
    }
}

/// `rej_` + 32 hex digits, or a bare UUID.
impl std::str::FromStr for RejectedId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.strip_prefix(REJECTED_ID_PREFIX).unwrap_or(s)).map(Self)
    }
}

impl Serialize for RejectedId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RejectedId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A record to store as rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRejected {
    pub id: RejectedId,
    pub flow: String,
    /// The source's kind (`nats`, `rabbitmq`, `kafka`).
    pub source_kind: String,
    /// The broker's message id. A flow keeps one rejected record per message id: a message
    /// redelivered after a crash before its acknowledgement is not stored twice.
    pub message_id: Option<String>,
    pub received_at: Millis,
    /// The refusal's code (`malformed_json`, `schema_violation`, `step_failed`…).
    pub reason: String,
    /// What was wrong, naming pointers and rules, never payload values.
    pub detail: String,
    /// The message's headers.
    pub headers: Vec<(String, String)>,
    /// The message body as it came.
    pub payload: Bytes,
}

/// A stored rejected record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedRecord {
    pub id: RejectedId,
    pub flow: String,
    pub source_kind: String,
    pub message_id: Option<String>,
    pub received_at: Millis,
    pub reason: String,
    pub detail: String,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
    /// When it was replayed into the flow, if it was.
    pub replayed_at: Option<Millis>,
    /// The first event its replay stored (or found already stored).
    pub replayed_event: Option<EventId>,
}
