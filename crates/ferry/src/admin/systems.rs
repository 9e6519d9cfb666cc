//! The lanes rolled up per system (`GET /admin/v1/systems`, `ferry status --by system`): for
//! each system that receives deliveries, its owner, on-call and tier from the catalog
//! (`systems:`), its lanes' counts summed, and its state — the worst of its lanes' — so the
//! system in the worst trouble comes first.

use std::collections::BTreeMap;

use ferry_config::{Config, Tier};
use ferry_delivery::BreakerState;
use ferry_store::{LaneKey, Millis};
use serde::{Deserialize, Serialize};

use super::dto::LaneView;

/// What the catalog says about a system, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub owner: Option<String>,
    pub oncall: Option<String>,
    /// `critical`, `high` or `low`.
    pub tier: String,
}

/// The systems of the running config and the system each lane delivers to, taken from the
/// config when the hub starts.
#[derive(Debug, Clone, Default)]
pub struct SystemCatalog {
    systems: BTreeMap<String, SystemInfo>,
    lanes: BTreeMap<LaneKey, String>,
}

impl SystemCatalog {
    /// The catalog of `config`: every system, and each destination's system.
    pub fn from_config(config: &Config) -> Self {
        let systems = config
            .systems
            .iter()
            .map(|(name, s)| {
                let info = SystemInfo {
                    owner: s.owner.clone(),
                    oncall: s.oncall.clone(),
                    tier: s.tier.as_str().to_string(),
                };
                (name.clone(), info)
            })
            .collect();
        let lanes = config
            .flows
            .iter()
            .flat_map(|(flow, def)| {
                def.destinations.iter().map(move |(dest, d)| {
                    let key = LaneKey {
                        flow: flow.clone(),
                        destination: dest.clone(),
                    };
                    (key, d.system.clone())
                })
            })
            .collect();
        SystemCatalog { systems, lanes }
    }
}

/// How a lane is doing, worst first: the order systems are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneHealth {
    /// The circuit breaker is open: nothing is sent until its probe succeeds.
    BreakerOpen,
    /// Every call has failed for a while (what auto-pause measures).
    Failing,
    /// Paused by an operator or by auto-pause: nothing is sent.
    Paused,
    /// The breaker is half-open: probing whether the destination is back.
    Recovering,
    /// A `429` holds the lane.
    Throttled,
    /// Dead-lettered deliveries wait for a replay.
    DeadLetters,
    /// Deliveries are retrying.
    Retrying,
    /// Deliveries are stored for a lane the running config no longer has.
    NotConfigured,
    Ok,
}

impl LaneHealth {
    /// The health of `lane` at `now`.
    pub fn of(lane: &LaneView, now: Millis) -> LaneHealth {
        let c = &lane.counts;
        let Some(g) = &lane.gate else {
            return LaneHealth::NotConfigured;
        };
        if g.breaker == BreakerState::Open {
            LaneHealth::BreakerOpen
        } else if g.failing_since.is_some() {
            LaneHealth::Failing
        } else if g.paused.is_some() {
            LaneHealth::Paused
        } else if g.breaker == BreakerState::HalfOpen {
            LaneHealth::Recovering
        } else if g.hold_until.is_some_and(|t| t > now) {
            LaneHealth::Throttled
        } else if c.dead > 0 {
            LaneHealth::DeadLetters
        } else if c.retrying > 0 {
            LaneHealth::Retrying
        } else {
            LaneHealth::Ok
        }
    }

    /// The stable name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            LaneHealth::BreakerOpen => "breaker_open",
            LaneHealth::Failing => "failing",
            LaneHealth::Paused => "paused",
            LaneHealth::Recovering => "recovering",
            LaneHealth::Throttled => "throttled",
            LaneHealth::DeadLetters => "dead_letters",
            LaneHealth::Retrying => "retrying",
            LaneHealth::NotConfigured => "not_configured",
            LaneHealth::Ok => "ok",
        }
    }
}

/// One lane of a system, with its health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemLane {
    pub flow: String,
    pub destination: String,
    pub state: LaneHealth,
}

/// One system with its lanes rolled up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemView {
    pub system: String,
    /// From the catalog; absent for lanes the running config no longer has.
    #[serde(flatten)]
    pub info: Option<SystemInfo>,
    /// The worst state of its lanes.
    pub state: LaneHealth,
    /// Its lanes, worst first.
    pub lanes: Vec<SystemLane>,
    pub pending: u64,
    pub in_flight: u64,
    pub retrying: u64,
    pub delivered: u64,
    pub dead: u64,
    /// Receive time of its oldest waiting delivery.
    pub oldest_waiting_received_at: Option<Millis>,
}

/// `GET /admin/v1/systems`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemsResponse {
    /// Worst state first; then critical before high before low; then by name.
    pub systems: Vec<SystemView>,
}

/// What system lanes the config no longer has are listed under.
pub const UNKNOWN_SYSTEM: &str = "(not in config)";

