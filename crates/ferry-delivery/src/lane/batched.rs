//! The batching side of a lane: claimed deliveries wait in a [`BatchQueue`] until their
//! batch is full or its linger runs out; then a sender task waits for a send permit and the
//! gate, takes the oldest batch *at that moment* and sends it as one call.
//!
//! Taking the batch only once the gate has admitted the call is what keeps a flow inside a
//! vendor's quota: while a call waits for the rate limit, records keep joining the open
//! batch, so under a spike calls carry full batches instead of many small ones.
//!
//! Each record then gets its own result (the call's, or its own entry of a partial-failure
//! response, or its own call's under `on_failure: split`) and goes through
//! [`crate::outcome::decide`] like a single delivery: attempts, retries and the dead-letter
//! queue work per record.
//!
//! With `format: cloudevents` a call is a CloudEvents batch
//! ([`crate::cloudevents::batch_body`]): a JSON array of one structured envelope per
//! record, each with its own delivery id; the batcher counts each envelope's bytes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use ferry_store::{ClaimedDelivery, DeliveryOutcome, Millis};
use futures_util::stream::{self, StreamExt};
use metrics::Label;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{debug, info, warn};

use super::attempt::with_audit;
use super::conclude::{conclude, conclude_render};
use super::flush::{Finished, hand_over, release};
use super::pause::auto_pause;
use super::{Ctx, LEASE_SAFETY, duration_millis};
use crate::batch::{BatchFailure, BatchSpec, Batcher, batch_id, failed_items, per_record, splits};
use crate::classify::Verdict;
use crate::connector::{BatchCall, Connector};
use crate::gate::Admit;
use crate::outcome::AttemptResult;
use crate::render;
use ferry_store::now_millis;

/// The largest `2xx` batch response read whole to find failed records (`failed_items`).
const FAILED_ITEMS_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Records of one batch rendered at once: their renderings' lookups (`enrich`) overlap
/// instead of adding up.
const RENDER_CONCURRENCY: usize = 16;

/// A claimed delivery waiting in a batch, with its prefetch slot and lease.
pub(super) struct Member {
    pub delivery: ClaimedDelivery,
    pub slot: Option<OwnedSemaphorePermit>,
    pub lease_until: Millis,
}

/// Batches waiting for a sender: complete ones (oldest first) and the open one.
///
/// Invariant: there is exactly one sender task per complete batch, plus one for the open
/// batch once its linger has run out (`open_requested`). A sender takes the oldest complete
/// batch, else the open one, so every batch is taken by exactly one sender.
pub(super) struct BatchQueue {
    batcher: Batcher<Member>,
    complete: VecDeque<Vec<Member>>,
    open_requested: bool,
    /// The lane's connector: a record's size in a call is its payload plus the connector's
    /// framing of it (a CloudEvents envelope, say).
    connector: Arc<dyn Connector>,
}

/// The queue, shared by the lane loop and its sender tasks.
pub(super) type SharedQueue = Arc<Mutex<BatchQueue>>;

impl BatchQueue {
    pub(super) fn new(spec: &BatchSpec, connector: Arc<dyn Connector>) -> Self {
        Self {
            batcher: Batcher::new(spec),
            complete: VecDeque::new(),
            open_requested: false,
            connector,
        }
    }

    /// Add a claimed delivery. Returns how many sender tasks to start.
    pub(super) fn push(&mut self, member: Member, now: Instant) -> usize {
        let size = member.delivery.payload.len() + self.connector.record_overhead(&member.delivery);
        let mut start = 0;
        for batch in self.batcher.push(member, size, now) {
            self.complete.push_back(batch);
            if self.open_requested {
                // The open batch already has its sender.
                self.open_requested = false;
            } else {
                start += 1;
            }
        }
        start
    }

