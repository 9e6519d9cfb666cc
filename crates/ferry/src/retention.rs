//! Retention in the hub: the rules the config declares (`systems.X.retention` for the
//! events a source system sends, `settings.protection.retention` per data category), the
//! purge task that applies them every `settings.protection.purge_every`, and the retention
//! report (`ferry retention report`, `GET /admin/v1/retention`): what each system's events
//! Ferry keeps and for how long, and where a destination declares it keeps data longer than
//! its source (orphaned copies).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_config::Config;
use ferry_store::{Millis, PurgeReport, RetentionRules, Store, StoreResult, SystemHoldings};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;

/// Events one purge transaction deletes at most: a purge of many is many short
/// transactions, so appends and outcomes keep committing between them.
pub const PURGE_BATCH: usize = 500;

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A duration as config files write it: in the largest whole unit (`30d`, `12h`, `90m`,
/// `45s`, `500ms`).
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The retention rules of `config`.
pub fn rules(config: &Config) -> RetentionRules {
    RetentionRules {
        systems: config
            .systems
            .iter()
            .filter_map(|(name, s)| s.retention.map(|d| (name.clone(), millis(d))))
            .collect(),
        categories: config
            .settings
            .protection
            .retention
            .iter()
            .map(|(c, d)| (c.clone(), millis(*d)))
            .collect(),
    }
}

/// What the admin API's retention report is made from: the running config and the purge
/// task's last run.
#[derive(Debug)]
pub struct RetentionView {
    pub config: Config,
    pub purges: Arc<PurgeLog>,
}

/// What the last purge run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPurge {
    /// When it ran.
    pub at: Millis,
    /// Events, deliveries and attempts it deleted.
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    /// Events past their retention that a waiting delivery still holds.
    pub held: u64,
}

/// The last purge run, shared between the purge task and the admin API.
#[derive(Debug, Default)]
pub struct PurgeLog {
    last: Mutex<Option<LastPurge>>,
}

impl PurgeLog {
    /// The last run, if one ran.
    pub fn last(&self) -> Option<LastPurge> {
        self.last.lock().map(|l| l.clone()).unwrap_or(None)
    }

    fn record(&self, run: LastPurge) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(run);
        }
    }
}

/// One purge run at `now`: bounded steps until one deletes less than a batch.
pub async fn purge_once(
    store: &dyn Store,
    rules: &RetentionRules,
    now: Millis,
) -> StoreResult<LastPurge> {
    let mut run = LastPurge {
        at: now,
        ..LastPurge::default()
    };
    loop {
        let PurgeReport {
            events,
            deliveries,
            attempts,
            held,
        } = store.purge_expired(rules, now, PURGE_BATCH).await?;
        run.events += events;
        run.deliveries += deliveries;
        run.attempts += attempts;
        run.held = held;
        if events < PURGE_BATCH as u64 {
            return Ok(run);
        }
        tokio::task::yield_now().await;
    }
}

/// Run the purge now and then every `every` until `stop`; `None` when no rule is declared.
pub fn spawn_purge(
    store: Arc<dyn Store>,
    rules: RetentionRules,
    every: Duration,
    log: Arc<PurgeLog>,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    if rules.is_empty() {
        return None;
    }
    let purged = metrics::counter!(ferry_metrics::RETENTION_PURGED_EVENTS_TOTAL);
    let held = metrics::gauge!(ferry_metrics::RETENTION_HELD_EVENTS);
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match purge_once(store.as_ref(), &rules, now_ms()).await {
                Ok(run) => {
                    purged.increment(run.events);
                    held.set(run.held as f64);
                    if run.events > 0 || run.held > 0 {
                        tracing::info!(
                            events = run.events,
                            deliveries = run.deliveries,
                            attempts = run.attempts,
                            held = run.held,
                            "retention purge: events past their retention deleted; `held` ones wait for a delivery still pending or retrying"
                        );
                    }
                    log.record(run);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention purge failed; trying again at the next interval")
                }
            }
        }
    }))
}

/// The retention report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    /// `settings.protection.purge_every`.
    pub purge_every: String,
    /// Every declared system: what Ferry keeps of the events it sends, and for how long.
    pub systems: Vec<SystemRetention>,
    /// `settings.protection.retention`.
    pub categories: Vec<CategoryRetention>,
    /// Per flow, each destination's declared retention against its source's.
    pub flows: Vec<FlowRetention>,
    /// Destinations flagged as keeping orphaned copies.
    pub orphaned: usize,
    /// The hub's last purge run (none when read from a data dir without a hub).
    pub last_purge: Option<LastPurge>,
}

