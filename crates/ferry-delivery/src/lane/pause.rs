//! Auto-pause: a lane whose calls have all failed for `auto_pause.after` pauses itself.

use ferry_store::LanePause;
use tracing::error;

use super::Ctx;

/// Make an auto-pause durable, then apply it. If the store refuses, the lane keeps going
/// (and tries again at its next failure): a pause is never only in memory.
pub(super) async fn auto_pause(ctx: &Ctx, pause: LanePause) {
    match ctx
        .store
        .set_lane_pause(&ctx.key, Some(pause.clone()))
        .await
    {
        Ok(()) => ctx.gate.set_paused(Some(pause)),
        Err(err) => {
            error!(flow = %ctx.key.flow, destination = %ctx.key.destination, error = %err, "recording the auto-pause failed; the lane keeps delivering");
        }
    }
}