    /// When the open batch's linger runs out, if it still needs a sender.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.open_requested {
            None
        } else {
            self.batcher.deadline()
        }
    }

    /// Whether the open batch has lingered long enough and needs a sender now (if so, it
    /// is counted as having one).
    pub(super) fn expire(&mut self, now: Instant) -> bool {
        if self.deadline().is_some_and(|d| d <= now) {
            self.open_requested = true;
            true
        } else {
            false
        }
    }

    /// The oldest batch: complete first, else the open one.
    fn take(&mut self) -> Vec<Member> {
        if let Some(batch) = self.complete.pop_front() {
            return batch;
        }
        self.open_requested = false;
        self.batcher.take()
    }

    /// The first record the next [`BatchQueue::take`] would return.
    fn peek(&self) -> Option<ClaimedDelivery> {
        self.complete
            .front()
            .and_then(|b| b.first())
            .or_else(|| self.batcher.first())
            .map(|m| m.delivery.clone())
    }

    /// Everything still queued (when the lane has stopped).
    pub(super) fn drain(&mut self) -> Vec<Member> {
        let mut out: Vec<Member> = self.complete.drain(..).flatten().collect();
        out.extend(self.batcher.take());
        self.open_requested = false;
        out
    }
}

pub(super) fn lock(queue: &SharedQueue) -> MutexGuard<'_, BatchQueue> {
    // The queue is only ever changed in small, panic-free steps.
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// A sender task: wait for a send permit and the gate, take the oldest batch, send it, and
/// hand every record's outcome to the flusher.
pub(super) async fn send_next(
    ctx: Arc<Ctx>,
    spec: Arc<BatchSpec>,
    queue: SharedQueue,
    tx: mpsc::Sender<Finished>,
) {
    let permit = tokio::select! {
        biased;
        _ = ctx.stop.cancelled() => None,
        permit = ctx.sends.clone().acquire_owned() => permit.ok(),
    };
    let head = lock(&queue).peek();
    let admit = match (&permit, head) {
        (Some(_), Some(head)) => ctx.gate.admit(&head, &ctx.stop).await,
        _ => Admit::Stopped,
    };
    let members = lock(&queue).take();
    let outcomes = match admit {
        Admit::Go { probe } if members.is_empty() => {
            if probe {
                ctx.gate.cancel_probe();
            }
            Vec::new()
        }
        Admit::Go { probe } => send(&ctx, &spec, &members, probe).await,
        Admit::Paused | Admit::Stopped => members.iter().map(|m| release(&m.delivery)).collect(),
    };
    drop(permit);
    for (member, mut outcome) in members.into_iter().zip(outcomes) {
        // Settles this member's claim only (see `attempt::deliver`).
        outcome.claim = Some(member.lease_until);
        hand_over(&tx, outcome, member.slot).await;
    }
}

/// Send `members` (admitted, holding a send permit) and decide each record's outcome.
///
/// Each record is rendered first ([`crate::render`], up to [`RENDER_CONCURRENCY`] at once):
/// a record whose rendering fails gets that failure as its attempt and stays out of the
/// call; the others are sent together.
async fn send(
    ctx: &Ctx,
    spec: &BatchSpec,
    members: &[Member],
    probe: bool,
) -> Vec<DeliveryOutcome> {
    // By index: a closure over `&Member` would have to be general over its lifetime, which
    // the spawned task's `Send` check cannot see through.
    let renderer = ctx.render.as_deref();
    let bodies: Vec<Result<(Bytes, CategoriesSent), AttemptResult>> =
        stream::iter(0..members.len())
            .map(|i| render_body(renderer, &members[i].delivery))
            .buffered(RENDER_CONCURRENCY)
            .collect()
            .await;
    let sendable: Vec<(&Member, Bytes)> = members
        .iter()
        .zip(&bodies)
        .filter_map(|(m, b)| b.as_ref().ok().map(|(b, _)| (m, b.clone())))
        .collect();
    let mut sent = send_rendered(ctx, spec, &sendable, probe).await;
    for ((member, _), result) in sendable.iter().zip(sent.iter_mut()) {
        if let Some(result) = result {
            render::seal_excerpt(renderer, &member.delivery, result).await;
        }
    }
    // Every record draws the same backoff jitter from the same instant, so records of a
    // batch that failed together (with the same attempt count) are due again at the same
    // millisecond and batched again.
    let seed: u64 = rand::random();
    let now = now_millis();
    let mut sent = sent.into_iter();
    members
        .iter()
        .zip(bodies)
        .map(|(member, body)| {
            let mut rng = StdRng::seed_from_u64(seed);
            match body {
                Err(failed) => conclude_render(ctx, &member.delivery, failed, now, &mut rng),
                Ok((_, categories)) => match sent.next().flatten() {
                    Some(result) => with_audit(
                        ctx,
                        conclude(ctx, &member.delivery, result, now, &mut rng),
                        categories,
                    ),
                    None => release(&member.delivery),
                },
            }
        })
        .collect()
}

