//! The lane's gate: what must hold before the lane claims work and before each call goes
//! out. It combines the circuit breaker, the rate limit, the lane-wide hold a `429` with
//! `Retry-After` imposes, and the pause (manual or automatic). Waiting at the gate never
//! spends a retry attempt: a delivery only counts an attempt once it is sent.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferry_store::{ClaimedDelivery, LaneKey, LanePause, Millis};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics::Label;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::breaker::{Admission, Breaker, BreakerSettings, BreakerState, Transition};
use crate::classify::Verdict;
use crate::outcome::AttemptResult;
use ferry_store::now_millis;

/// How long a `429` without a usable `Retry-After` holds the lane.
const DEFAULT_429_HOLD: Duration = Duration::from_secs(1);
/// Statuses that say the endpoint itself is gone or refuses us (counted towards auto-pause).
const ENDPOINT_FAILURES: [u16; 4] = [401, 403, 404, 410];

/// Rate limit of a lane, from the destination's `rate_limit` config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitSpec {
    /// Calls allowed per `per`.
    pub requests: NonZeroU32,
    /// The period.
    pub per: Duration,
    /// Calls allowed at once after a quiet spell.
    pub burst: NonZeroU32,
    /// JSON pointer into the event: one limit per value.
    pub key: Option<String>,
}

/// What the gate enforces, per lane.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GateSpec {
    /// The circuit breaker.
    pub breaker: BreakerSettings,
    /// The rate limit, if any.
    pub rate_limit: Option<RateLimitSpec>,
    /// Pause the lane after it has failed without a success for this long.
    pub auto_pause_after: Option<Duration>,
    /// Deliveries are ordered per key (the store holds back all but each key's oldest), so
    /// every completed delivery may unblock another: the lane looks for work after each
    /// commit, not only after retries.
    pub ordered: bool,
}

/// Something that happened to a lane, for owners and operators.
#[derive(Clone, Debug, PartialEq)]
pub enum LaneEvent {
    /// The breaker changed state.
    Breaker {
        /// The lane.
        lane: LaneKey,
        /// The state left.
        from: BreakerState,
        /// The state entered.
        to: BreakerState,
    },
    /// The lane was paused (by `ferry pause` or by auto-pause).
    Paused {
        /// The lane.
        lane: LaneKey,
        /// Since when and why.
        pause: LanePause,
    },
    /// The lane was resumed.
    Resumed {
        /// The lane.
        lane: LaneKey,
    },
}

/// A snapshot of a lane's gate, for the admin API and `ferry status`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateStatus {
    /// The circuit breaker's state.
    pub breaker: BreakerState,
    /// When the breaker entered its state (ms since the epoch).
    pub breaker_since: Millis,
    /// Open: when it will probe.
    pub breaker_open_until: Option<Millis>,
    /// Calls in the breaker's window.
    pub window_calls: u32,
    /// Failed calls in the breaker's window.
    pub window_failures: u32,
    /// A `429` holds the whole lane until then.
    pub hold_until: Option<Millis>,
    /// Paused, since when and why.
    pub paused: Option<LanePause>,
    /// Failing without a success since then (what auto-pause measures).
    pub failing_since: Option<Millis>,
    /// Calls that had to wait for the rate limit.
    pub rate_limit_waits: u64,
}

/// The outcome of [`Gate::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Send now; report the result with [`Gate::record`] passing `probe`.
    Go { probe: bool },
    /// The lane is paused: release the delivery.
    Paused,
    /// The lane is stopping: release the delivery.
    Stopped,
}

/// The limiter of `1 / share` of the rate limit `rl`.
fn limiter(rl: &RateLimitSpec, share: u32) -> Limiter {
    let period = (rl.per / rl.requests.get()).saturating_mul(share.max(1));
    let burst = NonZeroU32::new(rl.burst.get() / share.max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(rl.requests))
        .allow_burst(burst);
    match &rl.key {
        None => Limiter::Direct(RateLimiter::direct(quota)),
        Some(pointer) => Limiter::Keyed {
            limiter: RateLimiter::keyed(quota),
            pointer: pointer.clone(),
        },
    }
}

