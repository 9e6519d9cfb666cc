//! The lane's loop: wait for the gate and for free prefetch slots, fill them (store first,
//! then deliveries claimed at ingress; see [`super::claim`]), sleep until there may be more,
//! and when stopped, drain: every claimed delivery ends with an outcome or a release.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use metrics::Label;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tracing::error;

use super::batched::{self, BatchQueue};
use super::flush::{Finished, MAX_BATCH, StoreBackoff, flush, release_all};
use super::instruments::LaneMetrics;
use super::{Ctx, LaneConfig, PREFETCH_FACTOR, attempt_timeout, duration_millis, lease};
use crate::batch::BatchSpec;
use crate::fresh::Fresh;

/// What one turn of the loop says next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// Go round again.
    Again,
    /// Stopped (or the gate or the slots are gone): drain.
    Stop,
}

/// A running lane: what its tasks share, and the loop's own state.
pub(super) struct Lane {
    pub ctx: Arc<Ctx>,
    pub wake: Arc<Notify>,
    pub idle_poll: Duration,
    /// How long a claim lasts.
    pub lease: Duration,
    /// Most claimed deliveries held at once.
    pub prefetch: usize,
    /// A batching lane's spec and its batches waiting for a sender.
    pub batch: Option<(Arc<BatchSpec>, Arc<Mutex<BatchQueue>>)>,
    /// Deliveries claimed at ingress for this lane (`None` once ingress is gone).
    pub fresh: Option<mpsc::Receiver<Fresh>>,
    /// A delivery claimed at ingress that arrived while the lane was idle.
    pub waiting_fresh: Option<Fresh>,
    /// The prefetch slots: one per claimed delivery until its outcome is queued for the
    /// flusher.
    pub slots: Arc<Semaphore>,
    /// To the flusher.
    pub tx: mpsc::Sender<Finished>,
    pub tasks: JoinSet<()>,
    /// Pause after failed claims.
    pub backoff: StoreBackoff,
    /// The store may hold due deliveries of this lane from this instant on: now after a
    /// wake-up (an append through the store, a committed retry, a replay, a resume), else
    /// the next due time it reported, or the safety poll.
    pub store_check_at: Instant,
    flusher: JoinHandle<()>,
}

