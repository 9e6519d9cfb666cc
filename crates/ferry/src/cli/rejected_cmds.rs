//! `ferry rejected list|show|replay`: the messages queue sources stored as rejected (the
//! flow refused them), through the admin API.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

use super::HubTarget;
use super::admin_cmds::client;
use crate::admin::rejected::{RejectedQuery, RejectedSummary, RejectedView};
use crate::clock::rfc3339;

/// `ferry rejected`.
#[derive(Debug, Subcommand)]
pub enum RejectedCommand {
    /// List rejected records, newest first, with the reason.
    #[command(
        after_help = "Examples:\n  ferry rejected list\n  ferry rejected list --flow orders-from-nats --limit 20\n  ferry rejected list --json | jq '.[].reason'"
    )]
    List {
        #[command(flatten)]
        target: HubTarget,
        /// Only this flow.
        #[arg(long)]
        flow: Option<String>,
        /// Most rows to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one rejected record: reason, headers, payload.
    #[command(after_help = "Examples:\n  ferry rejected show rej_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b")]
    Show {
        #[command(flatten)]
        target: HubTarget,
        /// The record's id (rej_...).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Run rejected records through their flow's current steps (after a config fix): their
    /// events are stored and delivered, or the hub says why they are still refused.
    #[command(
        after_help = "Examples:\n  ferry rejected replay rej_0193a4b2c3d47e8f9a0b1c2d3e4f5a6b"
    )]
    Replay {
        #[command(flatten)]
        target: HubTarget,
        /// The records' ids (rej_...).
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Run a `ferry rejected` command.
pub async fn run(cmd: RejectedCommand) -> Result<ExitCode> {
    match cmd {
        RejectedCommand::List {
            target,
            flow,
            limit,
            json,
        } => {
            let page = client(&target)?
                .rejected(&RejectedQuery {
                    flow,
                    before: None,
                    limit: Some(limit.clamp(1, 1000)),
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page.rejected)?);
            } else if page.rejected.is_empty() {
                println!("No rejected record.");
            } else {
                table(&page.rejected);
                if page.next_before.is_some() {
                    println!("(more: raise --limit or narrow with --flow)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RejectedCommand::Show { target, id, json } => {
            let v = client(&target)?.rejected_one(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                show(&v)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        RejectedCommand::Replay { target, ids } => {
            let c = client(&target)?;
            let mut failed = 0;
            for id in ids {
                match c.replay_rejected(&id).await {
                    Ok(r) => println!(
                        "{id}: replayed into {} ({} new)",
                        r.events.join(", "),
                        r.stored
                    ),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{id}: {e:#}");
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn table(rows: &[RejectedSummary]) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "rejected", "flow", "received", "reason", "detail", "replayed",
        ]);
    for r in rows {
        t.add_row([
            r.id.to_string(),
            r.flow.clone(),
            rfc3339(r.received_at),
            r.reason.clone(),
            r.detail.chars().take(70).collect(),
            r.replayed_event.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{t}");
}

fn show(v: &RejectedView) -> Result<()> {
    let s = &v.summary;
    println!("{}  ({} source, flow {})", s.id, s.source_kind, s.flow);
    println!("received:   {}", rfc3339(s.received_at));
    println!("message id: {}", s.message_id.as_deref().unwrap_or("-"));
    println!("reason:     {}", s.reason);
    println!("detail:     {}", s.detail);
    match (&s.replayed_at, &s.replayed_event) {
        (Some(at), Some(event)) => println!("replayed:   {} into {event}", rfc3339(*at)),
        _ => println!("replayed:   no"),
    }
    for (name, value) in &v.headers {
        println!("header:     {name}: {value}");
    }
    println!("payload:\n{}", serde_json::to_string_pretty(&v.payload)?);
    Ok(())
}
