//! The `ferry` command line.

mod admin_cmds;
mod alerts_cmds;
mod audit_cmds;
mod browse;
mod datamap;
mod keys_cmds;
mod lane_cmds;
mod migrate;
mod rejected_cmds;
mod retention_cmds;
mod serve;
mod show;
mod test_cmd;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Ferry: a self-hosted integration hub. Accepts signed webhooks, keeps them durably, and
/// delivers them to your tools with retries, a dead-letter queue and replay.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log as JSON lines (for log shippers) instead of human-readable text.
    #[arg(long, global = true, env = "FERRY_LOG_JSON")]
    pub log_json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: ingress, store, delivery lanes, admin API.
    #[command(
        after_help = "Examples:\n  ferry serve --config examples/quickstart\n  ferry serve --config ./ferry --data-dir /var/lib/ferry --listen 0.0.0.0:8080"
    )]
    Serve(serve::ServeArgs),
    /// Bring the store's schema to this version (PostgreSQL or the embedded store), then
    /// exit. `ferry serve` migrates at start as well.
    #[command(
        after_help = "Examples:\n  ferry migrate --store postgres://ferry@db:5432/ferry\n  ferry migrate --config ./ferry   # settings.store, else settings.data_dir"
    )]
    Migrate(migrate::MigrateArgs),
    /// Check a config directory and print every error with file, line and field.
    #[command(
        after_help = "Examples:\n  ferry validate examples/quickstart\n  ferry validate ./ferry --skip-secrets   # in CI, where secrets are not set"
    )]
    Validate(validate::ValidateArgs),
    /// Run the fixture tests beside the flows (`*.test.yaml`): input events in, expected
    /// outputs per destination, drops, routes and refusals checked, through the hub's own
    /// code, without a network, a store or secrets. Exit 0 when all pass, 1 when one fails,
    /// 2 when the config is invalid.
    #[command(
        after_help = "Examples:\n  ferry test examples/quickstart\n  ferry test ./ferry --filter big-order\n  ferry test ./ferry --json | jq '.tests[] | select(.passed | not)'"
    )]
    Test(test_cmd::TestArgs),
    /// Browse and replay the dead-letter queue of a running hub.
    #[command(subcommand)]
    Dlq(admin_cmds::DlqCommand),
    /// Browse and replay the rejected records of a running hub: messages a queue source read
    /// that the flow refused (malformed JSON, a schema violation, a failed step).
    #[command(subcommand)]
    Rejected(rejected_cmds::RejectedCommand),
    /// Find events of a running hub: by the id their sender gave them (`--sender-id`, e.g.
    /// Stripe's evt_…), by flow and time; or show one event with its deliveries.
    #[command(
        after_help = "Examples:\n  ferry events --sender-id evt_1Q0bqYLkdIwHu7ix      # Stripe's id: the event, its deliveries\n  ferry events --flow stripe-billing --since 1h\n  ferry events fev_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b\n  ferry events --sender-id evt_1Q0bqYLkdIwHu7ix --json | jq '.deliveries[].state'"
    )]
    Events(browse::EventsArgs),
    /// List deliveries of a running hub in any state: by lane, time, sender id, and by what
    /// their attempts met (how many, error class, HTTP status).
    #[command(
        after_help = "Examples:\n  ferry deliveries --min-attempts 2 --since 24h          # which deliveries needed retries?\n  ferry deliveries --status 5xx --destination warehouse\n  ferry deliveries --error-class timeout --state delivered\n  ferry deliveries --sender-id evt_1Q0bqYLkdIwHu7ix"
    )]
    Deliveries(browse::DeliveriesArgs),
    /// Replay deliveries (delivered, retrying or dead) of a running hub, selected by event,
    /// delivery, flow, destination and time range.
    #[command(
        after_help = "Examples:\n  ferry replay --event fev_0193...\n  ferry replay --sender-id evt_1Q0bqYLkdIwHu7ix\n  ferry replay --delivery dlv_0193...\n  ferry replay --flow billing-events --destination crm --since 2h\n  ferry replay --flow billing-events --since 2026-11-24T09:00:00Z --until 2026-11-24T10:00:00Z --state delivered"
    )]
    Replay(admin_cmds::ReplayArgs),
    /// Show every delivery lane of a running hub: backlog, oldest waiting delivery, circuit
    /// breaker, 429 hold, pause; then its pull flows: last run, freshness against the SLA,
    /// next run (`--json` prints the lanes only; pulls: `GET /admin/v1/pulls`). With
    /// `--by system`, one row per receiving system instead, the worst first.
    #[command(
        after_help = "Examples:\n  ferry status --config examples/quickstart\n  ferry status --by system                 # per system: owner, tier, worst lane first\n  ferry status --json | jq '.[] | select(.gate.breaker != \"closed\")'"
    )]
    Status(lane_cmds::StatusArgs),
    /// Pause a destination of a flow: nothing is sent, events keep accumulating durably.
    #[command(
        after_help = "Examples:\n  ferry pause billing-events crm --reason \"CRM migration until 14:00\""
    )]
    Pause(lane_cmds::PauseArgs),
    /// Resume a paused destination (paused by `ferry pause` or by auto-pause).
    #[command(after_help = "Examples:\n  ferry resume billing-events crm")]
    Resume(lane_cmds::LaneArgs),
    /// Show which data categories may reach which systems (through which flows and
    /// destinations) and how each is protected there: from a config directory, or from a
    /// running hub.
    #[command(
        after_help = "Examples:\n  ferry datamap examples/stripe --category user.contact.email   # which systems receive customer emails?\n  ferry datamap examples/stripe --system warehouse\n  ferry datamap --config ./ferry --json        # ask the running hub of ./ferry"
    )]
    Datamap(datamap::DatamapArgs),
    /// The data keys of encryption at rest (`settings.protection.keys`) of a running hub:
    /// status, and re-wrapping under a new key-encryption key.
    #[command(subcommand)]
    Keys(keys_cmds::KeysCommand),
    /// Erase a data subject: destroy (crypto-shred) its data key, so every stored copy of its
    /// classified fields, backups included, can no longer be decrypted.
    #[command(after_help = "Examples:
  ferry erase --subject ada@example.com --config ./ferry")]
    Erase(keys_cmds::EraseArgs),
    /// Check and export the audit trail: every event accepted and delivered, every replay,
    /// purge, erasure and admin action, in a hash chain. Reads the data dir directly, so it
    /// works while the hub runs.
    #[command(subcommand)]
    Audit(audit_cmds::AuditCommand),
    /// Retention: what Ferry keeps of each system's events and for how long, and where a
    /// destination keeps data longer than its source.
    #[command(subcommand)]
    Retention(retention_cmds::RetentionCommand),
    /// List the alerts of a running hub: firing and pending, with their team, channel and
    /// runbook (`--all` adds the recently resolved).
    Alerts(alerts_cmds::AlertsArgs),
    /// Run the synthetic transactions of a running hub now (every flow with `synthetic`, or
    /// the flows named) and wait for them: exit 1 when one failed or was late.
    #[command(
        after_help = "Examples:\n  ferry probe --config ./config\n  ferry probe shop-orders --url http://127.0.0.1:8080"
    )]
    Probe(alerts_cmds::ProbeArgs),
    /// Export what the hub knows for other tools.
    #[command(subcommand)]
    Export(alerts_cmds::ExportCommand),
    /// Run a self-contained demo: the hub plus simulated billing, CRM and warehouse systems
    /// on loopback, with a live view of what happens.
    #[command(after_help = "Examples:\n  ferry demo\n  ferry demo --duration 60s --rate 200")]
    Demo(crate::demo::DemoArgs),
}

