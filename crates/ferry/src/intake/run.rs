//! One queue flow's loop: receive a batch → run each message through the flow → commit the
//! events and the rejected records in one store call → acknowledge the batch → wake the
//! lanes. The next batch is read (from what the broker has ready) while one commits. While a lane of the flow is at its backlog bound the loop stops receiving (the
//! broker keeps the messages) and looks again shortly.

use std::sync::Arc;
use std::time::Duration;

use ferry_connectors::source::{AckToken, QueueSource, SourceMessage};
use ferry_store::{AppendOutcome, NewRejected, Store, StoreError, StoreResult};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::QueueSpec;
use super::message::{self, Incoming, Outcome};
use crate::backlog::BacklogMonitor;
use crate::clock::now_ms;
use crate::ingress::LaneWaker;
use crate::ingress::pipeline::Pending;

/// How often a paused source looks at the backlog again.
const PAUSE_POLL: Duration = Duration::from_millis(100);
/// First wait after a failure; doubled per failure in a row up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a flow's loop works with.
pub struct IntakeCtx {
    pub spec: Arc<QueueSpec>,
    pub store: Arc<dyn Store>,
    pub wake: LaneWaker,
    pub backlog: Arc<BacklogMonitor>,
}

/// How the messages of one batch ended, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub stored: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub filtered: u64,
}

/// A batch run through the flow, ready to commit.
struct Prepared {
    /// Each message's events, their classified fields still to be encrypted.
    events: Vec<Pending>,
    /// How many of `events` each message made, in message order (0: filtered or rejected).
    made: Vec<usize>,
    rejected: Vec<NewRejected>,
    tokens: Vec<AckToken>,
    filtered: u64,
}

/// A batch whose commit is under way (the store call runs as its own task).
struct Committing {
    commit: JoinHandle<StoreResult<Vec<AppendOutcome>>>,
    made: Vec<usize>,
    tokens: Vec<AckToken>,
    rejected: u64,
    filtered: u64,
}

/// Run the flow until `stop`; then let go of whatever is held.
///
/// While a batch is being committed the loop takes what the broker has ready
/// ([`QueueSource::try_receive`]) and runs it through the steps, so a busy queue is read
/// while the store syncs; that batch is acknowledged only once its own commit returned.
/// With nothing ready, the batch is settled first and the loop then waits for messages.
pub async fn flow_loop(ctx: IntakeCtx, stop: CancellationToken) {
    let spec = ctx.spec.clone();
    let mut source = spec.connector();
    let mut failures = 0_u32;
    let mut paused = false;
    let mut committing: Option<Committing> = None;
    while !stop.is_cancelled() {
        let full = backlog_full(&ctx);
        if full != paused {
            paused = full;
            metrics::gauge!(ferry_metrics::SOURCE_PAUSED, "flow" => spec.flow.clone())
                .set(f64::from(u8::from(paused)));
            if paused {
                tracing::info!(flow = %spec.flow, "a destination's backlog is full: the source stops taking messages");
            } else {
                tracing::info!(flow = %spec.flow, "backlog below its bound: the source takes messages again");
            }
        }
        if paused {
            let settled = settle(&ctx, source.as_mut(), committing.take()).await;
            if let Err(error) = settled {
                failures = failed(&spec, failures, &error);
            }
            if sleep_or_stop(PAUSE_POLL, &stop).await {
                break;
            }
            continue;
        }
        let received = if committing.is_some() {
            source.try_receive(spec.batch).await
        } else {
            tokio::select! {
                _ = stop.cancelled() => break,
                r = source.receive(spec.batch, spec.linger) => r,
            }
        };
        let result = match received {
            Ok(messages) => {
                let next = (!messages.is_empty()).then(|| prepare(&spec, &messages));
                match settle(&ctx, source.as_mut(), committing.take()).await {
                    Ok(()) => {
                        committing = next.map(|p| start_commit(&ctx, p));
                        Ok(())
                    }
                    // The settle let go of everything held, the new batch too.
                    Err(e) => Err(e),
                }
            }
            Err(e) => {
                // A batch committed meanwhile is still acknowledged if the source can.
                let settled = settle(&ctx, source.as_mut(), committing.take()).await;
                Err(settled
                    .err()
                    .unwrap_or_else(|| format!("receiving failed: {e}")))
            }
        };
        match result {
            Ok(()) => failures = 0,
            Err(error) => {
                failures = failed(&spec, failures, &error);
                if sleep_or_stop(backoff(failures), &stop).await {
                    break;
                }
            }
        }
    }
    if let Err(error) = settle(&ctx, source.as_mut(), committing.take()).await {
        failed(&spec, failures, &error);
    }
    source.release().await;
    tracing::debug!(flow = %spec.flow, "queue source stopped");
}

/// Count and log a failure; the failures in a row now.
fn failed(spec: &QueueSpec, failures: u32, error: &str) -> u32 {
    let failures = failures.saturating_add(1);
    metrics::counter!(ferry_metrics::SOURCE_ERRORS_TOTAL, "flow" => spec.flow.clone(), "kind" => spec.kind)
        .increment(1);
    tracing::warn!(flow = %spec.flow, kind = spec.kind, %error, failures, "queue source failed; unacknowledged messages stay with the broker");
    failures
}