enum Limiter {
    Direct(DefaultDirectRateLimiter),
    Keyed {
        limiter: DefaultKeyedRateLimiter<String>,
        pointer: String,
    },
}

struct State {
    breaker: Breaker,
    hold_until: Option<Instant>,
    paused: Option<LanePause>,
    /// First failure after the last success: (monotonic, wall).
    failing_since: Option<(Instant, Millis)>,
    rate_limit_waits: u64,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("lane", &self.lane)
            .finish_non_exhaustive()
    }
}

/// One lane's gate, shared by the lane loop and its delivery tasks.
pub(crate) struct Gate {
    lane: LaneKey,
    labels: Vec<Label>,
    state: Mutex<State>,
    /// The destination's rate limit as configured, and the limiter enforcing this node's
    /// share of it (all of it on a node of its own; see [`Gate::set_share`]).
    rate_limit: Option<RateLimitSpec>,
    limiter: Mutex<Option<Arc<Limiter>>>,
    auto_pause_after: Option<Duration>,
    ordered: bool,
    /// Bumped on every change that may let a waiter go on.
    version: watch::Sender<u64>,
    events: broadcast::Sender<LaneEvent>,
}

impl Gate {
    pub(crate) fn new(
        lane: LaneKey,
        spec: GateSpec,
        paused: Option<LanePause>,
        events: broadcast::Sender<LaneEvent>,
    ) -> Self {
        let labels = vec![
            Label::new("flow", lane.flow.clone()),
            Label::new("destination", lane.destination.clone()),
        ];
        let limiter = spec.rate_limit.as_ref().map(|rl| Arc::new(limiter(rl, 1)));
        let now = Instant::now();
        metrics::gauge!(ferry_metrics::BREAKER_STATE, labels.iter())
            .set(BreakerState::Closed.gauge());
        metrics::gauge!(ferry_metrics::LANE_PAUSED, labels.iter())
            .set(f64::from(u8::from(paused.is_some())));
        Self {
            lane,
            labels,
            state: Mutex::new(State {
                breaker: Breaker::new(spec.breaker, now),
                hold_until: None,
                paused,
                failing_since: None,
                rate_limit_waits: 0,
            }),
            rate_limit: spec.rate_limit,
            limiter: Mutex::new(limiter),
            auto_pause_after: spec.auto_pause_after,
            ordered: spec.ordered,
            version: watch::channel(0).0,
            events,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than stopping the lane would, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Wait until the lane may claim work. Returns how many deliveries it may claim at
    /// most (`None`: no limit beyond its own prefetch), or `None` wrapped in `Err` when
    /// stopped.
    pub(crate) async fn ready_to_claim(
        &self,
        stop: &CancellationToken,
    ) -> Result<Option<usize>, ()> {
        let mut changes = self.version.subscribe();
        loop {
            let now = Instant::now();
            let wait = {
                let state = self.state();
                if state.paused.is_some() {
                    None
                } else if let Some(until) = state.hold_until.filter(|&u| u > now) {
                    Some(until)
                } else {
                    match state.breaker.capacity(now) {
                        None => return Ok(None),
                        Some(0) => state.breaker.open_until(),
                        Some(n) => return Ok(Some(n as usize)),
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Err(()),
                _ = changes.changed() => {}
                _ = sleep_until(wait) => {}
            }
        }
    }

    /// Wait until `delivery` may be sent: not paused, no `429` hold, the breaker admits
    /// it, and the rate limit has room.
    pub(crate) async fn admit(
        &self,
        delivery: &ClaimedDelivery,
        stop: &CancellationToken,
    ) -> Admit {
        let mut changes = self.version.subscribe();
        let probe = loop {
            let now = Instant::now();
            let wait = {
                let mut state = self.state();
                if state.paused.is_some() {
                    return Admit::Paused;
                }
                if let Some(until) = state.hold_until.filter(|&u| u > now) {
                    Some(until)
                } else {
                    let (admission, transition) = state.breaker.admit(now);
                    drop(state);
                    if let Some(t) = transition {
                        self.transitioned(t);
                    }
                    match admission {
                        Admission::Go => break false,
                        Admission::Probe => break true,
                        Admission::WaitUntil(until) => Some(until),
                        Admission::WaitForProbes => None,
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Admit::Stopped,
                _ = changes.changed() => {}
                _ = sleep_until(wait) => {}
            }
        };
        let limiter = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(limiter) = limiter {
            let ready = match limiter.as_ref() {
                Limiter::Direct(l) => {
                    if l.check().is_ok() {
                        return Admit::Go { probe };
                    }
                    self.count_rate_limit_wait();
                    tokio::select! {
                        _ = stop.cancelled() => None,
                        _ = l.until_ready() => Some(()),
                    }
                }
                Limiter::Keyed { limiter, pointer } => {
                    let key = rate_key(&delivery.payload, pointer);
                    if limiter.check_key(&key).is_ok() {
                        return Admit::Go { probe };
                    }
                    self.count_rate_limit_wait();
                    tokio::select! {
                        _ = stop.cancelled() => None,
                        _ = limiter.until_key_ready(&key) => Some(()),
                    }
                }
            };
            if ready.is_none() {
                if probe {
                    self.state().breaker.cancel_probe();
                }
                return Admit::Stopped;
            }
        }
        Admit::Go { probe }
    }

    /// A probe admitted but not sent after all.
    pub(crate) fn cancel_probe(&self) {
        self.state().breaker.cancel_probe();
        self.bump();
    }

    fn count_rate_limit_wait(&self) {
        self.state().rate_limit_waits += 1;
        metrics::counter!(ferry_metrics::RATE_LIMIT_WAITS_TOTAL, self.labels.iter()).increment(1);
    }

    /// Learn from one call's result. Returns a pause to apply when the lane has now been
    /// failing for longer than its auto-pause time.
    ///
    /// A call that failed on this host ([`Verdict::Local`]) never reached the destination
    /// and teaches nothing: the breaker, the failure clock and the hold are left alone (a
    /// probe is given back).
    pub(crate) fn record(&self, result: &AttemptResult, probe: bool) -> Option<LanePause> {
        if result.verdict.local_failure().is_some() {
            if probe {
                self.cancel_probe();
            }
            return None;
        }
        let now = Instant::now();
        let wall = now_millis();
        let breaker_failure = matches!(
            result.error_class,
            "http_5xx" | "http_other" | "timeout" | "connect" | "request"
        );
        let endpoint_failure = breaker_failure
            || result
                .status
                .is_some_and(|s| ENDPOINT_FAILURES.contains(&s));
        let delivered = result.verdict == Verdict::Delivered;
        let mut pause = None;
        let transition = {
            let mut state = self.state();
            if result.status == Some(429) {
                let wait = match result.verdict {
                    Verdict::Retry {
                        retry_after: Some(d),
                    } => d,
                    _ => DEFAULT_429_HOLD,
                };
                let until = now + wait;
                if state.hold_until.is_none_or(|h| h < until) {
                    state.hold_until = Some(until);
                    metrics::counter!(ferry_metrics::LANE_HOLDS_TOTAL, self.labels.iter())
                        .increment(1);
                    info!(flow = %self.lane.flow, destination = %self.lane.destination, hold_ms = wait.as_millis() as u64, "destination answered 429: holding the whole lane");
                }
            }
            if delivered {
                state.failing_since = None;
            } else if endpoint_failure {
                let since = *state.failing_since.get_or_insert((now, wall));
                if let Some(after) = self.auto_pause_after
                    && state.paused.is_none()
                    && now.saturating_duration_since(since.0) >= after
                {
                    pause = Some(LanePause {
                        since: wall,
                        reason: format!(
                            "auto-paused: every call failed for {} (last: {})",
                            humanize(now.saturating_duration_since(since.0)),
                            result.error.as_deref().unwrap_or(result.error_class)
                        ),
                    });
                }
            }
            if result.status == Some(429) && !breaker_failure {
                // A 429 is the receiver pacing us, handled by the hold: it says nothing
                // about the breaker except that a probe got an answer.
                if probe {
                    state.breaker.record(now, false, true)
                } else {
                    None
                }
            } else if breaker_failure || delivered || probe {
                state.breaker.record(now, breaker_failure, probe)
            } else {
                // Content-level refusals (4xx) mean the destination is up.
                state.breaker.record(now, false, false)
            }
        };
        if let Some(t) = transition {
            self.transitioned(t);
        }
        self.bump();
        pause
    }

    fn transitioned(&self, t: Transition) {
        let mut labels = self.labels.clone();
        labels.push(Label::new("to", t.to.as_str()));
        metrics::counter!(ferry_metrics::BREAKER_TRANSITIONS_TOTAL, labels).increment(1);
        metrics::gauge!(ferry_metrics::BREAKER_STATE, self.labels.iter()).set(t.to.gauge());
        match t.to {
            BreakerState::Open => {
                warn!(flow = %self.lane.flow, destination = %self.lane.destination, from = t.from.as_str(), "circuit breaker opened: deliveries wait without spending attempts")
            }
            _ => {
                info!(flow = %self.lane.flow, destination = %self.lane.destination, from = t.from.as_str(), to = t.to.as_str(), "circuit breaker changed state")
            }
        }
        let _ = self.events.send(LaneEvent::Breaker {
            lane: self.lane.clone(),
            from: t.from,
            to: t.to,
        });
        self.bump();
    }

    /// Pause or resume the lane (the caller has made it durable first).
    pub(crate) fn set_paused(&self, pause: Option<LanePause>) {
        {
            let mut state = self.state();
            if state.paused == pause {
                return;
            }
            state.paused = pause.clone();
            if pause.is_none() {
                // A resumed lane starts its failure clock afresh.
                state.failing_since = None;
            }
        }
        metrics::gauge!(ferry_metrics::LANE_PAUSED, self.labels.iter())
            .set(f64::from(u8::from(pause.is_some())));
        let event = match pause {
            Some(pause) => {
                warn!(flow = %self.lane.flow, destination = %self.lane.destination, reason = %pause.reason, "delivery lane paused");
                LaneEvent::Paused {
                    lane: self.lane.clone(),
                    pause,
                }
            }
            None => {
                info!(flow = %self.lane.flow, destination = %self.lane.destination, "delivery lane resumed");
                LaneEvent::Resumed {
                    lane: self.lane.clone(),
                }
            }
        };
        let _ = self.events.send(event);
        self.bump();
    }

    /// Whether the lane is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.state().paused.is_some()
    }

    /// Drop rate-limit state of keys not seen lately (keyed limits only).
    pub(crate) fn retain_recent(&self) {
        let limiter = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(Limiter::Keyed { limiter, .. }) = limiter.as_deref() {
            limiter.retain_recent();
        }
    }

    /// Enforce `1 / nodes` of the destination's rate limit here: `nodes` delivering nodes
    /// share one database, and a vendor's quota does not grow with them. The calls are
    /// spaced `nodes` times wider and the burst divided (at least 1). A lane without a
    /// rate limit is unchanged.
    pub(crate) fn set_share(&self, nodes: u32) {
        if let Some(spec) = &self.rate_limit {
            let fresh = Arc::new(limiter(spec, nodes.max(1)));
            *self.limiter.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
            self.bump();
        }
    }

    /// Whether ingress may claim a delivery for this lane in its append (see `fresh`): not
    /// paused, not held by a `429`, breaker closed (or off), and no per-key ordering. A
    /// delivery so claimed still passes [`Gate::admit`] before it is sent.
    pub(crate) fn takes_fresh(&self) -> bool {
        if self.ordered {
            return false;
        }
        let now = Instant::now();
        let state = self.state();
        state.paused.is_none()
            && state.hold_until.is_none_or(|u| u <= now)
            && state.breaker.capacity(now).is_none()
    }

    /// Whether deliveries of this lane are ordered per key.
    pub(crate) fn ordered(&self) -> bool {
        self.ordered
    }

    /// A snapshot for operators.
    pub(crate) fn status(&self) -> GateStatus {
        let now = Instant::now();
        let wall = now_millis();
        let to_wall = |at: Instant| -> Millis {
            if at >= now {
                wall.saturating_add(millis(at - now))
            } else {
                wall.saturating_sub(millis(now - at))
            }
        };
        let state = self.state();
        let (calls, failures) = state.breaker.window_counts(now);
        GateStatus {
            breaker: state.breaker.state(),
            breaker_since: to_wall(state.breaker.since()),
            breaker_open_until: state.breaker.open_until().map(to_wall),
            window_calls: calls,
            window_failures: failures,
            hold_until: state.hold_until.filter(|&h| h > now).map(to_wall),
            paused: state.paused.clone(),
            failing_since: state.failing_since.map(|(_, w)| w),
            rate_limit_waits: state.rate_limit_waits,
        }
    }
}

/// Shared handle to a lane's gate.
pub(crate) type SharedGate = Arc<Gate>;

/// The rate-limit key of an event: the JSON value at `pointer` (strings bare, anything
/// else as JSON text), or the empty key when the body is not JSON or lacks the field.
fn rate_key(payload: &[u8], pointer: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| {
            v.pointer(pointer).map(|k| match k {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .unwrap_or_default()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn humanize(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{LOCAL_FAILURE, LocalFailure};

    /// A gate whose breaker opens at the first failure and which pauses the lane as soon as
    /// it fails at all.
    fn touchy_gate() -> Gate {
        let spec = GateSpec {
            breaker: BreakerSettings {
                min_requests: 1,
                failure_ratio: 0.5,
                probes: 1,
                ..Default::default()
            },
            auto_pause_after: Some(Duration::ZERO),
            ..Default::default()
        };
        let lane = LaneKey {
            flow: "f".into(),
            destination: "d".into(),
        };
        Gate::new(lane, spec, None, broadcast::channel(4).0)
    }

    fn failed(verdict: Verdict, error_class: &'static str) -> AttemptResult {
        AttemptResult {
            started_at: 0,
            latency: Duration::from_millis(1),
            status: None,
            verdict,
            error_class,
            error: Some("Too many open files (os error 24)".into()),
            response_excerpt: None,
        }
    }

    #[test]
    fn a_local_failure_teaches_the_gate_nothing() {
        let gate = touchy_gate();
        let local = failed(
            Verdict::Local {
                cause: LocalFailure::ProcessFileLimit,
            },
            LOCAL_FAILURE,
        );
        for _ in 0..20 {
            assert_eq!(gate.record(&local, false), None, "no auto-pause");
        }
        let status = gate.status();
        assert_eq!(status.breaker, BreakerState::Closed);
        assert_eq!((status.window_calls, status.window_failures), (0, 0));
        assert_eq!(status.failing_since, None);
        // The same failure from the destination opens the breaker and pauses the lane.
        let connect = failed(Verdict::Retry { retry_after: None }, "connect");
        assert!(gate.record(&connect, false).is_some(), "auto-pause");
        assert_eq!(gate.status().breaker, BreakerState::Open);
    }

    #[test]
    fn a_local_failure_gives_its_probe_back() {
        let gate = touchy_gate();
        let connect = failed(Verdict::Retry { retry_after: None }, "connect");
        gate.record(&connect, false);
        // Half-open once the cool-down is over: one probe may go.
        let later = Instant::now() + Duration::from_secs(3600);
        let (admission, _) = gate.state().breaker.admit(later);
        assert_eq!(admission, Admission::Probe);
        assert_eq!(gate.state().breaker.capacity(later), Some(0));
        let local = failed(
            Verdict::Local {
                cause: LocalFailure::OutOfMemory,
            },
            LOCAL_FAILURE,
        );
        assert_eq!(gate.record(&local, true), None);
        let state = gate.state();
        assert_eq!(state.breaker.state(), BreakerState::HalfOpen);
        assert_eq!(
            state.breaker.capacity(later),
            Some(1),
            "the probe may go again"
        );
    }

    #[test]
    fn rate_keys() {
        assert_eq!(rate_key(br#"{"t":"acme"}"#, "/t"), "acme");
        assert_eq!(rate_key(br#"{"t":7}"#, "/t"), "7");
        assert_eq!(rate_key(br#"{"u":7}"#, "/t"), "");
        assert_eq!(rate_key(b"not json", "/t"), "");
    }
}
