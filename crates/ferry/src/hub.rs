//! The hub: assembles store, delivery engine and HTTP server from a config, and stops them in
//! the right order. Crash-only: start-up is recovery (claims of a killed process are released).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use ferry_config::Config;
use ferry_delivery::DeliveryEngine;
use ferry_store::Store;
use tokio::task::JoinHandle;

use crate::admin::TokenGate;
use crate::assembly::{assemble_serving, hub_egress_policy};
use crate::at_rest::AtRest;
use crate::backend::{HubStore, StoreChoice};
use crate::backlog::BacklogMonitor;
use crate::clock::now_ms;
use crate::intake::Intakes;
use crate::notify::Notifier;
use crate::pull::Pullers;
use crate::server::{BodyLimits, ConnectionLimits};
use crate::{admin, alerts, ingress, server, telemetry};
use tokio_util::sync::CancellationToken;

/// How to run a hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub config: Config,
    /// Where the embedded store lives (unless the store is PostgreSQL).
    pub data_dir: PathBuf,
    /// A PostgreSQL URL for the store (`ferry serve --store`): overrides
    /// `settings.store.postgres`. `None`: as the config says.
    pub store_url: Option<String>,
    /// Overrides `settings.listen` (e.g. `127.0.0.1:0` in tests).
    pub listen: Option<SocketAddr>,
    /// What this node does: everything, or only ingress and the admin API, or only
    /// delivery and the background sources (`ferry serve --role`).
    pub role: Role,
    /// Serve only the tenants of this data region (`ferry serve --region`); `None`: every
    /// tenant.
    pub region: Option<String>,
}

/// What a node does. Several nodes on one shared store can split the work, so ingress and
/// delivery scale apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Ingress, the admin API, delivery, pulls, queue sources, purge, alerts.
    #[default]
    All,
    /// Ingress and the admin API; nothing is delivered here (stored deliveries wait for a
    /// `worker` node).
    Api,
    /// Delivery, pulls, queue sources, the retention purge, alerts and synthetic probes;
    /// HTTP serves only `/healthz`, `/readyz` and `/metrics`.
    Worker,
}

impl Role {
    /// Whether the node runs the lanes and the background work.
    pub fn delivers(self) -> bool {
        self != Role::Api
    }

    /// Whether the node serves ingress and the admin API.
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }
}

/// A started hub.
pub struct RunningHub {
    addr: SocketAddr,
    /// The admin listener's address, when `settings.admin.listen` puts it apart.
    admin_addr: Option<SocketAddr>,
    store: HubStore,
    engine: Arc<DeliveryEngine>,
    /// One task per listener.
    servers: Vec<JoinHandle<()>>,
    /// Stops the listeners.
    stop: CancellationToken,
    /// Stops the backlog monitor, the owner notifier, the pullers and the queue sources.
    background: CancellationToken,
    /// One task per pull flow.
    pullers: Pullers,
    /// One task per queue flow.
    intakes: Intakes,
    /// The retention purge, when the config declares a retention.
    purge: Option<JoinHandle<()>>,
    /// The alert rules' evaluation and the dispatch of their notifications (on a node that
    /// delivers).
    alert_tasks: Option<[JoinHandle<()>; 2]>,
    /// The scheduled synthetic transactions, one task per flow with an `every`.
    probe_tasks: Vec<JoinHandle<()>>,
    /// The backlog monitor and the owner notifier.
    watchers: Vec<JoinHandle<()>>,
    /// The span exporter, when `settings.tracing.otlp_endpoint` is set.
    traces: Option<Arc<ferry_trace::Exporting>>,
    grace: Duration,
}

