//! Synthetic transactions: a flow's `synthetic` payload sent through the real path — the
//! flow's steps, the store, every lane, every destination — as an event marked
//! `ferry-synthetic: true`, on a schedule (`every`) and on demand (`ferry probe`). A probe
//! passes when every delivery of the event is delivered within `expect_within`.
//!
//! It enters where the source's events enter the flow: after a webhook's signature check
//! (the hub is its own sender), as a message read from the queue, as a record of a pulled
//! page or table. The mark keeps it out
//! of the ingress counters, the delivery metrics, the alert rules' tallies and the audit
//! of personal data, and sends it marked `Ferry-Synthetic: true` (or to a destination's
//! sandbox URL). A failed or late probe fires the `synthetic` alert.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use ferry_config::Config;
use ferry_store::{AppendOutcome, DeliveryFilter, DeliveryState, EventId, Millis, Store};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::assembly::IngressRoute;
use crate::clock::now_ms;
use crate::ingress::LaneWaker;
use crate::ingress::pipeline::{self, Processed};
use crate::intake::QueueFlows;
use crate::intake::QueueSpec;
use crate::intake::message::{self, Incoming};
use crate::pull::PullSpec;
use crate::pull::record::{self, Record, Skip};

/// How often a running probe looks at its deliveries.
const POLL: Duration = Duration::from_millis(100);

/// One flow's synthetic transaction, from the config.
#[derive(Debug, Clone)]
struct Spec {
    payload: Bytes,
    every: Option<Duration>,
    expect_within: Duration,
}

/// What one destination made of a probe's event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeDelivery {
    pub destination: String,
    /// `delivered`, `dead`, or where it still was when time ran out (`pending`,
    /// `retrying`, `in_flight`).
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// One probe of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub flow: String,
    pub passed: bool,
    /// Why it failed, in a sentence.
    pub failure: Option<String>,
    pub event_ids: Vec<String>,
    pub started_at: Millis,
    /// From acceptance to the last delivery (or to giving up), ms.
    pub took_ms: u64,
    pub deliveries: Vec<ProbeDelivery>,
}

/// `POST /admin/v1/probe` and `GET /admin/v1/probe`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeResponse {
    pub results: Vec<ProbeResult>,
}

/// Why a flow cannot be probed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("flow `{0}` has no `synthetic` transaction")]
    NotProbed(String),
}

/// Where a flow's events enter it.
enum Entry {
    Webhook(Arc<IngressRoute>),
    Queue(Arc<QueueSpec>),
    Pull(Arc<PullSpec>),
}

/// Runs the synthetic transactions and keeps each flow's last result.
pub struct Prober {
    specs: BTreeMap<String, Spec>,
    entries: HashMap<String, Entry>,
    store: Arc<dyn Store>,
    wake: LaneWaker,
    last: RwLock<BTreeMap<String, ProbeResult>>,
}

impl Prober {
    /// The synthetic transactions of `config`'s flows: webhook (`routes`, by path), queue
    /// (`queues`) and pull (`pulls`) flows.
    pub fn new(
        config: &Config,
        routes: &BTreeMap<String, Arc<IngressRoute>>,
        queues: &QueueFlows,
        pulls: &[Arc<PullSpec>],
        store: Arc<dyn Store>,
        wake: LaneWaker,
    ) -> anyhow::Result<Self> {
        let mut specs = BTreeMap::new();
        for (name, flow) in &config.flows {
            let Some(synthetic) = &flow.synthetic else {
                continue;
            };
            let path = config.root.join(&synthetic.payload);
            let payload = std::fs::read(&path).map_err(|e| {
                anyhow::anyhow!("flows.{name}.synthetic.payload {}: {e}", path.display())
            })?;
            specs.insert(
                name.clone(),
                Spec {
                    payload: Bytes::from(payload),
                    every: synthetic.every,
                    expect_within: synthetic.expect_within,
                },
            );
        }
        let entries = routes
            .values()
            .map(|r| (r.flow.clone(), Entry::Webhook(r.clone())))
            .chain(
                queues
                    .iter()
                    .map(|(f, q)| (f.clone(), Entry::Queue(q.clone()))),
            )
            .chain(
                pulls
                    .iter()
                    .map(|p| (p.flow.clone(), Entry::Pull(p.clone()))),
            )
            .collect();
        Ok(Prober {
            specs,
            entries,
            store,
            wake,
            last: RwLock::default(),
        })
    }

