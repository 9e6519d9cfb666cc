//! The rules, as measurements: each reads what the hub knows now (and what it sampled
//! before) and says whether its condition holds, with the value and the threshold.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ferry_config::alerting::{FailureRatioRule, LatencyRule, ThresholdRule, WindowRule};
use ferry_delivery::TallySnapshot;
use serde::{Deserialize, Serialize};

use super::phase::Condition;

/// A kind of rule; each has its runbook section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    FailureRatio,
    AttemptLatencyP99,
    BacklogAge,
    BreakerOpen,
    DeadLettersGrowing,
    Freshness,
    /// A flow's synthetic transaction failed or was late.
    Synthetic,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 7] = [
        AlertKind::FailureRatio,
        AlertKind::AttemptLatencyP99,
        AlertKind::BacklogAge,
        AlertKind::BreakerOpen,
        AlertKind::DeadLettersGrowing,
        AlertKind::Freshness,
        AlertKind::Synthetic,
    ];

    /// The name in config, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::FailureRatio => "failure_ratio",
            AlertKind::AttemptLatencyP99 => "attempt_latency_p99",
            AlertKind::BacklogAge => "backlog_age",
            AlertKind::BreakerOpen => "breaker_open",
            AlertKind::DeadLettersGrowing => "dead_letters_growing",
            AlertKind::Freshness => "freshness",
            AlertKind::Synthetic => "synthetic",
        }
    }

    /// The anchor of its runbook section in `docs/runbooks.md` (heading `Alert: …`).
    pub fn anchor(self) -> &'static str {
        match self {
            AlertKind::FailureRatio => "alert-failure-ratio",
            AlertKind::AttemptLatencyP99 => "alert-attempt-latency-p99",
            AlertKind::BacklogAge => "alert-backlog-age",
            AlertKind::BreakerOpen => "alert-breaker-open",
            AlertKind::DeadLettersGrowing => "alert-dead-letters-growing",
            AlertKind::Freshness => "alert-freshness",
            AlertKind::Synthetic => "alert-synthetic",
        }
    }
}

/// One rule's measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub condition: Condition,
    /// What was measured (a share, seconds or a count).
    pub value: f64,
    /// What it is compared with.
    pub threshold: f64,
    /// The measurement in words.
    pub summary: String,
}

/// One sample of a lane's totals.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub tally: TallySnapshot,
    /// Dead-lettered deliveries in the store.
    pub dead: u64,
}

/// A lane's samples, oldest first, kept for the longest window a rule looks at.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Add the newest sample and forget those older than `keep` before it.
    pub fn push(&mut self, sample: Sample, keep: Duration) {
        self.samples.push_back(sample);
        while self
            .samples
            .front()
            .is_some_and(|s| sample.at.saturating_duration_since(s.at) > keep)
        {
            self.samples.pop_front();
        }
    }

    /// The newest sample, and the oldest one within `window` before it (the oldest kept
    /// one while the hub has run for less than `window`).
    pub fn window(&self, window: Duration) -> Option<(&Sample, &Sample)> {
        let newest = self.samples.back()?;
        let start = self
            .samples
            .iter()
            .find(|s| newest.at.saturating_duration_since(s.at) <= window)?;
        Some((start, newest))
    }
}

fn round(d: Duration) -> String {
    let d = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    };
    humantime::format_duration(d).to_string()
}

