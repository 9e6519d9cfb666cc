//! Admin API routes.

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_delivery::{ControlError, DeliveryEngine};
use ferry_store::{LaneCounts, LaneKey, Store, StoredEvent};

use super::auth::{AdminCaller, AdminScope, TokenGate, require_token};
use super::dto::*;
use super::filters::{
    bad_request, event_filter, list_filter, page_size, parse_delivery_id, parse_event_id,
    replay_filter, replay_origin,
};
use super::systems::{SystemCatalog, SystemsResponse, roll_up};
use crate::clock::now_ms;
use crate::problem::Problem;

/// Shared state of the admin routes.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    /// The running lanes (gate status, pause and resume).
    pub engine: Arc<DeliveryEngine>,
    /// Wakes every lane (after a replay).
    pub wake_all: Arc<dyn Fn() + Send + Sync>,
    /// The pull flows and their pullers.
    pub pulls: Arc<crate::pull::PullBoard>,
    /// The queue flows of the running config (a rejected record replays through its
    /// flow's current steps).
    pub queues: Arc<crate::intake::QueueFlows>,
    /// The systems of the running config (owner, on-call, tier) and each lane's system.
    pub systems: Arc<SystemCatalog>,
    /// What categories may reach which systems, and how protected (from the config).
    pub datamap: Arc<ferry_protect::DataMap>,
    /// Encryption at rest, when `settings.protection.keys` is set: stored fields are
    /// decrypted for display, and `keys` and `erase` work on its data keys.
    pub at_rest: Option<Arc<crate::at_rest::AtRest>>,
    /// The alerts of the last evaluation.
    pub alerts: Arc<crate::alerts::AlertBoard>,
    /// The synthetic transactions (`ferry probe`).
    pub prober: Arc<crate::synthetic::Prober>,
    /// The retention rules of the running config and the last purge.
    pub retention: Arc<crate::retention::RetentionView>,
    /// The flows of other regions' tenants (`ferry serve --region`): their lanes are left
    /// out of this node's views.
    pub foreign_flows: Arc<std::collections::BTreeSet<String>>,
}

/// The admin routes, all behind the bearer token.
pub fn router(state: AdminState, gate: TokenGate) -> Router {
    Router::new()
        .route("/admin/v1/lanes", get(lanes))
        .route("/admin/v1/systems", get(systems))
        .route("/admin/v1/lanes/{flow}/{destination}/pause", post(pause))
        .route("/admin/v1/lanes/{flow}/{destination}/resume", post(resume))
        .route("/admin/v1/deliveries", get(list_deliveries))
        .route("/admin/v1/deliveries/{id}", get(show_delivery))
        .route("/admin/v1/events", get(list_events))
        .route("/admin/v1/events/{id}", get(show_event))
        .route("/admin/v1/replay", post(replay))
        .route("/admin/v1/pulls", get(pulls))
        .route("/admin/v1/alerts", get(alerts))
        .route("/admin/v1/probe", get(last_probes).post(probe))
        .route("/admin/v1/datamap", get(super::datamap::datamap))
        .route("/admin/v1/rejected", get(super::rejected::list))
        .route("/admin/v1/rejected/{id}", get(super::rejected::show))
        .route(
            "/admin/v1/rejected/{id}/replay",
            post(super::rejected::replay),
        )
        .route("/admin/v1/keys", get(super::keys::status))
        .route("/admin/v1/keys/rotate", post(super::keys::rotate))
        .route("/admin/v1/erase", post(super::keys::erase))
        .route(
            "/admin/v1/datamap/observed",
            get(super::governance::observed),
        )
        .route("/admin/v1/retention", get(super::governance::retention))
        .layer(axum::middleware::from_fn_with_state(gate, require_token))
        .with_state(state)
}

type ApiResult<T> = Result<Json<T>, Problem>;

pub(super) fn store_error(e: ferry_store::StoreError) -> Problem {
    tracing::error!(error = %e, "admin query failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "Store unavailable",
        e.to_string(),
    )
    .retry_after(1)
}

