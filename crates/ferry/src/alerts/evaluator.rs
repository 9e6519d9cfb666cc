//! One evaluation of every rule for every target: measure, step each alert's phase, and
//! return the edges to notify. No I/O: the hub gathers [`Inputs`], so tests drive it with
//! made-up ones.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use ferry_config::Tier;
use ferry_config::alerting::{AlertRules, AlertSettings};
use ferry_delivery::TallySnapshot;
use ferry_store::{LaneKey, Millis};

use super::phase::{Condition, Edge, Phase, step};
use super::rules::{self, AlertKind, History, Reading, Sample};
use super::targets::{Impact, Targets, route};
use super::{AlertState, AlertView};

/// How many resolved alerts are kept for `ferry alerts --all`.
const RESOLVED_KEPT: usize = 100;

/// What the hub knows at one evaluation.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Each lane's attempt totals.
    pub tallies: HashMap<LaneKey, TallySnapshot>,
    /// Each lane's oldest waiting delivery's age and dead-letter count.
    pub backlog: HashMap<LaneKey, (Option<Duration>, u64)>,
    /// Each lane's breaker state (`closed`, `open`, `half_open`).
    pub breakers: HashMap<LaneKey, &'static str>,
    /// Each pull flow's time since its last successful run (`None`: never).
    pub pulls: HashMap<String, (Option<Duration>, Duration)>,
    /// Each flow's last synthetic transaction.
    pub synthetics: HashMap<String, crate::synthetic::ProbeResult>,
}

/// An alert's identity: its rule and what it watches.
type AlertId = (AlertKind, String, Option<String>);

struct Tracked {
    phase: Phase,
    view: AlertView,
}

/// The rules' state across evaluations.
pub struct Evaluator {
    settings: AlertSettings,
    targets: Targets,
    /// Team of each owner (the owner's own, else `default`), for the views.
    teams: BTreeMap<String, ferry_config::alerting::OncallTeam>,
    histories: HashMap<LaneKey, History>,
    alerts: BTreeMap<AlertId, Tracked>,
    resolved: VecDeque<AlertView>,
    started: Instant,
}

impl Evaluator {
    /// An evaluator of `settings`' rules over `targets`, routing by `teams`.
    pub fn new(
        settings: AlertSettings,
        teams: BTreeMap<String, ferry_config::alerting::OncallTeam>,
        targets: Targets,
        started: Instant,
    ) -> Self {
        Evaluator {
            settings,
            targets,
            teams,
            histories: HashMap::new(),
            alerts: BTreeMap::new(),
            resolved: VecDeque::new(),
            started,
        }
    }

    /// The longest window any tier's rules look back over.
    fn longest_window(&self) -> Duration {
        [Tier::Critical, Tier::High, Tier::Low]
            .into_iter()
            .map(|t| self.settings.rules(t))
            .flat_map(|r| {
                [
                    r.failure_ratio.map(|x| x.window),
                    r.attempt_latency_p99.map(|x| x.window),
                    r.dead_letters_growing.map(|x| x.window),
                ]
            })
            .flatten()
            .max()
            .unwrap_or_default()
    }

