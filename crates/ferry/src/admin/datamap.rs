//! `GET /admin/v1/datamap?category=&system=`: per data category, every flow, destination and
//! destination system of the running config it may reach, and how it is protected there
//! ([`ferry_protect::DataMap`]). Each row's `observed` (what did flow, from the audit
//! trail) is absent until something fills it in.

use axum::Json;
use axum::extract::{Query, State};
use ferry_protect::DataMap;
use serde::Deserialize;

use super::api::AdminState;
use super::filters::bad_request;
use crate::problem::Problem;

/// The query of `GET /admin/v1/datamap`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataMapQuery {
    /// Only this category and those under it.
    pub category: Option<String>,
    /// Only destinations of this system.
    pub system: Option<String>,
}

/// `GET /admin/v1/datamap`.
pub async fn datamap(
    State(st): State<AdminState>,
    query: Result<Query<DataMapQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DataMap>, Problem> {
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    Ok(Json(st.datamap.select(
        nonempty(&q.category).as_deref(),
        nonempty(&q.system).as_deref(),
    )))
}