/// `GET /admin/v1/lanes`: every lane (a tenant's token: its tenant's).
async fn lanes(
    State(st): State<AdminState>,
    Extension(scope): Extension<AdminScope>,
) -> ApiResult<LanesResponse> {
    let mut lanes = lane_views(&st).await?;
    lanes.retain(|v| scope.allows(&v.counts.lane.flow));
    Ok(Json(LanesResponse { lanes }))
}

/// `GET /admin/v1/systems`: the lanes rolled up per system, worst first.
async fn systems(State(st): State<AdminState>) -> ApiResult<SystemsResponse> {
    let lanes = lane_views(&st).await?;
    Ok(Json(SystemsResponse {
        systems: roll_up(&lanes, &st.systems, now_ms()),
    }))
}

/// `GET /admin/v1/alerts`: the alerts pending and firing, and the last resolved.
async fn alerts(State(st): State<AdminState>) -> Json<crate::alerts::AlertsResponse> {
    Json(st.alerts.get())
}

/// `POST /admin/v1/probe`: body `{"flows": [..]}` (none: every flow with a synthetic
/// transaction). Runs them now, together, and answers when each passed or failed.
async fn probe(
    State(st): State<AdminState>,
    Json(body): Json<ProbeRequest>,
) -> ApiResult<crate::synthetic::ProbeResponse> {
    let flows: Vec<String> = if body.flows.is_empty() {
        st.prober.flows().cloned().collect()
    } else {
        body.flows
    };
    let runs = flows.iter().map(|flow| st.prober.probe(flow));
    let mut results = Vec::with_capacity(flows.len());
    for result in futures_util::future::join_all(runs).await {
        results.push(result.map_err(|e| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_probed",
                "Not probed",
                e.to_string(),
            )
        })?);
    }
    Ok(Json(crate::synthetic::ProbeResponse { results }))
}

/// `GET /admin/v1/probe`: each flow's last synthetic transaction.
async fn last_probes(State(st): State<AdminState>) -> Json<crate::synthetic::ProbeResponse> {
    Json(crate::synthetic::ProbeResponse {
        results: st.prober.last(),
    })
}

/// The body of `POST /admin/v1/probe`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeRequest {
    #[serde(default)]
    flows: Vec<String>,
}

/// Stored counts joined with the running gates; lanes known to only one side are kept.
async fn lane_views(st: &AdminState) -> Result<Vec<LaneView>, Problem> {
    let mut counts: std::collections::BTreeMap<LaneKey, LaneCounts> = st
        .store
        .lane_counts()
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|c| !st.foreign_flows.contains(&c.lane.flow))
        .map(|c| (c.lane.clone(), c))
        .collect();
    let mut views: Vec<LaneView> = st
        .engine
        .status()
        .into_iter()
        .map(|(lane, gate)| LaneView {
            counts: counts.remove(&lane).unwrap_or_else(|| empty_counts(lane)),
            gate: Some(gate),
        })
        .collect();
    views.extend(
        counts
            .into_values()
            .map(|counts| LaneView { counts, gate: None }),
    );
    views.sort_by(|a, b| a.counts.lane.cmp(&b.counts.lane));
    Ok(views)
}

fn empty_counts(lane: LaneKey) -> LaneCounts {
    LaneCounts {
        lane,
        pending: 0,
        in_flight: 0,
        delivered: 0,
        retrying: 0,
        dead: 0,
        oldest_waiting_received_at: None,
    }
}

async fn pause(
    State(st): State<AdminState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(scope): Extension<AdminScope>,
    Path((flow, destination)): Path<(String, String)>,
    body: Option<Json<PauseRequest>>,
) -> ApiResult<LaneControlResponse> {
    let lane = scoped_lane(&scope, flow, destination)?;
    let reason = body
        .and_then(|Json(b)| b.reason)
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "paused by an operator".to_string());
    audit_lane_action(
        &st,
        &caller,
        "pause",
        &lane,
        Some(serde_json::json!({ "reason": reason })),
    )
    .await?;
    let changed = st
        .engine
        .pause(&lane, &reason)
        .await
        .map_err(control_error)?;
    tracing::info!(flow = %lane.flow, destination = %lane.destination, changed, "pause requested through the admin API");
    lane_control(&st, lane, changed).await
}

