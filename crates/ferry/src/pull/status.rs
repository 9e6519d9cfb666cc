//! What the hub shows of its pull flows: the admin view (freshness against the SLA) and the
//! freshness gauges.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_store::{PullState, Store};

use super::PullSpec;
use crate::admin::dto::PullView;
use crate::clock::now_ms;

/// What only the running puller knows of a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Live {
    pub next_run_at: Option<i64>,
    pub running: bool,
}

/// The pull flows of the running config and what their pullers are doing.
#[derive(Default)]
pub struct PullBoard {
    specs: Vec<Arc<PullSpec>>,
    live: Mutex<HashMap<String, Live>>,
}

impl PullBoard {
    /// A board of these flows.
    pub fn new(specs: Vec<Arc<PullSpec>>) -> Self {
        PullBoard {
            specs,
            live: Mutex::default(),
        }
    }

    /// Record what the puller of `flow` is doing.
    pub fn set(&self, flow: &str, live: Live) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(flow.to_owned(), live);
    }

    fn live(&self, flow: &str) -> Live {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(flow)
            .copied()
            .unwrap_or_default()
    }

    /// Every pull flow's view, sorted by flow, read from `store` now.
    pub async fn views(&self, store: &dyn Store) -> ferry_store::StoreResult<Vec<PullView>> {
        let now = now_ms();
        let mut out = Vec::with_capacity(self.specs.len());
        for spec in &self.specs {
            let state = store.pull_state(&spec.flow).await?;
            out.push(view(spec, state.as_ref(), self.live(&spec.flow), now));
        }
        out.sort_by(|a, b| a.flow.cmp(&b.flow));
        Ok(out)
    }

    /// Publish every flow's freshness gauges from `store`.
    pub async fn publish(&self, store: &dyn Store) {
        match self.views(store).await {
            Ok(views) => views.iter().for_each(publish),
            Err(e) => tracing::warn!(error = %e, "reading the pull flows' state failed"),
        }
    }
}

/// The view of one flow at `now`.
pub fn view(spec: &PullSpec, state: Option<&PullState>, live: Live, now: i64) -> PullView {
    let since = state
        .and_then(|s| s.last_success_at)
        .map(|t| u64::try_from((now - t).max(0) / 1000).unwrap_or(0));
    let sla = spec.freshness.map(|d| d.as_secs());
    let fresh = match (since, sla) {
        (Some(since), Some(sla)) => since <= sla,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let status = if state.is_some_and(|s| s.last_error.is_some()) {
        "failed"
    } else if state.is_some_and(|s| s.last_success_at.is_some()) {
        "ok"
    } else {
        "never_run"
    };
    PullView {
        flow: spec.flow.clone(),
        system: spec.source_system.clone(),
        schedule: spec.schedule.as_str().to_owned(),
        status: status.to_owned(),
        running: live.running,
        cursor: state.and_then(|s| s.cursor.as_deref()).map(|c| {
            serde_json::from_str(c).unwrap_or_else(|_| serde_json::Value::String(c.to_owned()))
        }),
        last_started_at: state.and_then(|s| s.last_started_at),
        last_finished_at: state.and_then(|s| s.last_finished_at),
        last_success_at: state.and_then(|s| s.last_success_at),
        next_run_at: live.next_run_at,
        seconds_since_success: since,
        freshness_sla_seconds: sla,
        fresh,
        last_error: state.and_then(|s| s.last_error.clone()),
        pages: state.map_or(0, |s| s.pages),
        records: state.map_or(0, |s| s.records),
    }
}

/// `ferry_pull_seconds_since_success{flow}` (once a run succeeded) and
/// `ferry_pull_freshness_sla_seconds{flow}` (when the flow has an SLA).
fn publish(v: &PullView) {
    let flow = v.flow.clone();
    if let Some(since) = v.seconds_since_success {
        metrics::gauge!(ferry_metrics::PULL_SECONDS_SINCE_SUCCESS, "flow" => flow.clone())
            .set(since as f64);
    }
    if let Some(sla) = v.freshness_sla_seconds {
        metrics::gauge!(ferry_metrics::PULL_FRESHNESS_SLA_SECONDS, "flow" => flow).set(sla as f64);
    }
}
