//! The store's vocabulary: events, deliveries, attempts and the delivery state machine.
//!
//! Times are milliseconds since the Unix epoch (`Millis`) and are always passed in by the
//! caller, so every backend behaves the same under test and no backend reads a clock.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Identity of an accepted event (UUID v7: time-ordered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub Uuid);

/// Identity of one (event, destination) pair. It is also the outbound idempotency key
/// (`webhook-id`), so it never changes across retries and replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(pub Uuid);

impl EventId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}
impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}
impl DeliveryId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}
impl Default for DeliveryId {
    fn default() -> Self {
        Self::new()
    }
}
impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "evt_{}", self.0.simple())
    }
}
impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dlv_{}", self.0.simple())
    }
}
impl std::str::FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.strip_prefix("evt_").unwrap_or(s)).map(Self)
    }
}
impl std::str::FromStr for DeliveryId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.strip_prefix("dlv_").unwrap_or(s)).map(Self)
    }
}

/// Ids travel as their display form (`evt_…`, `dlv_…`) in JSON, exactly as the CLI shows them.
macro_rules! id_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
id_serde!(EventId);
id_serde!(DeliveryId);

/// Where a delivery is in its life.
///
/// `pending -> in_flight -> delivered | retrying(at) | dead`; `retrying` goes back to
/// `in_flight` when due; a replay moves `delivered | retrying | dead` back to `pending`.
/// `delivered` and `dead` are terminal except for an explicit replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    InFlight,
    Delivered,
    Retrying,
    Dead,
}

impl DeliveryState {
    /// All states, in life-cycle order.
    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::InFlight,
        DeliveryState::Delivered,
        DeliveryState::Retrying,
        DeliveryState::Dead,
    ];

    /// The stable lower-case name used in the API, the CLI and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Dead => "dead",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown delivery state `{s}` (expected pending, in_flight, delivered, retrying or dead)")
            })
    }
}

/// A lane is the unit of delivery work: one destination of one flow.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LaneKey {
    pub flow: String,
    pub destination: String,
}

/// An event to append, with the deliveries it fans out to. Appended atomically.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub id: EventId,
    pub flow: String,
    /// The system that sent it (the flow's source system).
    pub source: String,
    /// The sender's own event id, used to dedupe re-sends within a flow.
    pub dedupe_key: Option<String>,
    pub event_type: Option<String>,
    pub received_at: Millis,
    /// Selected request headers kept with the event (e.g. content-type, traceparent).
    pub headers: Vec<(String, String)>,
    /// The raw body, exactly as received.
    pub payload: Bytes,
    pub deliveries: Vec<NewDelivery>,
    /// A `dedupe` step's key and window: the event is dropped when its flow stored an event
    /// with the same key whose window has not expired yet. `None`: no window check.
    pub dedupe_window: Option<DedupeWindow>,
}

/// The key a `dedupe` step computed for an event, and how long it is remembered.
///
/// Checked and recorded in the same transaction as the append: an event is
/// [`AppendOutcome::Deduplicated`] when its flow holds the same key with `expires_at` after
/// the event's `received_at`; otherwise the event is stored and the key recorded with this
/// event's `expires_at` (so the window runs from the first stored event: duplicates do not
/// extend it). Expired keys are forgotten (and purged opportunistically).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupeWindow {
    /// The key, as computed by the step (any string; compared exactly).
    pub key: String,
    /// Until when the key is remembered if this event is stored: normally
    /// `received_at + window`.
    pub expires_at: Millis,
}

/// One delivery created with its event.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub destination: String,
    /// When it first becomes due (normally the receive time).
    pub due_at: Millis,
    /// Deliveries of one lane that share an order key go out one at a time, in append
    /// order: one is claimable only while no earlier-appended delivery of its lane with the
    /// same key is still waiting (pending, in flight or retrying). `None`: no ordering.
    pub order_key: Option<String>,
    /// Claimed by its lane in the append itself, with this lease end (as [`Store::claim`]
    /// would claim it): stored in flight, so it is never claimed again while the lease
    /// lasts, and the caller hands it to the lane directly rather than through a claim.
    /// Only for deliveries without an order key (an ordered one must queue behind its
    /// key); `None`: stored pending, due at `due_at`.
    pub claimed_until: Option<Millis>,
}

/// What happened to one appended event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Newly stored, with its deliveries.
    Stored(EventId),
    /// The flow already holds an event with this dedupe key; nothing was written.
    /// Carries the id of the event stored first.
    Duplicate(EventId),
    /// The flow stored an event with the same [`DedupeWindow`] key within its window;
    /// nothing was written. Carries the id of that event.
    Deduplicated(EventId),
}