/// More than `above` of the attempts in the window failed. Below `min_attempts` it cannot
/// tell while some failed, nor while the breaker holds the calls back (`sending` false);
/// a window without a failed attempt is clear (a recovered lane that went quiet resolves).
pub fn failure_ratio(rule: &FailureRatioRule, history: &History, sending: bool) -> Reading {
    let Some((start, end)) = history.window(rule.window) else {
        return unknown(rule.above);
    };
    let window = end.tally.since(&start.tally);
    let attempts = window.attempts();
    if !sending || (attempts < rule.min_attempts && window.failed > 0) {
        return unknown(rule.above);
    }
    if attempts < rule.min_attempts {
        return Reading {
            condition: Condition::Clear,
            value: 0.0,
            threshold: rule.above,
            summary: format!(
                "no failed attempt over the last {} ({attempts} attempts)",
                round(rule.window)
            ),
        };
    }
    let ratio = window.failed as f64 / attempts as f64;
    Reading {
        condition: holds(ratio > rule.above),
        value: ratio,
        threshold: rule.above,
        summary: format!(
            "{:.0}% of {attempts} attempts failed over the last {} (threshold {:.0}%)",
            ratio * 100.0,
            round(rule.window),
            rule.above * 100.0
        ),
    }
}

/// The 99th percentile of the calls' latency in the window is above `above`. It cannot
/// tell while the breaker holds the calls back (`sending` false); a window without a call
/// is clear.
pub fn attempt_latency_p99(rule: &LatencyRule, history: &History, sending: bool) -> Reading {
    let threshold = rule.above.as_secs_f64();
    let Some((start, end)) = history.window(rule.window) else {
        return unknown(threshold);
    };
    if !sending {
        return unknown(threshold);
    }
    let Some(p99) = end.tally.since(&start.tally).latency_quantile(0.99) else {
        return Reading {
            condition: Condition::Clear,
            value: 0.0,
            threshold,
            summary: format!("no call over the last {}", round(rule.window)),
        };
    };
    Reading {
        condition: holds(p99 > rule.above),
        value: p99.as_secs_f64(),
        threshold,
        summary: format!(
            "p99 attempt latency {} over the last {} (threshold {})",
            round(p99),
            round(rule.window),
            round(rule.above)
        ),
    }
}

/// The oldest waiting delivery is older than `above`.
pub fn backlog_age(rule: &ThresholdRule, oldest_age: Option<Duration>) -> Reading {
    let age = oldest_age.unwrap_or_default();
    Reading {
        condition: holds(age > rule.above),
        value: age.as_secs_f64(),
        threshold: rule.above.as_secs_f64(),
        summary: format!(
            "the oldest waiting delivery is {} old (threshold {})",
            round(age),
            round(rule.above)
        ),
    }
}

/// The breaker is not closed (the rule's `for` is how long that may last).
pub fn breaker_open(held_for: Duration, state: &str) -> Reading {
    let open = state != "closed";
    Reading {
        condition: holds(open),
        value: if open { 1.0 } else { 0.0 },
        threshold: held_for.as_secs_f64(),
        summary: format!(
            "the circuit breaker is {state} (alerts once open for {})",
            round(held_for)
        ),
    }
}

/// The dead-letter queue grew over the window.
pub fn dead_letters_growing(rule: &WindowRule, history: &History) -> Reading {
    let Some((start, end)) = history.window(rule.window) else {
        return unknown(0.0);
    };
    let grew = end.dead.saturating_sub(start.dead);
    Reading {
        condition: holds(grew > 0),
        value: grew as f64,
        threshold: 0.0,
        summary: format!(
            "the dead-letter queue grew by {grew} over the last {} (now {})",
            round(rule.window),
            end.dead
        ),
    }
}

/// A pull flow went longer than its SLA without a successful run. Before any success, the
/// hub's own uptime stands in for the time since the last one.
pub fn freshness(sla: Duration, since_success: Option<Duration>, uptime: Duration) -> Reading {
    let since = since_success.unwrap_or(uptime);
    let never = since_success.is_none();
    Reading {
        condition: holds(since > sla),
        value: since.as_secs_f64(),
        threshold: sla.as_secs_f64(),
        summary: if never {
            format!(
                "no successful run since the hub started {} ago (SLA {})",
                round(since),
                round(sla)
            )
        } else {
            format!(
                "no successful run for {} (SLA {})",
                round(since),
                round(sla)
            )
        },
    }
}