    /// Evaluate every rule at `now` (`now_ms` on the wall clock); the views of the alerts
    /// that fired or resolved, in that order.
    pub fn evaluate(&mut self, inputs: &Inputs, now: Instant, now_ms: Millis) -> Vec<AlertView> {
        let keep = self.longest_window() + self.settings.evaluate_every;
        let mut edges = Vec::new();
        let lanes = self.targets.lanes.clone();
        for lane in &lanes {
            let (oldest, dead) = inputs.backlog.get(&lane.key).copied().unwrap_or_default();
            let tally = inputs.tallies.get(&lane.key).copied().unwrap_or_default();
            let history = self.histories.entry(lane.key.clone()).or_default();
            history.push(
                Sample {
                    at: now,
                    tally,
                    dead,
                },
                keep,
            );
            let rules = self.settings.rules(lane.impact.tier);
            let history = &self.histories[&lane.key];
            let breaker = inputs.breakers.get(&lane.key).copied().unwrap_or("closed");
            let sending = breaker == "closed";
            let mut readings: Vec<(AlertKind, Duration, Reading)> = Vec::new();
            if let Some(r) = &rules.failure_ratio {
                readings.push((
                    AlertKind::FailureRatio,
                    r.pending_for,
                    rules::failure_ratio(r, history, sending),
                ));
            }
            if let Some(r) = &rules.attempt_latency_p99 {
                readings.push((
                    AlertKind::AttemptLatencyP99,
                    r.pending_for,
                    rules::attempt_latency_p99(r, history, sending),
                ));
            }
            if let Some(r) = &rules.backlog_age {
                readings.push((
                    AlertKind::BacklogAge,
                    r.pending_for,
                    rules::backlog_age(r, oldest),
                ));
            }
            if let Some(held) = rules.breaker_open {
                readings.push((
                    AlertKind::BreakerOpen,
                    held,
                    rules::breaker_open(held, breaker),
                ));
            }
            if let Some(r) = &rules.dead_letters_growing {
                readings.push((
                    AlertKind::DeadLettersGrowing,
                    r.pending_for,
                    rules::dead_letters_growing(r, history),
                ));
            }
            for (kind, pending_for, reading) in readings {
                let id = (
                    kind,
                    lane.key.flow.clone(),
                    Some(lane.key.destination.clone()),
                );
                let target = Watched {
                    impact: &lane.impact,
                    rules: &rules,
                };
                if let Some(view) = self.step(id, target, pending_for, reading, now, now_ms) {
                    edges.push(view);
                }
            }
        }
        let uptime = now.saturating_duration_since(self.started);
        let pulls = self.targets.pulls.clone();
        for pull in &pulls {
            let rules = self.settings.rules(pull.impact.tier);
            let (Some(pending_for), Some((since, sla))) =
                (rules.freshness, inputs.pulls.get(&pull.flow).copied())
            else {
                continue;
            };
            let reading = rules::freshness(sla, since, uptime);
            let id = (AlertKind::Freshness, pull.flow.clone(), None);
            let target = Watched {
                impact: &pull.impact,
                rules: &rules,
            };
            if let Some(view) = self.step(id, target, pending_for, reading, now, now_ms) {
                edges.push(view);
            }
        }
        let synthetics = self.targets.synthetics.clone();
        for target in &synthetics {
            let rules = self.settings.rules(target.impact.tier);
            let reading = rules::synthetic(inputs.synthetics.get(&target.flow));
            let id = (AlertKind::Synthetic, target.flow.clone(), None);
            let watched = Watched {
                impact: &target.impact,
                rules: &rules,
            };
            // A failed probe is its own evidence: it fires at once.
            if let Some(view) = self.step(id, watched, Duration::ZERO, reading, now, now_ms) {
                edges.push(view);
            }
        }
        edges
    }

    /// Step one alert; its view if it fired or resolved.
    fn step(
        &mut self,
        id: AlertId,
        target: Watched<'_>,
        pending_for: Duration,
        reading: Reading,
        now: Instant,
        now_ms: Millis,
    ) -> Option<AlertView> {
        let tracked = self.alerts.get(&id);
        let phase = tracked.map(|t| t.phase);
        let (next, edge) = step(
            phase,
            reading.condition,
            now,
            pending_for,
            target.rules.keep_firing_for,
        );
        let Some(next) = next else {
            let mut view = self.alerts.remove(&id)?.view;
            if edge == Some(Edge::Resolved) {
                view.state = AlertState::Resolved;
                view.resolved_at = Some(now_ms);
                self.resolved.push_front(view.clone());
                self.resolved.truncate(RESOLVED_KEPT);
                return Some(view);
            }
            return None;
        };
        let mut view = match self.alerts.remove(&id) {
            Some(t) => t.view,
            None => self.new_view(&id, target.impact, now_ms),
        };
        if reading.condition != Condition::Unknown {
            view.value = reading.value;
            view.threshold = reading.threshold;
            view.summary = reading.summary;
        }
        if edge == Some(Edge::Fired) {
            view.state = AlertState::Firing;
            view.fired_at = Some(now_ms);
        }
        let fired = (edge == Some(Edge::Fired)).then(|| view.clone());
        self.alerts.insert(id, Tracked { phase: next, view });
        fired
    }

    /// A new alert's view, pending.
    fn new_view(&self, id: &AlertId, impact: &Impact, now_ms: Millis) -> AlertView {
        let (kind, flow, destination) = id;
        let (team, channel) = route(&self.teams, impact);
        AlertView {
            id: match destination {
                Some(d) => format!("{}/{flow}/{d}", kind.as_str()),
                None => format!("{}/{flow}", kind.as_str()),
            },
            kind: *kind,
            state: AlertState::Pending,
            flow: flow.clone(),
            destination: destination.clone(),
            system: impact.system.clone(),
            tier: impact.tier.as_str().to_string(),
            owner: impact.owner.clone(),
            team: team.map(str::to_string),
            channel: channel.map(|c| c.as_str().to_string()),
            summary: String::new(),
            value: 0.0,
            threshold: 0.0,
            since: now_ms,
            fired_at: None,
            resolved_at: None,
            runbook: format!("{}#{}", self.settings.runbooks, kind.anchor()),
        }
    }

    /// The alerts pending or firing now, then the last resolved ones (newest first).
    pub fn views(&self) -> (Vec<AlertView>, Vec<AlertView>) {
        let active = self.alerts.values().map(|t| t.view.clone()).collect();
        (active, self.resolved.iter().cloned().collect())
    }
}

/// What an alert watches, for its view and its hysteresis.
#[derive(Clone, Copy)]
struct Watched<'a> {
    impact: &'a Impact,
    rules: &'a AlertRules,
}
