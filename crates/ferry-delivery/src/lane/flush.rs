//! Outcomes on their way to the store: a flusher commits them in batches (retrying the
//! store), and a stopping lane releases what it still holds.

use std::sync::Arc;
use std::time::Duration;

use ferry_store::{ClaimedDelivery, DeliveryOutcome, LaneKey, Next, Store, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tracing::{error, warn};

use ferry_store::now_millis;

/// Outcomes committed per `Store::complete` call, at most.
pub(super) const MAX_BATCH: usize = 256;
/// How long the flusher waits for more outcomes before committing a partial batch.
const LINGER: Duration = Duration::from_millis(2);
/// Tries of one `Store::complete` batch before its outcomes are given up on (their claims
/// then expire with their lease and the deliveries are sent again).
const COMMIT_TRIES: u32 = 8;
/// Back-off after a failed store call: first and largest.
pub(super) const STORE_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(super) const STORE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A finished delivery's outcome on its way to the flusher. Its prefetch slot is given back
/// once the outcome is queued (see [`hand_over`]): what the delivery held in memory, its
/// payload, is gone by then, and the flusher's queue bounds the outcomes waiting.
pub(super) struct Finished {
    pub outcome: DeliveryOutcome,
}

/// Queue `outcome` for the flusher, then give `slot` back. A full queue (the store is
/// behind) keeps the slot, so the lane stops claiming until the flusher catches up. Held
/// until the commit instead, the slots made every delivery wait a whole commit (or two)
/// before its lane could take the next: a lane could deliver at most `prefetch ÷ commit
/// time`, which a slower store (PostgreSQL) reached first.
pub(super) async fn hand_over(
    tx: &mpsc::Sender<Finished>,
    outcome: DeliveryOutcome,
    slot: Option<OwnedSemaphorePermit>,
) {
    // The flusher outlives every task and the lane loop; should it be gone, the claims
    // expire with their lease and the deliveries are sent again.
    let _ = tx.send(Finished { outcome }).await;
    drop(slot);
}

/// Hand the flusher a release of each delivery a stopping lane still holds, with its prefetch
/// slot if it has one.
pub(super) async fn release_all(
    tx: &mpsc::Sender<Finished>,
    left: impl IntoIterator<Item = (ClaimedDelivery, Option<OwnedSemaphorePermit>)>,
) {
    for (delivery, slot) in left {
        hand_over(tx, release(&delivery), slot).await;
    }
}

/// The outcome that gives `delivery` back to the store, due now, without an attempt.
pub(super) fn release(delivery: &ClaimedDelivery) -> DeliveryOutcome {
    DeliveryOutcome {
        claim: None,
        audit: Default::default(),
        id: delivery.id,
        attempt: None,
        next: Next::Release { at: now_millis() },
    }
}

/// Commit outcomes in batches: take everything queued (up to [`MAX_BATCH`]), wait up to
/// [`LINGER`] for more, write them in one `Store::complete`. While a commit runs, the next
/// batch piles up, so batches grow with load.
pub(super) async fn flush(
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
        let outcomes: Vec<DeliveryOutcome> = batch.drain(..).map(|f| f.outcome).collect();
        commit(store.as_ref(), &key, outcomes).await;
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

/// Doubling pause after store errors, reset on success.
#[derive(Default)]
pub(super) struct StoreBackoff {
    current: Option<Duration>,
}

impl StoreBackoff {
    pub(super) fn next(&mut self) -> Duration {
        let next = match self.current {
            None => STORE_BACKOFF_MIN,
            Some(d) => d.saturating_mul(2).min(STORE_BACKOFF_MAX),
        };
        self.current = Some(next);
        next
    }

    pub(super) fn reset(&mut self) {
        self.current = None;
    }
}
