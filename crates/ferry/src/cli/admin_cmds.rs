//! `ferry dlq ...` and `ferry replay`: operator commands over the admin API.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use ferry_store::DeliverySummary;
use secrecy::ExposeSecret;

use super::HubTarget;
use crate::admin::client::AdminClient;
use crate::admin::dto::{ListQuery, ReplayRequest};
use crate::clock::rfc3339;

/// `ferry dlq`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead deliveries with their failure reason.
    #[command(
        after_help = "Examples:\n  ferry dlq list\n  ferry dlq list --flow billing-events --destination warehouse --since 1h\n  ferry dlq list --json | jq '.[].last_error'"
    )]
    List {
        #[command(flatten)]
        target: HubTarget,
        #[command(flatten)]
        select: Selection,
        /// Most rows to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery: its state, every attempt and its event.
    #[command(after_help = "Examples:\n  ferry dlq show dlv_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b")]
    Show {
        #[command(flatten)]
        target: HubTarget,
        /// The delivery id (dlv_...).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Put dead deliveries back in their lanes (same idempotency key as before).
    #[command(
        after_help = "Examples:\n  ferry dlq replay dlv_0193a4b2...\n  ferry dlq replay --flow billing-events --destination warehouse\n  ferry dlq replay --all"
    )]
    Replay {
        #[command(flatten)]
        target: HubTarget,
        /// Delivery ids to replay.
        ids: Vec<String>,
        #[command(flatten)]
        select: Selection,
        /// Replay every dead delivery (required when no id or filter is given).
        #[arg(long)]
        all: bool,
    },
}

/// Filters shared by the commands.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Only this flow.
    #[arg(long)]
    pub flow: Option<String>,
    /// Only this destination.
    #[arg(long)]
    pub destination: Option<String>,
    /// Events received at or after this time (RFC 3339, epoch ms, or an age like 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Events received before this time.
    #[arg(long)]
    pub until: Option<String>,
}

impl Selection {
    fn is_empty(&self) -> bool {
        self.flow.is_none()
            && self.destination.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }
}

/// `ferry replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// Replay every delivery of this event.
    #[arg(long)]
    pub event: Option<String>,
    /// Replay this delivery.
    #[arg(long)]
    pub delivery: Option<String>,
    #[command(flatten)]
    pub select: Selection,
    /// Only deliveries in this state: delivered, retrying or dead (default: all three).
    #[arg(long)]
    pub state: Option<String>,
}

