//! Ferry's delivery side: the data path after the store.
//!
//! `store -> per-destination lanes -> connector -> outcome back to the store`. The
//! [`DeliveryEngine`] runs one lane per (flow, destination) ([`ferry_store::LaneKey`]). A lane
//! claims due deliveries from the [`ferry_store::Store`], sends them through its
//! [`Connector`] (HTTP: [`HttpConnector`], with its own connection pool) under its own
//! concurrency limit (a bulkhead), decides each
//! outcome with [`decide`] (status classification in [`classify`], backoff in [`retry`]) and
//! writes the outcomes back in batches.
//!
//! Every delivery carries its id as `webhook-id` and `idempotency-key`, identical across
//! retries and replays, and is signed per Standard Webhooks when the target has a key.
//!
//! A lane with a [`BatchSpec`] sends several deliveries per call ([`batch`]): one gate
//! admission and one `webhook-id` (`bat_…`, derived from the members' ids) per call, one
//! outcome per delivery.
//!
//! A lane with a [`Render`] computes what each delivery sends when it sends it ([`render`]):
//! the store keeps the raw event, so a replay after a mapping fix sends the fixed payload.
//! A rendering that fails for good dead-letters the delivery without an HTTP call.
//!
//! Every connection goes through the SSRF guard ([`egress`]): non-public addresses are
//! refused at connect time unless the target's [`EgressPolicy`] allows them.
//!
//! An HTTP target may authenticate with OAuth2 ([`oauth2`]): tokens cached per destination,
//! refreshed before expiry and after a `401`, one fetch shared by concurrent attempts.
//!
//! # Metrics
//!
//! Emitted through the `metrics` facade, labelled `flow` and `destination`:
//! - `ferry_delivery_attempts_total{outcome="delivered|retry|dead"}` (counter): attempts made,
//!   by what they led to (a send aborted by shutdown is not an attempt);
//! - `ferry_delivery_attempt_duration_seconds` (histogram): time per attempt;
//! - `ferry_delivery_in_flight` (gauge): sends in progress;
//! - `ferry_batch_size` (histogram): records per call of a batching lane;
//! - `ferry_batch_calls_total{result}` (counter): batch calls by result class (`ok`,
//!   `http_5xx`, `timeout`, ...);
//! - `ferry_deliveries_claimed_at_ingress_total` (counter): deliveries ingress claimed in
//!   their append and handed to the lane directly ([`FreshLane`]);
//! - `ferry_delivery_local_failures_total{reason="emfile|enfile|enobufs|enomem"}` (counter):
//!   deliveries put back because their call failed on this host for lack of a resource
//!   ([`Verdict::Local`]; a batch call counts each of its records). They are not attempts:
//!   no attempt is spent or recorded, the circuit breaker is not told, and the delivery is
//!   tried again after [`LOCAL_RETRY_DELAY`] plus jitter.
//!
//! # Logs
//!
//! `debug` per attempt, `warn` when a delivery is dead-lettered, and at most one `warn` per
//! 30 s (process-wide) while calls fail on this host for lack of a resource. Logs carry
//! delivery ids, lanes, statuses and error texts, never payloads, header values or response
//! bodies.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod batch;
pub mod breaker;
pub mod classify;
pub mod cloudevents;
pub mod connector;
pub mod egress;
mod engine;
mod fresh;
mod gate;
pub mod http;
mod lane;
pub mod oauth2;
pub mod outcome;
mod permits;
pub mod render;
pub mod retry;
pub mod synthetic;
pub mod tally;

pub use batch::{BatchFailure, BatchSpec};
pub use breaker::{BreakerSettings, BreakerState};
pub use classify::{LocalFailure, Verdict, classify_status, local_failure, parse_retry_after};
pub use connector::{BatchCall, Connector};
pub use egress::{EgressPolicy, GuardedClient, guarded_client_builder};
pub use engine::{ControlError, DeliveryEngine, EngineError, LaneSpec, RateShares};
pub use fresh::{FreshLane, FreshSlot};
pub use gate::{GateSpec, GateStatus, LaneEvent, RateLimitSpec};
pub use http::{HttpConnector, HttpTarget};
pub use oauth2::{AUTH_FAILED, OAuth2Grant};
pub use outcome::{AttemptResult, Decision, LOCAL_RETRY_DELAY, OutcomeKind, decide};
pub use render::{Render, RenderError, Rendered, SEALED_EXCERPT_PREFIX, SealedExcerpt};
pub use retry::RetryPolicy;
pub use tally::{AttemptTally, TallySnapshot};
