//! Governance routes of the admin API: the observed data map (what was delivered where,
//! from the audit trail), the retention report, and the audit record every admin action
//! leaves (who: the token's id, never the token).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use ferry_store::{AuditEntry, ObservedFilter, ObservedFlow};
use serde::{Deserialize, Serialize};

use super::api::AdminState;
use super::auth::AdminCaller;
use crate::clock::now_ms;
use crate::problem::Problem;
use crate::retention::{RetentionReport, report};

/// Record an admin action before it is carried out: an action the audit trail cannot
/// record is refused (`503`), so none goes unrecorded.
pub async fn record_action(
    st: &AdminState,
    caller: &AdminCaller,
    action: &str,
    target: Option<String>,
    detail: Option<serde_json::Value>,
) -> Result<(), Problem> {
    st.store
        .audit_admin_action(AuditEntry::Admin {
            at: now_ms(),
            by: caller.0.clone(),
            action: action.to_owned(),
            target,
            detail,
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, action, "cannot record an admin action in the audit trail; refusing it");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "Audit trail unavailable",
                format!("the action was not carried out: its audit record could not be written ({e})"),
            )
            .retry_after(1)
        })
}

/// `GET /admin/v1/datamap/observed` query.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ObservedQuery {
    /// This data category or one below it.
    #[serde(default)]
    pub category: Option<String>,
    /// Delivered to this system.
    #[serde(default)]
    pub system: Option<String>,
}

/// `GET /admin/v1/datamap/observed` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObservedResponse {
    pub observed: Vec<ObservedFlow>,
}

/// `GET /admin/v1/datamap/observed`: per category, flow, destination, system and
/// protection, how many deliveries carrying it were delivered and when the last was.
pub async fn observed(
    State(st): State<AdminState>,
    query: Result<Query<ObservedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ObservedResponse>, Problem> {
    let Query(q) = query.map_err(|e| super::filters::bad_request(e.body_text()))?;
    let filter = ObservedFilter {
        category: q.category.filter(|c| !c.is_empty()),
        system: q.system.filter(|s| !s.is_empty()),
    };
    let observed = st
        .store
        .observed_datamap(&filter)
        .await
        .map_err(super::api::store_error)?;
    Ok(Json(ObservedResponse { observed }))
}

/// `GET /admin/v1/retention`: what each system's events Ferry keeps and for how long, and
/// the destinations keeping orphaned copies.
pub async fn retention(State(st): State<AdminState>) -> Result<Json<RetentionReport>, Problem> {
    let holdings = st.store.holdings().await.map_err(super::api::store_error)?;
    Ok(Json(report(
        &st.retention.config,
        &holdings,
        st.retention.purges.last(),
    )))
}
