//! The store's vocabulary: events, deliveries, attempts and the delivery state machine.
//!
//! Times are milliseconds since the Unix epoch (`Millis`) and are always passed in by the
//! caller, so every backend behaves the same under test and no backend reads a clock.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::{DeliveryAudit, EventAudit};

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
// Id prefixes. Operators meet Ferry's ids next to their vendors' ids (in logs, tickets,
// the receiver's `webhook-id`), so a prefix must say "Ferry" and nothing else:
//
// - events are `fev_` ("Ferry event"). Until 0.1 they were `evt_`, which is Stripe's own
//   event prefix (also Paddle's, Clerk's, Hookdeck's…): a Stripe id pasted into a Ferry
//   lookup looked like a broken Ferry id, and the other way round. No common SaaS uses
//   `fev_`. The old `evt_` + 32 hex digits form is still accepted when parsing.
// - deliveries stay `dlv_`: no common SaaS uses it (Svix has `msg_`/`atmpt_`, Hookdeck
//   `evt_`/`atm_`, Stripe `evt_`/`we_`), and the delivery id is the outbound idempotency key
//   (`webhook-id`, `Idempotency-Key`) that receivers store: renaming it would change the key
//   of every delivery made before an upgrade and break "the same key across retries".
// - batches (`bat_`, see ferry-delivery) are derived from delivery ids the same way.

/// Prefix of an event id as displayed: `fev_` + 32 hex digits.
pub const EVENT_ID_PREFIX: &str = "fev_";
/// Prefix of a delivery id as displayed: `dlv_` + 32 hex digits.
pub const DELIVERY_ID_PREFIX: &str = "dlv_";
/// The event id prefix of earlier versions, still accepted when parsing.
const LEGACY_EVENT_ID_PREFIX: &str = "evt_";

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{EVENT_ID_PREFIX}{}", self.0.simple())
    }
}
impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{DELIVERY_ID_PREFIX}{}", self.0.simple())
    }
}
/// `fev_` + 32 hex digits, the same with the old `evt_` prefix, or a bare UUID.
impl std::str::FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s
            .strip_prefix(EVENT_ID_PREFIX)
            .or_else(|| s.strip_prefix(LEGACY_EVENT_ID_PREFIX))
            .unwrap_or(s);
        Uuid::parse_str(bare).map(Self)
    }
}
/// `dlv_` + 32 hex digits, or a bare UUID.
impl std::str::FromStr for DeliveryId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.strip_prefix(DELIVERY_ID_PREFIX).unwrap_or(s)).map(Self)
    }
}

/// Ids travel as their display form (`fev_…`, `dlv_…`) in JSON, exactly as the CLI shows them.
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

    /// The number every backend stores for it (`deliveries.state`): 0 pending, 1 in flight,
    /// 2 delivered, 3 retrying, 4 dead. The waiting states are 0, 1 and 3.
    pub(crate) const fn code(self) -> u8 {
        match self {
            DeliveryState::Pending => 0,
            DeliveryState::InFlight => 1,
            DeliveryState::Delivered => 2,
            DeliveryState::Retrying => 3,
            DeliveryState::Dead => 4,
        }
    }

    /// The state stored as `code`, if it is one.
    pub(crate) fn from_code(code: i64) -> Option<DeliveryState> {
        DeliveryState::ALL
            .into_iter()
            .find(|s| i64::from(s.code()) == code)
    }

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
    /// What the audit trail records about it (flow version, subject reference, categories
    /// present), written with it; its categories also decide its retention.
    pub audit: EventAudit,
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
    /// The payload as it was before encryption at rest, when ingress hands the delivery
    /// to its lane in memory right after the append: rendering starts from it instead of
    /// decrypting what ingress just encrypted. Never stored; `None` from a claim, and
    /// whenever `payload` holds no encrypted field.
    pub clear_payload: Option<Bytes>,
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
    /// What the audit trail records when it is [delivered](Next::Delivered): the
    /// destination's system, the categories sent and how each was protected.
    pub audit: DeliveryAudit,
    /// The lease end of the claim this outcome settles, when known. A claim whose lease
    /// ended may have been taken over by a newer claim; its retry, dead-lettering or
    /// release must not undo that claim (see [`DeliveryOutcome::settles`]). `None`: it
    /// settles whatever claim holds the delivery.
    pub claim: Option<Millis>,
}

