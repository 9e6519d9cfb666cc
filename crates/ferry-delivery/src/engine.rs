//! The delivery engine: one lane task per (flow, destination), started together, woken by
//! ingress, stopped gracefully.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_store::{LaneKey, LanePause, Store, StoreError};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::batch::BatchSpec;
use crate::connector::Connector;
use crate::fresh::FreshLane;
use crate::gate::{Gate, GateSpec, GateStatus, LaneEvent, SharedGate};
use crate::lane::{self, LaneConfig};
use crate::permits::SendPermits;
use crate::render::Render;
use crate::retry::RetryPolicy;
use crate::tally::AttemptTally;
use ferry_store::now_millis;

/// One lane to run: where it delivers, how it retries, how many sends at once.
#[derive(Clone, Debug)]
pub struct LaneSpec {
    /// The (flow, destination) whose deliveries this lane works.
    pub key: LaneKey,
    /// Where they go: the destination's connector (see [`Connector`]).
    pub connector: Arc<dyn Connector>,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// Sends in flight at once (the bulkhead). The lane holds at most twice this many
    /// claimed deliveries in memory (batching: `max_items × (concurrency + 1)`). Must be at
    /// least 1.
    pub concurrency: usize,
    /// Circuit breaker, rate limit and auto-pause.
    pub gate: GateSpec,
    /// Send several deliveries per call ([`BatchSpec`]); `None` sends each alone.
    pub batch: Option<BatchSpec>,
    /// Computes what each delivery sends, at send time ([`Render`]); `None` sends the stored
    /// payload as it is.
    pub render: Option<Arc<dyn Render>>,
    /// The system the destination delivers to, named in the audit trail with each
    /// delivered delivery.
    pub system: Option<String>,
}

/// Lane events kept for subscribers that fall behind.
const EVENT_BUFFER: usize = 256;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `start` was called outside a tokio runtime.
    #[error("the delivery engine must be started from within a tokio runtime")]
    NoRuntime,
    /// Two specs for the same lane.
    #[error("lane {flow}/{destination} is declared more than once")]
    DuplicateLane {
        /// The lane's flow.
        flow: String,
        /// The lane's destination.
        destination: String,
    },
    /// A lane with `concurrency: 0` would never send anything.
    #[error("lane {flow}/{destination}: concurrency must be at least 1")]
    ZeroConcurrency {
        /// The lane's flow.
        flow: String,
        /// The lane's destination.
        destination: String,
    },
    /// The lanes' pause states could not be read.
    #[error("cannot read the lanes' pause states: {0}")]
    Store(#[from] StoreError),
}

/// Why a pause or resume did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such lane.
    #[error("no delivery lane {flow}/{destination}")]
    UnknownLane {
        /// The flow asked for.
        flow: String,
        /// The destination asked for.
        destination: String,
    },
    /// The store could not record it; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sets this node's share of the lanes' rate limits and concurrency.
#[derive(Clone)]
pub struct RateShares(Vec<(LaneKey, SharedGate, Arc<SendPermits>)>);

impl RateShares {
    /// Enforce `1 / nodes` of each lane's rate limit and `concurrency` here (at least one
    /// call in flight): `nodes` delivering nodes share the store, and together they keep
    /// each destination's limits.
    pub fn set(&self, nodes: u32) {
        self.set_each(|_| nodes);
    }

    /// [`RateShares::set`] lane by lane: `nodes(lane)` nodes deliver that lane (with
    /// regions, a region's lanes are shared only by the nodes serving it).
    pub fn set_each(&self, nodes: impl Fn(&LaneKey) -> u32) {
        for (lane, gate, sends) in &self.0 {
            let n = nodes(lane);
            gate.set_share(n);
            sends.set_share(n);
        }
    }
}

/// Runs the delivery lanes: `store -> lanes -> connector -> outcome back to the store`.
///
/// Dropping the engine without [`DeliveryEngine::shutdown`] stops it hard: sends are
/// aborted and their claims released in the background.
pub struct DeliveryEngine {
    /// Each lane's gate and send permits, for this node's share of the limits.
    shares: RateShares,
    store: Arc<dyn Store>,
    wakers: HashMap<LaneKey, Arc<Notify>>,
    gates: HashMap<LaneKey, SharedGate>,
    fresh: HashMap<LaneKey, FreshLane>,
    tallies: HashMap<LaneKey, Arc<AttemptTally>>,
    events: broadcast::Sender<LaneEvent>,
    /// Cancelled: stop claiming. A child of `abort`.
    stop: CancellationToken,
    /// Cancelled: abort in-flight sends.
    abort: CancellationToken,
    lanes: Vec<(LaneKey, JoinHandle<()>)>,
}