/// Start committing a prepared batch.
fn start_commit(ctx: &IntakeCtx, prepared: Prepared) -> Committing {
    let Prepared {
        events,
        made,
        rejected,
        tokens,
        filtered,
    } = prepared;
    let rejected_count = rejected.len() as u64;
    let store = ctx.store.clone();
    let at_rest = ctx.spec.steps.at_rest.clone();
    Committing {
        commit: tokio::spawn(async move {
            // Encryption at rest: the batch's classified fields (one key look-up) and the
            // rejected bodies; nothing is stored (or acknowledged) without it.
            let unavailable = |e: ferry_protect::KeyError| {
                StoreError::Unavailable(format!("data keys unavailable: {e}"))
            };
            let events: Vec<_> = Pending::seal_all(events)
                .await
                .map_err(unavailable)?
                .into_iter()
                .flatten()
                .collect();
            let mut rejected = rejected;
            if let Some(at_rest) = &at_rest {
                at_rest
                    .seal_rejected(&mut rejected)
                    .await
                    .map_err(unavailable)?;
            }
            store.append_with_rejected(events, rejected).await
        }),
        made,
        tokens,
        rejected: rejected_count,
        filtered,
    }
}

/// Wait for a batch's commit, then acknowledge it, count it and wake the lanes. A failed
/// commit lets go of everything the source holds (this batch and any read since), so the
/// broker delivers it again.
async fn settle(
    ctx: &IntakeCtx,
    source: &mut dyn QueueSource,
    batch: Option<Committing>,
) -> Result<(), String> {
    let Some(batch) = batch else {
        return Ok(());
    };
    let spec = &ctx.spec;
    let outcomes = match batch.commit.await {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(e)) => {
            source.release().await;
            return Err(format!("storing a batch failed: {e}"));
        }
        Err(e) => {
            source.release().await;
            return Err(format!("storing a batch failed: {e}"));
        }
    };
    let tally = tally(&batch.made, &outcomes, batch.rejected, batch.filtered);
    count(spec, &tally);
    if tally.stored > 0 {
        for lane in &spec.lanes {
            (ctx.wake)(&lane.key);
        }
    }
    source
        .ack(batch.tokens)
        .await
        // Committed: a redelivery is recognised as a duplicate.
        .map_err(|e| format!("acknowledging a committed batch failed: {e}"))
}

fn prepare(spec: &QueueSpec, messages: &[SourceMessage]) -> Prepared {
    let now = now_ms();
    let mut prepared = Prepared {
        events: Vec::with_capacity(messages.len()),
        made: Vec::with_capacity(messages.len()),
        rejected: Vec::new(),
        tokens: Vec::with_capacity(messages.len()),
        filtered: 0,
    };
    for m in messages {
        prepared.tokens.push(m.token);
        let incoming = Incoming {
            id: m.id.as_deref(),
            payload: &m.payload,
            headers: &m.headers,
        };
        match message::process(spec, incoming, now) {
            Outcome::Events(made) => {
                prepared.made.push(made.len());
                prepared.events.push(made);
            }
            Outcome::Filtered { step } => {
                prepared.made.push(0);
                prepared.filtered += 1;
                tracing::debug!(flow = %spec.flow, step, "message dropped by a filter");
            }
            Outcome::Rejected(refusal) => {
                prepared.made.push(0);
                tracing::warn!(flow = %spec.flow, reason = refusal.reason, detail = %refusal.detail, "message rejected; stored for replay and acknowledged");
                prepared.rejected.push(refusal.record(spec, incoming, now));
            }
        }
    }
    prepared
}

/// A message is `stored` when any of its events is new, else (it made events) `duplicate`.
fn tally(made: &[usize], outcomes: &[AppendOutcome], rejected: u64, filtered: u64) -> Tally {
    let mut t = Tally {
        rejected,
        filtered,
        ..Tally::default()
    };
    let mut at = 0;
    for &n in made.iter().filter(|n| **n > 0) {
        let mine = &outcomes[at.min(outcomes.len())..(at + n).min(outcomes.len())];
        at += n;
        if mine.iter().any(|o| o.is_stored()) {
            t.stored += 1;
        } else {
            t.duplicate += 1;
        }
    }
    t
}

fn count(spec: &QueueSpec, t: &Tally) {
    for (outcome, n) in [
        ("stored", t.stored),
        ("duplicate", t.duplicate),
        ("rejected", t.rejected),
        ("filtered", t.filtered),
    ] {
        if n > 0 {
            metrics::counter!(ferry_metrics::SOURCE_MESSAGES_TOTAL, "flow" => spec.flow.clone(), "kind" => spec.kind, "outcome" => outcome)
                .increment(n);
        }
    }
}

/// Whether a lane of the flow is at its bounded backlog.
fn backlog_full(ctx: &IntakeCtx) -> bool {
    ctx.spec
        .lanes
        .iter()
        .any(|lane| ctx.backlog.waiting(&lane.key) >= lane.max_pending)
}

fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(MAX_BACKOFF)
}

/// Sleep `d`; `true` if `stop` came first.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::EventId;

    #[test]
    fn a_message_counts_once_whatever_its_events() {
        let (a, b, c) = (EventId::new(), EventId::new(), EventId::new());
        let outcomes = [
            AppendOutcome::Duplicate(a),
            AppendOutcome::Stored(b),
            AppendOutcome::Duplicate(c),
        ];
        // Message 1 split into two events (one new), message 2 filtered, message 3 a
        // duplicate.
        let t = tally(&[2, 0, 1], &outcomes, 1, 1);
        assert_eq!(
            t,
            Tally {
                stored: 1,
                duplicate: 1,
                rejected: 1,
                filtered: 1
            }
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
