//! Scheduled pulls: a flow whose source is an HTTP API or a PostgreSQL table, read on a cron
//! schedule.
//!
//! Each pull flow has one task. At each run it reads the committed cursor from the store,
//! asks the source for the page there ([`source`]: an API's page through the egress guard,
//! [`http`]; or a table's rows after the cursor, through
//! [`ferry_connectors::postgres::TableSource`]), runs each record
//! through the flow's steps like a posted event ([`record`]: `validate`, `filter`, `route`,
//! `split`, `dedupe`; a record they refuse or drop is skipped), and commits the page's
//! events together with the cursor after the page ([`ferry_store::Store::append_page`]),
//! then wakes the lanes. So a crash at any moment either kept a page and its cursor or
//! neither: the next run resumes from the committed cursor without a gap, and a record read
//! twice is a duplicate by its `record_id`. When runs happen is [`schedule`]'s business;
//! where the cursor stands, [`cursor`]'s.
//!
//! # Metrics
//!
//! Labelled `flow`:
//! - `ferry_pull_runs_total{outcome="success|failure"}` (counter);
//! - `ferry_pull_pages_total`, `ferry_pull_records_total` (counters): pages committed, events
//!   stored from them (records read again are not counted);
//! - `ferry_pull_records_skipped_total{reason}` (counter): records the steps left out,
//!   `reason` `filtered`, `schema_violation`, `unknown_event_type` or `step_failed`;
//! - `ferry_pull_seconds_since_success` (gauge, once a run succeeded) and
//!   `ferry_pull_freshness_sla_seconds` (gauge, for flows with a `freshness` SLA): alert when
//!   the first exceeds the second.

pub mod cursor;
pub mod http;
pub mod page;
pub mod record;
pub mod run;
pub mod schedule;
pub mod source;
pub mod spec;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use ferry_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use spec::{PullSpec, PullSteps};
pub use status::PullBoard;

use self::run::PullCtx;
use self::source::Pager;
use self::status::Live;
use crate::backlog::BacklogMonitor;
use crate::clock::now_ms;
use crate::ingress::LaneWaker;

/// How often the freshness gauges are refreshed.
pub const GAUGE_REFRESH: Duration = Duration::from_secs(5);
/// Longest single sleep of a puller: it re-reads its state at least this often, so a clock
/// change cannot keep it asleep.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The running pullers.
pub struct Pullers {
    board: Arc<PullBoard>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pullers {
    /// Start one task per pull flow (and the freshness gauges), until `stop`.
    pub fn start(
        specs: Vec<Arc<PullSpec>>,
        store: Arc<dyn Store>,
        wake: LaneWaker,
        backlog: Arc<BacklogMonitor>,
        stop: CancellationToken,
    ) -> Result<Pullers> {
        let board = Arc::new(PullBoard::new(specs.clone()));
        let mut tasks = Vec::with_capacity(specs.len() + 1);
        for spec in specs {
            let ctx = PullCtx {
                pager: Pager::new(&spec)?,
                spec,
                store: store.clone(),
                wake: wake.clone(),
                backlog: backlog.clone(),
            };
            tasks.push(tokio::spawn(flow_loop(ctx, board.clone(), stop.clone())));
        }
        if !tasks.is_empty() {
            tasks.push(tokio::spawn(gauges(board.clone(), store, stop)));
        }
        Ok(Pullers { board, tasks })
    }

    /// The pull flows and what their pullers are doing (for the admin API).
    pub fn board(&self) -> Arc<PullBoard> {
        self.board.clone()
    }

    /// Wait for every task to end (after `stop` was cancelled). An interrupted run resumes
    /// from its committed cursor at the next start.
    pub async fn join(self) {
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a pull task failed");
            }
        }
    }
}

/// One flow's scheduler loop.
async fn flow_loop(ctx: PullCtx, board: Arc<PullBoard>, stop: CancellationToken) {
    let flow = ctx.spec.flow.clone();
    // Failed runs in a row, counted by this process (a restart starts from the schedule).
    let mut failures = 0_u32;
    loop {
        let state = match ctx.store.pull_state(&flow).await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(flow = %flow, error = %e, "reading the pull state failed");
                if sleep_or_stop(Duration::from_secs(1), &stop).await {
                    return;
                }
                continue;
            }
        };
        let now = now_ms();
        let due = schedule::next_run(&ctx.spec.schedule, state.as_ref(), failures, now);
        board.set(
            &flow,
            Live {
                next_run_at: due,
                running: false,
            },
        );
        let Some(due) = due else {
            tracing::warn!(flow = %flow, "the pull schedule has no next run");
            stop.cancelled().await;
            return;
        };
        if due > now {
            let wait = Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
            if sleep_or_stop(wait.min(MAX_SLEEP), &stop).await {
                return;
            }
            continue;
        }
        board.set(
            &flow,
            Live {
                next_run_at: None,
                running: true,
            },
        );
        let started = std::time::Instant::now();
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = run::run(&ctx, now) => result,
        };
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(s) => {
                failures = 0;
                metrics::counter!(ferry_metrics::PULL_RUNS_TOTAL, "flow" => flow.clone(), "outcome" => "success")
                    .increment(1);
                tracing::info!(flow = %flow, pages = s.pages, stored = s.stored, duplicates = s.duplicates, skipped = s.skipped, truncated = s.truncated, seconds, "pull run finished");
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                metrics::counter!(ferry_metrics::PULL_RUNS_TOTAL, "flow" => flow.clone(), "outcome" => "failure")
                    .increment(1);
                tracing::warn!(flow = %flow, %error, failures, seconds, "pull run failed; the cursor stays after the last committed page");
            }
        }
        board.publish(ctx.store.as_ref()).await;
    }
}

/// Refresh the freshness gauges every [`GAUGE_REFRESH`] until `stop`.
async fn gauges(board: Arc<PullBoard>, store: Arc<dyn Store>, stop: CancellationToken) {
    loop {
        board.publish(store.as_ref()).await;
        if sleep_or_stop(GAUGE_REFRESH, &stop).await {
            return;
        }
    }
}

/// Sleep `d`; `true` if `stop` came first.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