impl std::fmt::Debug for DeliveryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryEngine")
            .field("lanes", &self.wakers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl DeliveryEngine {
    /// Spawn one lane task per spec on the current tokio runtime.
    ///
    /// Every spec is checked and every HTTP client built before any lane starts, so an
    /// error starts nothing. Lanes paused in the store start paused. Metrics are emitted
    /// through the `metrics` facade at each attempt, so a recorder installed before or
    /// after `start` sees them.
    pub async fn start(
        store: Arc<dyn Store>,
        lanes: Vec<LaneSpec>,
    ) -> Result<DeliveryEngine, EngineError> {
        Self::start_with(store, lanes, true).await
    }

    /// The lanes' gates without their lanes: nothing is claimed or sent, and no delivery is
    /// claimed at ingress. For a node that serves ingress and the admin API while other
    /// nodes deliver (`ferry serve --role api`): pauses and resumes are stored as usual, and
    /// the lanes of the delivering nodes follow them.
    pub async fn start_standby(
        store: Arc<dyn Store>,
        lanes: Vec<LaneSpec>,
    ) -> Result<DeliveryEngine, EngineError> {
        Self::start_with(store, lanes, false).await
    }

    async fn start_with(
        store: Arc<dyn Store>,
        lanes: Vec<LaneSpec>,
        deliver: bool,
    ) -> Result<DeliveryEngine, EngineError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| EngineError::NoRuntime)?;
        let mut pauses: HashMap<LaneKey, LanePause> =
            store.lane_pauses().await?.into_iter().collect();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mut gates = HashMap::with_capacity(lanes.len());
        let abort = CancellationToken::new();
        let stop = abort.child_token();
        let mut wakers = HashMap::with_capacity(lanes.len());
        let mut fresh_lanes = HashMap::with_capacity(lanes.len());
        let mut configs = Vec::with_capacity(lanes.len());
        let mut tallies = HashMap::with_capacity(lanes.len());
        let mut sends = Vec::with_capacity(lanes.len());
        for spec in lanes {
            let LaneSpec {
                key,
                connector,
                retry,
                concurrency,
                gate,
                batch,
                render,
                system,
            } = spec;
            if concurrency == 0 {
                return Err(EngineError::ZeroConcurrency {
                    flow: key.flow,
                    destination: key.destination,
                });
            }
            if wakers.contains_key(&key) {
                return Err(EngineError::DuplicateLane {
                    flow: key.flow,
                    destination: key.destination,
                });
            }
            let wake = Arc::new(Notify::new());
            wakers.insert(key.clone(), wake.clone());
            let gate = Arc::new(Gate::new(
                key.clone(),
                gate,
                pauses.remove(&key),
                events.clone(),
            ));
            gates.insert(key.clone(), gate.clone());
            // Deliveries claimed at ingress: for lanes that send one at a time, unordered.
            let fresh = (deliver && batch.is_none() && !gate.ordered()).then(|| {
                let lease = lane::lease(connector.as_ref(), render.as_ref(), None);
                let (lane, rx) = FreshLane::new(&key, concurrency, lease, gate.clone());
                fresh_lanes.insert(key.clone(), lane);
                rx
            });
            let permits = SendPermits::new(concurrency);
            sends.push((key.clone(), gate.clone(), permits.clone()));
            let tally = Arc::new(AttemptTally::default());
            tallies.insert(key.clone(), tally.clone());
            configs.push(LaneConfig {
                store: store.clone(),
                key,
                connector,
                retry,
                concurrency,
                sends: permits.semaphore(),
                wake,
                stop: stop.clone(),
                abort: abort.clone(),
                idle_poll: lane::IDLE_POLL,
                gate,
                batch,
                render,
                fresh,
                system,
                tally,
            });
        }
        if !deliver {
            configs.clear();
        }
        let lanes = configs
            .into_iter()
            .map(|cfg| {
                let key = cfg.key.clone();
                debug!(flow = %key.flow, destination = %key.destination, concurrency = cfg.concurrency, "starting delivery lane");
                (key, runtime.spawn(lane::run(cfg)))
            })
            .collect();
        Ok(DeliveryEngine {
            shares: RateShares(sends),
            store,
            wakers,
            gates,
            fresh: fresh_lanes,
            tallies,
            events,
            stop,
            abort,
            lanes,
        })
    }

    /// Wake a lane now (called by ingress right after a commit that created deliveries for
    /// it). Cheap, never blocks; unknown lanes are ignored. Wake-ups coalesce.
    pub fn wake(&self, lane: &LaneKey) {
        if let Some(wake) = self.wakers.get(lane) {
            wake.notify_one();
        }
    }

    /// The lanes ingress may hand deliveries to directly, claimed in their append (see
    /// [`FreshLane`]): those that send one at a time and keep no per-key order.
    pub fn fresh_lanes(&self) -> HashMap<LaneKey, FreshLane> {
        self.fresh.clone()
    }

    /// Every lane's attempt totals since the engine started (for the hub's alert rules).
    pub fn tallies(&self) -> &HashMap<LaneKey, Arc<AttemptTally>> {
        &self.tallies
    }

    /// The lanes this engine runs.
    pub fn lanes(&self) -> impl Iterator<Item = &LaneKey> {
        self.wakers.keys()
    }

    /// Lane events (breaker transitions, pauses, resumes) from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LaneEvent> {
        self.events.subscribe()
    }

    /// Every lane's gate: breaker, hold, pause, rate-limit waits. Sorted by lane.
    pub fn status(&self) -> Vec<(LaneKey, GateStatus)> {
        let mut out: Vec<_> = self
            .gates
            .iter()
            .map(|(key, gate)| (key.clone(), gate.status()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A handle that sets this node's share of every lane's rate limit (see
    /// [`RateShares::set`]); it holds the lanes' gates, not the engine.
    pub fn rate_shares(&self) -> RateShares {
        self.shares.clone()
    }

    /// Keep the lanes' pauses as the store has them, read every `every` until `stop`: for a
    /// store other nodes share, where another node's admin API (or its auto-pause) pauses or
    /// resumes a lane. Every pause is stored before it applies, so the store is the truth.
    /// The task holds the lanes' gates, not the engine.
    pub fn follow_store_pauses(&self, every: Duration, stop: CancellationToken) -> JoinHandle<()> {
        let store = self.store.clone();
        let gates = self.gates.clone();
        let wakers = self.wakers.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let stored: HashMap<LaneKey, LanePause> = match store.lane_pauses().await {
                    Ok(list) => list.into_iter().collect(),
                    Err(e) => {
                        debug!(error = %e, "reading the lanes' pauses failed; trying again");
                        continue;
                    }
                };
                for (key, gate) in &gates {
                    let pause = stored.get(key).cloned();
                    let resumed = gate.is_paused() && pause.is_none();
                    if gate.is_paused() != pause.is_some() {
                        info!(flow = %key.flow, destination = %key.destination, paused = pause.is_some(), "lane pause changed by another node");
                    }
                    gate.set_paused(pause);
                    if resumed && let Some(wake) = wakers.get(key) {
                        wake.notify_one();
                    }
                }
            }
        })
    }

    /// Pause a lane: it stops sending (in-flight calls finish) and its deliveries wait,
    /// durably, until [`DeliveryEngine::resume`]. Returns `false` if it was already paused.
    pub async fn pause(&self, lane: &LaneKey, reason: &str) -> Result<bool, ControlError> {
        let gate = self.gate(lane)?;
        if gate.is_paused() {
            return Ok(false);
        }
        let pause = LanePause {
            since: now_millis(),
            reason: reason.to_string(),
        };
        self.store.set_lane_pause(lane, Some(pause.clone())).await?;
        gate.set_paused(Some(pause));
        Ok(true)
    }

    /// Resume a paused lane. Returns `false` if it was not paused.
    pub async fn resume(&self, lane: &LaneKey) -> Result<bool, ControlError> {
        let gate = self.gate(lane)?;
        if !gate.is_paused() {
            return Ok(false);
        }
        self.store.set_lane_pause(lane, None).await?;
        gate.set_paused(None);
        self.wake(lane);
        Ok(true)
    }

    fn gate(&self, lane: &LaneKey) -> Result<&SharedGate, ControlError> {
        self.gates
            .get(lane)
            .ok_or_else(|| ControlError::UnknownLane {
                flow: lane.flow.clone(),
                destination: lane.destination.clone(),
            })
    }

    /// Graceful stop: stop claiming, let in-flight deliveries finish for up to `grace`,
    /// then abort the rest and release their claims back to the store
    /// (`Next::Release { at: now }`), flush all pending outcomes, return.
    ///
    /// Deliveries claimed but not yet sent are released at once.
    pub async fn shutdown(mut self, grace: Duration) {
        info!(
            lanes = self.lanes.len(),
            grace_ms = grace.as_millis() as u64,
            "stopping delivery lanes"
        );
        self.stop.cancel();
        let abort = self.abort.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            abort.cancel();
        });
        for (key, handle) in std::mem::take(&mut self.lanes) {
            if let Err(err) = handle.await {
                error!(flow = %key.flow, destination = %key.destination, error = %err, "delivery lane failed");
            }
        }
        timer.abort();
        info!("delivery lanes stopped");
    }
}

impl Drop for DeliveryEngine {
    fn drop(&mut self) {
        // After `shutdown` this is a no-op; otherwise it is a hard stop.
        self.abort.cancel();
    }
}
