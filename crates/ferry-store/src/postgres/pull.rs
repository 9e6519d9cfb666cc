//! Pull flows (`pull_state`): the cursor, moved only together with the page it follows, and
//! the run record.
//!
//! Several nodes may append pages of one flow: the page's transaction locks the flow's row
//! (creating it first, at the start, if the flow has none yet) before it compares cursors,
//! so of two pages fetched from one cursor only the first to commit is stored; the other
//! then finds the cursor moved and is refused.

use postgres::{Client, Transaction};

use super::codec::col;
use super::codec::{PgResultExt, count64};
use super::writer::Failure;
use crate::{PullCheckpoint, PullRunUpdate, PullState, StoreError, StoreResult};

/// Refuses a page fetched from another cursor than the stored one (a flow with no row yet
/// is at the start: `None`). Holds the flow's row locked until the commit.
pub(crate) fn check_from(
    tx: &mut Transaction<'_>,
    flow: &str,
    cp: &PullCheckpoint,
) -> Result<(), Failure> {
    // A row to lock, even before the first page. Rolled back with the page if it is
    // refused; an unchanged row (cursor NULL, no page) is what a flow at the start has.
    tx.execute(
        "INSERT INTO pull_state (flow) VALUES ($1) ON CONFLICT (flow) DO NOTHING",
        &[&flow],
    )?;
    let row = tx.query_opt(
        "SELECT cursor FROM pull_state WHERE flow = $1 FOR UPDATE",
        &[&flow],
    )?;
    let stored: Option<String> = match row {
        Some(r) => col(&r, 0)?,
        None => None,
    };
    if stored != cp.from {
        return Err(StoreError::Invalid(format!(
            "pull flow `{flow}`: the page was fetched from another cursor than the stored one \
             (another puller or a reset moved it); nothing was stored"
        ))
        .into());
    }
    Ok(())
}

/// Moves the cursor after a page of which `stored` events were new.
pub(crate) fn advance(
    tx: &mut Transaction<'_>,
    flow: &str,
    cp: &PullCheckpoint,
    stored: u64,
) -> Result<(), Failure> {
    let stored = i64::try_from(stored).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO pull_state (flow, cursor, last_page_at, pages, records)
         VALUES ($1, $2, $3, 1, $4)
         ON CONFLICT (flow) DO UPDATE SET cursor = excluded.cursor,
             last_page_at = excluded.last_page_at, pages = pull_state.pages + 1,
             records = pull_state.records + excluded.records",
        &[&flow, &cp.to, &cp.at, &stored],
    )?;
    Ok(())
}

/// Records a run's start or end.
pub(crate) fn set_run(
    tx: &mut Transaction<'_>,
    flow: &str,
    update: &PullRunUpdate,
) -> Result<(), Failure> {
    match update {
        PullRunUpdate::Started { at } => tx.execute(
            "INSERT INTO pull_state (flow, started_at, running) VALUES ($1, $2, true)
             ON CONFLICT (flow) DO UPDATE SET started_at = excluded.started_at, running = true",
            &[&flow, at],
        ),
        PullRunUpdate::Succeeded { at } => tx.execute(
            "INSERT INTO pull_state (flow, finished_at, success_at, running)
             VALUES ($1, $2, $2, false)
             ON CONFLICT (flow) DO UPDATE SET finished_at = excluded.finished_at,
                 success_at = excluded.success_at, last_error = NULL, running = false",
            &[&flow, at],
        ),
        PullRunUpdate::Failed { at, error } => tx.execute(
            "INSERT INTO pull_state (flow, finished_at, last_error, running)
             VALUES ($1, $2, $3, false)
             ON CONFLICT (flow) DO UPDATE SET finished_at = excluded.finished_at,
                 last_error = excluded.last_error, running = false",
            &[&flow, at, error],
        ),
    }?;
    Ok(())
}

/// The state of `flow`, if it has any.
pub(crate) fn state(c: &mut Client, flow: &str) -> StoreResult<Option<PullState>> {
    let Some(r) = c
        .query_opt(
            "SELECT cursor, last_page_at, started_at, finished_at, success_at, last_error,
                    running, pages, records
             FROM pull_state WHERE flow = $1",
            &[&flow],
        )
        .store()?
    else {
        return Ok(None);
    };
    Ok(Some(PullState {
        flow: flow.to_owned(),
        cursor: col(&r, 0)?,
        last_page_at: col(&r, 1)?,
        last_started_at: col(&r, 2)?,
        last_finished_at: col(&r, 3)?,
        last_success_at: col(&r, 4)?,
        last_error: col(&r, 5)?,
        run_unfinished: col(&r, 6)?,
        pages: count64(col(&r, 7)?),
        records: count64(col(&r, 8)?),
    }))
}
