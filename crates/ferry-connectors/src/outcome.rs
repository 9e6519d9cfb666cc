//! What a failed call of any connector here was, and the attempt a call makes: one shape for
//! every system, so every kind reports alike.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use ferry_delivery::{AttemptResult, Rendered, Verdict};
use ferry_store::{ClaimedDelivery, Millis};

use crate::now_millis;

/// What went wrong with one call: its error class, the text (never a secret or payload),
/// and whether sending again may help.
#[derive(Clone)]
pub(crate) struct Failure {
    pub class: &'static str,
    pub error: String,
    pub verdict: Verdict,
    /// What the system answered, when it may quote the payload (a database's message about
    /// the row): kept with the attempt as its response excerpt, never logged.
    pub excerpt: Option<String>,
}

impl Failure {
    /// A failure that sending again cannot fix: the delivery is dead-lettered.
    pub fn permanent(class: &'static str, error: String) -> Self {
        Self {
            class,
            error,
            verdict: Verdict::Permanent,
            excerpt: None,
        }
    }

    /// A failure that may pass: the delivery is retried.
    pub fn retry(class: &'static str, error: String) -> Self {
        Self {
            class,
            error,
            verdict: Verdict::Retry { retry_after: None },
            excerpt: None,
        }
    }
}

/// The attempt a call (or a batch call) made, started at `started_at` (`clock` then).
pub(crate) fn attempt(
    started_at: Millis,
    clock: Instant,
    result: Result<(), Failure>,
) -> AttemptResult {
    let (verdict, error_class, error, response_excerpt) = match result {
        Ok(()) => (Verdict::Delivered, "ok", None, None),
        Err(f) => (f.verdict, f.class, Some(f.error), f.excerpt),
    };
    AttemptResult {
        started_at,
        latency: clock.elapsed(),
        status: None,
        verdict,
        error_class,
        error,
        response_excerpt,
    }
}

/// The attempt `call` makes, timed from now.
pub(crate) async fn timed(call: impl Future<Output = Result<(), Failure>>) -> AttemptResult {
    let (started_at, clock) = (now_millis(), Instant::now());
    let result = call.await;
    attempt(started_at, clock, result)
}

/// Run every call at once; the first failure (in the calls' order), or `Ok` when all passed.
pub(crate) async fn all_or_first_failure(
    calls: impl IntoIterator<Item = impl Future<Output = Result<(), Failure>>>,
) -> Result<(), Failure> {
    let results = futures_util::future::join_all(calls).await;
    results
        .into_iter()
        .find_map(Result::err)
        .map_or(Ok(()), Err)
}

/// What a delivery sends: its rendering's body, or the stored payload.
pub(crate) fn record_body(delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> Bytes {
    rendered.map_or_else(|| delivery.payload.clone(), |r| r.body.clone())
}