/// The data categories a record carries and how each was protected (see
/// [`render::Rendered::categories_sent`]).
type CategoriesSent = Vec<(String, String)>;

/// What `delivery` sends, with the categories it carries: its rendering, or the stored
/// payload when the lane renders nothing; `Err` is the failed rendering's attempt.
async fn render_body(
    renderer: Option<&dyn render::Render>,
    delivery: &ClaimedDelivery,
) -> Result<(Bytes, CategoriesSent), AttemptResult> {
    match render::render(renderer, delivery).await {
        Ok(Some(rendered)) => Ok((rendered.body, rendered.categories_sent)),
        Ok(None) => Ok((delivery.payload.clone(), Vec::new())),
        Err(failed) => Err(failed),
    }
}

/// Send the rendered records (admitted, holding a send permit): each record's result, in
/// order; `None` for a record not sent (to be released).
async fn send_rendered(
    ctx: &Ctx,
    spec: &BatchSpec,
    records: &[(&Member, Bytes)],
    probe: bool,
) -> Vec<Option<AttemptResult>> {
    if records.is_empty() {
        if probe {
            ctx.gate.cancel_probe();
        }
        return Vec::new();
    }
    let lease_until = records
        .iter()
        .map(|(m, _)| m.lease_until)
        .min()
        .unwrap_or(0);
    let Some((call, results)) = call(ctx, spec, records, lease_until, probe).await else {
        return vec![None; records.len()];
    };
    if spec.on_failure == BatchFailure::Split && records.len() > 1 && splits(&call) {
        info!(
            flow = %ctx.key.flow,
            destination = %ctx.key.destination,
            records = records.len(),
            status = call.status,
            "batch call failed; sending its records one by one"
        );
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            out.push(single(ctx, spec, record).await);
        }
        out
    } else {
        results.into_iter().map(Some).collect()
    }
}

/// One record of a split batch, in a call of its own (through the gate). `None`: not sent.
async fn single(ctx: &Ctx, spec: &BatchSpec, record: &(&Member, Bytes)) -> Option<AttemptResult> {
    let member = record.0;
    let probe = match ctx.gate.admit(&member.delivery, &ctx.stop).await {
        Admit::Go { probe } => probe,
        Admit::Paused | Admit::Stopped => return None,
    };
    let (_, mut results) = call(
        ctx,
        spec,
        std::slice::from_ref(record),
        member.lease_until,
        probe,
    )
    .await?;
    results.pop()
}

