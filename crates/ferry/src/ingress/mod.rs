//! Ingress: `POST /ingest/{path}` (a tenant's: `/ingest/{tenant}/{path}`) — authenticate, check, dedupe, and commit the event with its
//! deliveries before answering. A 2xx is sent only after the commit (fsync) returned.

pub mod accept_audit;
pub mod cloudevents;
pub mod counters;
pub mod dedupe;
mod event_id;
mod handler;
mod inspect;
pub mod pipeline;
pub mod steps;
mod trace;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use ferry_store::{LaneKey, Store};

use crate::assembly::IngressRoute;

pub use handler::AcceptedBody;
pub use inspect::{Inspected, inspect};

/// Wakes the delivery lane of a key after its deliveries were committed.
pub type LaneWaker = Arc<dyn Fn(&LaneKey) + Send + Sync>;

/// Shared state of the ingress handlers.
#[derive(Clone)]
pub struct IngressState {
    pub routes: Arc<BTreeMap<String, Arc<IngressRoute>>>,
    pub store: Arc<dyn Store>,
    pub wake: LaneWaker,
    /// Lane backlogs, for the bounded-backlog refusal.
    pub backlog: Arc<crate::backlog::BacklogMonitor>,
    /// Lanes that take deliveries claimed in their append (see `ferry_delivery::FreshLane`).
    pub fresh: Arc<HashMap<LaneKey, ferry_delivery::FreshLane>>,
    /// How bodies are read: deadline, minimum rate, memory budget (`settings.server`).
    pub body: Arc<crate::server::BodyLimits>,
    /// The webhook paths of tenants another region's nodes serve: answered `421`.
    pub foreign: Arc<BTreeMap<String, crate::tenancy::ForeignRoute>>,
}

/// The ingress routes.
pub fn router(state: IngressState) -> Router {
    Router::new()
        .route("/ingest/{path}", post(handler::ingest))
        .route("/ingest/{tenant}/{path}", post(handler::ingest_for_tenant))
        .with_state(state)
}

/// Request headers kept with an event (and passed on where meaningful).
pub(crate) const KEPT_HEADERS: &[&str] = &["content-type", "traceparent", "tracestate"];
