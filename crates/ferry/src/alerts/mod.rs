//! Alerts evaluated in the hub (`settings.alerts`) and routed by business impact
//! (`settings.oncall`).
//!
//! Every `evaluate_every`, the [`Evaluator`] measures each rule for each delivery lane (and
//! each pull flow with a freshness SLA) with the thresholds of the tier of the system at
//! fault, and steps each alert through pending → firing → resolved. Only the two edges are
//! notified, once each, to the channel the owning team gives that tier (see [`dispatch`]).
//! `GET /admin/v1/alerts` and `ferry alerts` show what is pending, firing and recently
//! resolved.

pub mod dispatch;
mod evaluator;
mod phase;
pub mod prometheus;
pub mod rules;
mod targets;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ferry_config::Config;
use ferry_delivery::DeliveryEngine;
use ferry_store::{Millis, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backlog::BacklogMonitor;
use crate::clock::now_ms;
use crate::pull::PullBoard;

pub use evaluator::{Evaluator, Inputs};
pub use rules::AlertKind;
pub use targets::Targets;

/// Where an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert, as the admin API, `ferry alerts` and the notifications show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    /// `kind/flow/destination` (or `kind/flow` for a pull flow): stable across evaluations,
    /// the deduplication key of the pager.
    pub id: String,
    pub kind: AlertKind,
    pub state: AlertState,
    pub flow: String,
    /// The destination (none for a pull flow's freshness).
    pub destination: Option<String>,
    /// The system at fault and its business-impact tier and owner.
    pub system: String,
    pub tier: String,
    pub owner: Option<String>,
    /// The `settings.oncall` team it is routed to, and that team's channel for the tier.
    pub team: Option<String>,
    pub channel: Option<String>,
    /// The last measurement in words.
    pub summary: String,
    pub value: f64,
    pub threshold: f64,
    /// When the condition was first seen (ms since the epoch).
    pub since: Millis,
    pub fired_at: Option<Millis>,
    pub resolved_at: Option<Millis>,
    /// The runbook of this failure mode.
    pub runbook: String,
}

/// `GET /admin/v1/alerts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AlertsResponse {
    /// Pending and firing, by id.
    pub active: Vec<AlertView>,
    /// The last resolved, newest first.
    pub resolved: Vec<AlertView>,
}

/// The latest evaluation, for the admin API.
#[derive(Default)]
pub struct AlertBoard {
    latest: RwLock<AlertsResponse>,
}

impl AlertBoard {
    /// The alerts as of the last evaluation.
    pub fn get(&self) -> AlertsResponse {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, alerts: AlertsResponse) {
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = alerts;
    }
}

/// What the evaluation loop reads.
pub struct Sources {
    pub engine: Arc<DeliveryEngine>,
    pub backlog: Arc<BacklogMonitor>,
    pub pulls: Arc<PullBoard>,
    pub store: Arc<dyn Store>,
    /// The synthetic transactions' last results.
    pub prober: Arc<crate::synthetic::Prober>,
}

/// Evaluate the rules of `config` every `settings.alerts.evaluate_every` until `stop`,
/// publishing to `board` and sending edges to `dispatch`.
pub fn spawn(
    config: &Config,
    sources: Sources,
    board: Arc<AlertBoard>,
    dispatch: mpsc::Sender<AlertView>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let every = config.settings.alerts.evaluate_every;
    let mut evaluator = Evaluator::new(
        config.settings.alerts.clone(),
        config.settings.oncall.clone(),
        Targets::from_config(config),
        Instant::now(),
    );
    tokio::spawn(async move {
        let mut ticks = crate::clock::Every::new(every);
        while ticks.next(&stop).await {
            let inputs = gather(&sources).await;
            let edges = evaluator.evaluate(&inputs, Instant::now(), now_ms());
            let (active, resolved) = evaluator.views();
            publish_firing(&active);
            board.set(AlertsResponse { active, resolved });
            for view in edges {
                log_edge(&view);
                if dispatch.try_send(view).is_err() {
                    metrics::counter!(ferry_metrics::ALERT_NOTIFICATIONS_TOTAL, "channel" => "any", "outcome" => "dropped").increment(1);
                    tracing::error!("alert notification queue is full; an alert edge was dropped");
                }
            }
        }
    })
}

/// Read what the rules measure.
async fn gather(sources: &Sources) -> Inputs {
    let now = now_ms();
    let age = |received: Millis| Duration::from_millis((now - received).max(0) as u64);
    let tallies = sources
        .engine
        .tallies()
        .iter()
        .map(|(k, t)| (k.clone(), t.snapshot()))
        .collect();
    let backlog = sources
        .backlog
        .snapshot()
        .into_iter()
        .map(|(k, b)| (k, (b.oldest_waiting_received_at.map(age), b.dead)))
        .collect();
    let breakers = sources
        .engine
        .status()
        .into_iter()
        .map(|(k, g)| (k, g.breaker.as_str()))
        .collect();
    let mut pulls = HashMap::new();
    match sources.pulls.views(sources.store.as_ref()).await {
        Ok(views) => {
            for v in views {
                if let Some(sla) = v.freshness_sla_seconds {
                    let since = v.seconds_since_success.map(Duration::from_secs);
                    pulls.insert(v.flow, (since, Duration::from_secs(sla)));
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the pull flows' state for the alert rules failed")
        }
    }
    let synthetics = sources
        .prober
        .last()
        .into_iter()
        .map(|r| (r.flow.clone(), r))
        .collect();
    Inputs {
        tallies,
        backlog,
        breakers,
        pulls,
        synthetics,
    }
}

/// `ferry_alerts_firing{kind,tier}`, every kind and tier published (0 when none).
fn publish_firing(active: &[AlertView]) {
    for kind in AlertKind::ALL {
        for tier in ["critical", "high", "low"] {
            let n = active
                .iter()
                .filter(|a| a.state == AlertState::Firing && a.kind == kind && a.tier == tier)
                .count();
            metrics::gauge!(ferry_metrics::ALERTS_FIRING, "kind" => kind.as_str(), "tier" => tier)
                .set(n as f64);
        }
    }
}

fn log_edge(view: &AlertView) {
    let destination = view.destination.as_deref().unwrap_or("");
    match view.state {
        AlertState::Firing => tracing::warn!(
            alert = %view.id, kind = view.kind.as_str(), flow = %view.flow, destination,
            tier = %view.tier, team = view.team.as_deref(), summary = %view.summary,
            runbook = %view.runbook, "alert firing"
        ),
        _ => tracing::info!(
            alert = %view.id, kind = view.kind.as_str(), flow = %view.flow, destination,
            tier = %view.tier, team = view.team.as_deref(), "alert resolved"
        ),
    }
}
