//! When a pull flow runs: its cron schedule, counted from the last run recorded in the
//! store, so a restart neither skips nor repeats runs.
//!
//! - Never run before: run now.
//! - The last run was interrupted (a crash or a stop mid-run): run now; it resumes from the
//!   committed cursor.
//! - One or more scheduled times passed since the last run started (the hub was down):
//!   run now, once. The next run is the first scheduled time after that run's start.
//! - After a failed run: retry after a backoff (30 s, doubling, at most 30 min) or at the
//!   next scheduled time, whichever comes first.

use std::time::Duration;

use ferry_config::Schedule;
use ferry_store::PullState;

/// First retry after a failed run.
pub const RETRY_FIRST: Duration = Duration::from_secs(30);
/// Longest wait before retrying a failing source (unless the schedule comes first).
pub const RETRY_MAX: Duration = Duration::from_secs(30 * 60);

/// When the next run is due (epoch ms), given the stored state, the failures in a row
/// since the last success (as this process counted them) and the time now.
pub fn next_run(
    schedule: &Schedule,
    state: Option<&PullState>,
    failures: u32,
    now: i64,
) -> Option<i64> {
    let Some(state) = state else {
        return Some(now);
    };
    if state.run_unfinished {
        return Some(now);
    }
    let Some(last_start) = state.last_started_at else {
        return Some(now);
    };
    let scheduled = schedule.next_after(last_start).map(|t| t.max(now));
    if failures == 0 || state.last_error.is_none() {
        return scheduled;
    }
    let finished = state.last_finished_at.unwrap_or(last_start);
    let retry = finished.saturating_add(retry_backoff(failures).as_millis() as i64);
    Some(scheduled.map_or(retry, |s| s.min(retry)).max(now))
}

/// The wait before retry number `failures` (1-based).
pub fn retry_backoff(failures: u32) -> Duration {
    let doubled = RETRY_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % H; // on the hour

    fn hourly() -> Schedule {
        Schedule::parse("0 * * * *").expect("cron")
    }

    fn ran(started: i64, finished: i64, error: Option<&str>) -> PullState {
        PullState {
            flow: "f".into(),
            last_started_at: Some(started),
            last_finished_at: Some(finished),
            last_error: error.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn first_and_interrupted_runs_start_now() {
        assert_eq!(next_run(&hourly(), None, 0, T0 + 5), Some(T0 + 5));
        let mut interrupted = ran(T0, T0 - 10, None);
        interrupted.run_unfinished = true;
        assert_eq!(
            next_run(&hourly(), Some(&interrupted), 0, T0 + 5),
            Some(T0 + 5)
        );
    }

    #[test]
    fn missed_runs_are_caught_up_once() {
        let last = ran(T0, T0 + 1000, None);
        // On time: the next hour.
        assert_eq!(next_run(&hourly(), Some(&last), 0, T0 + 2000), Some(T0 + H));
        // Down for three hours: now, once...
        let now = T0 + 3 * H + 17;
        assert_eq!(next_run(&hourly(), Some(&last), 0, now), Some(now));
        // ...and after that run, the next scheduled hour, not the missed ones.
        let caught_up = ran(now, now + 10, None);
        assert_eq!(
            next_run(&hourly(), Some(&caught_up), 0, now + 20),
            Some(T0 + 4 * H)
        );
    }

    #[test]
    fn failures_retry_with_backoff_capped_by_the_schedule() {
        let failed = ran(T0, T0 + 1000, Some("HTTP 503"));
        assert_eq!(
            next_run(&hourly(), Some(&failed), 1, T0 + 1000),
            Some(T0 + 31_000)
        );
        assert_eq!(
            next_run(&hourly(), Some(&failed), 2, T0 + 1000),
            Some(T0 + 61_000)
        );
        // At most 30 minutes, and never later than the schedule.
        assert_eq!(
            next_run(&hourly(), Some(&failed), 12, T0 + 1000),
            Some(T0 + 1000 + H / 2)
        );
        let every_5m = Schedule::parse("*/5 * * * *").expect("cron");
        assert_eq!(
            next_run(&every_5m, Some(&failed), 5, T0 + 1000),
            Some(T0 + 300_000)
        );
        // A failure recorded before this process started: the schedule decides.
        assert_eq!(
            next_run(&hourly(), Some(&failed), 0, T0 + 1000),
            Some(T0 + H)
        );
        assert_eq!(retry_backoff(30), RETRY_MAX);
    }
}
