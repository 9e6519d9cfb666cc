//! One lane: the loop that claims due deliveries of one (flow, destination), sends them
//! through the lane's connector under a concurrency limit, and writes the outcomes back to
//! the store in batches.
//!
//! Memory is bounded by the *prefetch*: a lane holds at most `2 × concurrency` claimed
//! deliveries at a time (queued for a send permit, in flight, or with their outcome waiting
//! to be committed); a batching lane `max_items × (concurrency + 1)`, one full batch per send
//! plus the one being filled. A claimed delivery gives its prefetch slot back only once its
//! outcome is durable, so the backlog stays on disk however large it grows.
//!
//! A batching lane ([`BatchSpec`]) hands its claimed deliveries to [`batched`] instead of
//! sending each in a task of its own.

mod batched;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_store::{ClaimedDelivery, DeliveryOutcome, LaneKey, Millis, Next, Store, StoreError};
use futures_util::FutureExt as _;
use metrics::Label;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::batch::BatchSpec;
use crate::classify::LocalFailure;
use crate::connector::Connector;
use crate::fresh::Fresh;
use crate::gate::{Admit, SharedGate};
use crate::http::now_millis;
use crate::outcome::{AttemptResult, OutcomeKind, decide};
use crate::render::{self, Render};
use crate::retry::RetryPolicy;

/// Claimed-but-unfinished deliveries a lane may hold, per unit of concurrency.
const PREFETCH_FACTOR: usize = 2;
/// Longest sleep when the lane has nothing due (a safety poll: wake-ups and `next_due`
/// normally come first).
pub(crate) const IDLE_POLL: Duration = Duration::from_secs(1);
/// Shortest sleep when idle, so a store that keeps reporting work it then doesn't hand out
/// cannot make the lane spin.
const MIN_IDLE: Duration = Duration::from_millis(5);
/// Outcomes committed per `Store::complete` call, at most.
const MAX_BATCH: usize = 256;
/// How long the flusher waits for more outcomes before committing a partial batch.
const LINGER: Duration = Duration::from_millis(2);
/// Tries of one `Store::complete` batch before its outcomes are given up on (their claims
/// then expire with their lease and the deliveries are sent again).
const COMMIT_TRIES: u32 = 8;
/// Back-off after a failed store call: first and largest.
const STORE_BACKOFF_MIN: Duration = Duration::from_millis(100);
const STORE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Lease beyond the worst-case wait (one timeout for a send permit, one for the send).
const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// A queued delivery whose lease ends within `timeout + LEASE_SAFETY` is released instead
/// of sent, so it is never sent after another claimer may have taken it.
const LEASE_SAFETY: Duration = Duration::from_secs(10);

/// Everything a lane needs, handed over by the engine.
pub(crate) struct LaneConfig {
    pub store: Arc<dyn Store>,
    pub key: LaneKey,
    pub connector: Arc<dyn Connector>,
    pub retry: RetryPolicy,
    pub concurrency: usize,
    /// Notified by `DeliveryEngine::wake` and by the lane's own flusher.
    pub wake: Arc<Notify>,
    /// Cancelled: stop claiming, release queued deliveries, let in-flight ones finish.
    pub stop: CancellationToken,
    /// Cancelled: abort in-flight sends and release them too.
    pub abort: CancellationToken,
    /// Longest idle sleep ([`IDLE_POLL`]; tests make it long to prove the wake-ups work).
    pub idle_poll: Duration,
    /// Breaker, rate limit, 429 hold and pause: consulted before claiming and sending.
    pub gate: SharedGate,
    /// Send several deliveries per call.
    pub batch: Option<BatchSpec>,
    /// Computes what each delivery sends.
    pub render: Option<Arc<dyn Render>>,
    /// Deliveries ingress claimed for this lane in their append (see `fresh`).
    pub fresh: Option<mpsc::Receiver<Fresh>>,
}

/// One attempt's longest time: rendering (its lookups) and then the call.
fn attempt_timeout(connector: &dyn Connector, render: Option<&Arc<dyn Render>>) -> Duration {
    let render_budget = render.map_or(Duration::ZERO, |r| r.time_budget());
    connector.timeout().saturating_add(render_budget)
}

/// How long a claim of this lane lasts: beyond the worst-case wait for a send permit and the
/// send itself (rendering included), and a batch's linger.
pub(crate) fn lease(
    connector: &dyn Connector,
    render: Option<&Arc<dyn Render>>,
    batch: Option<&BatchSpec>,
) -> Duration {
    let lease = attempt_timeout(connector, render)
        .saturating_mul(2)
        .saturating_add(LEASE_MARGIN);
    match batch {
        Some(spec) => lease.saturating_add(spec.linger),
        None => lease,
    }
}

