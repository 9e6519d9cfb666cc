//! The circuit breaker of one lane, as a pure state machine over explicit instants (no
//! clock inside, so every transition is testable).
//!
//! `closed` counts calls in a sliding window of buckets; when at least `min_requests` calls
//! are in the window and more than `failure_ratio` of them failed, it goes `open` for
//! `cool_down`. Then `half_open` lets `probes` calls through: the first failure reopens it,
//! `probes` successes close it. Written here rather than taken from a crate: the state must
//! be visible (admin API, metrics) and driven by the lane's own clock, and the breaker
//! crates available are stale (see CRATES.md).

use std::time::{Duration, Instant};

/// Buckets the sliding window is cut into.
const BUCKETS: u32 = 10;

/// Tunables, from the destination's `circuit_breaker` config.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerSettings {
    /// `false`: always closed, nothing counted.
    pub enabled: bool,
    /// Open when the failed share of calls in the window is above this (0 < r <= 1).
    pub failure_ratio: f64,
    /// Calls needed in the window before the ratio is judged.
    pub min_requests: u32,
    /// Length of the sliding window.
    pub window: Duration,
    /// Time spent open before probing.
    pub cool_down: Duration,
    /// Calls let through while half-open.
    pub probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_ratio: 0.5,
            min_requests: 10,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
            probes: 1,
        }
    }
}

/// The breaker's state, as shown by the admin API and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go out; results are counted.
    Closed,
    /// Calls wait until the cool-down ends.
    Open,
    /// A few probe calls decide between closed and open.
    HalfOpen,
}

