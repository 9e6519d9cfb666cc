//! What a lane sends through: a destination connector. The lane applies the gate (breaker,
//! rate limit, 429 hold, pause), batching, the bulkhead, retries and the dead-letter queue
//! to every kind alike; a connector only makes calls and classifies what came back into an
//! [`AttemptResult`] (delivered, retry at, permanent, or a failure of this host). HTTP is one
//! connector ([`crate::HttpConnector`]); a new kind is one more implementation.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_store::ClaimedDelivery;

use crate::outcome::AttemptResult;
use crate::render::Rendered;

/// One batch call: several deliveries sent as one (see [`crate::batch`]).
#[derive(Debug)]
pub struct BatchCall<'a> {
    /// The call's stable id (`bat_…`, derived from its members' ids): the idempotency key.
    pub id: &'a str,
    /// Each member with the record it sends (rendered, or the stored payload).
    pub records: &'a [(&'a ClaimedDelivery, Bytes)],
    /// The batch's `wrap` key: the records go in an object under it (`None`: an array).
    pub wrap: Option<&'a str>,
    /// With `keep_body > 0`, a successful response body of at most that many bytes is
    /// returned whole (for per-item failure reports).
    pub keep_body: usize,
}

/// A destination connector. Implementations never panic and never return errors: every
/// failure is part of the [`AttemptResult`] with its verdict and error class.
#[async_trait]
pub trait Connector: Send + Sync + fmt::Debug {
    /// The kind, as written in config (`http`, …): a label for logs and metrics.
    fn kind(&self) -> &'static str;

    /// The longest one call may take; the lane's claim leases are computed from it.
    fn timeout(&self) -> Duration;

    /// Bytes a record takes in a batch call beyond its payload (its framing, e.g. a
    /// CloudEvents envelope), so batches keep to `max_bytes`. Default: none.
    fn record_overhead(&self, _delivery: &ClaimedDelivery) -> usize {
        0
    }

    /// Make one attempt to deliver `delivery`, as `rendered` says or as stored when `None`.
    /// Every call carries the delivery id as its idempotency key, identical across retries
    /// and replays.
    async fn send(&self, delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> AttemptResult;

    /// Make one batch call. The result applies to the whole call; the returned body (when
    /// asked for with `keep_body`) lets the lane read per-item failures.
    async fn send_batch(&self, call: BatchCall<'_>) -> (AttemptResult, Option<Bytes>);
}