/// What a delivery task shares with its lane.
struct Ctx {
    store: Arc<dyn Store>,
    gate: SharedGate,
    key: LaneKey,
    connector: Arc<dyn Connector>,
    retry: RetryPolicy,
    sends: Arc<Semaphore>,
    stop: CancellationToken,
    abort: CancellationToken,
    timeout_ms: Millis,
    labels: Vec<Label>,
    /// The lane's per-attempt metric handles.
    metrics: LaneMetrics,
    render: Option<Arc<dyn Render>>,
}

/// Handles of the metrics every attempt records, registered once per lane: the `metrics`
/// macros would otherwise build and look up the labelled key on every call.
struct LaneMetrics {
    in_flight: metrics::Gauge,
    attempt_seconds: metrics::Histogram,
    delivered: metrics::Counter,
    retry: metrics::Counter,
    dead: metrics::Counter,
}

impl LaneMetrics {
    fn new(labels: &[Label]) -> Self {
        let attempts = |kind: OutcomeKind| {
            let mut labels = labels.to_vec();
            labels.push(Label::new("outcome", kind.as_str()));
            metrics::counter!("ferry_delivery_attempts_total", labels)
        };
        LaneMetrics {
            in_flight: metrics::gauge!("ferry_delivery_in_flight", labels.iter()),
            attempt_seconds: metrics::histogram!(
                "ferry_delivery_attempt_duration_seconds",
                labels.iter()
            ),
            delivered: attempts(OutcomeKind::Delivered),
            retry: attempts(OutcomeKind::Retry),
            dead: attempts(OutcomeKind::Dead),
        }
    }

    /// `ferry_delivery_attempts_total` for this outcome; `None` for a local failure, which
    /// is not an attempt.
    fn attempts(&self, kind: OutcomeKind) -> Option<&metrics::Counter> {
        match kind {
            OutcomeKind::Delivered => Some(&self.delivered),
            OutcomeKind::Retry => Some(&self.retry),
            OutcomeKind::Dead => Some(&self.dead),
            OutcomeKind::Local => None,
        }
    }
}

/// Rate-limits a warning: at most one per interval, telling how many were left out since the
/// last one.
pub(crate) struct LogThrottle {
    every: Duration,
    state: std::sync::Mutex<ThrottleState>,
}