/// One batch call for `records` (admitted; each with its rendered body): build it, send it,
/// let the gate learn from it.
/// Returns the call's result and each record's. `None`: not sent (the lease is too close
/// to its end, or shutdown aborted the call): the records are to be released.
async fn call(
    ctx: &Ctx,
    spec: &BatchSpec,
    records: &[(&Member, Bytes)],
    lease_until: Millis,
    probe: bool,
) -> Option<(AttemptResult, Vec<AttemptResult>)> {
    let latest_start = lease_until
        .saturating_sub(ctx.timeout_ms)
        .saturating_sub(duration_millis(LEASE_SAFETY));
    if now_millis() > latest_start {
        debug!(flow = %ctx.key.flow, destination = %ctx.key.destination, records = records.len(), "lease too close to its end; releasing the batch instead of sending");
        if probe {
            ctx.gate.cancel_probe();
        }
        return None;
    }
    let n = records.len();
    let id = batch_id(records.iter().map(|(m, _)| m.delivery.id.to_string()));
    let members: Vec<(&ClaimedDelivery, Bytes)> = records
        .iter()
        .map(|(m, b)| (&m.delivery, b.clone()))
        .collect();
    let keep_body = if spec.failed_items.is_some() {
        FAILED_ITEMS_BODY_LIMIT
    } else {
        0
    };
    let call = BatchCall {
        id: &id,
        records: &members,
        wrap: spec.wrap.as_deref(),
        keep_body,
    };
    let in_flight = &ctx.metrics.in_flight;
    in_flight.increment(1.0);
    let sent = tokio::select! {
        biased;
        _ = ctx.abort.cancelled() => None,
        sent = ctx.connector.send_batch(call) => Some(sent),
    };
    in_flight.decrement(1.0);
    let Some((result, response)) = sent else {
        debug!(batch = %id, flow = %ctx.key.flow, destination = %ctx.key.destination, "batch call aborted by shutdown; releasing");
        if probe {
            ctx.gate.cancel_probe();
        }
        return None;
    };
    // The gate ignores a call that failed on this host (see `Gate::record`).
    if let Some(pause) = ctx.gate.record(&result, probe) {
        auto_pause(ctx, pause).await;
    }
    if result.verdict.local_failure().is_some() {
        // Not a call: each record is put back without spending an attempt (`conclude`).
        debug!(batch = %id, flow = %ctx.key.flow, destination = %ctx.key.destination, records = n, error = result.error.as_deref(), "batch call failed on this host");
        let results = per_record(&result, n, &BTreeMap::new());
        return Some((result, results));
    }
    ctx.metrics.call_latency(result.latency);
    metrics::histogram!(ferry_metrics::BATCH_SIZE, ctx.labels.iter()).record(n as f64);
    let mut labels: Vec<Label> = ctx.labels.clone();
    labels.push(Label::new("result", result.error_class));
    metrics::counter!(ferry_metrics::BATCH_CALLS_TOTAL, labels).increment(1);
    debug!(
        batch = %id,
        flow = %ctx.key.flow,
        destination = %ctx.key.destination,
        records = n,
        status = result.status,
        class = result.error_class,
        latency_ms = result.latency.as_millis() as u64,
        error = result.error.as_deref(),
        "batch call"
    );
    let failed = match (&spec.failed_items, result.verdict) {
        (Some(pointer), Verdict::Delivered) => read_failed(ctx, &id, response.as_ref(), pointer, n),
        _ => BTreeMap::new(),
    };
    let results = per_record(&result, n, &failed);
    Some((result, results))
}