async fn resume(
    State(st): State<AdminState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(scope): Extension<AdminScope>,
    Path((flow, destination)): Path<(String, String)>,
) -> ApiResult<LaneControlResponse> {
    let lane = scoped_lane(&scope, flow, destination)?;
    audit_lane_action(&st, &caller, "resume", &lane, None).await?;
    let changed = st.engine.resume(&lane).await.map_err(control_error)?;
    tracing::info!(flow = %lane.flow, destination = %lane.destination, changed, "resume requested through the admin API");
    lane_control(&st, lane, changed).await
}

/// The lane named, when the caller may see it; another tenant's lane is unknown to it.
fn scoped_lane(scope: &AdminScope, flow: String, destination: String) -> Result<LaneKey, Problem> {
    if !scope.allows(&flow) {
        return Err(control_error(ControlError::UnknownLane {
            flow,
            destination,
        }));
    }
    Ok(LaneKey { flow, destination })
}

/// Record a pause or resume of `lane` before it is done; an unknown lane is refused first
/// (nothing to record).
async fn audit_lane_action(
    st: &AdminState,
    caller: &AdminCaller,
    action: &str,
    lane: &LaneKey,
    detail: Option<serde_json::Value>,
) -> Result<(), Problem> {
    if !st.engine.status().iter().any(|(l, _)| l == lane) {
        return Err(control_error(ControlError::UnknownLane {
            flow: lane.flow.clone(),
            destination: lane.destination.clone(),
        }));
    }
    let target = format!("{}/{}", lane.flow, lane.destination);
    super::governance::record_action(st, caller, action, Some(target), detail).await
}

async fn lane_control(
    st: &AdminState,
    lane: LaneKey,
    changed: bool,
) -> ApiResult<LaneControlResponse> {
    let view = lane_views(st)
        .await?
        .into_iter()
        .find(|v| v.counts.lane == lane)
        .unwrap_or_else(|| LaneView {
            counts: empty_counts(lane),
            gate: None,
        });
    Ok(Json(LaneControlResponse {
        changed,
        lane: view,
    }))
}

fn control_error(e: ControlError) -> Problem {
    match e {
        ControlError::UnknownLane { .. } => not_found(e.to_string()),
        ControlError::Store(e) => store_error(e),
    }
}