    /// Each flow's last probe.
    pub fn last(&self) -> Vec<ProbeResult> {
        self.last
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The flows with a synthetic transaction.
    pub fn flows(&self) -> impl Iterator<Item = &String> {
        self.specs.keys()
    }

    /// Probe `flow` now: send its synthetic event and wait for every delivery, up to its
    /// `expect_within`.
    pub async fn probe(&self, flow: &str) -> Result<ProbeResult, ProbeError> {
        let (Some(spec), Some(entry)) = (self.specs.get(flow), self.entries.get(flow)) else {
            return Err(ProbeError::NotProbed(flow.to_string()));
        };
        let started_at = now_ms();
        let result = match self.send(entry, spec).await {
            Ok(events) => {
                self.watch(flow, events, started_at, spec.expect_within)
                    .await
            }
            Err(failure) => failed(flow, started_at, failure, Vec::new()),
        };
        if !result.passed {
            tracing::warn!(
                flow,
                failure = result.failure.as_deref(),
                "synthetic probe failed"
            );
        } else {
            tracing::info!(flow, took_ms = result.took_ms, "synthetic probe passed");
        }
        self.last
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(flow.to_string(), result.clone());
        Ok(result)
    }

    /// Run the payload through the flow's steps as its source's events enter it, and store
    /// it, marked: its event ids.
    async fn send(&self, entry: &Entry, spec: &Spec) -> Result<Vec<EventId>, String> {
        let now = now_ms();
        let refused = |code: &str| format!("the flow refused the synthetic payload: {code}");
        let (pending, lanes) = match entry {
            Entry::Webhook(route) => {
                let mut headers = HeaderMap::new();
                headers.insert("content-type", "application/json".parse().expect("static"));
                let received = pipeline::receive(route, &headers, spec.payload.clone())
                    .map_err(|p| refused(p.code))?;
                match pipeline::process(route, received, now).map_err(|p| refused(p.code))? {
                    Processed::Events { events, .. } => (events, &route.lanes),
                    Processed::Dropped { step } => return Err(dropped(step)),
                }
            }
            Entry::Queue(queue) => {
                let id = format!("ferry-synthetic-{}", uuid::Uuid::now_v7().simple());
                let incoming = Incoming {
                    id: Some(&id),
                    payload: &spec.payload,
                    headers: &[],
                };
                match message::process(queue, incoming, now) {
                    message::Outcome::Events(events) => (events, &queue.lanes),
                    message::Outcome::Filtered { step } => return Err(dropped(step)),
                    message::Outcome::Rejected(r) => return Err(refused(r.reason)),
                }
            }
            Entry::Pull(pull) => {
                let record: serde_json::Value = serde_json::from_slice(&spec.payload)
                    .map_err(|e| format!("the synthetic payload is not JSON: {e}"))?;
                match record::process(pull, &record, now)? {
                    Record::Events(events) => (events, &pull.lanes),
                    Record::Skipped(Skip::Filtered { step }) => return Err(dropped(step)),
                    Record::Skipped(Skip::Refused(p)) => return Err(refused(p.code)),
                }
            }
        };
        let mut events = pending
            .seal()
            .await
            .map_err(|e| format!("data keys unavailable: {e}"))?;
        // Its own trace, and marked: never a duplicate of the last probe, no personal data
        // (nothing of it enters the audit's data map or retention).
        let mut context = Vec::new();
        let _ = ferry_trace::inbound(&mut context);
        let probe = uuid::Uuid::now_v7().simple().to_string();
        for (i, event) in events.iter_mut().enumerate() {
            event.dedupe_key = Some(format!("ferry-synthetic-{probe}-{i}"));
            event.dedupe_window = None;
            event.audit.subject = None;
            event.audit.categories.clear();
            ferry_trace::replace_context(&mut event.headers, &context);
            event
                .headers
                .retain(|(n, _)| n != ferry_delivery::synthetic::HEADER);
            event.headers.push((
                ferry_delivery::synthetic::HEADER.to_string(),
                "true".to_string(),
            ));
        }
        let outcomes = self
            .store
            .append(events)
            .await
            .map_err(|e| format!("the store refused the synthetic event: {e}"))?;
        let ids: Vec<EventId> = outcomes
            .iter()
            .filter_map(|o| match o {
                AppendOutcome::Stored(id) => Some(*id),
                _ => None,
            })
            .collect();
        for lane in lanes {
            (self.wake)(&lane.key);
        }
        Ok(ids)
    }

    /// Wait until every delivery of `events` is delivered (pass), one is dead (fail), or
    /// `within` ran out (fail: late).
    async fn watch(
        &self,
        flow: &str,
        events: Vec<EventId>,
        started_at: Millis,
        within: Duration,
    ) -> ProbeResult {
        let deadline = tokio::time::Instant::now() + within;
        let event_ids: Vec<String> = events.iter().map(ToString::to_string).collect();
        loop {
            let mut deliveries = Vec::new();
            for event in &events {
                let filter = DeliveryFilter {
                    event_id: Some(*event),
                    ..Default::default()
                };
                match self.store.list_deliveries(&filter, None, 1000).await {
                    Ok(found) => deliveries.extend(found.into_iter().map(|d| ProbeDelivery {
                        destination: d.lane.destination,
                        state: d.state.as_str().to_string(),
                        attempts: d.attempts,
                        last_error: d.last_error,
                    })),
                    Err(e) => {
                        return failed(
                            flow,
                            started_at,
                            format!("reading the store: {e}"),
                            event_ids,
                        );
                    }
                }
            }
            let took_ms = u64::try_from(now_ms() - started_at).unwrap_or(0);
            let delivered = DeliveryState::Delivered.as_str();
            if let Some(dead) = deliveries
                .iter()
                .find(|d| d.state == DeliveryState::Dead.as_str())
            {
                let failure = format!("the delivery to `{}` died", dead.destination);
                return ProbeResult {
                    failure: Some(failure),
                    deliveries,
                    took_ms,
                    ..failed(flow, started_at, String::new(), event_ids)
                };
            }
            if !deliveries.is_empty() && deliveries.iter().all(|d| d.state == delivered) {
                return ProbeResult {
                    flow: flow.to_string(),
                    passed: true,
                    failure: None,
                    event_ids,
                    started_at,
                    took_ms,
                    deliveries,
                };
            }
            if tokio::time::Instant::now() >= deadline {
                let waiting: Vec<&str> = deliveries
                    .iter()
                    .filter(|d| d.state != delivered)
                    .map(|d| d.destination.as_str())
                    .collect();
                let failure = if deliveries.is_empty() {
                    "the event made no delivery".to_string()
                } else {
                    format!(
                        "not delivered within {} to {}",
                        humantime::format_duration(within),
                        waiting.join(", ")
                    )
                };
                return ProbeResult {
                    failure: Some(failure),
                    deliveries,
                    took_ms,
                    ..failed(flow, started_at, String::new(), event_ids)
                };
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Probe each flow with an `every` on its schedule until `stop`.
    pub fn spawn_schedules(
        self: &Arc<Self>,
        stop: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.specs
            .iter()
            .filter_map(|(flow, spec)| spec.every.map(|every| (flow.clone(), every)))
            .map(|(flow, every)| {
                let prober = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut ticks = crate::clock::Every::new(every);
                    while ticks.next(&stop).await {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = prober.probe(&flow) => {}
                        }
                    }
                })
            })
            .collect()
    }
}

fn dropped(step: usize) -> String {
    format!("step {step} of the flow dropped the synthetic event")
}

fn failed(flow: &str, started_at: Millis, failure: String, event_ids: Vec<String>) -> ProbeResult {
    ProbeResult {
        flow: flow.to_string(),
        passed: false,
        failure: Some(failure),
        event_ids,
        started_at,
        took_ms: u64::try_from(now_ms() - started_at).unwrap_or(0),
        deliveries: Vec::new(),
    }
}