/// The flow's last synthetic transaction failed (unknown before the first).
pub fn synthetic(last: Option<&crate::synthetic::ProbeResult>) -> Reading {
    let Some(last) = last else {
        return unknown(0.0);
    };
    Reading {
        condition: holds(!last.passed),
        value: last.took_ms as f64 / 1000.0,
        threshold: 0.0,
        summary: match &last.failure {
            Some(failure) => format!("the synthetic transaction failed: {failure}"),
            None => format!("the synthetic transaction passed in {} ms", last.took_ms),
        },
    }
}

fn holds(breached: bool) -> Condition {
    if breached {
        Condition::Holds
    } else {
        Condition::Clear
    }
}

fn unknown(threshold: f64) -> Reading {
    Reading {
        condition: Condition::Unknown,
        value: 0.0,
        threshold,
        summary: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_delivery::AttemptTally;

    fn history(points: &[(u64, u64, u64)]) -> History {
        // (second, delivered total, failed total)
        let start = Instant::now();
        let mut h = History::default();
        for (sec, delivered, failed) in points {
            let tally = AttemptTally::default();
            (0..*delivered).for_each(|_| tally.outcome(true));
            (0..*failed).for_each(|_| tally.outcome(false));
            h.push(
                Sample {
                    at: start + Duration::from_secs(*sec),
                    tally: tally.snapshot(),
                    dead: *failed,
                },
                Duration::from_secs(600),
            );
        }
        h
    }

    fn ratio_rule(window: u64) -> FailureRatioRule {
        FailureRatioRule {
            above: 0.05,
            window: Duration::from_secs(window),
            min_attempts: 5,
            pending_for: Duration::ZERO,
        }
    }

    #[test]
    fn the_failure_ratio_counts_only_the_window() {
        // 100 failures long ago, then 10 successes in the last 60 s.
        let h = history(&[(0, 0, 0), (10, 0, 100), (100, 0, 100), (160, 10, 100)]);
        let r = failure_ratio(&ratio_rule(60), &h, true);
        assert_eq!(r.condition, Condition::Clear, "{r:?}");
        let r = failure_ratio(&ratio_rule(600), &h, true);
        assert_eq!(r.condition, Condition::Holds, "{r:?}");
        assert!(
            r.summary.starts_with("91% of 110 attempts failed"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn too_few_attempts_tell_nothing_unless_none_failed() {
        let few_failed = history(&[(0, 0, 0), (10, 0, 3)]);
        let rule = ratio_rule(60);
        assert_eq!(
            failure_ratio(&rule, &few_failed, true).condition,
            Condition::Unknown
        );
        // Quiet after failures long ago: clear.
        let quiet = history(&[(0, 0, 0), (10, 0, 30), (100, 2, 30)]);
        assert_eq!(
            failure_ratio(&rule, &quiet, true).condition,
            Condition::Clear
        );
        // The breaker holds the calls back: it cannot tell.
        assert_eq!(
            failure_ratio(&rule, &quiet, false).condition,
            Condition::Unknown
        );
    }

    #[test]
    fn dead_letters_growing_compares_the_window_ends() {
        let rule = WindowRule {
            window: Duration::from_secs(60),
            pending_for: Duration::ZERO,
        };
        let grew = history(&[(0, 0, 1), (30, 0, 4)]);
        assert_eq!(dead_letters_growing(&rule, &grew).value, 3.0);
        let flat = history(&[(0, 0, 4), (100, 0, 4), (200, 0, 4)]);
        assert_eq!(
            dead_letters_growing(&rule, &flat).condition,
            Condition::Clear
        );
    }

    #[test]
    fn freshness_before_any_success_counts_the_uptime() {
        let sla = Duration::from_secs(60);
        let r = freshness(sla, None, Duration::from_secs(30));
        assert_eq!(r.condition, Condition::Clear);
        let r = freshness(sla, None, Duration::from_secs(90));
        assert_eq!(r.condition, Condition::Holds);
        let r = freshness(
            sla,
            Some(Duration::from_secs(61)),
            Duration::from_secs(9000),
        );
        assert_eq!(r.condition, Condition::Holds);
    }
}