/// The failed records a `2xx` response names. A response that cannot be read names none:
/// the destination accepted the call, so its records count as delivered (with a warning).
fn read_failed(
    ctx: &Ctx,
    id: &str,
    response: Option<&Bytes>,
    pointer: &str,
    n: usize,
) -> BTreeMap<usize, String> {
    let Some(response) = response else {
        warn!(batch = %id, flow = %ctx.key.flow, destination = %ctx.key.destination, limit = FAILED_ITEMS_BODY_LIMIT, "batch response unreadable or too large to look for failed records; counting every record delivered");
        return BTreeMap::new();
    };
    match failed_items(response, pointer, n) {
        Ok(found) => {
            if found.unknown > 0 {
                warn!(batch = %id, flow = %ctx.key.flow, destination = %ctx.key.destination, entries = found.unknown, "batch response names failed records that are not in the batch; ignoring those entries");
            }
            if !found.failed.is_empty() {
                debug!(batch = %id, flow = %ctx.key.flow, destination = %ctx.key.destination, failed = found.failed.len(), records = n, "batch partly failed");
            }
            found.failed
        }
        Err(reason) => {
            warn!(batch = %id, flow = %ctx.key.flow, destination = %ctx.key.destination, reason = %reason, "cannot read failed records from the batch response; counting every record delivered");
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudevents;
    use crate::egress::EgressPolicy;
    use crate::http::{HttpConnector, HttpTarget};
    use ferry_config::BodyFormat;
    use ferry_store::{DeliveryId, EventId, LaneKey};
    use std::time::Duration;

    /// An HTTP connector sending `format` (it is never called here).
    fn http(format: BodyFormat) -> Arc<dyn Connector> {
        let target = HttpTarget {
            url: "http://127.0.0.1:9/".parse().unwrap(),
            method: reqwest::Method::POST,
            headers: Default::default(),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            signing_key: None,
            egress: EgressPolicy::new(),
            format,
        };
        Arc::new(HttpConnector::new(target, 1).unwrap())
    }

    fn member(payload: &'static [u8]) -> Member {
        Member {
            delivery: ClaimedDelivery {
                id: DeliveryId::new(),
                event_id: EventId::new(),
                lane: LaneKey {
                    flow: "f".into(),
                    destination: "d".into(),
                },
                event_type: None,
                received_at: 0,
                headers: vec![],
                payload: Bytes::from_static(payload),
                attempts: 0,
                round_attempts: 0,
                round_started_at: 0,
                clear_payload: None,
            },
            slot: None,
            lease_until: 0,
        }
    }

    fn queue(max_items: usize) -> BatchQueue {
        BatchQueue::new(
            &BatchSpec {
                max_items,
                max_bytes: 1 << 20,
                linger: Duration::from_millis(100),
                wrap: None,
                on_failure: BatchFailure::RetryBatch,
                failed_items: None,
            },
            http(BodyFormat::Json),
        )
    }

    #[test]
    fn one_sender_per_batch() {
        let mut q = queue(2);
        let t0 = Instant::now();
        assert_eq!(q.push(member(b"1"), t0), 0);
        assert_eq!(q.push(member(b"2"), t0), 1, "a full batch needs a sender");
        assert_eq!(q.push(member(b"3"), t0), 0);
        assert!(!q.expire(t0), "the linger has not run out");
        assert!(q.expire(t0 + Duration::from_millis(100)));
        assert!(
            !q.expire(t0 + Duration::from_secs(9)),
            "already has its sender"
        );
        assert_eq!(q.deadline(), None);
        // The open batch fills up after it got its sender: no second sender.
        assert_eq!(q.push(member(b"4"), t0), 0);
        // Two senders, two batches, oldest first.
        assert_eq!(&q.take()[0].delivery.payload[..], b"1");
        assert_eq!(&q.take()[0].delivery.payload[..], b"3");
        assert!(q.take().is_empty());
    }

    #[test]
    fn cloudevents_records_count_their_envelopes() {
        // Room for two envelopes of a 10-byte record, not three.
        let envelope = 10 + cloudevents::overhead(&member(b"[1,2,3,45]").delivery);
        let spec = BatchSpec {
            max_items: 100,
            max_bytes: 2 + 3 * envelope + 1,
            linger: Duration::from_millis(100),
            wrap: None,
            on_failure: BatchFailure::RetryBatch,
            failed_items: None,
        };
        let t0 = Instant::now();
        // As plain JSON, ten records fit.
        let mut ce = BatchQueue::new(&spec, http(BodyFormat::Cloudevents));
        let started: usize = (0..3).map(|_| ce.push(member(b"[1,2,3,45]"), t0)).sum();
        assert_eq!(started, 1, "the third record closes a batch of two");
        assert_eq!(ce.take().len(), 2);
        let mut json = BatchQueue::new(&spec, http(BodyFormat::Json));
        let started: usize = (0..10).map(|_| json.push(member(b"[1,2,3,45]"), t0)).sum();
        assert_eq!(started, 0);
    }

    #[test]
    fn a_sender_takes_what_joined_while_it_waited() {
        let mut q = queue(10);
        let t0 = Instant::now();
        q.push(member(b"1"), t0);
        assert!(q.expire(t0 + Duration::from_millis(100)));
        // While the sender waits at the gate, more records join the open batch.
        q.push(member(b"2"), t0);
        q.push(member(b"3"), t0);
        assert_eq!(&q.peek().unwrap().payload[..], b"1");
        assert_eq!(q.take().len(), 3);
        // The next record starts a new batch that needs its own sender after its linger.
        q.push(member(b"4"), t0 + Duration::from_secs(1));
        assert_eq!(
            q.deadline(),
            Some(t0 + Duration::from_secs(1) + Duration::from_millis(100))
        );
        assert_eq!(q.drain().len(), 1);
    }
}