impl RunningHub {
    /// Open the store, recover, start the delivery lanes and serve HTTP.
    pub async fn start(mut opts: HubOptions) -> Result<Self> {
        // A regional node keeps only its region's flows, before anything is built from them.
        let tenancy = crate::tenancy::Tenancy::apply(&mut opts.config, opts.region.as_deref())?;
        // The recorder must exist before the lanes start: they set gauges (breaker state,
        // paused) once, at start, and a gauge set before the recorder is installed is lost.
        let _ = telemetry::metrics_handle();
        let traces = start_traces(&opts.config)?;
        let choice = StoreChoice::resolve(
            &opts.config,
            opts.store_url.as_deref(),
            opts.data_dir.clone(),
        )?;
        let store = HubStore::open(&choice).await?;
        if opts.role != Role::All && !store.shared() {
            anyhow::bail!(
                "--role {:?} splits the work between nodes, which needs a store they share: \
                 set settings.store.postgres or --store (the embedded store in the data dir serves one node, --role all)",
                opts.role
            );
        }
        let delivers = opts.role.delivers();
        // On a shared store, the nodes divide rate limits among them: known before any lane
        // starts.
        let membership = match store.postgres() {
            Some(pg) => Some(
                crate::membership::Membership::join(
                    pg,
                    delivers,
                    tenancy.region.clone(),
                    tenancy.flow_regions.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let dyn_store: Arc<dyn Store> = store.handle();
        // Encryption at rest: its keys are read and checked against the store's data keys
        // before anything is accepted or delivered.
        let at_rest = AtRest::open(&opts.config, dyn_store.clone()).await?;
        let assembly = assemble_serving(&opts.config, at_rest.clone())?;
        // A store of its own: whatever was in flight when the last run stopped is due again
        // now. A shared store: other nodes may be delivering; what a dead node held is due
        // again when its leases end.
        if !store.shared() {
            let released = dyn_store.release_all_claims(now_ms()).await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "recovered deliveries that were in flight when the last run stopped"
                );
            }
        }
        let engine = Arc::new(if delivers {
            DeliveryEngine::start(dyn_store.clone(), assembly.lanes).await?
        } else {
            DeliveryEngine::start_standby(dyn_store.clone(), assembly.lanes).await?
        });
        if let Some((membership, live)) = &membership {
            // The cluster's limits from the first sends on.
            membership.share(&engine.rate_shares(), live);
        }

        let waker: ingress::LaneWaker = {
            let engine = engine.clone();
            Arc::new(move |lane| engine.wake(lane))
        };
        let lane_keys: Vec<_> = assembly
            .routes
            .values()
            .flat_map(|r| r.lanes.iter())
            .chain(assembly.pulls.iter().flat_map(|p| p.lanes.iter()))
            .chain(assembly.queues.values().flat_map(|q| q.lanes.iter()))
            .map(|l| l.key.clone())
            .collect();
        let background = CancellationToken::new();
        let backlog = Arc::new(BacklogMonitor::default());
        backlog.refresh(dyn_store.as_ref(), &lane_keys).await;
        let mut watchers =
            vec![backlog.spawn(dyn_store.clone(), lane_keys.clone(), background.clone())];
        if let Some((membership, live)) = membership {
            // Another node's pause or resume holds here within a second.
            watchers.push(engine.follow_store_pauses(Duration::from_secs(1), background.clone()));
            // Rate limits are the cluster's: divided by the delivering nodes alive.
            watchers.push(membership.spawn(engine.rate_shares(), live, background.clone()));
        }
        if delivers && let Some(pg) = store.postgres() {
            // Work another node stored (an api node's events, a replay) wakes the lane now.
            watchers.push(follow_lane_work(
                pg.lane_work()?,
                waker.clone(),
                background.clone(),
            ));
        }
        if let Some(notifier) =
            Notifier::from_config(&opts.config, hub_egress_policy(&opts.config)?)?
        {
            watchers.push(notifier.spawn(engine.subscribe(), background.clone()));
        }
        let pull_specs = assembly.pulls.clone();
        let pullers = Pullers::start(
            if delivers { assembly.pulls } else { Vec::new() },
            dyn_store.clone(),
            waker.clone(),
            backlog.clone(),
            background.clone(),
        )?;
        let routes = Arc::new(assembly.routes);
        let queues = Arc::new(assembly.queues);
        // Synthetic transactions: on their schedules, and `ferry probe`.
        let prober = Arc::new(crate::synthetic::Prober::new(
            &opts.config,
            &routes,
            &queues,
            &pull_specs,
            dyn_store.clone(),
            waker.clone(),
        )?);
        let probe_tasks = if delivers {
            prober.spawn_schedules(background.clone())
        } else {
            Vec::new()
        };
        let (alerts, alert_tasks) = if delivers {
            let (board, tasks) = start_alerts(
                &opts.config,
                alerts::Sources {
                    engine: engine.clone(),
                    backlog: backlog.clone(),
                    pulls: pullers.board(),
                    store: dyn_store.clone(),
                    prober: prober.clone(),
                },
                &background,
            )?;
            (board, Some(tasks))
        } else {
            (Arc::new(alerts::AlertBoard::default()), None)
        };
        let no_queues = Default::default();
        let intakes = Intakes::start(
            if delivers { &queues } else { &no_queues },
            dyn_store.clone(),
            waker.clone(),
            backlog.clone(),
            background.clone(),
        );
        let purges = Arc::new(crate::retention::PurgeLog::default());
        let purge = if delivers {
            crate::retention::spawn_purge(
                dyn_store.clone(),
                crate::retention::rules(&opts.config),
                opts.config.settings.protection.purge_every,
                purges.clone(),
                background.clone(),
            )
        } else {
            None
        };
        let wake_all: Arc<dyn Fn() + Send + Sync> = {
            let engine = engine.clone();
            Arc::new(move || lane_keys.iter().for_each(|l| engine.wake(l)))
        };
        let settings = &opts.config.settings;
        let mut public = ops_router(dyn_store.clone());
        if opts.role.serves_api() {
            public = public.merge(ingress::router(ingress::IngressState {
                routes,
                store: dyn_store.clone(),
                wake: waker,
                backlog,
                fresh: Arc::new(engine.fresh_lanes()),
                body: Arc::new(BodyLimits::from_settings(&settings.server)),
                foreign: Arc::new(tenancy.foreign.clone()),
            }));
        }
        // The operator's side: the admin API and `/metrics`, on the public listener or on
        // `settings.admin.listen`.
        let admin = admin::router(
            admin::AdminState {
                store: dyn_store.clone(),
                engine: engine.clone(),
                wake_all,
                pulls: pullers.board(),
                queues,
                systems: Arc::new(admin::systems::SystemCatalog::from_config(&opts.config)),
                datamap: assembly.datamap.clone(),
                at_rest,
                alerts,
                prober,
                retention: Arc::new(crate::retention::RetentionView {
                    config: opts.config.clone(),
                    purges,
                }),
                foreign_flows: tenancy.foreign_flows.clone(),
            },
            TokenGate::admin_with_tenants(assembly.admin_token, tenancy.tokens.clone()),
        );
        let metrics = metrics_router(
            store.stats_source(),
            TokenGate::metrics(assembly.metrics_token),
        );
        let operator = if opts.role.serves_api() {
            admin.merge(metrics)
        } else {
            metrics
        };

        let limits = ConnectionLimits::from_settings(&settings.server);
        let stop = CancellationToken::new();
        let listen = opts.listen.unwrap_or(settings.listen);
        let listener = server::bind(listen).await?;
        let addr = listener.local_addr()?;
        let mut servers = Vec::new();
        let admin_addr = match settings.admin.listen {
            Some(admin_listen) => {
                let admin_listener = server::bind(admin_listen).await?;
                let admin_addr = admin_listener.local_addr()?;
                // Health answers there too, for a probe that only reaches the admin side.
                let admin_app = operator.merge(ops_router(dyn_store.clone()));
                servers.push(spawn_server(admin_listener, admin_app, &limits, &stop));
                servers.push(spawn_server(listener, public, &limits, &stop));
                tracing::info!(%admin_addr, "admin API and /metrics listen apart");
                Some(admin_addr)
            }
            None => {
                servers.push(spawn_server(
                    listener,
                    public.merge(operator),
                    &limits,
                    &stop,
                ));
                None
            }
        };
        tracing::info!(%addr, store = %store.describe(), role = ?opts.role, "ferry is serving");
        Ok(Self {
            addr,
            admin_addr,
            store,
            engine,
            servers,
            stop,
            background,
            pullers,
            intakes,
            purge,
            alert_tasks,
            probe_tasks,
            watchers,
            traces,
            grace: opts.config.settings.delivery.shutdown_grace,
        })
    }

    /// The address the HTTP server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the admin API and `/metrics` listen: `settings.admin.listen`'s bound address,
    /// or the main address when they share it.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr.unwrap_or(self.addr)
    }

