//! `ferry events` and `ferry deliveries`: finding what a running hub holds — an event by the
//! id its sender gave it, the deliveries that needed retries or got a given status.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::admin_cmds::{Selection, client};
use super::{HubTarget, show};
use crate::admin::dto::{EventQuery, ListQuery};

/// `ferry events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// Show this event (fev_…): its headers, payload and deliveries.
    pub id: Option<String>,
    /// Only the event(s) the sender calls this: its own id, the dedupe key (e.g. Stripe's
    /// evt_…, GitHub's X-GitHub-Delivery); also finds a split's elements (<id>#0…).
    #[arg(long, value_name = "ID")]
    pub sender_id: Option<String>,
    /// Only this flow.
    #[arg(long)]
    pub flow: Option<String>,
    /// Received at or after this time (RFC 3339, epoch ms, or an age like 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Received before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// Most events to list.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `ferry deliveries`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    pub target: HubTarget,
    #[command(flatten)]
    pub select: Selection,
    /// Only deliveries in this state: pending, in_flight, delivered, retrying or dead.
    #[arg(long)]
    pub state: Option<String>,
    /// Only the deliveries of this event (fev_…).
    #[arg(long, value_name = "ID")]
    pub event: Option<String>,
    /// Most rows to show.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Run `ferry events`.
pub async fn events(a: EventsArgs) -> Result<ExitCode> {
    let hub = client(&a.target)?;
    if let Some(id) = &a.id {
        let event = hub.event(id).await?;
        let deliveries = hub
            .deliveries(&ListQuery {
                event_id: Some(event.id.clone()),
                limit: Some(1000),
                ..Default::default()
            })
            .await?
            .deliveries;
        if a.json {
            let out = json!({"event": event, "deliveries": deliveries});
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!("event       {}", event.id);
        println!("sender id   {}", event.dedupe_key.as_deref().unwrap_or("-"));
        println!("flow        {} (from {})", event.flow, event.source);
        println!("type        {}", event.event_type.as_deref().unwrap_or("-"));
        println!("received    {}", crate::clock::rfc3339(event.received_at));
        for (name, value) in &event.headers {
            println!("header      {name}: {value}");
        }
        println!(
            "payload     {}",
            serde_json::to_string_pretty(&event.payload)?
        );
        if deliveries.is_empty() {
            println!("no deliveries");
        } else {
            show::deliveries(&deliveries);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let page = hub
        .events(&EventQuery {
            sender_id: a.sender_id.clone(),
            flow: a.flow.clone(),
            since: a.since.clone(),
            until: a.until.clone(),
            after: None,
            limit: Some(a.limit.clamp(1, 1000)),
        })
        .await?;
    // The deliveries of a sender's event, in the same answer: what an operator looks for.
    let deliveries = match &a.sender_id {
        Some(sender_id) => {
            hub.deliveries(&ListQuery {
                sender_id: Some(sender_id.clone()),
                flow: a.flow.clone(),
                limit: Some(1000),
                ..Default::default()
            })
            .await?
            .deliveries
        }
        None => Vec::new(),
    };
    if a.json {
        let mut out = json!({"events": page.events});
        if a.sender_id.is_some() {
            out["deliveries"] = json!(deliveries);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    match (&a.sender_id, page.events.is_empty()) {
        (Some(id), true) => println!("No event has the sender id `{id}`."),
        (None, true) => println!("No event matches."),
        (_, false) => {
            show::events(&page.events);
            if page.next_after.is_some() {
                println!("(more: raise --limit or narrow with --flow/--since)");
            }
            if !deliveries.is_empty() {
                show::deliveries(&deliveries);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `ferry deliveries`.
pub async fn deliveries(a: DeliveriesArgs) -> Result<ExitCode> {
    let hub = client(&a.target)?;
    let query = ListQuery {
        event_id: a.event,
        ..a.select.query(a.state, a.limit)
    };
    let page = hub.deliveries(&query).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&page.deliveries)?);
    } else if page.deliveries.is_empty() {
        println!("No delivery matches.");
    } else {
        show::deliveries(&page.deliveries);
        if page.next_after.is_some() {
            println!("(more: raise --limit or narrow with --flow/--since)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