async fn list_deliveries(
    State(st): State<AdminState>,
    Extension(scope): Extension<AdminScope>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<DeliveryPage> {
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = page_size(q.limit)?;
    let mut f = list_filter(&q)?;
    f.flows = scope.flows();
    let after = q.after.as_deref().map(parse_delivery_id).transpose()?;
    let deliveries = st
        .store
        .list_deliveries(&f, after, limit)
        .await
        .map_err(store_error)?;
    let next_after = (deliveries.len() == limit)
        .then(|| deliveries.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(Json(DeliveryPage {
        deliveries,
        next_after,
    }))
}

/// `GET /admin/v1/events`: events by the sender's id, flow and time, in acceptance order.
async fn list_events(
    State(st): State<AdminState>,
    Extension(scope): Extension<AdminScope>,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<EventPage> {
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = page_size(q.limit)?;
    let mut f = event_filter(&q)?;
    f.flows = scope.flows();
    let after = q.after.as_deref().map(parse_event_id).transpose()?;
    let events = st
        .store
        .list_events(&f, after, limit)
        .await
        .map_err(store_error)?;
    let next_after = (events.len() == limit)
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(EventPage { events, next_after }))
}

async fn show_delivery(
    State(st): State<AdminState>,
    Extension(scope): Extension<AdminScope>,
    Path(id): Path<String>,
) -> ApiResult<DeliveryView> {
    let id = parse_delivery_id(&id)?;
    // Another tenant's delivery is, to a tenant's token, no delivery at all.
    let mut detail = st
        .store
        .delivery(id)
        .await
        .map_err(store_error)?
        .filter(|d| scope.allows(&d.summary.lane.flow))
        .ok_or_else(|| not_found(format!("no delivery {id}")))?;
    open_excerpts(&st, &mut detail).await;
    let event = match st
        .store
        .event(detail.summary.event_id)
        .await
        .map_err(store_error)?
    {
        Some(ev) => Some(event_view(&st, ev).await),
        None => None,
    };
    let history = HistoryView::of(&detail);
    Ok(Json(DeliveryView {
        detail,
        history,
        event,
    }))
}

async fn show_event(
    State(st): State<AdminState>,
    Extension(scope): Extension<AdminScope>,
    Path(id): Path<String>,
) -> ApiResult<EventView> {
    let id = parse_event_id(&id)?;
    let ev = st
        .store
        .event(id)
        .await
        .map_err(store_error)?
        .filter(|ev| scope.allows(&ev.flow))
        .ok_or_else(|| not_found(format!("no event {id}")))?;
    Ok(Json(event_view(&st, ev).await))
}

/// Decrypt the response excerpts of `detail` encrypted at rest (`null` once their event's
/// subject was erased).
async fn open_excerpts(st: &AdminState, detail: &mut ferry_store::DeliveryDetail) {
    let Some(at_rest) = &st.at_rest else {
        return;
    };
    let delivery = detail.summary.id.to_string();
    for attempt in &mut detail.attempts {
        let Some(stored) = attempt.response_excerpt.take() else {
            continue;
        };
        attempt.response_excerpt = match at_rest.open_excerpt(&delivery, &stored).await {
            Ok(excerpt) => excerpt,
            Err(e) => Some(format!("(encrypted; cannot be decrypted: {e})")),
        };
    }
}

fn not_found(detail: String) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
}

/// An event for display: its fields encrypted at rest decrypted (`null` where its subject
/// was erased).
async fn event_view(st: &AdminState, ev: StoredEvent) -> EventView {
    let payload =
        crate::at_rest::display_payload(st.at_rest.as_deref(), &ev.id.to_string(), &ev.payload)
            .await;
    EventView {
        id: ev.id.to_string(),
        flow: ev.flow,
        source: ev.source,
        dedupe_key: ev.dedupe_key,
        event_type: ev.event_type,
        received_at: ev.received_at,
        headers: ev.headers,
        payload,
    }
}

async fn replay(
    State(st): State<AdminState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(scope): Extension<AdminScope>,
    body: Result<Json<ReplayRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<ReplayResponse> {
    let Json(r) = body.map_err(|e| bad_request(e.body_text()))?;
    let mut f = replay_filter(&r)?;
    f.flows = scope.flows();
    // The store records the replay in the audit trail, with who asked.
    let by = format!("{} [{}]", replay_origin(&r), caller.0);
    let replayed = st
        .store
        .replay(&f, now_ms(), &by)
        .await
        .map_err(store_error)?;
    metrics::counter!(ferry_metrics::REPLAYED_TOTAL).increment(replayed);
    tracing::info!(replayed, by = %by, "replay requested through the admin API");
    (st.wake_all)();
    Ok(Json(ReplayResponse { replayed }))
}

/// `GET /admin/v1/pulls`: every pull flow with its cursor, runs and freshness (a tenant's
/// token: its tenant's).
async fn pulls(
    State(st): State<AdminState>,
    Extension(scope): Extension<AdminScope>,
) -> ApiResult<PullsResponse> {
    let mut pulls = st
        .pulls
        .views(st.store.as_ref())
        .await
        .map_err(store_error)?;
    pulls.retain(|pull| scope.allows(&pull.flow));
    Ok(Json(PullsResponse { pulls }))
}