struct ThrottleState {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// A throttle letting one warning through per `every`.
    pub(crate) const fn new(every: Duration) -> Self {
        Self {
            every,
            state: std::sync::Mutex::new(ThrottleState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Whether to log at `now`: `Some(n)` with the number of warnings left out since the
    /// last one logged, or `None` (this one is left out and counted).
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if due {
            state.last = Some(now);
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

/// How often, at most, a local failure is logged as a warning (process-wide: when the host
/// runs out of descriptors, every lane fails at once).
const LOCAL_FAILURE_WARN_EVERY: Duration = Duration::from_secs(30);
static LOCAL_FAILURE_WARNINGS: LogThrottle = LogThrottle::new(LOCAL_FAILURE_WARN_EVERY);

/// Count a delivery put back because its call failed on this host, and warn now and then.
fn note_local_failure(
    ctx: &Ctx,
    delivery: &ClaimedDelivery,
    cause: LocalFailure,
    error: Option<&str>,
) {
    let mut labels = ctx.labels.clone();
    labels.push(Label::new("reason", cause.as_str()));
    metrics::counter!("ferry_delivery_local_failures_total", labels).increment(1);
    debug!(delivery = %delivery.id, flow = %ctx.key.flow, destination = %ctx.key.destination, reason = cause.as_str(), error, "call failed on this host; delivery put back without spending an attempt");
    if let Some(suppressed) = LOCAL_FAILURE_WARNINGS.admit(Instant::now()) {
        warn!(
            flow = %ctx.key.flow,
            destination = %ctx.key.destination,
            reason = cause.as_str(),
            error,
            similar_since_last_warning = suppressed,
            "outbound calls fail because this host ran out of a resource (see the `reason`: emfile = the process's file-descriptor limit); the destination is not blamed: deliveries are put back without spending attempts and the circuit breaker is left alone"
        );
    }
}

/// A finished delivery on its way to the flusher, still holding its prefetch slot.
struct Finished {
    outcome: DeliveryOutcome,
    slot: Option<OwnedSemaphorePermit>,
}

/// Run a lane until it is stopped, then drain it: every claimed delivery ends with an
/// outcome (or a release) handed to the store before this returns.
pub(crate) async fn run(cfg: LaneConfig) {
    let LaneConfig {
        store,
        key,
        connector,
        retry,
        concurrency,
        wake,
        stop,
        abort,
        idle_poll,
        gate,
        batch,
        render,
        mut fresh,
    } = cfg;
    let concurrency = concurrency.max(1);
    let timeout = attempt_timeout(connector.as_ref(), render.as_ref());
    let lease = lease(connector.as_ref(), render.as_ref(), batch.as_ref());
    let mut prefetch = concurrency.saturating_mul(PREFETCH_FACTOR);
    if let Some(spec) = &batch {
        // One full batch per send plus the one being filled; records may linger first.
        prefetch = prefetch.max(spec.max_items.max(1).saturating_mul(concurrency + 1));
    }
    let batch = batch.map(|spec| {
        let queue = Arc::new(std::sync::Mutex::new(batched::BatchQueue::new(
            &spec,
            connector.clone(),
        )));
        (Arc::new(spec), queue)
    });
    let labels = vec![
        Label::new("flow", key.flow.clone()),
        Label::new("destination", key.destination.clone()),
    ];
    let ctx = Arc::new(Ctx {
        metrics: LaneMetrics::new(&labels),
        labels,
        store: store.clone(),
        gate: gate.clone(),
        key: key.clone(),
        connector,
        retry,
        sends: Arc::new(Semaphore::new(concurrency)),
        stop: stop.clone(),
        abort,
        timeout_ms: duration_millis(timeout),
        render,
    });
    let slots = Arc::new(Semaphore::new(prefetch));
    let (tx, rx) = mpsc::channel::<Finished>(prefetch);
    let flusher = tokio::spawn(flush(
        store.clone(),
        key.clone(),
        rx,
        wake.clone(),
        gate.ordered(),
    ));
    let mut tasks = JoinSet::new();
    let mut backoff = StoreBackoff::default();
    // The store may hold due deliveries of this lane from this instant on: now after a
    // wake-up (an append through the store, a committed retry, a replay, a resume), else
    // the next due time it reported, or the safety poll.
    let mut store_check_at = Instant::now();
    // A delivery claimed at ingress that arrived while the lane was idle.
    let mut waiting_fresh: Option<Fresh> = None;

    loop {
        reap(&mut tasks, &key);
        // Batching: the open batch has lingered long enough, give it a sender. Until then,
        // every wait below also ends at its deadline.
        let linger = match &batch {
            Some((spec, queue)) => {
                if batched::lock(queue).expire(Instant::now()) {
                    tasks.spawn(batched::send_next(
                        ctx.clone(),
                        spec.clone(),
                        queue.clone(),
                        tx.clone(),
                    ));
                }
                batched::lock(queue).deadline()
            }
            None => None,
        };
        // Paused, held by a 429, or breaker open: claim nothing until that passes. Half-open:
        // claim only as many as may probe.
        let ready = tokio::select! {
            ready = gate.ready_to_claim(&stop) => ready,
            _ = sleep_until(linger) => continue,
        };
        let Ok(limit) = ready else {
            break;
        };
        let limit = limit.unwrap_or(prefetch).min(prefetch);
        if limit == 0 {
            continue;
        }
        // Reserve prefetch slots: wait for one, then take whatever else is free.
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot,
            _ = sleep_until(linger) => continue,
        };
        let Ok(first) = first else { break };
        let mut free = vec![first];
        while free.len() < limit {
            match slots.clone().try_acquire_owned() {
                Ok(slot) => free.push(slot),
                Err(_) => break,
            }
        }
        let wanted = free.len();
        // The store first whenever it may hold due deliveries, so that older work is never
        // starved by deliveries claimed at ingress.
        let mut got = 0;
        // A wake-up that came while every slot was busy (the lane did not wait for it): the
        // store has work again — a retry, a delivery that found the lane's queue full.
        if wake.notified().now_or_never().is_some() {
            store_check_at = Instant::now();
        }
        if Instant::now() >= store_check_at {
            let now = now_millis();
            let lease_until = now.saturating_add(duration_millis(lease));
            let claimed = match store.claim(&key, now, wanted, lease_until).await {
                Ok(claimed) => {
                    backoff.reset();
                    claimed
                }
                Err(err) => {
                    drop(free);
                    let pause = backoff.next();
                    warn!(flow = %key.flow, destination = %key.destination, error = %err, pause_ms = pause.as_millis() as u64, "claiming deliveries failed; backing off");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            got = claimed.len();
            if let Some((spec, queue)) = &batch {
                let senders: usize = {
                    let mut queue = batched::lock(queue);
                    let now = Instant::now();
                    claimed
                        .into_iter()
                        .map(|delivery| {
                            let member = batched::Member {
                                delivery,
                                slot: free.pop(),
                                lease_until,
                            };
                            queue.push(member, now)
                        })
                        .sum()
                };
                for _ in 0..senders {
                    tasks.spawn(batched::send_next(
                        ctx.clone(),
                        spec.clone(),
                        queue.clone(),
                        tx.clone(),
                    ));
                }
            } else {
                for delivery in claimed {
                    let slot = free.pop();
                    tasks.spawn(deliver(
                        ctx.clone(),
                        delivery,
                        slot,
                        lease_until,
                        tx.clone(),
                    ));
                }
            }
            store_check_at = if got >= wanted {
                // There may be more due right now.
                Instant::now()
            } else if got > 0 {
                // Busy: every new delivery or committed retry wakes the lane, so the next
                // due time is only needed when the claim found nothing.
                Instant::now() + idle_poll
            } else {
                gate.retain_recent();
                let next_due = match store.next_due(&key).await {
                    Ok(next) => next,
                    Err(err) => {
                        warn!(flow = %key.flow, destination = %key.destination, error = %err, "reading the next due time failed");
                        None
                    }
                };
                let pause = next_due.map_or(idle_poll, |at| {
                    let ms = at.saturating_sub(now_millis()).max(0);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
                        .clamp(MIN_IDLE, idle_poll.max(MIN_IDLE))
                });
                Instant::now() + pause
            };
        }
        // Then deliveries claimed at ingress, into the slots left.
        while !free.is_empty() {
            let next = waiting_fresh
                .take()
                .or_else(|| fresh.as_mut().and_then(|rx| rx.try_recv().ok()));
            let Some(Fresh {
                delivery,
                lease_until,
            }) = next
            else {
                break;
            };
            got += 1;
            tasks.spawn(deliver(
                ctx.clone(),
                delivery,
                free.pop(),
                lease_until,
                tx.clone(),
            ));
        }
        drop(free);
        if got >= wanted {
            // Every slot found work: there may be more right now.
            continue;
        }
        // Nothing more to do now: sleep until woken, until a delivery claimed at ingress
        // arrives, until the store may have due work, or until the batch's linger ends.
        let pause = store_check_at
            .saturating_duration_since(Instant::now())
            .max(MIN_IDLE);
        let linger = batch
            .as_ref()
            .and_then(|(_, queue)| batched::lock(queue).deadline());
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => store_check_at = Instant::now(),
            received = next_fresh(&mut fresh) => match received {
                Some(f) => waiting_fresh = Some(f),
                // Ingress is gone (shutting down): only the store is left.
                None => fresh = None,
            },
            _ = tokio::time::sleep(pause) => {}
            _ = sleep_until(linger) => {}
        }
    }

    // Deliveries claimed at ingress that the lane never took: released like the queued
    // ones (each is in flight in the store). Ingress can no longer add any.
    if let Some(rx) = fresh.as_mut() {
        rx.close();
        let left = waiting_fresh
            .take()
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            .map(|f| (f.delivery, None));
        release_all(&tx, left).await;
    }
    // Stopped: queued deliveries release themselves at once, in-flight ones finish (or are
    // aborted and released when `abort` fires). Then the flusher commits what is left.
    while let Some(joined) = tasks.join_next().await {
        log_panic(joined, &key);
    }
    if let Some((_, queue)) = &batch {
        // Records of a batch that never got a sender.
        let left = batched::lock(queue).drain();
        release_all(&tx, left.into_iter().map(|m| (m.delivery, m.slot))).await;
    }
    drop(tx);
    if let Err(err) = flusher.await {
        error!(flow = %key.flow, destination = %key.destination, error = %err, "outcome flusher failed");
    }
}

/// Work one claimed delivery: wait for a send permit, send, decide, hand the outcome over.
async fn deliver(
    ctx: Arc<Ctx>,
    delivery: ClaimedDelivery,
    slot: Option<OwnedSemaphorePermit>,
    lease_until: Millis,
    tx: mpsc::Sender<Finished>,
) {
    let outcome = attempt(&ctx, &delivery, lease_until).await;
    // The flusher only goes away after every task has ended, so this cannot fail; if it
    // somehow did, the claim would expire with its lease and the delivery be sent again.
    let _ = tx.send(Finished { outcome, slot }).await;
}

async fn attempt(ctx: &Ctx, delivery: &ClaimedDelivery, lease_until: Millis) -> DeliveryOutcome {
    let permit = tokio::select! {
        biased;
        _ = ctx.stop.cancelled() => None,
        permit = ctx.sends.clone().acquire_owned() => permit.ok(),
    };
    let Some(permit) = permit else {
        return release(delivery);
    };
    let probe = match ctx.gate.admit(delivery, &ctx.stop).await {
        Admit::Go { probe } => probe,
        Admit::Paused | Admit::Stopped => return release(delivery),
    };
    let latest_start = lease_until
        .saturating_sub(ctx.timeout_ms)
        .saturating_sub(duration_millis(LEASE_SAFETY));
    if now_millis() > latest_start {
        debug!(delivery = %delivery.id, flow = %ctx.key.flow, destination = %ctx.key.destination, "lease too close to its end; releasing instead of sending");
        if probe {
            ctx.gate.cancel_probe();
        }
        return release(delivery);
    }
    // What this delivery sends, computed now from the stored event. A rendering that fails
    // is the attempt: no call, and the gate learns nothing (the destination was not asked).
    let rendered = tokio::select! {
        biased;
        _ = ctx.abort.cancelled() => None,
        rendered = render::render(ctx.render.as_deref(), delivery) => Some(rendered),
    };
    let rendered = match rendered {
        Some(Ok(rendered)) => rendered,
        Some(Err(failed)) => {
            if probe {
                ctx.gate.cancel_probe();
            }
            drop(permit);
            return conclude_render(ctx, delivery, failed, now_millis(), &mut rand::rng());
        }
        None => {
            if probe {
                ctx.gate.cancel_probe();
            }
            return release(delivery);
        }
    };
    let in_flight = &ctx.metrics.in_flight;
    in_flight.increment(1.0);
    let result = tokio::select! {
        biased;
        _ = ctx.abort.cancelled() => None,
        result = ctx.connector.send(delivery, rendered.as_ref()) => Some(result),
    };
    in_flight.decrement(1.0);
    drop(permit);
    let Some(result) = result else {
        debug!(delivery = %delivery.id, flow = %ctx.key.flow, destination = %ctx.key.destination, "send aborted by shutdown; releasing");
        if probe {
            ctx.gate.cancel_probe();
        }
        return release(delivery);
    };
    // The gate ignores a call that failed on this host (see `Gate::record`).
    if let Some(pause) = ctx.gate.record(&result, probe) {
        auto_pause(ctx, pause).await;
    }
    if result.verdict.local_failure().is_none() {
        ctx.metrics
            .attempt_seconds
            .record(result.latency.as_secs_f64());
    }
    conclude(ctx, delivery, result, now_millis(), &mut rand::rng())
}

/// Decide where `delivery` goes after an attempt that produced `result` (the gate has
/// already learnt from the call), count and log the attempt. A retry is due `now` plus the
/// backoff `rng` draws.
fn conclude(
    ctx: &Ctx,
    delivery: &ClaimedDelivery,
    result: AttemptResult,
    now: Millis,
    rng: &mut impl rand::Rng,
) -> DeliveryOutcome {
    conclude_with(ctx, delivery, result, now, rng, false)
}

/// [`conclude`] for a failed rendering: its error may quote the event's data (a VRL error
/// names the value it could not convert, a contract violation the offending field), so it
/// is recorded with the delivery but only its class is logged.
fn conclude_render(
    ctx: &Ctx,
    delivery: &ClaimedDelivery,
    result: AttemptResult,
    now: Millis,
    rng: &mut impl rand::Rng,
) -> DeliveryOutcome {
    conclude_with(ctx, delivery, result, now, rng, true)
}

fn conclude_with(
    ctx: &Ctx,
    delivery: &ClaimedDelivery,
    result: AttemptResult,
    now: Millis,
    rng: &mut impl rand::Rng,
    error_quotes_data: bool,
) -> DeliveryOutcome {
    let (status, class, latency) = (result.status, result.error_class, result.latency);
    let error = if error_quotes_data {
        Some(format!("rendering failed ({class})"))
    } else {
        result.error.clone()
    };
    let local = result.verdict.local_failure();
    let decision = decide(delivery, &ctx.retry, result, now, rng);
    if let Some(cause) = local {
        note_local_failure(ctx, delivery, cause, error.as_deref());
        return decision.outcome;
    }
    if let Some(counter) = ctx.metrics.attempts(decision.kind) {
        counter.increment(1);
    }
    debug!(
        delivery = %delivery.id,
        flow = %ctx.key.flow,
        destination = %ctx.key.destination,
        attempt = delivery.round_attempts + 1,
        status,
        class,
        latency_ms = latency.as_millis() as u64,
        outcome = decision.kind.as_str(),
        error = error.as_deref(),
        "delivery attempt"
    );
    if decision.kind == OutcomeKind::Dead {
        let reason = if error_quotes_data {
            error.as_deref().unwrap_or("")
        } else {
            decision.log_reason.as_deref().unwrap_or("")
        };
        warn!(
            delivery = %delivery.id,
            flow = %ctx.key.flow,
            destination = %ctx.key.destination,
            reason,
            "delivery dead-lettered"
        );
    }
    decision.outcome
}

/// Make an auto-pause durable, then apply it. If the store refuses, the lane keeps going
/// (and tries again at its next failure): a pause is never only in memory.
async fn auto_pause(ctx: &Ctx, pause: ferry_store::LanePause) {
    match ctx
        .store
        .set_lane_pause(&ctx.key, Some(pause.clone()))
        .await
    {
        Ok(()) => ctx.gate.set_paused(Some(pause)),
        Err(err) => {
            error!(flow = %ctx.key.flow, destination = %ctx.key.destination, error = %err, "recording the auto-pause failed; the lane keeps delivering");
        }
    }
}

/// Hand the flusher a release of each delivery a stopping lane still holds, with its prefetch
/// slot if it has one.
async fn release_all(
    tx: &mpsc::Sender<Finished>,
    left: impl IntoIterator<Item = (ClaimedDelivery, Option<OwnedSemaphorePermit>)>,
) {
    for (delivery, slot) in left {
        let outcome = release(&delivery);
        // The flusher outlives the lane loop; should it be gone, the claims expire instead.
        let _ = tx.send(Finished { outcome, slot }).await;
    }
}

fn release(delivery: &ClaimedDelivery) -> DeliveryOutcome {
    DeliveryOutcome {
        id: delivery.id,
        attempt: None,
        next: Next::Release { at: now_millis() },
    }
}

/// Commit outcomes in batches: take everything queued (up to [`MAX_BATCH`]), wait up to
/// [`LINGER`] for more, write them in one `Store::complete`. While a commit runs, the next
/// batch piles up, so batches grow with load.
async fn flush(
    store: Arc<dyn Store>,
    key: LaneKey,
    mut rx: mpsc::Receiver<Finished>,
    wake: Arc<Notify>,
    ordered: bool,
) {
    let mut batch: Vec<Finished> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < MAX_BATCH {
            if let Ok(next) = rx.try_recv() {
                batch.push(next);
                continue;
            }
            tokio::select! {
                biased;
                next = rx.recv() => match next {
                    Some(next) => batch.push(next),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        // Ordered lanes: any finished delivery may have been the head holding back its key.
        let reschedule = ordered
            || batch
                .iter()
                .any(|f| matches!(f.outcome.next, Next::Retry { .. } | Next::Release { .. }));
        let (outcomes, slots): (Vec<DeliveryOutcome>, Vec<_>) =
            batch.drain(..).map(|f| (f.outcome, f.slot)).unzip();
        commit(store.as_ref(), &key, outcomes).await;
        // Frees the prefetch slots: the lane may claim again.
        drop(slots);
        if reschedule {
            // The lane's next due time may have moved closer.
            wake.notify_one();
        }
    }
}

/// One batch into the store, with retries. Gives up (loudly) after [`COMMIT_TRIES`].
async fn commit(store: &dyn Store, key: &LaneKey, outcomes: Vec<DeliveryOutcome>) {
    let mut backoff = StoreBackoff::default();
    for try_no in 1..=COMMIT_TRIES {
        match store.complete(outcomes.clone(), now_millis()).await {
            Ok(()) => return,
            Err(StoreError::Invalid(msg)) if outcomes.len() > 1 => {
                // One bad outcome must not sink the others: commit them one by one.
                warn!(flow = %key.flow, destination = %key.destination, error = %msg, "store refused an outcome batch; committing one by one");
                for outcome in outcomes {
                    let id = outcome.id;
                    if let Err(err) = store.complete(vec![outcome], now_millis()).await {
                        error!(delivery = %id, flow = %key.flow, destination = %key.destination, error = %err, "recording a delivery outcome failed; the delivery will be retried when its claim expires");
                    }
                }
                return;
            }
            Err(err) => {
                if try_no == COMMIT_TRIES || matches!(err, StoreError::Invalid(_)) {
                    error!(flow = %key.flow, destination = %key.destination, outcomes = outcomes.len(), error = %err, "recording delivery outcomes failed; those deliveries will be retried when their claims expire");
                    return;
                }
                let pause = backoff.next();
                warn!(flow = %key.flow, destination = %key.destination, error = %err, pause_ms = pause.as_millis() as u64, "recording delivery outcomes failed; retrying");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

fn reap(tasks: &mut JoinSet<()>, key: &LaneKey) {
    while let Some(joined) = tasks.try_join_next() {
        log_panic(joined, key);
    }
}

fn log_panic(joined: Result<(), tokio::task::JoinError>, key: &LaneKey) {
    if let Err(err) = joined {
        error!(flow = %key.flow, destination = %key.destination, error = %err, "delivery task failed");
    }
}

fn duration_millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The next delivery claimed at ingress; never, for a lane without that queue.
async fn next_fresh(fresh: &mut Option<mpsc::Receiver<Fresh>>) -> Option<Fresh> {
    match fresh {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Doubling pause after store errors, reset on success.
#[derive(Default)]
struct StoreBackoff {
    current: Option<Duration>,
}

impl StoreBackoff {
    fn next(&mut self) -> Duration {
        let next = match self.current {
            None => STORE_BACKOFF_MIN,
            Some(d) => d.saturating_mul(2).min(STORE_BACKOFF_MAX),
        };
        self.current = Some(next);
        next
    }

    fn reset(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpConnector, HttpTarget};
    use axum::http::StatusCode;
    use bytes::Bytes;
    use ferry_store::{DeliveryId, DeliveryState, EventId, NewDelivery, NewEvent};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// A receiver answering `statuses` in order (the last one repeats).
    async fn receiver(statuses: Vec<u16>) -> (reqwest::Url, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let status = statuses[n.min(statuses.len() - 1)];
            async move { StatusCode::from_u16(status).unwrap_or(StatusCode::OK) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (
            reqwest::Url::parse(&format!("http://{addr}/")).unwrap(),
            hits,
        )
    }

    struct Running {
        store: Arc<dyn Store>,
        key: LaneKey,
        wake: Arc<Notify>,
        stop: CancellationToken,
        handle: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    /// A lane whose safety poll is a minute: anything faster must come from a wake-up.
    fn start_lane(url: reqwest::Url, retry: RetryPolicy) -> Running {
        start_lane_with(url, retry, None)
    }

    fn start_lane_with(
        url: reqwest::Url,
        retry: RetryPolicy,
        render: Option<Arc<dyn Render>>,
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            ferry_store::sqlite::SqliteStore::open(
                dir.path(),
                ferry_store::sqlite::SqliteOptions::default(),
            )
            .unwrap(),
        );
        let key = LaneKey {
            flow: "f".into(),
            destination: "d".into(),
        };
        let target = HttpTarget {
            url,
            method: reqwest::Method::POST,
            headers: Default::default(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            signing_key: None,
            egress: crate::EgressPolicy::from_entries(["127.0.0.0/8"]).unwrap(),
            format: Default::default(),
        };
        let wake = Arc::new(Notify::new());
        let abort = CancellationToken::new();
        let stop = abort.child_token();
        let handle = tokio::spawn(run(LaneConfig {
            store: store.clone(),
            key: key.clone(),
            connector: Arc::new(HttpConnector::new(target, 1).unwrap()),
            retry,
            concurrency: 1,
            wake: wake.clone(),
            stop: stop.clone(),
            abort,
            idle_poll: Duration::from_secs(60),
            gate: Arc::new(crate::gate::Gate::new(
                key.clone(),
                Default::default(),
                None,
                tokio::sync::broadcast::channel(4).0,
            )),
            batch: None,
            render,
            fresh: None,
        }));
        Running {
            store,
            key,
            wake,
            stop,
            handle,
            _dir: dir,
        }
    }

    async fn append(store: &dyn Store, key: &LaneKey) -> DeliveryId {
        let now = now_millis();
        let id = DeliveryId::new();
        store
            .append(vec![NewEvent {
                id: EventId::new(),
                flow: key.flow.clone(),
                source: "s".into(),
                dedupe_key: None,
                event_type: None,
                received_at: now,
                headers: vec![],
                payload: Bytes::from_static(b"{}"),
                deliveries: vec![NewDelivery {
                    id,
                    destination: key.destination.clone(),
                    due_at: now,
                    order_key: None,
                    claimed_until: None,
                }],
                dedupe_window: None,
            }])
            .await
            .unwrap();
        id
    }

    /// Poll until the delivery is in `state`. The deadline is generous for a busy machine
    /// but well below the test lanes' one-minute safety poll, which the wake-up tests must
    /// not be waiting for.
    async fn wait_state(store: &dyn Store, id: DeliveryId, state: DeliveryState) -> Duration {
        let started = Instant::now();
        loop {
            let detail = store.delivery(id).await.unwrap();
            if detail.as_ref().is_some_and(|d| d.summary.state == state) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for {state:?}: {detail:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn wake_starts_work_without_waiting_for_the_poll() {
        let (url, hits) = receiver(vec![200]).await;
        let lane = start_lane(url, RetryPolicy::default());
        // Let the lane find nothing and go to sleep (for up to a minute).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let id = append(lane.store.as_ref(), &lane.key).await;
        lane.wake.notify_one();
        wait_state(lane.store.as_ref(), id, DeliveryState::Delivered).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        lane.stop.cancel();
        lane.handle.await.unwrap();
    }

    #[tokio::test]
    async fn retry_is_picked_up_when_due_without_waiting_for_the_poll() {
        let (url, hits) = receiver(vec![503, 503, 200]).await;
        let retry = RetryPolicy {
            max_attempts: 5,
            max_age: Duration::from_secs(600),
            initial_backoff: Duration::from_millis(300),
            max_backoff: Duration::from_millis(300),
        };
        let lane = start_lane(url, retry);
        let id = append(lane.store.as_ref(), &lane.key).await;
        lane.wake.notify_one();
        wait_state(lane.store.as_ref(), id, DeliveryState::Delivered).await;
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        lane.stop.cancel();
        lane.handle.await.unwrap();
    }

    #[tokio::test]
    async fn stop_ends_an_idle_lane_promptly() {
        let (url, _) = receiver(vec![200]).await;
        let lane = start_lane(url, RetryPolicy::default());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        lane.stop.cancel();
        lane.handle.await.unwrap();
        // Generous, and still half the one-minute idle sleep it must not wait out.
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    /// Fails to render payloads that say `"bad"`, uppercases the rest.
    #[derive(Debug)]
    struct Upcase;

    #[async_trait::async_trait]
    impl Render for Upcase {
        async fn render(
            &self,
            delivery: &ClaimedDelivery,
        ) -> Result<crate::Rendered, crate::RenderError> {
            let text = String::from_utf8_lossy(&delivery.payload).to_string();
            if text.contains("bad") {
                return Err(crate::RenderError::permanent("map_failed", "bad payload"));
            }
            Ok(crate::Rendered {
                body: Bytes::from(text.to_uppercase()),
                url: None,
                headers: Default::default(),
                content_type: None,
            })
        }
    }

    async fn append_payload(
        store: &dyn Store,
        key: &LaneKey,
        payload: &'static [u8],
    ) -> DeliveryId {
        let now = now_millis();
        let id = DeliveryId::new();
        store
            .append(vec![NewEvent {
                id: EventId::new(),
                flow: key.flow.clone(),
                source: "s".into(),
                dedupe_key: None,
                event_type: None,
                received_at: now,
                headers: vec![],
                payload: Bytes::from_static(payload),
                deliveries: vec![NewDelivery {
                    id,
                    destination: key.destination.clone(),
                    due_at: now,
                    order_key: None,
                    claimed_until: None,
                }],
                dedupe_window: None,
            }])
            .await
            .unwrap();
        id
    }

    #[tokio::test]
    async fn a_failed_rendering_dead_letters_without_a_call_and_the_lane_goes_on() {
        let (url, hits) = receiver(vec![200]).await;
        let lane = start_lane_with(url, RetryPolicy::default(), Some(Arc::new(Upcase)));
        let bad = append_payload(lane.store.as_ref(), &lane.key, b"{\"x\":\"bad\"}").await;
        let good = append_payload(lane.store.as_ref(), &lane.key, b"{\"x\":\"ok\"}").await;
        lane.wake.notify_one();
        wait_state(lane.store.as_ref(), bad, DeliveryState::Dead).await;
        wait_state(lane.store.as_ref(), good, DeliveryState::Delivered).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1, "only the good one was sent");
        let detail = lane.store.delivery(bad).await.unwrap().unwrap();
        let attempt = &detail.attempts[0];
        assert_eq!(attempt.error_class.as_deref(), Some("map_failed"));
        assert_eq!(attempt.status, None);
        assert!(attempt.error.as_deref().unwrap().contains("bad payload"));
        lane.stop.cancel();
        lane.handle.await.unwrap();
    }

    #[test]
    fn log_throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(throttle.admit(t0), Some(0));
        for s in [0, 1, 29] {
            assert_eq!(throttle.admit(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(throttle.admit(t0 + Duration::from_secs(30)), Some(3));
        assert_eq!(throttle.admit(t0 + Duration::from_secs(31)), None);
        assert_eq!(throttle.admit(t0 + Duration::from_secs(61)), Some(1));
        assert_eq!(throttle.admit(t0 + Duration::from_secs(600)), Some(0));
    }

    #[test]
    fn store_backoff_doubles_caps_and_resets() {
        let mut b = StoreBackoff::default();
        assert_eq!(b.next(), STORE_BACKOFF_MIN);
        assert_eq!(b.next(), STORE_BACKOFF_MIN * 2);
        for _ in 0..20 {
            b.next();
        }
        assert_eq!(b.next(), STORE_BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next(), STORE_BACKOFF_MIN);
    }
}
