//! Wall-clock time in the store's unit: the one clock every crate reads `now` from.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::Millis;

/// Milliseconds since the Unix epoch of `t` (0 before 1970, saturating far in the future).
pub fn unix_millis(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> Millis {
    unix_millis(SystemTime::now())
}
