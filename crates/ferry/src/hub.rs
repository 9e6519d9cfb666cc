//! The hub: assembles store, delivery engine and HTTP server from a config, and stops them in
//! the right order. Crash-only: start-up is recovery (claims of a killed process are released).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use ferry_config::Config;
use ferry_delivery::DeliveryEngine;
use ferry_store::Store;
use ferry_store::sqlite::{SqliteOptions, SqliteStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::assembly::{assemble, hub_egress_policy};
use crate::backlog::BacklogMonitor;
use crate::clock::now_ms;
use crate::notify::Notifier;
use crate::pull::Pullers;
use crate::{admin, ingress, telemetry};
use tokio_util::sync::CancellationToken;

/// How to run a hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub config: Config,
    /// Where the embedded store lives.
    pub data_dir: PathBuf,
    /// Overrides `settings.listen` (e.g. `127.0.0.1:0` in tests).
    pub listen: Option<SocketAddr>,
}

/// A started hub.
pub struct RunningHub {
    addr: SocketAddr,
    store: Arc<SqliteStore>,
    engine: Arc<DeliveryEngine>,
    server: JoinHandle<std::io::Result<()>>,
    stop: oneshot::Sender<()>,
    /// Stops the backlog monitor, the owner notifier and the pullers.
    background: CancellationToken,
    /// One task per pull flow.
    pullers: Pullers,
    grace: Duration,
}

impl RunningHub {
    /// Open the store, recover, start the delivery lanes and serve HTTP.
    pub async fn start(opts: HubOptions) -> Result<Self> {
        // The recorder must exist before the lanes start: they set gauges (breaker state,
        // paused) once, at start, and a gauge set before the recorder is installed is lost.
        let _ = telemetry::metrics_handle();
        let assembly = assemble(&opts.config)?;
        let store = Arc::new(
            SqliteStore::open(&opts.data_dir, SqliteOptions::default())
                .with_context(|| format!("opening the store in {}", opts.data_dir.display()))?,
        );
        let released = store.release_all_claims(now_ms()).await?;
        if released > 0 {
            tracing::info!(
                released,
                "recovered deliveries that were in flight when the last run stopped"
            );
        }
        let dyn_store: Arc<dyn Store> = store.clone();
        let engine = Arc::new(DeliveryEngine::start(dyn_store.clone(), assembly.lanes).await?);

        let waker: ingress::LaneWaker = {
            let engine = engine.clone();
            Arc::new(move |lane| engine.wake(lane))
        };
        let lane_keys: Vec<_> = assembly
            .routes
            .values()
            .flat_map(|r| r.lanes.iter())
            .chain(assembly.pulls.iter().flat_map(|p| p.lanes.iter()))
            .map(|l| l.key.clone())
            .collect();
        let background = CancellationToken::new();
        let backlog = Arc::new(BacklogMonitor::default());
        backlog.refresh(dyn_store.as_ref(), &lane_keys).await;
        backlog.spawn(dyn_store.clone(), lane_keys.clone(), background.clone());
        if let Some(notifier) =
            Notifier::from_config(&opts.config, hub_egress_policy(&opts.config)?)?
        {
            notifier.spawn(engine.subscribe(), background.clone());
        }
        let pullers = Pullers::start(
            assembly.pulls,
            dyn_store.clone(),
            waker.clone(),
            backlog.clone(),
            background.clone(),
        )?;
        let wake_all: Arc<dyn Fn() + Send + Sync> = {
            let engine = engine.clone();
            Arc::new(move || lane_keys.iter().for_each(|l| engine.wake(l)))
        };
        let app = Router::new()
            .merge(ingress::router(ingress::IngressState {
                routes: Arc::new(assembly.routes),
                store: dyn_store.clone(),
                wake: waker,
                backlog,
                fresh: Arc::new(engine.fresh_lanes()),
            }))
            .merge(admin::router(
                admin::AdminState {
                    store: dyn_store.clone(),
                    engine: engine.clone(),
                    wake_all,
                    pulls: pullers.board(),
                },
                assembly.admin_token,
            ))
            .merge(ops_router(dyn_store.clone(), store.clone()));

        let listen = opts.listen.unwrap_or(opts.config.settings.listen);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, data_dir = %opts.data_dir.display(), "ferry is serving");
        Ok(Self {
            addr,
            store,
            engine,
            server,
            stop,
            background,
            pullers,
            grace: opts.config.settings.delivery.shutdown_grace,
        })
    }

    /// The address the HTTP server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store (for in-process observers such as `ferry demo`).
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Graceful stop: stop accepting, let in-flight requests and deliveries finish (up to the
    /// grace period), release what is left back to the store, close the store.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(());
        self.background.cancel();
        // A run stopped mid-way resumes from its committed cursor at the next start.
        self.pullers.join().await;
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
        }
        match Arc::into_inner(self.engine) {
            Some(engine) => engine.shutdown(self.grace).await,
            None => tracing::warn!("delivery engine still referenced at shutdown; skipping drain"),
        }
        match Arc::into_inner(self.store) {
            Some(store) => {
                if let Err(e) = store.close().await {
                    tracing::warn!(error = %e, "closing the store");
                }
            }
            None => tracing::warn!(
                "store still referenced at shutdown; it closes when the last user drops it"
            ),
        }
        tracing::info!("ferry stopped");
        Ok(())
    }
}

/// `/healthz` (the process answers), `/readyz` (the store can commit: 503 with the reason,
/// e.g. a full disk, until a commit succeeds again), `/metrics` (Prometheus, with the
/// store's group-commit counters read at each scrape).
fn ops_router(store: Arc<dyn Store>, sqlite: Arc<SqliteStore>) -> Router {
    let handle = telemetry::metrics_handle();
    let commits = metrics::counter!("ferry_store_commits_total");
    let commands = metrics::counter!("ferry_store_commands_total");
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let store = store.clone();
                async move {
                    // `ping` is Err from a failed commit until a write commits again (it
                    // tries one itself then), so a load balancer stops sending meanwhile.
                    match store.ping().await {
                        Ok(()) => (StatusCode::OK, "ready\n".to_string()).into_response(),
                        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"))
                            .into_response(),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                // Commands per commit is group commit's batching (docs/benchmarks.md).
                let stats = sqlite.commit_stats();
                commits.absolute(stats.commits);
                commands.absolute(stats.commands);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        handle.render(),
                    )
                }
            }),
        )
}
