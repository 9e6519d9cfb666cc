//! `ferry-bench ceiling`: the fastest HTTP endpoint this stack can offer, for wrk.

use std::process::ExitCode;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use tokio::net::TcpListener;

use crate::cli::CeilingArgs;

async fn answer(method: Method, body: Bytes) -> StatusCode {
    // Reading the whole body (the extractor did) is part of the work being measured.
    drop(body);
    if method == Method::POST {
        StatusCode::OK
    } else {
        StatusCode::METHOD_NOT_ALLOWED
    }
}

/// Serve until Ctrl-C or SIGTERM.
pub async fn serve(args: CeilingArgs) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(answer);
    println!("ferry-bench ceiling listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
