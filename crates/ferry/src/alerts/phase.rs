//! The life of one alert: inactive → pending → firing → resolved, with hysteresis on both
//! sides. A condition must hold for the rule's `for` before the alert fires, and a firing
//! alert resolves only once its condition stayed clear for `keep_firing_for`, so a
//! flapping destination notifies once, not on every flap. Only the two edges notify.

use std::time::{Duration, Instant};

/// Where an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The condition holds since `since`, not yet for long enough.
    Pending { since: Instant },
    /// Fired at `since`; its condition has been clear since `clear_since`, if it is.
    Firing {
        since: Instant,
        clear_since: Option<Instant>,
    },
}

/// An edge worth a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Fired,
    Resolved,
}

/// What a rule measured at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Breached.
    Holds,
    /// Not breached.
    Clear,
    /// Not enough data to tell (too few attempts in the window): nothing changes.
    Unknown,
}

/// The phase after one evaluation at `now`, and the edge crossed, if any.
pub fn step(
    phase: Option<Phase>,
    condition: Condition,
    now: Instant,
    pending_for: Duration,
    keep_firing_for: Duration,
) -> (Option<Phase>, Option<Edge>) {
    let held = |since: Instant| now.saturating_duration_since(since);
    match (phase, condition) {
        (phase, Condition::Unknown) => (phase, None),
        (None, Condition::Clear) => (None, None),
        (None, Condition::Holds) if pending_for.is_zero() => (
            Some(Phase::Firing {
                since: now,
                clear_since: None,
            }),
            Some(Edge::Fired),
        ),
        (None, Condition::Holds) => (Some(Phase::Pending { since: now }), None),
        (Some(Phase::Pending { since }), Condition::Holds) if held(since) >= pending_for => (
            Some(Phase::Firing {
                since: now,
                clear_since: None,
            }),
            Some(Edge::Fired),
        ),
        (Some(p @ Phase::Pending { .. }), Condition::Holds) => (Some(p), None),
        (Some(Phase::Pending { .. }), Condition::Clear) => (None, None),
        (Some(Phase::Firing { since, .. }), Condition::Holds) => (
            Some(Phase::Firing {
                since,
                clear_since: None,
            }),
            None,
        ),
        (Some(Phase::Firing { since, clear_since }), Condition::Clear) => {
            let clear = clear_since.unwrap_or(now);
            if held(clear) >= keep_firing_for {
                (None, Some(Edge::Resolved))
            } else {
                (
                    Some(Phase::Firing {
                        since,
                        clear_since: Some(clear),
                    }),
                    None,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Run `conditions`, one per second, and return the edges with their second.
    fn run(conditions: &[Condition], pending: Duration, keep: Duration) -> Vec<(usize, Edge)> {
        let start = Instant::now();
        let mut phase = None;
        let mut edges = Vec::new();
        for (i, c) in conditions.iter().enumerate() {
            let (next, edge) = step(phase, *c, start + S * i as u32, pending, keep);
            phase = next;
            if let Some(e) = edge {
                edges.push((i, e));
            }
        }
        edges
    }

    use Condition::{Clear as C, Holds as H, Unknown as U};

    #[test]
    fn fires_once_after_pending_and_resolves_once_after_keep() {
        let edges = run(&[H, H, H, H, H, C, C, C, C], 2 * S, 2 * S);
        assert_eq!(edges, vec![(2, Edge::Fired), (7, Edge::Resolved)]);
    }

    #[test]
    fn a_blip_shorter_than_pending_never_fires() {
        assert!(run(&[H, C, H, C, H, C], 2 * S, S).is_empty());
    }

    #[test]
    fn flapping_while_firing_does_not_resolve() {
        let edges = run(&[H, C, H, C, H, C, C, C], Duration::ZERO, 2 * S);
        assert_eq!(edges, vec![(0, Edge::Fired), (7, Edge::Resolved)]);
    }

    #[test]
    fn unknown_changes_nothing() {
        let edges = run(&[H, U, U, U, C, U, C], Duration::ZERO, S);
        assert_eq!(edges, vec![(0, Edge::Fired), (6, Edge::Resolved)]);
    }
}
