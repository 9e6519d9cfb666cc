//! `ferry retention report`: what each system's events Ferry keeps and for how long, per
//! flow each destination's declared retention against its source's (orphaned copies), and
//! the last purge. From a running hub's admin API; when none answers, from the config and
//! the data dir's store file (read-only).

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use ferry_store::Store;
use ferry_store::postgres::PgStore;
use ferry_store::sqlite::StoreReader;

use super::HubTarget;
use super::admin_cmds::client;
use super::audit_cmds::DataDirArgs;
use crate::backend::StoreChoice;
use crate::clock::rfc3339;
use crate::retention::{RetentionReport, report};

/// `ferry retention`.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Per system, the events Ferry keeps (how many, the oldest) and for how long; per flow,
    /// each destination's declared retention against its source's, flagging orphaned copies
    /// (a destination keeping longer than the source, or declaring none while the source has
    /// one); the last purge.
    #[command(
        after_help = "Examples:\n  ferry retention report --config ./ferry\n  ferry retention report --config ./ferry --data-dir /var/lib/ferry   # without a running hub\n  ferry retention report --json | jq '.flows[].destinations[] | select(.orphaned)'"
    )]
    Report(ReportArgs),
}

/// `ferry retention report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// Read the store file of this data dir instead of asking a hub (needs `--config`).
    #[arg(long, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Run a `ferry retention` command.
pub async fn run(cmd: RetentionCommand) -> Result<ExitCode> {
    let RetentionCommand::Report(args) = cmd;
    let report = if args.data_dir.is_some() {
        offline(&args).await?
    } else {
        match from_hub(&args).await {
            Ok(report) => report,
            Err(e) if args.target.config.is_some() && unreachable(&e) => {
                eprintln!("no hub answers ({e:#}); reading the store instead");
                offline(&args).await?
            }
            Err(e) => return Err(e),
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(ExitCode::SUCCESS)
}

async fn from_hub(args: &ReportArgs) -> Result<RetentionReport> {
    client(&args.target)?.retention().await
}

/// Whether `e` says no hub listens (rather than that one answered with an error).
fn unreachable(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<reqwest::Error>())
        .any(|r| r.is_connect())
}

/// The report from the config and the store (the data dir's file, or the PostgreSQL
/// database of `settings.store`), without a hub.
async fn offline(args: &ReportArgs) -> Result<RetentionReport> {
    let Some(config_dir) = &args.target.config else {
        bail!("reading a data dir needs the config too: pass --config");
    };
    let Some(config) = super::serve::load_config(config_dir, false) else {
        bail!("the config in {} is invalid", config_dir.display());
    };
    let source = DataDirArgs {
        data_dir: args.data_dir.clone(),
        config: Some(config_dir.clone()),
        store: None,
    }
    .source()?;
    let holdings = match source {
        StoreChoice::Sqlite(data_dir) => StoreReader::open(&data_dir)
            .and_then(|r| r.holdings())
            .map_err(|e| anyhow::anyhow!("reading the store in {}: {e}", data_dir.display()))?,
        StoreChoice::Postgres { options, setting } => {
            let store = PgStore::open(options)
                .await
                .map_err(|e| anyhow::anyhow!("reading the store ({setting}): {e}"))?;
            let holdings = store.holdings().await;
            let _ = store.close().await;
            holdings.map_err(|e| anyhow::anyhow!("reading the store ({setting}): {e}"))?
        }
    };
    Ok(report(&config, &holdings, None))
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    t
}

fn or_dash(v: Option<&String>) -> String {
    v.cloned().unwrap_or_else(|| "-".to_owned())
}

fn print(r: &RetentionReport) {
    let mut systems = table(&["system", "role", "retention", "events kept", "oldest"]);
    for s in &r.systems {
        let role = match (s.source, s.destination) {
            (true, true) => "source, destination",
            (true, false) => "source",
            (false, true) => "destination",
            (false, false) => "-",
        };
        systems.add_row([
            s.system.clone(),
            role.to_owned(),
            or_dash(s.retention.as_ref()),
            s.events.to_string(),
            s.oldest_received_at.map_or_else(|| "-".to_owned(), rfc3339),
        ]);
    }
    println!("Systems (a source's retention is how long Ferry keeps the events it sends)");
    println!("{systems}");
    if !r.categories.is_empty() {
        let mut categories = table(&["category", "retention"]);
        for c in &r.categories {
            categories.add_row([c.category.clone(), c.retention.clone()]);
        }
        println!("Data categories (an event is kept for the shortest retention that applies)");
        println!("{categories}");
    }
    let mut flows = table(&[
        "flow",
        "source",
        "destination",
        "system",
        "retention",
        "orphaned copies",
    ]);
    for f in &r.flows {
        for d in &f.destinations {
            flows.add_row([
                f.flow.clone(),
                format!(
                    "{} ({})",
                    f.source_system,
                    or_dash(f.source_retention.as_ref())
                ),
                d.destination.clone(),
                d.system.clone(),
                or_dash(d.retention.as_ref()),
                d.orphaned.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
    }
    println!("Flows");
    println!("{flows}");
    match r.orphaned {
        0 => println!("no destination keeps copies longer than its source"),
        n => println!(
            "{n} destination{} may keep orphaned copies: align their retention with the source's, or record why",
            if n == 1 { "" } else { "s" }
        ),
    }
    match &r.last_purge {
        Some(p) => println!(
            "purge every {}; last at {}: {} events deleted ({} deliveries, {} attempts), {} held past retention by waiting deliveries",
            r.purge_every,
            rfc3339(p.at),
            p.events,
            p.deliveries,
            p.attempts,
            p.held
        ),
        None => println!("purge every {} (no purge run known here)", r.purge_every),
    }
}
