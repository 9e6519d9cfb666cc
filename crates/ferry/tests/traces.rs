//! Traces across systems, end to end: a real OTLP/HTTP receiver on loopback (requests
//! decoded with the published OpenTelemetry protobuf types) gets the spans of one event —
//! ingress, signature, steps, commit, the delivery attempt — in the trace of the inbound
//! `traceparent`; the destination receives a `traceparent` of the same trace whose parent
//! is Ferry's attempt span, and the `tracestate` as sent; an invalid `traceparent` starts a
//! new trace; a pulled page is a span whose events' deliveries are its children. (Its own
//! test binary, the tests one at a time: the span exporter is process-wide.)

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// One hub at a time: the span exporter is process-wide.
static ONE_HUB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP traces endpoint keeping every span it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    async fn start(&self) -> String {
        let app = Router::new()
            .route("/v1/traces", post(collect))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/v1/traces")
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    fn named(&self, name: &str, trace: &str) -> Option<Span> {
        self.spans()
            .into_iter()
            .find(|s| s.name == name && hex::encode(&s.trace_id) == trace)
    }
}

async fn collect(State(c): State<Collector>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut spans = c.spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            spans.extend(scope.spans);
        }
    }
    ""
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone())
        .and_then(|v| v.value)
}

/// Send one signed event with these trace headers; the headers the destination received.
async fn send_traced(
    hub: std::net::SocketAddr,
    rx: &TestReceiver,
    id: &str,
    trace_headers: &[(&'static str, &str)],
) -> axum::http::HeaderMap {
    let body = r#"{"type":"order.paid","amount":1}"#;
    let before = rx.count();
    let mut request = client()
        .post(format!("http://{hub}/ingest/orders"))
        .body(body.to_string());
    for (k, v) in signed(id, body).into_iter() {
        request = request.header(k, v);
    }
    for (k, v) in trace_headers {
        request = request.header(*k, *v);
    }
    let res = request.send().await.unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    wait_until(10, "the delivery", || async { rx.count() > before }).await;
    rx.received()[before].headers.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_one_trace_from_the_caller_through_ferry_to_the_destination() {
    let _one = ONE_HUB.lock().await;
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    write_config(&cfg, &http_destination("crm", &rx.url("/hook"), 3));
    add_settings(
        &cfg,
        &format!("  tracing:\n    otlp_endpoint: {endpoint}\n"),
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;

    // A valid caller context: Ferry's spans join its trace, `tracestate` goes on unchanged.
    let inbound = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let headers = send_traced(
        hub.addr(),
        &rx,
        "evt_traced",
        &[
            ("traceparent", &inbound),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    let outbound = headers["traceparent"].to_str().unwrap().to_string();
    let parts: Vec<&str> = outbound.split('-').collect();
    assert_eq!(parts.len(), 4, "{outbound}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{outbound}"
    );
    assert_ne!(
        parts[2], CALLER_SPAN,
        "the caller's span was passed on as Ferry's"
    );
    assert_eq!(headers["tracestate"], "congo=t61rcWkgMzE");

    wait_until(10, "the attempt span exported", || async {
        collector.named("ferry.attempt", TRACE).is_some()
    })
    .await;
    let ingress = collector
        .named("ferry.ingress", TRACE)
        .expect("ingress span");
    let attempt = collector.named("ferry.attempt", TRACE).unwrap();
    // The caller's span is the parent of Ferry's ingress span.
    assert_eq!(hex::encode(&ingress.parent_span_id), CALLER_SPAN);
    assert_eq!(
        attribute(&ingress, "http.response.status_code"),
        Some(AnyValue::IntValue(202))
    );
    // Signature, steps and commit are children of the ingress span.
    for phase in ["ferry.signature", "ferry.steps", "ferry.commit"] {
        let span = collector
            .named(phase, TRACE)
            .unwrap_or_else(|| panic!("no {phase} span in {:?}", collector.spans()));
        assert_eq!(span.parent_span_id, ingress.span_id, "{phase}");
    }
    // The attempt: a child of the ingress span, and the parent the destination was told.
    assert_eq!(attempt.parent_span_id, ingress.span_id);
    assert_eq!(hex::encode(&attempt.span_id), parts[2]);
    assert_eq!(
        attribute(&attempt, "http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );
    assert_eq!(
        attribute(&attempt, "ferry.attempt"),
        Some(AnyValue::IntValue(1))
    );
    assert_eq!(
        attribute(&attempt, "ferry.destination"),
        Some(AnyValue::StringValue("crm".into()))
    );

    // An invalid `traceparent` (upper-case hex) is dropped with its `tracestate`: a new
    // trace starts at Ferry.
    let headers = send_traced(
        hub.addr(),
        &rx,
        "evt_invalid",
        &[
            (
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    let outbound = headers["traceparent"].to_str().unwrap().to_string();
    let fresh = ferry_trace::TraceParent::parse(&outbound).expect("a valid traceparent");
    let fresh_trace = hex::encode(fresh.trace_id);
    assert_ne!(fresh_trace, TRACE);
    assert!(headers.get("tracestate").is_none(), "{headers:?}");
    wait_until(10, "the new trace's spans", || async {
        collector.named("ferry.attempt", &fresh_trace).is_some()
    })
    .await;
    let root = collector.named("ferry.ingress", &fresh_trace).unwrap();
    assert!(root.parent_span_id.is_empty(), "a new trace has no parent");

    // A refused request is traced too: its ingress span carries the problem.
    let res = client()
        .post(format!("http://{}/ingest/orders", hub.addr()))
        .header(
            "traceparent",
            format!("00-{}-{CALLER_SPAN}-01", "a".repeat(32)),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    hub.shutdown().await.unwrap();
    let refused = collector
        .named("ferry.ingress", &"a".repeat(32))
        .expect("the refused request's span, flushed at shutdown");
    assert_eq!(
        attribute(&refused, "http.response.status_code"),
        Some(AnyValue::IntValue(401))
    );
    assert!(attribute(&refused, "error.type").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_page_is_the_parent_of_its_events_deliveries() {
    let _one = ONE_HUB.lock().await;
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let api = common::pages::PageServer::start(common::pages::Paging::Token, 3, 10).await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    common::pages::write_token_pull_to(&cfg, &api, "* * * * * *", &rx.url("/in"));
    add_settings(
        &cfg,
        &format!("  tracing:\n    otlp_endpoint: {endpoint}\n"),
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    wait_until(20, "3 records delivered", || async { rx.count() >= 3 }).await;
    hub.shutdown().await.unwrap();

    let delivered = &rx.received()[0];
    let sent = ferry_trace::TraceParent::parse(delivered.headers["traceparent"].to_str().unwrap())
        .expect("a delivery of a pulled record carries a traceparent");
    let trace = hex::encode(sent.trace_id);
    let page = collector
        .named("ferry.pull", &trace)
        .unwrap_or_else(|| panic!("no page span in {:?}", collector.spans()));
    assert!(page.parent_span_id.is_empty(), "a page starts its trace");
    assert_eq!(
        attribute(&page, "ferry.records"),
        Some(AnyValue::IntValue(3))
    );
    let attempt = collector
        .spans()
        .into_iter()
        .find(|s| s.name == "ferry.attempt" && s.span_id == sent.span_id.to_vec())
        .expect("the attempt span the destination was told of");
    assert_eq!(attempt.parent_span_id, page.span_id);
}
