//! Lane pauses (`lane_pauses`): one row per paused lane. Only recorded here; nothing in the
//! store acts on them.

use rusqlite::{Connection, params};

use super::codec::SqlResultExt;
use crate::{LaneKey, LanePause, StoreResult};

/// Pauses (`Some`, replacing an earlier pause) or resumes (`None`) a lane.
pub(crate) fn set(conn: &Connection, lane: &LaneKey, pause: Option<&LanePause>) -> StoreResult<()> {
    match pause {
        Some(p) => conn
            .prepare_cached(
                "INSERT INTO lane_pauses (flow, destination, since, reason) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (flow, destination)
                 DO UPDATE SET since = excluded.since, reason = excluded.reason",
            )
            .store()?
            .execute(params![lane.flow, lane.destination, p.since, p.reason]),
        None => conn
            .prepare_cached("DELETE FROM lane_pauses WHERE flow = ?1 AND destination = ?2")
            .store()?
            .execute(params![lane.flow, lane.destination]),
    }
    .store()?;
    Ok(())
}

/// Every paused lane, ordered by lane.
pub(crate) fn list(conn: &Connection) -> StoreResult<Vec<(LaneKey, LanePause)>> {
    conn.prepare_cached(
        "SELECT flow, destination, since, reason FROM lane_pauses ORDER BY flow, destination",
    )
    .store()?
    .query_map([], |r| {
        Ok((
            LaneKey {
                flow: r.get(0)?,
                destination: r.get(1)?,
            },
            LanePause {
                since: r.get(2)?,
                reason: r.get(3)?,
            },
        ))
    })
    .store()?
    .collect::<rusqlite::Result<Vec<_>>>()
    .store()
}