/// One system in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemRetention {
    pub system: String,
    /// Whether a flow reads from it (Ferry keeps the events it sends).
    pub source: bool,
    /// Whether a flow delivers to it.
    pub destination: bool,
    /// Its declared `retention`: for a source, how long Ferry keeps its events.
    pub retention: Option<String>,
    /// Events of it the store keeps now.
    pub events: u64,
    /// When the oldest of them arrived.
    pub oldest_received_at: Option<Millis>,
}

/// One category rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryRetention {
    pub category: String,
    pub retention: String,
}

/// One flow in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRetention {
    pub flow: String,
    pub source_system: String,
    pub source_retention: Option<String>,
    pub destinations: Vec<DestinationRetention>,
}

/// One destination of a flow in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRetention {
    pub destination: String,
    pub system: String,
    /// The destination system's declared `retention`.
    pub retention: Option<String>,
    /// Why its copies outlive the source's (orphaned copies), if they do.
    pub orphaned: Option<String>,
}

/// Why a destination keeping `dest` while its source keeps `source` holds orphaned copies,
/// if it does: it keeps longer, or declares nothing while the source has a retention.
fn orphaned(source: Option<Duration>, dest: Option<Duration>) -> Option<String> {
    let source = source?;
    match dest {
        None => Some(format!(
            "declares no retention while its source keeps events {}: its copies may outlive the source's",
            human(source)
        )),
        Some(d) if d > source => Some(format!(
            "keeps data {}, longer than its source's {}: copies outlive the source's",
            human(d),
            human(source)
        )),
        Some(_) => None,
    }
}

/// The report of `config`, with the store's `holdings` and the hub's `last_purge`.
pub fn report(
    config: &Config,
    holdings: &[SystemHoldings],
    last_purge: Option<LastPurge>,
) -> RetentionReport {
    let source_of = |flow: &ferry_config::Flow| flow.source.system().to_owned();
    let mut flows = Vec::new();
    let mut orphaned_count = 0;
    for (name, flow) in &config.flows {
        let source_system = source_of(flow);
        let source_retention = config.systems.get(&source_system).and_then(|s| s.retention);
        let destinations = flow
            .destinations
            .iter()
            .map(|(dest, d)| {
                let retention = config.systems.get(&d.system).and_then(|s| s.retention);
                let orphaned = orphaned(source_retention, retention);
                orphaned_count += usize::from(orphaned.is_some());
                DestinationRetention {
                    destination: dest.clone(),
                    system: d.system.clone(),
                    retention: retention.map(human),
                    orphaned,
                }
            })
            .collect();
        flows.push(FlowRetention {
            flow: name.clone(),
            source_system,
            source_retention: source_retention.map(human),
            destinations,
        });
    }
    let systems = config
        .systems
        .iter()
        .map(|(name, s)| {
            let held = holdings.iter().find(|h| &h.system == name);
            SystemRetention {
                system: name.clone(),
                source: config.flows.values().any(|f| &source_of(f) == name),
                destination: config
                    .flows
                    .values()
                    .any(|f| f.destinations.values().any(|d| &d.system == name)),
                retention: s.retention.map(human),
                events: held.map_or(0, |h| h.events),
                oldest_received_at: held.and_then(|h| h.oldest_received_at),
            }
        })
        .collect();
    RetentionReport {
        purge_every: human(config.settings.protection.purge_every),
        systems,
        categories: config
            .settings
            .protection
            .retention
            .iter()
            .map(|(c, d)| CategoryRetention {
                category: c.clone(),
                retention: human(*d),
            })
            .collect(),
        flows,
        orphaned: orphaned_count,
        last_purge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn durations_read_as_written() {
        assert_eq!(human(DAY * 30), "30d");
        assert_eq!(human(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn orphaned_copies_are_longer_or_undeclared_retentions_downstream() {
        assert_eq!(orphaned(None, None), None);
        assert_eq!(orphaned(None, Some(DAY)), None);
        assert_eq!(orphaned(Some(DAY * 30), Some(DAY * 30)), None);
        assert_eq!(orphaned(Some(DAY * 30), Some(DAY * 7)), None);
        let longer = orphaned(Some(DAY * 30), Some(DAY * 365)).unwrap();
        assert!(
            longer.contains("keeps data 365d, longer than its source's 30d"),
            "{longer}"
        );
        let undeclared = orphaned(Some(DAY * 30), None).unwrap();
        assert!(undeclared.contains("declares no retention"), "{undeclared}");
    }
}