impl DeliveryOutcome {
    /// Whether this outcome may move a delivery in flight whose lease ends at `lease`: a
    /// delivered one always may (the call was made and succeeded); the others only while
    /// the delivery is still under the claim they settle.
    pub fn settles(&self, lease: Option<Millis>) -> bool {
        self.next == Next::Delivered || self.claim.is_none() || self.claim == lease
    }
}

/// Select deliveries for listing and replay. All set fields must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliveryFilter {
    pub delivery_id: Option<DeliveryId>,
    pub event_id: Option<EventId>,
    pub flow: Option<String>,
    /// Only these flows (any of them), when set; an empty list matches nothing. Used to
    /// scope a tenant's admin calls to its flows.
    #[serde(default)]
    pub flows: Option<Vec<String>>,
    pub destination: Option<String>,
    pub state: Option<DeliveryState>,
    /// Event received at or after this time.
    pub since: Option<Millis>,
    /// Event received before this time.
    pub until: Option<Millis>,
    /// Deliveries of events with this sender id (matching as [`sender_id_matches`]).
    #[serde(default)]
    pub sender_id: Option<String>,
    /// At least this many attempts, ever (across replays): `2` lists the deliveries that
    /// needed a retry.
    #[serde(default)]
    pub min_attempts: Option<u32>,
    /// At least one attempt failed with this error class (`http_5xx`, `timeout`, …).
    #[serde(default)]
    pub error_class: Option<String>,
    /// At least one attempt got an HTTP status in this range.
    #[serde(default)]
    pub status: Option<StatusRange>,
}

/// An inclusive range of HTTP status codes: one code (`503`) or a class (`5xx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRange {
    pub from: u16,
    pub to: u16,
}

impl std::str::FromStr for StatusRange {
    type Err = String;
    /// `503` (that code) or `5xx` (500 to 599), for codes 100 to 599.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("`{s}` is not an HTTP status: write a code like `503` or a class like `5xx`")
        };
        let t = s.trim();
        if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
            let digit: u16 = class.parse().map_err(|_| bad())?;
            if !(1..=5).contains(&digit) || class.len() != 1 {
                return Err(bad());
            }
            return Ok(StatusRange {
                from: digit * 100,
                to: digit * 100 + 99,
            });
        }
        let code: u16 = t.parse().map_err(|_| bad())?;
        if !(100..=599).contains(&code) {
            return Err(bad());
        }
        Ok(StatusRange {
            from: code,
            to: code,
        })
    }
}

/// Whether an event whose stored dedupe key is `key` matches a search for sender id `id`:
/// the key is `id` itself, or a key Ferry derives from it — a `split` element's
/// `<id>#<index>`, a pulled record's version `<id>@<cursor value>` — so a search by the id
/// the vendor shows finds them all. Every backend's sender-id filters match this way.
pub fn sender_id_matches(id: &str, key: &str) -> bool {
    key == id
        || key
            .strip_prefix(id)
            .is_some_and(|rest| rest.len() > 1 && (rest.starts_with('#') || rest.starts_with('@')))
}

/// Select events for listing. All set fields must match.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EventFilter {
    /// The sender's id of the event (matching as [`sender_id_matches`]).
    pub sender_id: Option<String>,
    pub flow: Option<String>,
    /// Only these flows (any of them), when set; an empty list matches nothing. Used to
    /// scope a tenant's admin calls to its flows.
    #[serde(default)]
    pub flows: Option<Vec<String>>,
    /// Received at or after this time.
    pub since: Option<Millis>,
    /// Received before this time.
    pub until: Option<Millis>,
}

/// An event as listed: everything but its headers and payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    pub id: EventId,
    pub flow: String,
    /// The sending system.
    pub source: String,
    /// The sender's own id of the event (its dedupe key), if it had one.
    pub sender_id: Option<String>,
    pub event_type: Option<String>,
    pub received_at: Millis,
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

