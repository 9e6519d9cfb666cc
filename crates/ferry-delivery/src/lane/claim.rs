//! Claiming: due deliveries from the store (and when to look there next), then deliveries
//! claimed at ingress, each into a free prefetch slot and onto a delivery task (or into the
//! open batch).

use std::time::{Duration, Instant};

use tracing::warn;

use super::attempt::deliver;
use super::batched;
use super::driver::{Lane, Slots, Turn};
use super::{MIN_IDLE, duration_millis};
use crate::fresh::Fresh;
use ferry_store::now_millis;

impl Lane {
    /// Claim up to `wanted` due deliveries from the store into `free` slots and set when to
    /// look again; how many were claimed. `Err` when a failed claim's pause was cut short by
    /// a stop (`Turn::Stop`) or ended (`Turn::Again`).
    pub(super) async fn claim_from_store(
        &mut self,
        free: &mut Slots,
        wanted: usize,
    ) -> Result<usize, Turn> {
        let ctx = &self.ctx;
        let key = &ctx.key;
        let now = now_millis();
        let lease_until = now.saturating_add(duration_millis(self.lease));
        let claimed = match ctx.store.claim(key, now, wanted, lease_until).await {
            Ok(claimed) => {
                self.backoff.reset();
                claimed
            }
            Err(err) => {
                free.clear();
                let pause = self.backoff.next();
                warn!(flow = %key.flow, destination = %key.destination, error = %err, pause_ms = pause.as_millis() as u64, "claiming deliveries failed; backing off");
                return Err(tokio::select! {
                    _ = ctx.stop.cancelled() => Turn::Stop,
                    _ = tokio::time::sleep(pause) => Turn::Again,
                });
            }
        };
        let got = claimed.len();
        if let Some((spec, queue)) = &self.batch {
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
                self.tasks.spawn(batched::send_next(
                    ctx.clone(),
                    spec.clone(),
                    queue.clone(),
                    self.tx.clone(),
                ));
            }
        } else {
            for delivery in claimed {
                let slot = free.pop();
                self.tasks.spawn(deliver(
                    ctx.clone(),
                    delivery,
                    slot,
                    lease_until,
                    self.tx.clone(),
                ));
            }
        }
        self.store_check_at = if got >= wanted {
            // There may be more due right now.
            Instant::now()
        } else if got > 0 {
            // Busy: every new delivery or committed retry wakes the lane, so the next
            // due time is only needed when the claim found nothing.
            Instant::now() + self.idle_poll
        } else {
            let pause = self.idle_pause().await;
            Instant::now() + pause
        };
        Ok(got)
    }

    /// The claim found nothing: how long until the store's next due delivery (at least
    /// [`MIN_IDLE`], at most the safety poll).
    async fn idle_pause(&self) -> Duration {
        let ctx = &self.ctx;
        ctx.gate.retain_recent();
        let next_due = match ctx.store.next_due(&ctx.key).await {
            Ok(next) => next,
            Err(err) => {
                warn!(flow = %ctx.key.flow, destination = %ctx.key.destination, error = %err, "reading the next due time failed");
                None
            }
        };
        next_due.map_or(self.idle_poll, |at| {
            let ms = at.saturating_sub(now_millis()).max(0);
            Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
                .clamp(MIN_IDLE, self.idle_poll.max(MIN_IDLE))
        })
    }

    /// Hand deliveries claimed at ingress to delivery tasks, one per `free` slot left; how
    /// many.
    pub(super) fn take_fresh(&mut self, free: &mut Slots) -> usize {
        let mut got = 0;
        while !free.is_empty() {
            let next = self
                .waiting_fresh
                .take()
                .or_else(|| self.fresh.as_mut().and_then(|rx| rx.try_recv().ok()));
            let Some(Fresh {
                delivery,
                lease_until,
            }) = next
            else {
                break;
            };
            got += 1;
            self.tasks.spawn(deliver(
                self.ctx.clone(),
                delivery,
                free.pop(),
                lease_until,
                self.tx.clone(),
            ));
        }
        got
    }
}
