//! Exporting Ferry's spans: the OTLP/HTTP exporter behind the SDK's batch processor, and
//! [`record`], which builds a finished span with ids chosen earlier.

use std::cell::Cell;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, Sampler, SdkTracer, SdkTracerProvider,
};

use crate::context::SpanIds;

/// What `settings.tracing` asks for.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// The OTLP/HTTP traces endpoint (`http://collector:4318/v1/traces`).
    pub endpoint: String,
    /// Share of new traces (no sampled caller) recorded, 0 to 1.
    pub sample_ratio: f64,
    /// Longest an export call may take.
    pub timeout: Duration,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Spans waiting for export at most; beyond, new spans are dropped.
    pub max_queue: usize,
}

/// Traces being exported: the provider and the sampling ratio of new traces.
pub struct Exporting {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    sample_ratio: f64,
}

impl std::fmt::Debug for Exporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporting")
            .field("sample_ratio", &self.sample_ratio)
            .finish_non_exhaustive()
    }
}

impl Exporting {
    /// Whether a new trace is recorded.
    pub(crate) fn sample(&self) -> bool {
        self.sample_ratio >= 1.0 || rand::random::<f64>() < self.sample_ratio
    }

    /// Export what is queued, then stop exporting (the hub's shutdown).
    pub fn shutdown(&self) {
        let mut active = ACTIVE.write().unwrap_or_else(|p| p.into_inner());
        if active
            .as_ref()
            .is_some_and(|a| std::ptr::eq(Arc::as_ptr(a), self))
        {
            *active = None;
        }
        drop(active);
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "flushing the trace exporter failed");
        }
        let _ = self.provider.shutdown();
    }
}

/// The process's exporting state; `None`: traces are not exported.
static ACTIVE: RwLock<Option<Arc<Exporting>>> = RwLock::new(None);

pub(crate) fn active() -> Option<Arc<Exporting>> {
    ACTIVE.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Start exporting spans per `settings`, posting on the tokio runtime of `runtime`. Replaces
/// an earlier exporter of this process.
pub fn install(
    settings: &TraceSettings,
    runtime: tokio::runtime::Handle,
) -> Result<Arc<Exporting>, String> {
    let client = RuntimeClient {
        client: reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| format!("building the OTLP client: {e}"))?,
        runtime,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(settings.timeout)
        .build()
        .map_err(|e| format!("building the OTLP exporter: {e}"))?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(settings.max_queue.max(1))
        .with_max_export_batch_size(settings.max_queue.clamp(1, 512))
        .with_scheduled_delay(Duration::from_millis(500))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
        )
        .with_id_generator(ChosenIds)
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build();
    let exporting = Arc::new(Exporting {
        tracer: provider.tracer("ferry"),
        provider,
        sample_ratio: settings.sample_ratio.clamp(0.0, 1.0),
    });
    *ACTIVE.write().unwrap_or_else(|p| p.into_inner()) = Some(exporting.clone());
    Ok(exporting)
}

thread_local! {
    /// The ids the next span built on this thread gets (see [`ChosenIds`]).
    static NEXT_IDS: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Gives the span being built the ids [`record`] chose: the SDK takes a span's ids from its
/// id generator, and Ferry must know an id before the span ends (it is stored with the
/// event, or sent in the outbound `traceparent`). Building is synchronous, on one thread.
#[derive(Debug)]
struct ChosenIds;

impl IdGenerator for ChosenIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_IDS
            .get()
            .map_or_else(|| TraceId::from_bytes(rand::random()), |(t, _)| t)
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_IDS
            .get()
            .map_or_else(|| SpanId::from_bytes(rand::random()), |(_, s)| s)
    }
}

/// Record a finished span with `ids`, from `start` to `end`; `error`: its status. Nothing
/// when traces are not exported or the trace is not sampled.
pub fn record(
    ids: &SpanIds,
    name: &'static str,
    kind: SpanKind,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
    error: Option<String>,
) {
    if !ids.sampled {
        return;
    }
    let Some(exporting) = active() else {
        return;
    };
    let trace_id = TraceId::from_bytes(ids.trace_id);
    let parent = match ids.parent {
        Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
            trace_id,
            SpanId::from_bytes(parent),
            TraceFlags::SAMPLED,
            ids.remote_parent,
            TraceState::NONE,
        )),
        None => Context::new(),
    };
    NEXT_IDS.set(Some((trace_id, SpanId::from_bytes(ids.span_id))));
    let mut span = exporting
        .tracer
        .span_builder(name)
        .with_kind(kind)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(&exporting.tracer, &parent);
    NEXT_IDS.set(None);
    if let Some(message) = error {
        opentelemetry::trace::Span::set_status(&mut span, Status::error(message));
    }
    opentelemetry::trace::Span::end_with_timestamp(&mut span, end);
}

/// The OTLP exporter's HTTP client: the SDK exports from its own thread, so each post is
/// run on the hub's tokio runtime (a reqwest client needs its reactor) and awaited there.
#[derive(Debug)]
struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let call = async move {
            let mut request = client.request(parts.method, parts.uri.to_string());
            for (name, value) in &parts.headers {
                request = request.header(name, value);
            }
            let response = request.body(body).send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let (status, body) = self.runtime.spawn(call).await??;
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        Ok(response)
    }
}
