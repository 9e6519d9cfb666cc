//! Ferry's ingress span and its children (signature check, steps, store commit), and the
//! trace context an accepted event keeps (see `ferry_trace`).

use std::time::SystemTime;

use axum::http::{HeaderMap, StatusCode};
use ferry_trace::{KeyValue, SpanIds, SpanKind};

use super::handler::AcceptedBody;
use crate::problem::Problem;

/// One finished phase of a request: its span's ids, name, times and error code.
struct Phase {
    ids: SpanIds,
    name: &'static str,
    start: SystemTime,
    end: SystemTime,
    error: Option<&'static str>,
}

/// The trace of one ingest request.
pub struct IngressTrace {
    /// `traceparent` and `tracestate` as the event keeps them.
    context: Vec<(String, String)>,
    /// Ferry's ingress span, when traces are exported.
    ids: Option<SpanIds>,
    start: SystemTime,
    phases: Vec<Phase>,
}

impl IngressTrace {
    /// Read the request's trace context: what the event keeps, and the ingress span's ids.
    pub fn start(headers: &HeaderMap) -> Self {
        let mut context: Vec<(String, String)> = ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|name| {
                let value = headers.get(name)?.to_str().ok()?;
                Some((name.to_string(), value.to_string()))
            })
            .collect();
        let ids = ferry_trace::inbound(&mut context);
        IngressTrace {
            context,
            ids,
            start: SystemTime::now(),
            phases: Vec::new(),
        }
    }

    /// Put the trace context the event keeps in its kept `headers`, in place of the request's.
    pub fn keep(&self, headers: &mut Vec<(String, String)>) {
        ferry_trace::replace_context(headers, &self.context);
    }

    /// The trace id the event keeps (hex), for its log lines.
    pub fn trace_id(&self) -> Option<String> {
        ferry_trace::trace_id(&self.context)
    }

    /// When a phase starts.
    pub fn phase(&self) -> SystemTime {
        SystemTime::now()
    }

    /// A phase that began at `start` ended now, failing with `error` if given.
    pub fn end_phase(
        &mut self,
        start: SystemTime,
        name: &'static str,
        error: Option<&'static str>,
    ) {
        if let Some(ids) = self.ids.filter(|ids| ids.sampled) {
            self.phases.push(Phase {
                ids: ids.child(),
                name,
                start,
                end: SystemTime::now(),
                error,
            });
        }
    }

    /// Record the request's spans: the ingress span (with the answer's status) and its
    /// phases.
    pub fn finish(
        self,
        flow: &str,
        path: &str,
        result: &Result<(StatusCode, AcceptedBody), Problem>,
    ) {
        let Some(ids) = self.ids.filter(|ids| ids.sampled) else {
            return;
        };
        let end = SystemTime::now();
        for phase in self.phases {
            ferry_trace::record(
                &phase.ids,
                phase.name,
                SpanKind::Internal,
                phase.start,
                phase.end,
                vec![KeyValue::new("ferry.flow", flow.to_string())],
                phase.error.map(str::to_string),
            );
        }
        let (status, error) = match result {
            Ok((status, _)) => (status.as_u16(), None),
            Err(problem) => (problem.status, Some(problem.code)),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", "/ingest/{path}"),
            KeyValue::new("url.path", format!("/ingest/{path}")),
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("ferry.flow", flow.to_string()),
        ];
        if let Ok((_, body)) = result {
            if let Some(id) = &body.event_id {
                attributes.push(KeyValue::new("ferry.event_id", id.clone()));
            }
            attributes.push(KeyValue::new("ferry.deliveries", body.deliveries as i64));
        }
        if let Some(code) = error {
            attributes.push(KeyValue::new("error.type", code));
        }
        ferry_trace::record(
            &ids,
            "ferry.ingress",
            SpanKind::Server,
            self.start,
            end,
            attributes,
            error.map(str::to_string),
        );
    }
}
