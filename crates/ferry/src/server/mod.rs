//! The HTTP server, bounded: at most `max_connections` connections per listener (one more is
//! answered `503` and closed), a deadline for each request's headers, an idle timeout for
//! connections, and bodies read within a deadline, a minimum rate and a global memory budget
//! ([`body`]). `axum::serve` offers none of these knobs, so connections are accepted and
//! driven here, the way it does it, with hyper's own builder.

pub mod body;
mod idle;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

pub use body::{BodyBudget, BodyLimits, BudgetHold, read_body};
use idle::IdleTimeout;

/// The connection-level limits of `settings.server`.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// How long a stopping server waits for its connections to finish their requests.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// File descriptors kept out of the connection cap for everything else the hub opens: the
/// store's files, outbound connections to destinations, the admin listener.
pub const RESERVED_FDS: usize = 256;

impl ConnectionLimits {
    /// The limits of `settings.server`, with the connection cap lowered where the process's
    /// file-descriptor limit could not hold it plus [`RESERVED_FDS`] (so that a flood of
    /// connections is refused cleanly instead of starving deliveries and the store of
    /// descriptors).
    pub fn from_settings(s: &ferry_config::ServerSettings) -> Self {
        let configured = s.max_connections.max(1);
        let max_connections = match open_files_limit() {
            Some(limit) => fit_to_fd_limit(configured, limit),
            None => configured,
        };
        if max_connections < configured {
            tracing::warn!(
                configured,
                max_connections,
                "settings.server.max_connections lowered to fit the open-files limit \
                 (ulimit -n) with {RESERVED_FDS} descriptors kept for the store and deliveries"
            );
        }
        Self {
            max_connections,
            header_timeout: s.header_timeout,
            idle_timeout: s.idle_timeout,
        }
    }
}

/// The connection cap that `limit` open files can hold besides [`RESERVED_FDS`] (at least
/// 16, so a hub with a tiny limit still serves).
fn fit_to_fd_limit(configured: usize, limit: usize) -> usize {
    configured.min(limit.saturating_sub(RESERVED_FDS).max(16))
}

/// The soft limit on open files of this process, where the system tells it (Linux: the
/// `Max open files` line of `/proc/self/limits`; read there rather than through `getrlimit`,
/// which needs `unsafe` FFI or another dependency).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The problem a connection over the cap is told before it is closed.
const REFUSAL_BODY: &str = "{\"type\":\"urn:ferry:problem:too_many_connections\",\
\"title\":\"Too many connections\",\"status\":503,\"code\":\"too_many_connections\",\
\"detail\":\"the server holds settings.server.max_connections connections; retry later\"}";

/// Serve `app` on `listener` until `shutdown` resolves, then stop accepting, let open
/// connections finish their requests, and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    // Connections hold a receiver; shutdown is announced by dropping the sender, and waits
    // for every receiver to be dropped.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(ferry_metrics::HTTP_CONNECTIONS_REFUSED_TOTAL).increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
        let service = app.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(axum::body::Body::new)
        });
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            {
                // The connection owns the app (and so the store and the engine): it is
                // dropped before the receiver, so that shutdown, which waits for the
                // receivers, finds the app's state released.
                let conn = builder.serve_connection_with_upgrades(io, service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    result = conn.as_mut() => finished(result),
                    _ = stop.changed() => {
                        conn.as_mut().graceful_shutdown();
                        finished(conn.await);
                    }
                }
            }
            drop(slot);
            drop(stop);
        });
    }
    drop(stop_rx);
    drop(listener);
    // Tell every connection to finish gracefully, and wait until all are gone (a peer that
    // never reads its answer is not waited for beyond the bound).
    let _ = stop_tx.send(());
    if tokio::time::timeout(SHUTDOWN_WAIT, stop_tx.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_WAIT:?}; closing them");
    }
}

fn finished(result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

/// Tell a connection over the cap why it is refused, briefly, and close it.
async fn refuse(mut stream: TcpStream) {
    let refusal = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    );
    let write = async {
        stream.write_all(refusal.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// An accept error: out of file descriptors or memory are waited out (the connections that
/// hold them end by themselves); others are logged.
async fn accept_failed(e: &std::io::Error) {
    metrics::counter!(ferry_metrics::HTTP_ACCEPT_ERRORS_TOTAL).increment(1);
    tracing::warn!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Bind `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest_of_the_hub() {
        assert_eq!(fit_to_fd_limit(1024, 20_000), 1024);
        assert_eq!(fit_to_fd_limit(1024, 1024), 768);
        assert_eq!(fit_to_fd_limit(1024, 100), 16);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_files(limits), Some(1024));
        assert_eq!(
            parse_open_files("Max open files  unlimited unlimited files"),
            None
        );
    }
}
