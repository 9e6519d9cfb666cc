//! Pull flows (`pull_state`): the cursor, moved only together with the page it follows, and
//! the run record.

use rusqlite::{Connection, OptionalExtension, params};

use super::codec::SqlResultExt;
use crate::{PullCheckpoint, PullRunUpdate, PullState, StoreError, StoreResult};

/// Refuses a page fetched from another cursor than the stored one (a flow with no row yet
/// is at the start: `None`).
pub(crate) fn check_from(conn: &Connection, flow: &str, cp: &PullCheckpoint) -> StoreResult<()> {
    let stored: Option<String> = conn
        .prepare_cached("SELECT cursor FROM pull_state WHERE flow = ?1")
        .store()?
        .query_row([flow], |r| r.get(0))
        .optional()
        .store()?
        .flatten();
    if stored != cp.from {
        return Err(StoreError::Invalid(format!(
            "pull flow `{flow}`: the page was fetched from another cursor than the stored one \
             (another puller or a reset moved it); nothing was stored"
        )));
    }
    Ok(())
}

/// Moves the cursor after a page of which `stored` events were new.
pub(crate) fn advance(
    conn: &Connection,
    flow: &str,
    cp: &PullCheckpoint,
    stored: u64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO pull_state (flow, cursor, last_page_at, pages, records)
         VALUES (?1, ?2, ?3, 1, ?4)
         ON CONFLICT (flow) DO UPDATE SET cursor = excluded.cursor,
             last_page_at = excluded.last_page_at, pages = pages + 1,
             records = records + excluded.records",
    )
    .store()?
    .execute(params![flow, cp.to, cp.at, stored as i64])
    .store()?;
    Ok(())
}

/// Records a run's start or end.
pub(crate) fn set_run(conn: &Connection, flow: &str, update: &PullRunUpdate) -> StoreResult<()> {
    match update {
        PullRunUpdate::Started { at } => conn
            .prepare_cached(
                "INSERT INTO pull_state (flow, started_at, running) VALUES (?1, ?2, 1)
                 ON CONFLICT (flow) DO UPDATE SET started_at = ?2, running = 1",
            )
            .store()?
            .execute(params![flow, at]),
        PullRunUpdate::Succeeded { at } => conn
            .prepare_cached(
                "INSERT INTO pull_state (flow, finished_at, success_at, running)
                 VALUES (?1, ?2, ?2, 0)
                 ON CONFLICT (flow) DO UPDATE SET finished_at = ?2, success_at = ?2,
                     last_error = NULL, running = 0",
            )
            .store()?
            .execute(params![flow, at]),
        PullRunUpdate::Failed { at, error } => conn
            .prepare_cached(
                "INSERT INTO pull_state (flow, finished_at, last_error, running)
                 VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT (flow) DO UPDATE SET finished_at = ?2, last_error = ?3, running = 0",
            )
            .store()?
            .execute(params![flow, at, error]),
    }
    .store()?;
    Ok(())
}

/// The state of `flow`, if it has any.
pub(crate) fn state(conn: &Connection, flow: &str) -> StoreResult<Option<PullState>> {
    conn.prepare_cached(
        "SELECT cursor, last_page_at, started_at, finished_at, success_at, last_error, running,
                pages, records
         FROM pull_state WHERE flow = ?1",
    )
    .store()?
    .query_row([flow], |r| {
        Ok(PullState {
            flow: flow.to_owned(),
            cursor: r.get(0)?,
            last_page_at: r.get(1)?,
            last_started_at: r.get(2)?,
            last_finished_at: r.get(3)?,
            last_success_at: r.get(4)?,
            last_error: r.get(5)?,
            run_unfinished: r.get(6)?,
            pages: total_at(r, 7)?,
            records: total_at(r, 8)?,
        })
    })
    .optional()
    .store()
}

/// A running total (never negative).
fn total_at(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(row.get::<_, i64>(idx)?).unwrap_or(0))
}
