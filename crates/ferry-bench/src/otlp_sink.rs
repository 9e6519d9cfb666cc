//! An OTLP/HTTP traces endpoint for `--trace-sample`: accepts every export (200) and
//! counts requests and bytes, so the hub's span export is measured against a collector that
//! keeps up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;

/// What the sink received.
#[derive(Debug, Default)]
pub struct OtlpSink {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

/// Start the sink on loopback: its address and counters.
pub async fn start() -> anyhow::Result<(SocketAddr, Arc<OtlpSink>)> {
    let sink = Arc::new(OtlpSink::default());
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, sink))
}

async fn export(State(sink): State<Arc<OtlpSink>>, body: Bytes) -> &'static str {
    sink.requests.fetch_add(1, Ordering::Relaxed);
    sink.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    ""
}
