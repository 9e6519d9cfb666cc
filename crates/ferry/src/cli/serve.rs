//! `ferry serve`.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ferry_config::{Config, LoadOptions};

use crate::hub::{HubOptions, RunningHub};

/// Arguments of `ferry serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config directory (YAML files with settings, systems and flows).
    #[arg(long, short, env = "FERRY_CONFIG")]
    pub config: PathBuf,
    /// Where the embedded store lives (default: settings.data_dir, else ./ferry-data).
    #[arg(long, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep events and deliveries in PostgreSQL at this URL (`postgres://user@host:5432/db`)
    /// instead of settings.store; several nodes may share it.
    #[arg(long, env = "FERRY_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// What this node does: `all` (default), `api` (ingress and the admin API only) or
    /// `worker` (delivery, pulls, queue sources, purge, alerts only). `api` and `worker`
    /// need a shared store (settings.store.postgres or --store).
    #[arg(long, env = "FERRY_ROLE", value_enum, default_value_t = crate::hub::Role::All)]
    pub role: crate::hub::Role,
    /// Serve only the tenants of this data region (`tenants.<name>.region`): accept and
    /// deliver their events, and answer the other regions' webhooks `421`. Tenants without
    /// a region and flows of no tenant are served by every node.
    #[arg(long, env = "FERRY_REGION")]
    pub region: Option<String>,
    /// Listen address (default: settings.listen).
    #[arg(long, env = "FERRY_LISTEN")]
    pub listen: Option<SocketAddr>,
}

/// Load and validate a config directory and its schema files, and compile its VRL programs
/// and templates, printing every problem; `None` when invalid. (The schema files, programs
/// and templates are checked once the YAML is valid, as they are found through it.)
pub fn load_config(dir: &Path, resolve_secrets: bool) -> Option<Config> {
    load_config_counted(dir, resolve_secrets).map(|(config, _)| config)
}

/// [`load_config`], also counting the warnings it printed.
pub fn load_config_counted(dir: &Path, resolve_secrets: bool) -> Option<(Config, usize)> {
    let color = std::io::stderr().is_terminal();
    match ferry_config::load_dir(dir, &LoadOptions { resolve_secrets }) {
        Ok(loaded) => {
            // The schemas load (their categories known to the taxonomy), the policies'
            // keys are known, and no flow sends a system a category it may not receive;
            // every VRL program and template compiles. Each finding at its place.
            let (errors, warnings): (Vec<_>, Vec<_>) =
                crate::protect::check(&loaded.config, &loaded.sources)
                    .into_iter()
                    .chain(crate::transforms::check(&loaded.config, &loaded.sources))
                    .partition(|d| d.severity == ferry_config::Severity::Error);
            let mut all = Vec::new();
            all.extend(errors);
            let valid = all.is_empty();
            all.extend(loaded.warnings);
            all.extend(warnings);
            if !all.is_empty() {
                eprint!("{}", ferry_config::render(&all, color));
            }
            valid.then_some((loaded.config, all.len()))
        }
        Err(errors) => {
            let mut all = errors.errors;
            all.extend(errors.warnings);
            eprint!("{}", ferry_config::render(&all, color));
            None
        }
    }
}

/// Run `ferry serve` until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs, log_json: bool) -> Result<ExitCode> {
    let Some(config) = load_config(&args.config, true) else {
        eprintln!(
            "ferry: refusing to start with an invalid config ({})",
            args.config.display()
        );
        return Ok(ExitCode::from(2));
    };
    // From here on SIGTERM stops the hub gracefully, even one sent right after start-up.
    let signals = StopSignals::listen();
    // Held until the end: dropping it flushes the log file.
    let _log_guard = crate::telemetry::init_hub_logging(&config.settings.logs, log_json)
        .map_err(|e| anyhow::anyhow!("settings.logs.file: {e}"))?;
    let data_dir = args
        .data_dir
        .or_else(|| config.settings.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("ferry-data"));
    let hub = RunningHub::start(HubOptions {
        config,
        data_dir,
        store_url: args.store,
        listen: args.listen,
        role: args.role,
        region: args.region,
    })
    .await?;
    println!("ferry listening on http://{}", hub.addr());
    if hub.admin_addr() != hub.addr() {
        println!(
            "ferry admin API and /metrics on http://{}",
            hub.admin_addr()
        );
    }
    let _ = std::io::stdout().flush();
    signals.wait().await;
    tracing::info!("stopping: draining in-flight work");
    hub.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolve on SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    StopSignals::listen().wait().await;
}

/// SIGTERM and Ctrl-C (SIGINT), listened for from creation on: a signal that arrives before
/// [`StopSignals::wait`] is kept for it, instead of killing the process.
pub struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

/// The next signal on `signal`; never, without one.
#[cfg(unix)]
async fn recv_or_never(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

impl StopSignals {
    /// Start listening.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolve when one of them came (or comes).
    pub async fn wait(self) {
        #[cfg(unix)]
        {
            let (mut term, mut interrupt) = (self.term, self.interrupt);
            if term.is_none() && interrupt.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                _ = recv_or_never(term.as_mut()) => {}
                _ = recv_or_never(interrupt.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
