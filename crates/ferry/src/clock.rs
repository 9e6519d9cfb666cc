//! Wall-clock time as users write and read it; `now` is the store's clock.

use ferry_store::Millis;

/// Milliseconds since the Unix epoch, now (the store's clock, [`ferry_store::now_millis`]).
pub use ferry_store::now_millis as now_ms;

/// Render epoch milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parse a time given by a user: RFC 3339 (`2026-11-24T10:00:00Z`), epoch milliseconds, or an
/// age relative to `now` such as `15m` or `2h` (meaning that long ago).
pub fn parse_time(input: &str, now: Millis) -> Result<Millis, String> {
    let s = input.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .map_err(|_| format!("time `{s}` is before 1970"));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now - d.as_millis() as Millis);
    }
    Err(format!(
        "cannot read time `{s}`: use RFC 3339 (2026-11-24T10:00:00Z), epoch milliseconds, or an age like 15m / 2h"
    ))
}

/// The ticks of a periodic task: the first at once, then every `period` (a late tick
/// delays the next ones rather than bunching them).
pub struct Every {
    tick: tokio::time::Interval,
}

impl Every {
    pub fn new(period: std::time::Duration) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Every { tick }
    }

    /// Wait for the next tick: `false` once `stop` is cancelled.
    pub async fn next(&mut self, stop: &tokio_util::sync::CancellationToken) -> bool {
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = self.tick.tick() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_time_forms() {
        assert_eq!(parse_time("1700000000000", 0).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0).unwrap(), 1000);
        assert_eq!(
            parse_time("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert!(parse_time("yesterday-ish", 0).is_err());
    }
}