impl AppendOutcome {
    /// The id of the stored event (new or earlier).
    pub fn event_id(self) -> EventId {
        match self {
            AppendOutcome::Stored(id)
            | AppendOutcome::Duplicate(id)
            | AppendOutcome::Deduplicated(id) => id,
        }
    }

    /// Whether the event was newly stored.
    pub fn is_stored(self) -> bool {
        matches!(self, AppendOutcome::Stored(_))
    }
}

/// A delivery claimed for sending, with everything a connector needs.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub lane: LaneKey,
    pub event_type: Option<String>,
    pub received_at: Millis,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
    /// Attempts ever made (monotonic; never reset).
    pub attempts: u32,
    /// Attempts since the delivery was created or last replayed: what retry limits count.
    pub round_attempts: u32,
    /// When the current round began (creation or last replay): what the age limit counts from.
    pub round_started_at: Millis,
}

/// One recorded try of a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub started_at: Millis,
    pub latency_ms: u32,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// A short, stable class: `ok`, `timeout`, `connect`, `http_4xx`, `http_5xx`, `http_429`, ...
    pub error_class: Option<String>,
    /// Human-readable error, if any.
    pub error: Option<String>,
    /// The first bytes of the response body (bounded by the caller).
    pub response_excerpt: Option<String>,
}

/// Where a delivery goes after a claim.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    Delivered,
    /// Try again at this time.
    Retry {
        at: Millis,
    },
    /// Dead-lettered, with the reason kept on the delivery.
    Dead {
        reason: String,
    },
    /// Put back as it was before the claim, due again at `at`: no attempt counted, the
    /// round (attempt counts, start) unchanged. Used at shutdown, when the lane is paused,
    /// and for a call that failed on the hub's own host (out of file descriptors...).
    Release {
        at: Millis,
    },
}

/// The result of working on one claimed delivery.
#[derive(Clone, Debug)]
pub struct DeliveryOutcome {
    pub id: DeliveryId,
    /// The attempt made, if one was made (`Release` carries none).
    pub attempt: Option<Attempt>,
    pub next: Next,
}

/// Select deliveries for listing and replay. All set fields must match.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeliveryFilter {
    pub delivery_id: Option<DeliveryId>,
    pub event_id: Option<EventId>,
    pub flow: Option<String>,
    pub destination: Option<String>,
    pub state: Option<DeliveryState>,
    /// Event received at or after this time.
    pub since: Option<Millis>,
    /// Event received before this time.
    pub until: Option<Millis>,
}

/// A delivery as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliverySummary {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub lane: LaneKey,
    pub state: DeliveryState,
    pub received_at: Millis,
    pub attempts: u32,
    /// When it is next due (pending/retrying) or its lease expires (in_flight).
    pub next_attempt_at: Option<Millis>,
    pub updated_at: Millis,
    /// Why it died, or the last error while retrying.
    pub last_error: Option<String>,
    pub replays: u32,
}

/// A delivery with its every attempt (oldest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryDetail {
    pub summary: DeliverySummary,
    pub attempts: Vec<Attempt>,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub id: EventId,
    pub flow: String,
    pub source: String,
    pub dedupe_key: Option<String>,
    pub event_type: Option<String>,
    pub received_at: Millis,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

/// Deliveries of one lane counted by state, plus the age of its oldest waiting delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaneCounts {
    pub lane: LaneKey,
    pub pending: u64,
    pub in_flight: u64,
    pub delivered: u64,
    pub retrying: u64,
    pub dead: u64,
    /// Receive time of the oldest delivery not yet delivered or dead.
    pub oldest_waiting_received_at: Option<Millis>,
}

/// Backlog of one lane, for the backpressure check at ingress and for metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneBacklog {
    pub lane: LaneKey,
    /// Deliveries not yet delivered or dead: pending + retrying + in flight.
    pub waiting: u64,
    /// Receive time of the oldest waiting delivery.
    pub oldest_waiting_received_at: Option<Millis>,
}

impl From<&LaneCounts> for LaneBacklog {
    fn from(c: &LaneCounts) -> Self {
        LaneBacklog {
            lane: c.lane.clone(),
            waiting: c.pending + c.in_flight + c.retrying,
            oldest_waiting_received_at: c.oldest_waiting_received_at,
        }
    }
}

/// Why and since when a lane is paused. A pause is only recorded by the store: it changes no
/// delivery and does not stop claims; the hub stops claiming for a paused lane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanePause {
    pub since: Millis,
    pub reason: String,
}