    /// Test hook: while `reason` is set, every store commit fails with it, as on a full
    /// disk; `None` heals (see `SqliteStore::fail_commits`).
    #[doc(hidden)]
    pub fn fail_commits(&self, reason: Option<&str>) {
        self.store.fail_commits(reason);
    }

    /// The store (for in-process observers such as `ferry demo`).
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.handle()
    }

    /// Graceful stop: stop accepting, let in-flight requests and deliveries finish (up to the
    /// grace period), release what is left back to the store, close the store.
    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        self.background.cancel();
        // A run stopped mid-way resumes from its committed cursor at the next start.
        self.pullers.join().await;
        // A queue source finishes the batch it commits and lets go of the rest: the broker
        // delivers it again at the next start.
        self.intakes.join().await;
        // A purge step in progress commits or not as a whole; the next start purges again.
        if let Some(purge) = self.purge
            && let Err(e) = purge.await
        {
            tracing::warn!(error = %e, "retention purge task failed");
        }
        // The evaluation holds the engine, which must be ours alone to drain; the dispatcher
        // sends the pending digests once, within the grace period.
        for task in self.probe_tasks.into_iter().chain(self.watchers) {
            let _ = task.await;
        }
        if let Some([evaluation, dispatch]) = self.alert_tasks {
            let _ = evaluation.await;
            if tokio::time::timeout(self.grace, dispatch).await.is_err() {
                tracing::warn!("pending alert digests were not sent within the shutdown grace");
            }
        }
        for server in self.servers {
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "HTTP server task failed");
            }
        }
        match sole_owner(self.engine, self.grace).await {
            Some(engine) => engine.shutdown(self.grace).await,
            None => tracing::warn!("delivery engine still referenced at shutdown; skipping drain"),
        }
        self.store.close(self.grace).await;
        // The last spans (the drain's attempts) are exported; the exporter's wait for its
        // thread must not hold a runtime worker.
        if let Some(traces) = self.traces {
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
        tracing::info!("ferry stopped");
        Ok(())
    }
}

