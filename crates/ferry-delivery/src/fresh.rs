//! Deliveries claimed at ingress: the short way from an append to its lane.
//!
//! Without it every delivery makes three trips through the store's writer: the append
//! stores it pending, the lane's claim reads it back (payload included) and marks it in
//! flight, and the outcome completes it. When the lane has room at the moment an event
//! arrives, ingress instead reserves a place in the lane's [`FreshLane`] queue, appends the
//! delivery already claimed (in flight with the lane's lease, see
//! `NewDelivery::claimed_until`), and after the commit hands the lane the delivery it still
//! holds in memory: the claim's trip is saved, and nothing is read back.
//!
//! Only where a claim would have taken the delivery at once anyway: the lane sends one at a
//! time without batching, has no per-key ordering (an ordered delivery must queue behind
//! its key in the store), is neither paused nor held by a `429`, and its breaker is closed.
//! The queue holds at most the lane's concurrency. Everything else goes through the store
//! as before, and the lane serves the store first whenever it may hold due deliveries, so
//! older work is not starved by newer.
//!
//! Durability is unchanged: the delivery is in the store before the 2xx, claimed like any
//! claim. If the process dies before the lane sends it, recovery releases it with every
//! other claim; a lane that stops releases what is still queued.

use std::time::Duration;

use ferry_store::{ClaimedDelivery, LaneKey, Millis};
use metrics::Counter;
use tokio::sync::mpsc;

use crate::gate::SharedGate;

/// A delivery claimed in its append, with its lease end.
#[derive(Debug)]
pub(crate) struct Fresh {
    pub delivery: ClaimedDelivery,
    pub lease_until: Millis,
}

/// The ingress side of one lane's queue of deliveries claimed at ingress.
#[derive(Clone, Debug)]
pub struct FreshLane {
    tx: mpsc::Sender<Fresh>,
    lease: Duration,
    gate: SharedGate,
    /// `ferry_deliveries_claimed_at_ingress_total` of the lane.
    handed: Counter,
}

/// A place reserved in a lane's queue: append the delivery with
/// `claimed_until = Some(slot.lease_until())`, then [`FreshSlot::send`] it once the append
/// committed it. Dropped unused (the event was a duplicate, or not stored), it frees the
/// place.
#[derive(Debug)]
pub struct FreshSlot {
    permit: mpsc::OwnedPermit<Fresh>,
    lease_until: Millis,
    handed: Counter,
}

impl FreshLane {
    /// The queue and the lane's receiving end; `capacity` is the most deliveries it holds.
    pub(crate) fn new(
        key: &LaneKey,
        capacity: usize,
        lease: Duration,
        gate: SharedGate,
    ) -> (Self, mpsc::Receiver<Fresh>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let handed = metrics::counter!(
            ferry_metrics::DELIVERIES_CLAIMED_AT_INGRESS_TOTAL,
            "flow" => key.flow.clone(),
            "destination" => key.destination.clone()
        );
        (
            FreshLane {
                tx,
                lease,
                gate,
                handed,
            },
            rx,
        )
    }

    /// A place for one delivery created at `now`, if the lane can take it right away.
    pub fn try_reserve(&self, now: Millis) -> Option<FreshSlot> {
        if !self.gate.takes_fresh() {
            return None;
        }
        let permit = self.tx.clone().try_reserve_owned().ok()?;
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        Some(FreshSlot {
            permit,
            lease_until: now.saturating_add(lease),
            handed: self.handed.clone(),
        })
    }
}

impl FreshSlot {
    /// The lease end to append the delivery with.
    pub fn lease_until(&self) -> Millis {
        self.lease_until
    }

    /// Hand the committed delivery to its lane.
    pub fn send(self, delivery: ClaimedDelivery) {
        let lease_until = self.lease_until;
        self.handed.increment(1);
        self.permit.send(Fresh {
            delivery,
            lease_until,
        });
    }
}