/// Build an admin client from flags, env or a config directory.
pub fn client(target: &HubTarget) -> Result<AdminClient> {
    let (mut url, mut token) = (target.url.clone(), target.token.clone());
    if let Some(dir) = &target.config {
        let Some(config) = super::serve::load_config(dir, true) else {
            bail!("the config in {} is invalid", dir.display());
        };
        // The admin API answers on `settings.admin.listen` when it is set apart.
        let mut listen = config
            .settings
            .admin
            .listen
            .unwrap_or(config.settings.listen);
        if listen.ip().is_unspecified() {
            listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        url.get_or_insert(format!("http://{listen}"));
        if token.is_none()
            && let Some(r) = &config.settings.admin.token
        {
            token = Some(r.resolve(&config.root)?.expose_secret().to_string());
        }
    }
    let url = url.unwrap_or_else(|| "http://127.0.0.1:8080".to_string());
    let token = token.context(
        "no admin token: pass --token, set FERRY_ADMIN_TOKEN, or pass --config with the hub's config directory",
    )?;
    AdminClient::new(&url, token)
}

/// Run a `ferry dlq` command.
pub async fn dlq(cmd: DlqCommand) -> Result<ExitCode> {
    match cmd {
        DlqCommand::List {
            target,
            select,
            limit,
            json,
        } => {
            let c = client(&target)?;
            let page = c
                .deliveries(&ListQuery {
                    state: Some("dead".into()),
                    flow: select.flow,
                    destination: select.destination,
                    since: select.since,
                    until: select.until,
                    limit: Some(limit.clamp(1, 1000)),
                    ..Default::default()
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page.deliveries)?);
            } else if page.deliveries.is_empty() {
                println!("The dead-letter queue is empty.");
            } else {
                print_deliveries(&page.deliveries);
                if page.next_after.is_some() {
                    println!("(more: raise --limit or narrow with --flow/--since)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { target, id, json } => {
            let v = client(&target)?.delivery(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let s = &v.detail.summary;
            println!("delivery    {}", s.id);
            println!("event       {}", s.event_id);
            println!("lane        {} -> {}", s.lane.flow, s.lane.destination);
            println!("state       {}", s.state.as_str());
            println!("received    {}", rfc3339(s.received_at));
            println!("attempts    {} (replays: {})", s.attempts, s.replays);
            if let Some(e) = &s.last_error {
                println!("last error  {e}");
            }
            if !v.detail.attempts.is_empty() {
                let mut t = Table::new();
                t.load_preset(UTF8_BORDERS_ONLY)
                    .set_content_arrangement(ContentArrangement::Dynamic);
                t.set_header([
                    "#",
                    "started",
                    "latency",
                    "status",
                    "class",
                    "error / response",
                ]);
                for (i, a) in v.detail.attempts.iter().enumerate() {
                    t.add_row([
                        (i + 1).to_string(),
                        rfc3339(a.started_at),
                        format!("{} ms", a.latency_ms),
                        a.status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "-".into()),
                        a.error_class.clone().unwrap_or_default(),
                        truncate(
                            a.error
                                .as_deref()
                                .or(a.response_excerpt.as_deref())
                                .unwrap_or(""),
                            80,
                        ),
                    ]);
                }
                println!("{t}");
            }
            if let Some(ev) = &v.event {
                println!("event type  {}", ev.event_type.as_deref().unwrap_or("-"));
                println!("sender id   {}", ev.dedupe_key.as_deref().unwrap_or("-"));
                println!("payload     {}", truncate(&ev.payload.to_string(), 400));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay {
            target,
            ids,
            select,
            all,
        } => {
            let c = client(&target)?;
            if ids.is_empty() && select.is_empty() && !all {
                bail!(
                    "say what to replay: delivery ids, a filter (--flow/--destination/--since/--until), or --all"
                );
            }
            let mut total = 0;
            if ids.is_empty() {
                total += c
                    .replay(&ReplayRequest {
                        state: Some("dead".into()),
                        flow: select.flow,
                        destination: select.destination,
                        since: select.since,
                        until: select.until,
                        ..Default::default()
                    })
                    .await?
                    .replayed;
            }
            for id in ids {
                total += c
                    .replay(&ReplayRequest {
                        delivery_id: Some(id),
                        state: Some("dead".into()),
                        ..Default::default()
                    })
                    .await?
                    .replayed;
            }
            println!("replayed {total} dead deliveries");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Run `ferry replay`.
pub async fn replay(a: ReplayArgs) -> Result<ExitCode> {
    if a.event.is_none() && a.delivery.is_none() && a.select.is_empty() && a.state.is_none() {
        bail!(
            "say what to replay: --event, --delivery, or a filter (--flow/--destination/--since/--until/--state)"
        );
    }
    let r = client(&a.target)?
        .replay(&ReplayRequest {
            delivery_id: a.delivery,
            event_id: a.event,
            flow: a.select.flow,
            destination: a.select.destination,
            state: a.state,
            since: a.select.since,
            until: a.select.until,
        })
        .await?;
    println!("replayed {} deliveries", r.replayed);
    Ok(ExitCode::SUCCESS)
}

fn print_deliveries(rows: &[DeliverySummary]) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header([
        "delivery",
        "flow -> destination",
        "received",
        "attempts",
        "reason",
    ]);
    for d in rows {
        t.add_row([
            d.id.to_string(),
            format!("{} -> {}", d.lane.flow, d.lane.destination),
            rfc3339(d.received_at),
            d.attempts.to_string(),
            truncate(d.last_error.as_deref().unwrap_or(""), 70),
        ]);
    }
    println!("{t}");
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}
