//! What a failed call of any connector here was, and the attempt a call makes: one shape for
//! every system, so every kind reports alike.

use std::time::Instant;

use ferry_delivery::{AttemptResult, Verdict};
use ferry_store::Millis;

/// What went wrong with one call: its error class, the text (never a secret or payload),
/// and whether sending again may help.
pub(crate) struct Failure {
    pub class: &'static str,
    pub error: String,
    pub verdict: Verdict,
}

impl Failure {
    /// A failure that sending again cannot fix: the delivery is dead-lettered.
    pub fn permanent(class: &'static str, error: String) -> Self {
        Self {
            class,
            error,
            verdict: Verdict::Permanent,
        }
    }

    /// A failure that may pass: the delivery is retried.
    pub fn retry(class: &'static str, error: String) -> Self {
        Self {
            class,
            error,
            verdict: Verdict::Retry { retry_after: None },
        }
    }
}

/// The attempt a call (or a batch call) made, started at `started_at` (`clock` then).
pub(crate) fn attempt(
    started_at: Millis,
    clock: Instant,
    result: Result<(), Failure>,
) -> AttemptResult {
    let (verdict, error_class, error) = match result {
        Ok(()) => (Verdict::Delivered, "ok", None),
        Err(f) => (f.verdict, f.class, Some(f.error)),
    };
    AttemptResult {
        started_at,
        latency: clock.elapsed(),
        status: None,
        verdict,
        error_class,
        error,
        response_excerpt: None,
    }
}
