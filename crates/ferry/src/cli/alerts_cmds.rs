//! `ferry alerts` (what a running hub's rules say now), `ferry probe` (its synthetic
//! transactions, now) and `ferry export prometheus-rules` (the rules for Prometheus).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

use super::HubTarget;
use super::admin_cmds::client;
use super::lane_cmds::age;
use crate::alerts::{AlertState, AlertView};
use crate::clock::now_ms;

/// `ferry alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// Also list the alerts that resolved recently.
    #[arg(long)]
    pub all: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `ferry probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// The flows to probe [default: every flow with a `synthetic` transaction].
    pub flows: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `ferry export`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write the hub's alert rules as a Prometheus rule file (for Prometheus and
    /// Alertmanager): one rule per rule kind and lane, with the thresholds of its tier and
    /// `tier`, `severity`, `team` and `channel` labels to route on.
    PrometheusRules(ExportArgs),
}

/// Arguments of `ferry export prometheus-rules`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The config directory.
    pub dir: PathBuf,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// List the firing and pending alerts (and the recently resolved, with `--all`).
pub async fn alerts(args: AlertsArgs) -> Result<ExitCode> {
    let mut answer = client(&args.target)?.alerts().await?;
    if !args.all {
        answer.resolved.clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let shown: Vec<&AlertView> = answer.active.iter().chain(&answer.resolved).collect();
    if shown.is_empty() {
        println!("no alerts");
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["state", "alert", "where", "tier", "to", "for", "what"]);
    for a in &shown {
        let place = match &a.destination {
            Some(d) => format!("{} → {d}", a.flow),
            None => a.flow.clone(),
        };
        let to = match (&a.team, &a.channel) {
            (Some(t), Some(c)) => format!("{t} ({c})"),
            (Some(t), None) => format!("{t} (no channel)"),
            _ => "-".to_string(),
        };
        let since = match a.state {
            AlertState::Resolved => a.resolved_at.unwrap_or(a.since),
            AlertState::Firing => a.fired_at.unwrap_or(a.since),
            AlertState::Pending => a.since,
        };
        table.add_row([
            a.state.as_str().to_string(),
            a.kind.as_str().to_string(),
            place,
            a.tier.clone(),
            to,
            age(now - since),
            a.summary.clone(),
        ]);
    }
    println!("{table}");
    for a in answer
        .active
        .iter()
        .filter(|a| a.state == AlertState::Firing)
    {
        println!("{}: runbook {}", a.id, a.runbook);
    }
    Ok(ExitCode::SUCCESS)
}

/// Run the synthetic transactions now; exit 1 when one failed (for a deploy pipeline).
pub async fn probe(args: ProbeArgs) -> Result<ExitCode> {
    let answer = client(&args.target)?.probe(&args.flows).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if answer.results.is_empty() {
        println!("no flow has a synthetic transaction");
    } else {
        let mut table = Table::new();
        table
            .load_preset(UTF8_BORDERS_ONLY)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(["flow", "result", "took", "deliveries", "why"]);
        for r in &answer.results {
            let deliveries: Vec<String> = r
                .deliveries
                .iter()
                .map(|d| format!("{} {}", d.destination, d.state))
                .collect();
            table.add_row([
                r.flow.clone(),
                if r.passed { "passed" } else { "FAILED" }.to_string(),
                format!("{} ms", r.took_ms),
                deliveries.join(", "),
                r.failure.clone().unwrap_or_default(),
            ]);
        }
        println!("{table}");
    }
    Ok(if answer.results.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `ferry export …`.
pub fn export(command: ExportCommand) -> Result<ExitCode> {
    match command {
        ExportCommand::PrometheusRules(args) => {
            let Some(config) = super::serve::load_config(&args.dir, false) else {
                bail!("the config in {} is invalid", args.dir.display());
            };
            let rules = crate::alerts::prometheus::rules_file(&config);
            match &args.output {
                Some(path) => std::fs::write(path, rules)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{rules}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