impl Lane {
    /// Set the lane up from its config and start its flusher.
    pub fn new(cfg: LaneConfig) -> Self {
        let LaneConfig {
            store,
            key,
            connector,
            retry,
            concurrency,
            sends,
            wake,
            stop,
            abort,
            idle_poll,
            gate,
            batch,
            render,
            fresh,
            system,
            tally,
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
            let queue = Arc::new(Mutex::new(BatchQueue::new(&spec, connector.clone())));
            (Arc::new(spec), queue)
        });
        let labels = vec![
            Label::new("flow", key.flow.clone()),
            Label::new("destination", key.destination.clone()),
        ];
        let ordered = gate.ordered();
        let ctx = Arc::new(Ctx {
            metrics: LaneMetrics::new(&labels, tally),
            labels,
            store: store.clone(),
            gate,
            key: key.clone(),
            connector,
            retry,
            sends,
            stop,
            abort,
            timeout_ms: duration_millis(timeout),
            render,
            system,
        });
        // Outcomes waiting for the flusher: at least a full batch of them.
        let (tx, rx) = mpsc::channel::<Finished>(prefetch.max(MAX_BATCH));
        let flusher = tokio::spawn(flush(store, key, rx, wake.clone(), ordered));
        Lane {
            ctx,
            wake,
            idle_poll,
            lease,
            prefetch,
            batch,
            fresh,
            waiting_fresh: None,
            slots: Arc::new(Semaphore::new(prefetch)),
            tx,
            tasks: JoinSet::new(),
            backoff: StoreBackoff::default(),
            store_check_at: Instant::now(),
            flusher,
        }
    }

    /// One turn of the loop: wait until the gate lets the lane claim and a prefetch slot is
    /// free, fill the free slots, and sleep if there was not enough work for them.
    pub async fn turn(&mut self) -> Turn {
        self.reap();
        // Batching: the open batch has lingered long enough, give it a sender. Until then,
        // every wait below also ends at its deadline.
        let linger = self.linger();
        let ctx = &self.ctx;
        // Paused, held by a 429, or breaker open: claim nothing until that passes. Half-open:
        // claim only as many as may probe.
        let ready = tokio::select! {
            ready = ctx.gate.ready_to_claim(&ctx.stop) => ready,
            _ = sleep_until(linger) => return Turn::Again,
        };
        let Ok(limit) = ready else {
            return Turn::Stop;
        };
        let limit = limit.unwrap_or(self.prefetch).min(self.prefetch);
        if limit == 0 {
            return Turn::Again;
        }
        // Reserve prefetch slots: wait for one, then take whatever else is free.
        let first = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => return Turn::Stop,
            slot = self.slots.clone().acquire_owned() => slot,
            _ = sleep_until(linger) => return Turn::Again,
        };
        let Ok(first) = first else {
            return Turn::Stop;
        };
        let mut free = vec![first];
        while free.len() < limit {
            match self.slots.clone().try_acquire_owned() {
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
        if self.wake.notified().now_or_never().is_some() {
            self.store_check_at = Instant::now();
        }
        if Instant::now() >= self.store_check_at {
            match self.claim_from_store(&mut free, wanted).await {
                Ok(claimed) => got = claimed,
                Err(turn) => return turn,
            }
        }
        // Then deliveries claimed at ingress, into the slots left.
        got += self.take_fresh(&mut free);
        drop(free);
        if got >= wanted {
            // Every slot found work: there may be more right now.
            return Turn::Again;
        }
        self.idle().await
    }

    /// Nothing more to do now: sleep until woken, until a delivery claimed at ingress
    /// arrives, until the store may have due work, or until the batch's linger ends.
    async fn idle(&mut self) -> Turn {
        let pause = self
            .store_check_at
            .saturating_duration_since(Instant::now())
            .max(super::MIN_IDLE);
        let linger = self
            .batch
            .as_ref()
            .and_then(|(_, queue)| batched::lock(queue).deadline());
        tokio::select! {
            _ = self.ctx.stop.cancelled() => return Turn::Stop,
            _ = self.wake.notified() => self.store_check_at = Instant::now(),
            received = next_fresh(&mut self.fresh) => match received {
                Some(f) => self.waiting_fresh = Some(f),
                // Ingress is gone (shutting down): only the store is left.
                None => self.fresh = None,
            },
            _ = tokio::time::sleep(pause) => {}
            _ = sleep_until(linger) => {}
        }
        Turn::Again
    }

    /// A batching lane: give the open batch a sender once its linger has run out; the
    /// deadline of the open batch, if any.
    fn linger(&mut self) -> Option<Instant> {
        let (spec, queue) = self.batch.as_ref()?;
        if batched::lock(queue).expire(Instant::now()) {
            self.tasks.spawn(batched::send_next(
                self.ctx.clone(),
                spec.clone(),
                queue.clone(),
                self.tx.clone(),
            ));
        }
        batched::lock(queue).deadline()
    }

    /// Collect the delivery tasks that ended.
    fn reap(&mut self) {
        while let Some(joined) = self.tasks.try_join_next() {
            self.log_panic(joined);
        }
    }

    fn log_panic(&self, joined: Result<(), tokio::task::JoinError>) {
        if let Err(err) = joined {
            let key = &self.ctx.key;
            error!(flow = %key.flow, destination = %key.destination, error = %err, "delivery task failed");
        }
    }

    /// Stopped: hand everything the lane holds to the flusher, then let it finish.
    pub async fn drain(mut self) {
        // Deliveries claimed at ingress that the lane never took: released like the queued
        // ones (each is in flight in the store). Ingress can no longer add any.
        if let Some(rx) = self.fresh.as_mut() {
            rx.close();
            let left = self
                .waiting_fresh
                .take()
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
                .map(|f| (f.delivery, None));
            release_all(&self.tx, left).await;
        }
        // Queued deliveries release themselves at once, in-flight ones finish (or are
        // aborted and released when `abort` fires). Then the flusher commits what is left.
        while let Some(joined) = self.tasks.join_next().await {
            self.log_panic(joined);
        }
        if let Some((_, queue)) = &self.batch {
            // Records of a batch that never got a sender.
            let left = batched::lock(queue).drain();
            release_all(&self.tx, left.into_iter().map(|m| (m.delivery, m.slot))).await;
        }
        let Lane {
            ctx, tx, flusher, ..
        } = self;
        drop(tx);
        if let Err(err) = flusher.await {
            let key = &ctx.key;
            error!(flow = %key.flow, destination = %key.destination, error = %err, "outcome flusher failed");
        }
    }
}

/// Slots reserved for one turn's claims.
pub(super) type Slots = Vec<OwnedSemaphorePermit>;

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
