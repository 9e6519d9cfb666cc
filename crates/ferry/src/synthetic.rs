//! Synthetic transactions: a flow's `synthetic` payload sent through the real path — the
//! flow's steps, the store, every lane, every destination — as an event marked
//! `ferry-synthetic: true`, on a schedule (`every`) and on demand (`ferry probe`). A probe
//! passes when every delivery of the event is delivered within `expect_within`.
//!
//! It enters after the signature check (the hub is its own sender); the mark keeps it out
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
    #[error("flow `{0}` has no `synthetic` transaction (or is not a webhook flow)")]
    NotProbed(String),
}

/// Runs the synthetic transactions and keeps each flow's last result.
pub struct Prober {
    specs: BTreeMap<String, Spec>,
    routes: HashMap<String, Arc<IngressRoute>>,
    store: Arc<dyn Store>,
    wake: LaneWaker,
    last: RwLock<BTreeMap<String, ProbeResult>>,
}

impl Prober {
    /// The synthetic transactions of `config`'s webhook flows (`routes`, by path).
    pub fn new(
        config: &Config,
        routes: &BTreeMap<String, Arc<IngressRoute>>,
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
        let routes = routes
            .values()
            .map(|r| (r.flow.clone(), r.clone()))
            .collect();
        Ok(Prober {
            specs,
            routes,
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
        let (Some(spec), Some(route)) = (self.specs.get(flow), self.routes.get(flow)) else {
            return Err(ProbeError::NotProbed(flow.to_string()));
        };
        let started_at = now_ms();
        let result = match self.send(route, spec).await {
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

    /// Run the payload through the flow's steps and store it, marked: its event ids.
    async fn send(&self, route: &IngressRoute, spec: &Spec) -> Result<Vec<EventId>, String> {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().expect("static"));
        let mut received = pipeline::receive(route, &headers, spec.payload.clone())
            .map_err(|p| format!("the flow refused the synthetic payload: {}", p.code))?;
        // Its own id every time: a probe is never a duplicate of the last one.
        received.dedupe_key = Some(format!("ferry-synthetic-{}", uuid::Uuid::now_v7().simple()));
        received.headers.push((
            ferry_delivery::synthetic::HEADER.to_string(),
            "true".to_string(),
        ));
        let _ = ferry_trace::inbound(&mut received.headers);
        let events = match pipeline::process(route, received, now_ms()) {
            Ok(Processed::Events { events, .. }) => events,
            Ok(Processed::Dropped { step }) => {
                return Err(format!(
                    "step {step} of the flow dropped the synthetic event"
                ));
            }
            Err(p) => {
                return Err(format!(
                    "the flow refused the synthetic payload: {}",
                    p.code
                ));
            }
        };
        let mut events = events
            .seal()
            .await
            .map_err(|e| format!("data keys unavailable: {e}"))?;
        // No personal data: nothing of it enters the audit's data map or retention.
        for event in &mut events {
            event.audit.subject = None;
            event.audit.categories.clear();
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
        for lane in &route.lanes {
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
