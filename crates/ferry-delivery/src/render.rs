//! Delivery-time rendering: what a destination receives is computed when a delivery is sent,
//! from the stored (raw) event. So a replay after a fix of a destination's mapping sends the
//! fixed payload, and the store keeps one copy of each event however many destinations
//! reshape it.
//!
//! A lane with a [`Render`] calls it before each send (per record, for batching lanes).
//! A failure that sending again cannot fix (a mapping error, a contract violation) ends the
//! delivery in the dead-letter queue *without* an HTTP call, the reason recorded as the
//! attempt's error; a retryable one (a lookup that timed out) schedules a retry like a
//! failed call. Either way the lane goes on with its other deliveries, and the circuit
//! breaker learns nothing: the destination was not called.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_store::ClaimedDelivery;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderValue};

use crate::classify::Verdict;
use crate::outcome::AttemptResult;
use ferry_store::now_millis;

/// Computes what one delivery sends. Implemented by the hub (map, templates, contracts);
/// the lane only calls it.
#[async_trait]
pub trait Render: Send + Sync + fmt::Debug {
    /// What `delivery` sends now, or why it cannot be sent.
    async fn render(&self, delivery: &ClaimedDelivery) -> Result<Rendered, RenderError>;

    /// The longest one rendering may take: the time-outs of the lookups it makes (a
    /// destination's `enrich`). The lane adds it to its claims' lease and to the time it
    /// keeps free before a lease ends, so a slow lookup cannot let a claim expire while its
    /// delivery is sent. Default: none (rendering does no I/O).
    fn time_budget(&self) -> Duration {
        Duration::ZERO
    }

    /// What to store of `excerpt`, the start of a destination's answer to `delivery` (it may
    /// echo the data sent): by default, as it is. A hub that encrypts events at rest
    /// encrypts it under the event's key.
    async fn seal_excerpt(&self, _delivery: &ClaimedDelivery, _excerpt: &str) -> SealedExcerpt {
        SealedExcerpt::Keep
    }
}

/// What [`Render::seal_excerpt`] makes of a response excerpt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedExcerpt {
    /// Store it as it is.
    Keep,
    /// Store this instead (an envelope starting with [`SEALED_EXCERPT_PREFIX`]): never
    /// quoted in a dead-letter reason.
    Sealed(String),
    /// Store none.
    Drop,
}

/// How an encrypted excerpt starts (`ferry:enc:v1:…`, see `ferry_protect::envelope`).
pub const SEALED_EXCERPT_PREFIX: &str = "ferry:enc:";

/// Let `render` seal the response excerpt of `result`, an attempt of `delivery`.
pub(crate) async fn seal_excerpt(
    render: Option<&dyn Render>,
    delivery: &ClaimedDelivery,
    result: &mut AttemptResult,
) {
    let (Some(render), Some(excerpt)) = (render, result.response_excerpt.as_deref()) else {
        return;
    };
    match render.seal_excerpt(delivery, excerpt).await {
        SealedExcerpt::Keep => {}
        SealedExcerpt::Sealed(sealed) => result.response_excerpt = Some(sealed),
        SealedExcerpt::Drop => result.response_excerpt = None,
    }
}

/// What one delivery sends, as rendered.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The request body (replaces the stored payload).
    pub body: Bytes,
    /// The URL, when the destination's URL is a template (else the target's).
    pub url: Option<Url>,
    /// Headers set over the target's static ones (rendered header templates). The delivery
    /// headers (`webhook-*`, `idempotency-key`, `traceparent`) still win.
    pub headers: HeaderMap,
    /// The `content-type`, when the rendering decides it (mapped JSON, a text body); else
    /// the event's own, else the target's, else `application/json`.
    pub content_type: Option<HeaderValue>,
    /// The data categories this delivery carries to its destination and how each was
    /// protected on the way (`pass`, `hash`, `redact`, `encrypt`, `drop`): what the audit
    /// trail records when it is delivered.
    pub categories_sent: Vec<(String, String)>,
}

/// Why a delivery could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// Stable class, recorded as the attempt's error class: e.g. `map_failed`,
    /// `template_failed`, `contract_violation`.
    pub class: &'static str,
    /// What went wrong (recorded as the attempt's error and, when dead, the reason). Never
    /// holds header values or secrets; may quote the program's or schema's own message.
    pub message: String,
    /// Whether trying again later may succeed (then the delivery is retried per the retry
    /// policy); `false` dead-letters it at once.
    pub retryable: bool,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

impl std::error::Error for RenderError {}

impl RenderError {
    /// A failure that sending again cannot fix: the delivery is dead-lettered.
    pub fn permanent(class: &'static str, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that may pass: the delivery is retried.
    pub fn retryable(class: &'static str, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            retryable: true,
        }
    }

    /// The attempt this failure counts as: no HTTP status, no response, this error.
    pub(crate) fn attempt(&self, started_at: i64, clock: Instant) -> AttemptResult {
        AttemptResult {
            started_at,
            latency: clock.elapsed(),
            status: None,
            verdict: if self.retryable {
                Verdict::Retry { retry_after: None }
            } else {
                Verdict::Permanent
            },
            error_class: self.class,
            error: Some(crate::http::truncate(self.message.clone())),
            response_excerpt: None,
        }
    }
}

/// Render `delivery` with `render`, timing it like an attempt. `Ok(None)` when the lane has
/// nothing to render; `Err` is the failed attempt.
pub(crate) async fn render(
    render: Option<&dyn Render>,
    delivery: &ClaimedDelivery,
) -> Result<Option<Rendered>, AttemptResult> {
    let Some(render) = render else {
        return Ok(None);
    };
    let started_at = now_millis();
    let clock = Instant::now();
    render
        .render(delivery)
        .await
        .map(Some)
        .map_err(|e| e.attempt(started_at, clock))
}