/// How CLI commands reach a running hub's admin API.
#[derive(Debug, Clone, Args)]
pub struct HubTarget {
    /// Base URL of the hub.
    #[arg(long, env = "FERRY_URL")]
    pub url: Option<String>,
    /// Admin bearer token.
    #[arg(long, env = "FERRY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the URL and admin token from this config directory instead.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Run the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(a) => serve::run(a, cli.log_json).await,
        Command::Migrate(a) => migrate::run(a).await,
        Command::Validate(a) => validate::run(a),
        Command::Test(a) => test_cmd::run(a).await,
        Command::Dlq(c) => admin_cmds::dlq(c).await,
        Command::Rejected(c) => rejected_cmds::run(c).await,
        Command::Events(a) => browse::events(a).await,
        Command::Deliveries(a) => browse::deliveries(a).await,
        Command::Replay(a) => admin_cmds::replay(a).await,
        Command::Status(a) => lane_cmds::status(a).await,
        Command::Pause(a) => lane_cmds::pause(a).await,
        Command::Resume(a) => lane_cmds::resume(a).await,
        Command::Datamap(a) => datamap::run(a).await,
        Command::Keys(c) => keys_cmds::keys(c).await,
        Command::Erase(a) => keys_cmds::erase(a).await,
        Command::Audit(c) => audit_cmds::run(c).await,
        Command::Retention(c) => retention_cmds::run(c).await,
        Command::Alerts(a) => alerts_cmds::alerts(a).await,
        Command::Probe(a) => alerts_cmds::probe(a).await,
        Command::Export(c) => alerts_cmds::export(c),
        Command::Demo(a) => crate::demo::run(a).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub use serve::{load_config, wait_for_signal};
