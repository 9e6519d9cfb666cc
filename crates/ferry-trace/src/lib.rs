//! Ferry's traces: W3C Trace Context carried in and out, and Ferry's own spans exported over
//! OTLP/HTTP (protobuf) when `settings.tracing` configures an endpoint.
//!
//! An inbound `traceparent` that parses is the parent of Ferry's ingress span; one that
//! does not is dropped with its `tracestate`, and a new trace starts (W3C Trace Context,
//! §3.2 and §4.3). The event keeps the ingress span's context; each delivery attempt is a
//! child span of it, and the outbound `traceparent` names the attempt span as its parent,
//! with the same trace id; `tracestate` travels unchanged.
//!
//! Spans are recorded after the fact, with the ids chosen when the work started (an id is
//! needed in the stored `traceparent` before the span ends): [`record`] builds a span with
//! those ids, its start and end time. Export is batched on the SDK's own thread, through a
//! bounded queue that drops when full: tracing never blocks ingest.
//!
//! One hub per process: the exporting state is process-wide, like the metrics recorder.
#![forbid(unsafe_code)]

mod context;
mod export;

pub use context::{SpanIds, TraceParent, inbound, outbound, replace_context, trace_id};
pub use export::{Exporting, TraceSettings, install, record};
pub use opentelemetry::KeyValue;
pub use opentelemetry::trace::SpanKind;
