//! `ferry dlq ...` and `ferry replay`: operator commands over the admin API.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;

use super::{HubTarget, show};
use crate::admin::client::AdminClient;
use crate::admin::dto::{ListQuery, ReplayRequest};

/// `ferry dlq`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead deliveries with their failure reason.
    #[command(
        after_help = "Examples:\n  ferry dlq list\n  ferry dlq list --flow billing-events --destination warehouse --since 1h\n  ferry dlq list --sender-id evt_1Q0bqYLkdIwHu7ix\n  ferry dlq list --status 4xx --error-class http_4xx\n  ferry dlq list --json | jq '.[].last_error'"
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
    /// Show one delivery: its state, every attempt and replay, and its event.
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
#[derive(Debug, Clone, Default, Args)]
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
    /// Only deliveries of the event the sender calls this (its own id, e.g. Stripe's evt_…).
    #[arg(long, value_name = "ID")]
    pub sender_id: Option<String>,
    /// Only deliveries with at least this many attempts (2: those that needed a retry).
    #[arg(long, value_name = "N")]
    pub min_attempts: Option<u32>,
    /// Only deliveries with an attempt that failed with this class (http_5xx, timeout, connect…).
    #[arg(long, value_name = "CLASS")]
    pub error_class: Option<String>,
    /// Only deliveries with an attempt answered with this HTTP status: a code (503) or a class (5xx).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
}

impl Selection {
    fn is_empty(&self) -> bool {
        self.flow.is_none()
            && self.destination.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.sender_id.is_none()
            && self.min_attempts.is_none()
            && self.error_class.is_none()
            && self.status.is_none()
    }

    /// The admin API query selecting these deliveries in `state`.
    pub fn query(self, state: Option<String>, limit: usize) -> ListQuery {
        ListQuery {
            state,
            flow: self.flow,
            destination: self.destination,
            event_id: None,
            sender_id: self.sender_id,
            min_attempts: self.min_attempts,
            error_class: self.error_class,
            status: self.status,
            since: self.since,
            until: self.until,
            after: None,
            limit: Some(limit.clamp(1, 1000)),
        }
    }

    /// A replay of these deliveries in `state`, asked for by `command`.
    fn replay(self, state: Option<String>, command: &str) -> ReplayRequest {
        ReplayRequest {
            state,
            flow: self.flow,
            destination: self.destination,
            since: self.since,
            until: self.until,
            sender_id: self.sender_id,
            min_attempts: self.min_attempts,
            error_class: self.error_class,
            status: self.status,
            requested_by: Some(requested_by(command)),
            ..Default::default()
        }
    }
}

/// Who asks for a replay, for the deliveries' history: the command, and the user running it
/// when the environment names one.
pub fn requested_by(command: &str) -> String {
    match std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        Some(user) => format!("{command} ({})", user.trim()),
        None => command.to_string(),
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
            let filtered = !select.is_empty();
            let page = c
                .deliveries(&select.query(Some("dead".into()), limit))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page.deliveries)?);
            } else if page.deliveries.is_empty() && filtered {
                println!("No dead delivery matches.");
            } else if page.deliveries.is_empty() {
                println!("The dead-letter queue is empty.");
            } else {
                show::deliveries(&page.deliveries);
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
            } else {
                show::delivery(&v);
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
                    "say what to replay: delivery ids, a filter (--flow/--destination/--since/--until/--sender-id/…), or --all"
                );
            }
            let mut total = 0;
            if ids.is_empty() {
                total += c
                    .replay(&select.replay(Some("dead".into()), "ferry dlq replay"))
                    .await?
                    .replayed;
            }
            for id in ids {
                total += c
                    .replay(&ReplayRequest {
                        delivery_id: Some(id),
                        state: Some("dead".into()),
                        requested_by: Some(requested_by("ferry dlq replay")),
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
            "say what to replay: --event, --delivery, or a filter (--flow/--destination/--since/--until/--state/--sender-id/…)"
        );
    }
    let r = client(&a.target)?
        .replay(&ReplayRequest {
            delivery_id: a.delivery,
            event_id: a.event,
            ..a.select.replay(a.state, "ferry replay")
        })
        .await?;
    println!("replayed {} deliveries", r.replayed);
    Ok(ExitCode::SUCCESS)
}
