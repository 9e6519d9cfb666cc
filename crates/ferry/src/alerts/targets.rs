//! What the rules watch, taken from the config at start: every delivery lane and every
//! pull flow with a freshness SLA, each with the tier and owner that route its alerts.

use ferry_config::{Config, Source, Tier};
use ferry_store::LaneKey;

/// Who an alert concerns and how much it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impact {
    /// The system the failure is at: a lane's destination system, a pull flow's source.
    pub system: String,
    /// That system's business-impact tier.
    pub tier: Tier,
    /// Its owner: the system's, else the flow's, else the flow's source system's.
    pub owner: Option<String>,
}

/// A delivery lane.
#[derive(Debug, Clone)]
pub struct LaneTarget {
    pub key: LaneKey,
    pub impact: Impact,
}

/// A pull flow (HTTP or table) with a freshness SLA.
#[derive(Debug, Clone)]
pub struct PullTarget {
    pub flow: String,
    pub impact: Impact,
}

/// A flow with a synthetic transaction: its impact is its owner's, at the highest tier of
/// the systems it delivers to.
#[derive(Debug, Clone)]
pub struct SyntheticTarget {
    pub flow: String,
    pub impact: Impact,
}

/// Everything watched.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub lanes: Vec<LaneTarget>,
    pub pulls: Vec<PullTarget>,
    pub synthetics: Vec<SyntheticTarget>,
}

impl Targets {
    /// The lanes and pull flows of `config`.
    pub fn from_config(config: &Config) -> Self {
        let mut targets = Targets::default();
        for (flow_name, flow) in &config.flows {
            let source = flow.source.system();
            let source_owner = config.systems.get(source).and_then(|s| s.owner.clone());
            let flow_owner = flow.owner.clone().or(source_owner);
            let impact = |system: &str| {
                let def = config.systems.get(system);
                Impact {
                    system: system.to_string(),
                    tier: def.map(|s| s.tier).unwrap_or_default(),
                    owner: def
                        .and_then(|s| s.owner.clone())
                        .or_else(|| flow_owner.clone()),
                }
            };
            for (dest_name, dest) in &flow.destinations {
                targets.lanes.push(LaneTarget {
                    key: LaneKey {
                        flow: flow_name.clone(),
                        destination: dest_name.clone(),
                    },
                    impact: impact(&dest.system),
                });
            }
            if flow.synthetic.is_some() {
                let rank = |t: Tier| match t {
                    Tier::Critical => 0,
                    Tier::High => 1,
                    Tier::Low => 2,
                };
                let tier = flow
                    .destinations
                    .values()
                    .filter_map(|d| config.systems.get(&d.system).map(|s| s.tier))
                    .min_by_key(|t| rank(*t))
                    .unwrap_or_default();
                targets.synthetics.push(SyntheticTarget {
                    flow: flow_name.clone(),
                    impact: Impact {
                        system: source.to_string(),
                        tier,
                        owner: flow_owner.clone(),
                    },
                });
            }
            let freshness = match &flow.source {
                Source::Pull(pull) => pull.freshness,
                Source::Postgres(table) => table.freshness,
                _ => None,
            };
            if freshness.is_some() {
                targets.pulls.push(PullTarget {
                    flow: flow_name.clone(),
                    impact: impact(source),
                });
            }
        }
        targets
    }
}

/// The team an alert of `impact` goes to (its owner's, else `default`) and that team's
/// channel for its tier.
pub fn route<'a>(
    oncall: &'a ferry_config::alerting::Oncall,
    impact: &Impact,
) -> (Option<&'a str>, Option<ferry_config::alerting::Channel>) {
    let team = impact.owner.as_deref().and_then(|owner| {
        oncall
            .get_key_value(owner)
            .or_else(|| oncall.get_key_value("default"))
    });
    match team {
        Some((name, team)) => (Some(name.as_str()), team.channel_for(impact.tier)),
        None => (None, None),
    }
}