/// A delivery with its every attempt (oldest first) and every replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryDetail {
    pub summary: DeliverySummary,
    pub attempts: Vec<Attempt>,
    /// Every replay of the delivery, oldest first.
    #[serde(default)]
    pub replay_history: Vec<ReplayRecord>,
}

/// One replay of a delivery: when, on whose request, and where it stood then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRecord {
    pub at: Millis,
    /// Who or what asked for it (e.g. `admin API: ferry dlq replay (alice)`).
    pub by: String,
    /// The state it was replayed from: `delivered`, `retrying` or `dead`.
    pub from_state: DeliveryState,
    /// Attempts made before it (the replay comes after that many attempts).
    pub attempts_before: u32,
    /// Why it had died (or the last error while retrying) when it was replayed.
    pub last_error: Option<String>,
}

/// One entry of a delivery's history: an attempt or a replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HistoryEntry<'a> {
    /// The `number`th attempt (from 1).
    Attempt {
        number: usize,
        attempt: &'a Attempt,
    },
    Replay(&'a ReplayRecord),
}

impl DeliveryDetail {
    /// Attempts and replays in the order they happened: each replay after the attempts made
    /// before it.
    pub fn history(&self) -> Vec<HistoryEntry<'_>> {
        let mut out = Vec::with_capacity(self.attempts.len() + self.replay_history.len());
        let mut replays = self.replay_history.iter().peekable();
        for (i, attempt) in self.attempts.iter().enumerate() {
            while let Some(r) = replays.next_if(|r| r.attempts_before as usize <= i) {
                out.push(HistoryEntry::Replay(r));
            }
            out.push(HistoryEntry::Attempt {
                number: i + 1,
                attempt,
            });
        }
        out.extend(replays.map(HistoryEntry::Replay));
        out
    }
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
    /// Dead-lettered deliveries (the lane's dead-letter queue): not waiting, kept until
    /// replayed or purged.
    pub dead: u64,
}

impl From<&LaneCounts> for LaneBacklog {
    fn from(c: &LaneCounts) -> Self {
        LaneBacklog {
            lane: c.lane.clone(),
            waiting: c.pending + c.in_flight + c.retrying,
            oldest_waiting_received_at: c.oldest_waiting_received_at,
            dead: c.dead,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_say_ferry_and_old_ones_still_parse() {
        let id = EventId::new();
        let shown = id.to_string();
        assert!(shown.starts_with("fev_") && shown.len() == 36, "{shown}");
        assert_eq!(shown.parse::<EventId>().unwrap(), id);
        let legacy = format!("evt_{}", id.0.simple());
        assert_eq!(legacy.parse::<EventId>().unwrap(), id, "the old prefix");
        assert_eq!(
            id.0.to_string().parse::<EventId>().unwrap(),
            id,
            "a bare UUID"
        );
        // A Stripe event id is not a Ferry id, whatever its prefix.
        assert!("evt_1Q0abcDEFghiJKLmnoPQRstu".parse::<EventId>().is_err());
        let d = DeliveryId::new();
        assert!(d.to_string().starts_with("dlv_"));
        assert_eq!(d.to_string().parse::<DeliveryId>().unwrap(), d);
    }

    #[test]
    fn status_ranges() {
        assert_eq!(
            "503".parse::<StatusRange>().unwrap(),
            StatusRange { from: 503, to: 503 }
        );
        assert_eq!(
            "5xx".parse::<StatusRange>().unwrap(),
            StatusRange { from: 500, to: 599 }
        );
        assert_eq!(
            "4XX".parse::<StatusRange>().unwrap(),
            StatusRange { from: 400, to: 499 }
        );
        for bad in ["", "5", "600", "99", "6xx", "0xx", "55xx", "abc", "5x"] {
            assert!(bad.parse::<StatusRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sender_ids_match_themselves_and_their_derived_keys() {
        for key in ["evt_1", "evt_1#0", "evt_1#12", "evt_1@2026-01-01"] {
            assert!(sender_id_matches("evt_1", key), "{key}");
        }
        for key in ["evt_10", "evt_", "xevt_1", "evt_1#", "evt_1@", "evt_1-0"] {
            assert!(!sender_id_matches("evt_1", key), "{key}");
        }
    }
}