/// `lanes` rolled up per system of `catalog`, worst first.
pub fn roll_up(lanes: &[LaneView], catalog: &SystemCatalog, now: Millis) -> Vec<SystemView> {
    let mut by_system: BTreeMap<&str, SystemView> = BTreeMap::new();
    for lane in lanes {
        let key = &lane.counts.lane;
        let system = catalog
            .lanes
            .get(key)
            .map_or(UNKNOWN_SYSTEM, String::as_str);
        let view = by_system.entry(system).or_insert_with(|| SystemView {
            system: system.to_string(),
            info: catalog.systems.get(system).cloned(),
            state: LaneHealth::Ok,
            lanes: Vec::new(),
            pending: 0,
            in_flight: 0,
            retrying: 0,
            delivered: 0,
            dead: 0,
            oldest_waiting_received_at: None,
        });
        let health = LaneHealth::of(lane, now);
        let c = &lane.counts;
        view.state = view.state.min(health);
        view.lanes.push(SystemLane {
            flow: key.flow.clone(),
            destination: key.destination.clone(),
            state: health,
        });
        view.pending += c.pending;
        view.in_flight += c.in_flight;
        view.retrying += c.retrying;
        view.delivered += c.delivered;
        view.dead += c.dead;
        view.oldest_waiting_received_at = match (
            view.oldest_waiting_received_at,
            c.oldest_waiting_received_at,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let mut systems: Vec<SystemView> = by_system.into_values().collect();
    for s in &mut systems {
        s.lanes.sort_by(|a, b| {
            (a.state, &a.flow, &a.destination).cmp(&(b.state, &b.flow, &b.destination))
        });
    }
    systems.sort_by(|a, b| {
        (a.state, tier_rank(a), &a.system).cmp(&(b.state, tier_rank(b), &b.system))
    });
    systems
}

/// Critical first.
fn tier_rank(s: &SystemView) -> u8 {
    match s.info.as_ref().map(|i| i.tier.as_str()) {
        Some(t) if t == Tier::Critical.as_str() => 0,
        Some(t) if t == Tier::High.as_str() => 1,
        Some(_) => 2,
        None => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_delivery::GateStatus;
    use ferry_store::{LaneCounts, LanePause};

    fn lane(flow: &str, dest: &str, dead: u64, gate: Option<GateStatus>) -> LaneView {
        LaneView {
            counts: LaneCounts {
                lane: LaneKey {
                    flow: flow.into(),
                    destination: dest.into(),
                },
                pending: 1,
                in_flight: 0,
                delivered: 5,
                retrying: 0,
                dead,
                oldest_waiting_received_at: Some(100 + dead as i64),
            },
            gate,
        }
    }

    fn gate() -> GateStatus {
        GateStatus {
            breaker: BreakerState::Closed,
            breaker_since: 0,
            breaker_open_until: None,
            window_calls: 0,
            window_failures: 0,
            hold_until: None,
            paused: None,
            failing_since: None,
            rate_limit_waits: 0,
        }
    }

    fn catalog() -> SystemCatalog {
        let info = |owner: &str, tier: &str| SystemInfo {
            owner: Some(owner.into()),
            oncall: None,
            tier: tier.into(),
        };
        let key = |f: &str, d: &str| LaneKey {
            flow: f.into(),
            destination: d.into(),
        };
        SystemCatalog {
            systems: [
                ("crm".to_string(), info("team-crm", "high")),
                ("erp".to_string(), info("team-fin", "critical")),
                ("wh".to_string(), info("team-data", "low")),
            ]
            .into(),
            lanes: [
                (key("a", "crm"), "crm".to_string()),
                (key("b", "crm"), "crm".to_string()),
                (key("a", "wh"), "wh".to_string()),
                (key("a", "erp"), "erp".to_string()),
            ]
            .into(),
        }
    }

    #[test]
    fn systems_roll_up_worst_first_with_owner_and_tier() {
        let paused = GateStatus {
            paused: Some(LanePause {
                since: 1,
                reason: "migration".into(),
            }),
            ..gate()
        };
        let lanes = [
            lane("a", "crm", 0, Some(gate())),
            lane("b", "crm", 2, Some(gate())),
            lane("a", "wh", 0, Some(paused)),
            lane("a", "erp", 0, Some(gate())),
            lane("old", "gone", 0, None),
        ];
        let systems = roll_up(&lanes, &catalog(), 0);
        let order: Vec<(&str, LaneHealth)> = systems
            .iter()
            .map(|s| (s.system.as_str(), s.state))
            .collect();
        assert_eq!(
            order,
            [
                ("wh", LaneHealth::Paused),
                ("crm", LaneHealth::DeadLetters),
                (UNKNOWN_SYSTEM, LaneHealth::NotConfigured),
                ("erp", LaneHealth::Ok),
            ]
        );
        let crm = &systems[1];
        assert_eq!(
            crm.info.as_ref().unwrap().owner.as_deref(),
            Some("team-crm")
        );
        assert_eq!(crm.info.as_ref().unwrap().tier, "high");
        assert_eq!((crm.pending, crm.delivered, crm.dead), (2, 10, 2));
        assert_eq!(crm.oldest_waiting_received_at, Some(100));
        assert_eq!(crm.lanes[0].flow, "b", "the worst lane first");
        assert!(systems[2].info.is_none());
    }

    #[test]
    fn the_breaker_outranks_everything_and_critical_comes_first_among_equals() {
        let open = GateStatus {
            breaker: BreakerState::Open,
            ..gate()
        };
        let lanes = [
            lane("a", "crm", 0, Some(open.clone())),
            lane("a", "erp", 0, Some(open)),
        ];
        let systems = roll_up(&lanes, &catalog(), 0);
        assert_eq!(systems[0].system, "erp");
        assert_eq!(systems[0].state, LaneHealth::BreakerOpen);
        assert_eq!(systems[1].system, "crm");
    }
}