impl BreakerState {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the `ferry_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// May a call go now?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes, as a normal call.
    Go,
    /// Yes, as one of the half-open probes: report its result with `probe = true`.
    Probe,
    /// Not before this instant (open).
    WaitUntil(Instant),
    /// Not until a probe in flight finishes (half-open, all probes out).
    WaitForProbes,
}

/// A state change, for logs, metrics and the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Index of the window slice this bucket holds (slice = time since start / bucket len).
    slice: u64,
    calls: u32,
    failures: u32,
}

/// One lane's breaker.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    start: Instant,
    state: BreakerState,
    /// Open: when it may probe. Otherwise unused.
    open_until: Instant,
    /// When the current state began.
    since: Instant,
    buckets: Vec<Bucket>,
    probes_out: u32,
    probe_successes: u32,
    transitions: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings, now: Instant) -> Self {
        Self {
            settings,
            start: now,
            state: BreakerState::Closed,
            open_until: now,
            since: now,
            buckets: vec![Bucket::default(); BUCKETS as usize],
            probes_out: 0,
            probe_successes: 0,
            transitions: 0,
        }
    }

    /// The current state (an open breaker whose cool-down is over reads as half-open only
    /// once [`Breaker::admit`] moved it there).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Open: the end of the cool-down.
    pub fn open_until(&self) -> Option<Instant> {
        (self.state == BreakerState::Open).then_some(self.open_until)
    }

    /// Transitions since start.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// (calls, failures) in the window ending at `now`.
    pub fn window_counts(&self, now: Instant) -> (u32, u32) {
        let current = self.slice(now);
        self.buckets
            .iter()
            .filter(|b| b.slice + u64::from(BUCKETS) > current && b.slice <= current)
            .fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
    }

    /// Ask to make a call at `now`. A `Probe` answer must be reported as a probe.
    pub fn admit(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        if !self.settings.enabled {
            return (Admission::Go, None);
        }
        let mut transition = None;
        if self.state == BreakerState::Open {
            if now < self.open_until {
                return (Admission::WaitUntil(self.open_until), None);
            }
            transition = self.go(BreakerState::HalfOpen, now);
        }
        match self.state {
            BreakerState::Closed => (Admission::Go, transition),
            BreakerState::HalfOpen if self.probes_out < self.settings.probes => {
                self.probes_out += 1;
                (Admission::Probe, transition)
            }
            _ => (Admission::WaitForProbes, transition),
        }
    }

    /// How many calls could be admitted at `now` without waiting: `None` for no limit
    /// (closed), `Some(0)` while open or with every probe out.
    pub fn capacity(&self, now: Instant) -> Option<u32> {
        if !self.settings.enabled {
            return None;
        }
        match self.state {
            BreakerState::Closed => None,
            BreakerState::Open if now < self.open_until => Some(0),
            BreakerState::Open => Some(self.settings.probes),
            BreakerState::HalfOpen => Some(self.settings.probes.saturating_sub(self.probes_out)),
        }
    }

    /// A probe admitted but never sent (e.g. released at shutdown): give its slot back.
    pub fn cancel_probe(&mut self) {
        self.probes_out = self.probes_out.saturating_sub(1);
    }

    /// Report a call's result. `failure` means the destination misbehaved (5xx, timeout,
    /// connection error), not that the request was refused for its content.
    pub fn record(&mut self, now: Instant, failure: bool, probe: bool) -> Option<Transition> {
        if !self.settings.enabled {
            return None;
        }
        match self.state {
            BreakerState::Closed => {
                let slice = self.slice(now);
                let bucket = &mut self.buckets[(slice % u64::from(BUCKETS)) as usize];
                if bucket.slice != slice {
                    *bucket = Bucket {
                        slice,
                        calls: 0,
                        failures: 0,
                    };
                }
                bucket.calls += 1;
                bucket.failures += u32::from(failure);
                let (calls, failures) = self.window_counts(now);
                let tripped = calls >= self.settings.min_requests
                    && f64::from(failures) > self.settings.failure_ratio * f64::from(calls);
                let at_full_failure = self.settings.failure_ratio >= 1.0
                    && calls >= self.settings.min_requests
                    && failures == calls;
                if tripped || at_full_failure {
                    self.go(BreakerState::Open, now)
                } else {
                    None
                }
            }
            BreakerState::HalfOpen if probe => {
                self.probes_out = self.probes_out.saturating_sub(1);
                if failure {
                    self.go(BreakerState::Open, now)
                } else {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.settings.probes {
                        self.go(BreakerState::Closed, now)
                    } else {
                        None
                    }
                }
            }
            // Results of calls admitted before the breaker opened tell nothing new.
            BreakerState::HalfOpen | BreakerState::Open => None,
        }
    }

    fn go(&mut self, to: BreakerState, now: Instant) -> Option<Transition> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        self.since = now;
        self.transitions += 1;
        match to {
            BreakerState::Open => {
                self.open_until = now + self.settings.cool_down;
                self.probes_out = 0;
            }
            BreakerState::HalfOpen => {
                self.probes_out = 0;
                self.probe_successes = 0;
            }
            BreakerState::Closed => {
                self.buckets.fill(Bucket::default());
                // Slice 0 would alias a real slice: mark every bucket as stale.
                let current = self.slice(now);
                for b in &mut self.buckets {
                    b.slice = current + u64::from(BUCKETS);
                }
            }
        }
        Some(Transition { from, to })
    }

    fn slice(&self, now: Instant) -> u64 {
        let len = (self.settings.window / BUCKETS).max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.start);
        (elapsed.as_nanos() / len.as_nanos()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            enabled: true,
            failure_ratio: 0.5,
            min_requests: 4,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(5),
            probes: 2,
        }
    }

    #[test]
    fn opens_only_past_the_ratio_with_enough_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(), t0);
        assert_eq!(b.record(t0, true, false), None);
        assert_eq!(b.record(t0, true, false), None);
        assert_eq!(b.record(t0, true, false), None, "3 calls < min_requests");
        // 3 of 4 failed is above 0.5 with 4 calls: the fourth result opens it.
        assert_eq!(
            b.record(t0, false, false),
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn half_of_calls_failing_is_not_above_the_ratio() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(), t0);
        for failure in [false, true, false, true, false, true] {
            assert_eq!(b.record(t0, failure, false), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn old_failures_slide_out_of_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(), t0);
        for _ in 0..3 {
            b.record(t0, true, false);
        }
        let later = t0 + Duration::from_secs(11);
        b.record(later, true, false);
        assert_eq!(b.window_counts(later), (1, 1));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn open_waits_then_probes_then_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(), t0);
        for _ in 0..4 {
            b.record(t0, true, false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        let until = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(t0).0, Admission::WaitUntil(until));
        assert_eq!(b.capacity(t0), Some(0));
        let t1 = until;
        let (first, transition) = b.admit(t1);
        assert_eq!(first, Admission::Probe);
        assert_eq!(
            transition,
            Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::HalfOpen
            })
        );
        assert_eq!(b.admit(t1).0, Admission::Probe);
        assert_eq!(b.admit(t1).0, Admission::WaitForProbes);
        // A late result of a call admitted while closed does not count.
        assert_eq!(b.record(t1, false, false), None);
        assert_eq!(b.record(t1, false, true), None);
        assert_eq!(
            b.record(t1, false, true).map(|t| t.to),
            Some(BreakerState::Closed)
        );
        assert_eq!(b.admit(t1).0, Admission::Go);
        assert_eq!(b.window_counts(t1), (0, 0), "closing starts a fresh window");
        assert_eq!(b.transitions(), 3);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(), t0);
        for _ in 0..4 {
            b.record(t0, true, false);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(b.admit(t1).0, Admission::Probe);
        assert_eq!(
            b.record(t1, true, true).map(|t| t.to),
            Some(BreakerState::Open)
        );
        assert_eq!(
            b.admit(t1).0,
            Admission::WaitUntil(t1 + Duration::from_secs(5))
        );
    }

    #[test]
    fn disabled_never_opens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(
            BreakerSettings {
                enabled: false,
                ..settings()
            },
            t0,
        );
        for _ in 0..100 {
            b.record(t0, true, false);
        }
        assert_eq!(b.admit(t0).0, Admission::Go);
        assert_eq!(b.capacity(t0), None);
    }

    #[test]
    fn ratio_one_opens_when_every_call_failed() {
        let t0 = Instant::now();
        let mut b = Breaker::new(
            BreakerSettings {
                failure_ratio: 1.0,
                ..settings()
            },
            t0,
        );
        b.record(t0, false, false);
        for _ in 0..10 {
            b.record(t0, true, false);
        }
        assert_eq!(b.state(), BreakerState::Closed, "one success in the window");
        let t1 = t0 + Duration::from_secs(20);
        for _ in 0..4 {
            b.record(t1, true, false);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }
}