/// Take `shared` back once every other holder has let go, waiting up to `within` for the
/// last ones (a connection task drops its copy of the app just after it finishes).
pub(crate) async fn sole_owner<T>(mut shared: Arc<T>, within: Duration) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match Arc::try_unwrap(shared) {
            Ok(owned) => return Some(owned),
            Err(still_shared) if tokio::time::Instant::now() < deadline => {
                shared = still_shared;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => return None,
        }
    }
}

/// Wake each lane a notification names, until `stop`.
fn follow_lane_work(
    mut work: tokio::sync::mpsc::UnboundedReceiver<ferry_store::LaneKey>,
    wake: ingress::LaneWaker,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                lane = work.recv() => match lane {
                    Some(lane) => wake(&lane),
                    None => return,
                },
            }
        }
    })
}

/// Start exporting spans when `settings.tracing.otlp_endpoint` is set.
fn start_traces(config: &Config) -> Result<Option<Arc<ferry_trace::Exporting>>> {
    let t = &config.settings.tracing;
    let Some(endpoint) = &t.otlp_endpoint else {
        return Ok(None);
    };
    let settings = ferry_trace::TraceSettings {
        endpoint: endpoint.clone(),
        sample_ratio: t.sample_ratio,
        timeout: t.timeout,
        service_name: t.service_name.clone(),
        max_queue: t.max_queue,
    };
    let exporting = ferry_trace::install(&settings, tokio::runtime::Handle::current())
        .map_err(|e| anyhow::anyhow!("settings.tracing: {e}"))?;
    tracing::info!(
        sample_ratio = t.sample_ratio,
        "exporting traces over OTLP/HTTP"
    );
    Ok(Some(exporting))
}

/// Start the alert rules and the dispatcher of their notifications: the board the admin
/// API reads, and the two tasks (evaluation, dispatch).
fn start_alerts(
    config: &Config,
    sources: alerts::Sources,
    background: &CancellationToken,
) -> Result<(Arc<alerts::AlertBoard>, [JoinHandle<()>; 2])> {
    let dispatcher = alerts::dispatch::Dispatcher::from_config(config, hub_egress_policy(config)?)?;
    let (edges, queue) = tokio::sync::mpsc::channel(alerts::dispatch::QUEUE);
    let dispatch = dispatcher.spawn(queue, background.clone());
    let board = Arc::new(alerts::AlertBoard::default());
    let evaluation = alerts::spawn(config, sources, board.clone(), edges, background.clone());
    Ok((board, [evaluation, dispatch]))
}

/// Serve `app` on `listener` until `stop` is cancelled.
fn spawn_server(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &ConnectionLimits,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(server::serve(listener, app, limits.clone(), async move {
        stop.cancelled().await
    }))
}

/// `/healthz` (the process answers) and `/readyz` (the store can commit: 503 with the
/// reason, e.g. a full disk, until a commit succeeds again).
fn ops_router(store: Arc<dyn Store>) -> Router {
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
}

/// `/metrics` (Prometheus, with the store's group-commit counters read at each scrape),
/// behind `gate` when `settings.metrics.token` is set.
fn metrics_router(stats: crate::backend::StatsSource, gate: TokenGate) -> Router {
    let handle = telemetry::metrics_handle();
    let commits = metrics::counter!(ferry_metrics::STORE_COMMITS_TOTAL);
    let commands = metrics::counter!(ferry_metrics::STORE_COMMANDS_TOTAL);
    let deferred = metrics::counter!(ferry_metrics::STORE_DEFERRED_COMMITS_TOTAL);
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                // Commands per commit is group commit's batching (docs/benchmarks.md).
                let stats = stats();
                commits.absolute(stats.commits);
                commands.absolute(stats.commands);
                deferred.absolute(stats.deferred);
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
        .layer(axum::middleware::from_fn_with_state(
            gate,
            admin::require_token,
        ))
}
