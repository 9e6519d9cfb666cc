//! One run of a pull flow: from the committed cursor, page after page, each page's records
//! committed as events together with the cursor after the page, until the last page or the
//! page limit. Each record goes through the flow's steps first ([`super::record`]); the
//! records they skip are left out of the page's commit, never holding the cursor back.

use std::sync::Arc;
use std::time::SystemTime;

use ferry_store::{PullCheckpoint, PullRunUpdate, Store};

use super::PullSpec;
use super::record::{self, Record};
use super::source::{Page, Pager};
use crate::backlog::BacklogMonitor;
use crate::clock::now_ms;
use crate::ingress::LaneWaker;
use crate::ingress::pipeline::Pending;

/// What a run needs: the flow's spec and the hub's shared parts.
pub struct PullCtx {
    pub spec: Arc<PullSpec>,
    pub pager: Pager,
    pub store: Arc<dyn Store>,
    pub wake: LaneWaker,
    pub backlog: Arc<BacklogMonitor>,
}

/// What a successful run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunSummary {
    pub pages: u32,
    /// Events newly stored.
    pub stored: u64,
    /// Records already stored (read again).
    pub duplicates: u64,
    /// Records the flow's steps filtered out or refused (not stored).
    pub skipped: u64,
    /// The run ended at `max_pages` with more pages to go.
    pub truncated: bool,
}

/// Run once, recording the start and the end in the store. `started_at` is the run's time.
pub async fn run(ctx: &PullCtx, started_at: i64) -> Result<RunSummary, String> {
    let flow = &ctx.spec.flow;
    ctx.store
        .set_pull_run(flow, PullRunUpdate::Started { at: started_at })
        .await
        .map_err(|e| format!("recording the run's start: {e}"))?;
    let result = pages(ctx).await;
    let update = match &result {
        Ok(_) => PullRunUpdate::Succeeded { at: now_ms() },
        Err(error) => PullRunUpdate::Failed {
            at: now_ms(),
            error: error.clone(),
        },
    };
    if let Err(e) = ctx.store.set_pull_run(flow, update).await {
        tracing::warn!(flow = %flow, error = %e, "recording the end of a pull run failed");
    }
    result
}

/// The pages of one run.
async fn pages(ctx: &PullCtx) -> Result<RunSummary, String> {
    let spec = &ctx.spec;
    let state = ctx
        .store
        .pull_state(&spec.flow)
        .await
        .map_err(|e| format!("reading the cursor: {e}"))?;
    let mut stored_cursor = state.and_then(|s| s.cursor);
    let mut summary = RunSummary::default();
    for _ in 0..spec.max_pages {
        refuse_if_backlog_full(ctx)?;
        // The page's span (a new trace): the parent of its events' deliveries.
        let mut context = Vec::new();
        let span = ferry_trace::inbound(&mut context).map(|ids| (ids, SystemTime::now()));
        let page = ctx.pager.page(&spec.flow, stored_cursor.as_deref()).await;
        let page = trace_page(spec, span.as_ref(), page)?;
        let now = now_ms();
        let mut pending = Vec::with_capacity(page.records.len());
        for (i, r) in page.records.iter().enumerate() {
            match record::process(spec, r, now)
                .map_err(|e| format!("record {i} of the page: {e}"))?
            {
                Record::Events(mut made) => {
                    made.set_trace_context(&context);
                    pending.push(made)
                }
                Record::Skipped(skip) => {
                    record::report(spec, i, &skip);
                    summary.skipped += 1;
                }
            }
        }
        // Classified fields encrypted (encryption at rest), one key look-up for the page.
        let events: Vec<_> = Pending::seal_all(pending)
            .await
            .map_err(|e| format!("data keys of a page: {e}"))?
            .into_iter()
            .flatten()
            .collect();
        let checkpoint = PullCheckpoint {
            from: stored_cursor.clone(),
            to: page.next.clone(),
            at: now,
        };
        let outcomes = ctx
            .store
            .append_page(&spec.flow, events, checkpoint)
            .await
            .map_err(|e| format!("storing a page: {e}"))?;
        let stored = outcomes.iter().filter(|o| o.is_stored()).count() as u64;
        summary.pages += 1;
        summary.stored += stored;
        summary.duplicates += outcomes.len() as u64 - stored;
        metrics::counter!(ferry_metrics::PULL_PAGES_TOTAL, "flow" => spec.flow.clone())
            .increment(1);
        metrics::counter!(ferry_metrics::PULL_RECORDS_TOTAL, "flow" => spec.flow.clone())
            .increment(stored);
        if stored > 0 {
            for lane in &spec.lanes {
                (ctx.wake)(&lane.key);
            }
        }
        stored_cursor = page.next;
        if page.last {
            return Ok(summary);
        }
    }
    summary.truncated = true;
    Ok(summary)
}

/// Record the span of a page read (`ferry.pull`), with its records or its error.
fn trace_page(
    spec: &PullSpec,
    span: Option<&(ferry_trace::SpanIds, SystemTime)>,
    page: Result<Page, String>,
) -> Result<Page, String> {
    if let Some((ids, started)) = span {
        let mut attributes = vec![ferry_trace::KeyValue::new("ferry.flow", spec.flow.clone())];
        if let Ok(page) = &page {
            attributes.push(ferry_trace::KeyValue::new(
                "ferry.records",
                page.records.len() as i64,
            ));
        }
        ferry_trace::record(
            ids,
            "ferry.pull",
            ferry_trace::SpanKind::Consumer,
            *started,
            SystemTime::now(),
            attributes,
            page.as_ref().err().cloned(),
        );
    }
    page
}

/// A lane at its bounded backlog stops the run (the cursor stays; the next run goes on).
fn refuse_if_backlog_full(ctx: &PullCtx) -> Result<(), String> {
    for lane in &ctx.spec.lanes {
        let waiting = ctx.backlog.waiting(&lane.key);
        if waiting >= lane.max_pending {
            return Err(format!(
                "destination `{}` has {waiting} deliveries waiting (limit {}); the pull goes on \
                 at its next run",
                lane.key.destination, lane.max_pending
            ));
        }
    }
    Ok(())
}
