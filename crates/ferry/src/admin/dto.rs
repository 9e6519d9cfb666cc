//! Request and response bodies of the admin API, shared by the server and the CLI client.

use ferry_delivery::GateStatus;
use ferry_store::{
    Attempt, DeliveryDetail, DeliveryState, DeliverySummary, EventSummary, HistoryEntry, LaneCounts,
};
use serde::{Deserialize, Serialize};

/// `GET /admin/v1/deliveries` query. Times: RFC 3339, epoch milliseconds, or an age (`2h`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub state: Option<String>,
    pub flow: Option<String>,
    pub destination: Option<String>,
    pub event_id: Option<String>,
    /// The sender's own id of the event (its dedupe key, e.g. Stripe's `evt_…`).
    pub sender_id: Option<String>,
    /// At least this many attempts, ever: `2` lists the deliveries that needed a retry.
    pub min_attempts: Option<u32>,
    /// An attempt failed with this error class (`http_5xx`, `timeout`, `connect`…).
    pub error_class: Option<String>,
    /// An attempt got this HTTP status: a code (`503`) or a class (`5xx`).
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Cursor: the last delivery id of the previous page.
    pub after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<usize>,
}

/// `GET /admin/v1/events` query. Times as for deliveries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// The sender's own id of the event (its dedupe key), e.g. Stripe's `evt_…`: also finds
    /// the events a `split` made of it (`<id>#0`…) and a pulled record's versions (`<id>@…`).
    pub sender_id: Option<String>,
    pub flow: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Cursor: the last event id of the previous page.
    pub after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<usize>,
}

/// A page of events, in the order they were accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventSummary>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// A page of deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliverySummary>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// One delivery with its attempts, its replays and its event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryView {
    #[serde(flatten)]
    pub detail: DeliveryDetail,
    /// Attempts and replays in the order they happened.
    #[serde(default)]
    pub history: Vec<HistoryView>,
    pub event: Option<EventView>,
}

/// One entry of a delivery's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryView {
    /// An attempt (the `number`th, from 1).
    Attempt {
        number: usize,
        #[serde(flatten)]
        attempt: Attempt,
    },
    /// A replay: a new round of attempts began.
    Replay {
        at: i64,
        /// Who or what asked for it.
        by: String,
        /// The state it left (`delivered`, `retrying` or `dead`).
        from_state: DeliveryState,
        /// Attempts made before it.
        attempts_before: u32,
        /// Why it had died (or last failed) then.
        last_error: Option<String>,
    },
}

impl HistoryView {
    /// The history of `detail`, in order.
    pub fn of(detail: &DeliveryDetail) -> Vec<HistoryView> {
        detail
            .history()
            .into_iter()
            .map(|entry| match entry {
                HistoryEntry::Attempt { number, attempt } => HistoryView::Attempt {
                    number,
                    attempt: attempt.clone(),
                },
                HistoryEntry::Replay(r) => HistoryView::Replay {
                    at: r.at,
                    by: r.by.clone(),
                    from_state: r.from_state,
                    attempts_before: r.attempts_before,
                    last_error: r.last_error.clone(),
                },
            })
            .collect()
    }
}

/// An event as shown to operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventView {
    pub id: String,
    pub flow: String,
    pub source: String,
    pub dedupe_key: Option<String>,
    pub event_type: Option<String>,
    pub received_at: i64,
    pub headers: Vec<(String, String)>,
    /// The payload as JSON (it was checked to be JSON at ingress).
    pub payload: serde_json::Value,
}

/// `POST /admin/v1/replay`: which deliveries to put back in their lanes. At least one
/// selecting field must be set; only `delivered`, `retrying` and `dead` deliveries are
/// replayed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub delivery_id: Option<String>,
    pub event_id: Option<String>,
    /// The sender's own id of the event.
    pub sender_id: Option<String>,
    pub flow: Option<String>,
    pub destination: Option<String>,
    pub state: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub min_attempts: Option<u32>,
    pub error_class: Option<String>,
    pub status: Option<String>,
    /// Who or what asks (kept in each replayed delivery's history as
    /// `admin API: <requested_by>`), e.g. `ferry dlq replay (alice)`. At most 200 characters.
    pub requested_by: Option<String>,
}

/// How many deliveries a replay put back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayResponse {
    pub replayed: u64,
}

/// `GET /admin/v1/lanes`: every lane of the running config (and any lane with stored
/// deliveries), sorted by flow and destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LanesResponse {
    pub lanes: Vec<LaneView>,
}

/// One lane: its deliveries by state, and its gate (breaker, 429 hold, pause, rate limit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaneView {
    #[serde(flatten)]
    pub counts: LaneCounts,
    /// Absent for a lane that is no longer in the config but still has deliveries.
    pub gate: Option<GateStatus>,
}

/// `POST /admin/v1/lanes/{flow}/{destination}/pause`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Shown in `ferry status` and sent to the owner. Default: `paused by an operator`.
    pub reason: Option<String>,
}

/// The answer to a pause or resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaneControlResponse {
    /// `false` when the lane already was in the asked state.
    pub changed: bool,
    pub lane: LaneView,
}

/// `GET /admin/v1/pulls`: every pull flow of the running config, sorted by flow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullsResponse {
    pub pulls: Vec<PullView>,
}

/// One pull flow: where its cursor stands, its runs, and its freshness against its SLA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullView {
    pub flow: String,
    /// The polled system.
    pub system: String,
    /// The cron schedule (UTC).
    pub schedule: String,
    /// How the last finished run ended: `ok`, `failed` (see `last_error`) or `never_run`.
    pub status: String,
    /// A run is under way.
    pub running: bool,
    /// Where the next page request resumes (the committed cursor); absent at the start.
    pub cursor: Option<serde_json::Value>,
    pub last_started_at: Option<i64>,
    pub last_finished_at: Option<i64>,
    pub last_success_at: Option<i64>,
    /// When the next run is due, as this hub scheduled it.
    pub next_run_at: Option<i64>,
    /// Time since the last successful run; absent before the first.
    pub seconds_since_success: Option<u64>,
    /// The flow's freshness SLA (`freshness`), if it has one.
    pub freshness_sla_seconds: Option<u64>,
    /// A run succeeded, within the SLA if there is one.
    pub fresh: bool,
    /// Why the last run failed; absent when it succeeded.
    pub last_error: Option<String>,
    /// Pages committed, ever.
    pub pages: u64,
    /// Events stored from them, ever (records read again are not counted).
    pub records: u64,
}
