//! Ferry's delivery side: the data path after the store.
//!
//! `store -> per-destination lanes -> connector -> outcome back to the store`. The
//! [`DeliveryEngine`] runs one lane per (flow, destination) ([`ferry_store::LaneKey`]). A lane
//! claims due deliveries from the [`ferry_store::Store`], sends them through its own
//! [`HttpConnector`] (own connection pool, own concurrency limit: a bulkhead), decides each
//! outcome with [`decide`] (status classification in [`classify`], backoff in [`retry`]) and
//! writes the outcomes back in batches.
//!
//! Every delivery carries its id as `webhook-id` and `idempotency-key`, identical across
//! retries and replays, and is signed per Standard Webhooks when the target has a key.
//!
//! # Metrics
//!
//! Emitted through the `metrics` facade, labelled `flow` and `destination`:
//! - `ferry_delivery_attempts_total{outcome="delivered|retry|dead"}` (counter): attempts made,
//!   by what they led to (a send aborted by shutdown is not an attempt);
//! - `ferry_delivery_attempt_duration_seconds` (histogram): time per attempt;
//! - `ferry_delivery_in_flight` (gauge): sends in progress.
//!
//! # Logs
//!
//! `debug` per attempt, `warn` when a delivery is dead-lettered. Logs carry delivery ids,
//! lanes, statuses and error texts, never payloads, header values or response bodies.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod classify;
mod engine;
pub mod http;
mod lane;
pub mod outcome;
pub mod retry;

pub use classify::{Verdict, classify_status, parse_retry_after};
pub use engine::{DeliveryEngine, EngineError, LaneSpec};
pub use http::{HttpConnector, HttpTarget};
pub use outcome::{AttemptResult, Decision, OutcomeKind, decide};
pub use retry::RetryPolicy;
