//! Lane pauses (`lane_pauses`): one row per paused lane. Only recorded here; nothing in the
//! store acts on them.

use postgres::{Client, Transaction};

use super::codec::PgResultExt;
use super::codec::col;
use super::writer::Failure;
use crate::{LaneKey, LanePause, StoreResult};

/// Pauses (`Some`, replacing an earlier pause) or resumes (`None`) a lane.
pub(crate) fn set(
    tx: &mut Transaction<'_>,
    lane: &LaneKey,
    pause: Option<&LanePause>,
) -> Result<(), Failure> {
    match pause {
        Some(p) => tx.execute(
            "INSERT INTO lane_pauses (flow, destination, since, reason) VALUES ($1, $2, $3, $4)
             ON CONFLICT (flow, destination)
             DO UPDATE SET since = excluded.since, reason = excluded.reason",
            &[&lane.flow, &lane.destination, &p.since, &p.reason],
        ),
        None => tx.execute(
            "DELETE FROM lane_pauses WHERE flow = $1 AND destination = $2",
            &[&lane.flow, &lane.destination],
        ),
    }?;
    Ok(())
}

/// Every paused lane, ordered by lane.
pub(crate) fn list(c: &mut Client) -> StoreResult<Vec<(LaneKey, LanePause)>> {
    c.query(
        "SELECT flow, destination, since, reason FROM lane_pauses ORDER BY flow, destination",
        &[],
    )
    .store()?
    .iter()
    .map(|r| {
        Ok((
            LaneKey {
                flow: col(r, 0)?,
                destination: col(r, 1)?,
            },
            LanePause {
                since: col(r, 2)?,
                reason: col(r, 3)?,
            },
        ))
    })
    .collect()
}
