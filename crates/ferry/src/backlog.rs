//! The backlog monitor: reads every lane's backlog from the store a few times a second,
//! publishes it as metrics (depth, age of the oldest waiting delivery, dead letters) and
//! answers the ingress question "is this lane's backlog full?" from memory.
//!
//! The figure ingress sees is at most one refresh old, so a burst can overshoot a lane's
//! `max_pending` by what arrives in one interval; the bound is on memory of nothing (the
//! backlog lives in the store), so a small overshoot is harmless.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ferry_store::{LaneBacklog, LaneKey, Store};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;

/// How often the backlog is read.
pub const REFRESH: Duration = Duration::from_millis(250);

/// The latest backlog of every lane.
#[derive(Default)]
pub struct BacklogMonitor {
    lanes: RwLock<HashMap<LaneKey, LaneBacklog>>,
}

impl BacklogMonitor {
    /// Deliveries waiting in `lane` at the last refresh (0 if unknown).
    pub fn waiting(&self, lane: &LaneKey) -> u64 {
        self.lanes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(lane)
            .map_or(0, |b| b.waiting)
    }

    /// Every lane's backlog at the last refresh.
    pub fn snapshot(&self) -> HashMap<LaneKey, LaneBacklog> {
        self.lanes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Read the store once and publish. Lanes in `known` are always published (a lane whose
    /// backlog emptied reports 0, not its last value).
    pub async fn refresh(&self, store: &dyn Store, known: &[LaneKey]) {
        let backlog = match store.lane_backlog().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading the lanes' backlog failed");
                return;
            }
        };
        let now = now_ms();
        let mut fresh: HashMap<LaneKey, LaneBacklog> = known
            .iter()
            .map(|lane| {
                (
                    lane.clone(),
                    LaneBacklog {
                        lane: lane.clone(),
                        waiting: 0,
                        oldest_waiting_received_at: None,
                        dead: 0,
                    },
                )
            })
            .collect();
        for b in backlog {
            fresh.insert(b.lane.clone(), b);
        }
        for b in fresh.values() {
            let labels = [
                ("flow", b.lane.flow.clone()),
                ("destination", b.lane.destination.clone()),
            ];
            metrics::gauge!(ferry_metrics::BACKLOG_DEPTH, &labels).set(b.waiting as f64);
            let age = b
                .oldest_waiting_received_at
                .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
            metrics::gauge!(ferry_metrics::BACKLOG_OLDEST_AGE_SECONDS, &labels).set(age);
            metrics::gauge!(ferry_metrics::DEAD_LETTER_DEPTH, &labels).set(b.dead as f64);
        }
        *self.lanes.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// Refresh every [`REFRESH`] until `stop`.
    pub fn spawn(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        known: Vec<LaneKey>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let monitor = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => monitor.refresh(store.as_ref(), &known).await,
                }
            }
        })
    }
}
