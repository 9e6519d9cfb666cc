//! `ferry status`, `ferry pause` and `ferry resume`: the lanes of a running hub, their
//! backlog and their gates (circuit breaker, 429 hold, pause), and its pull flows.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use ferry_delivery::BreakerState;

use super::HubTarget;
use super::admin_cmds::client;
use crate::admin::dto::{LaneView, PullView};
use crate::admin::systems::{LaneHealth, SystemView};
use crate::clock::{now_ms, rfc3339};

/// `ferry status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// Roll the lanes up: `system` shows one row per receiving system (its owner, on-call
    /// and tier from the catalog, its worst lane state), the system in the worst trouble first.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub by: Option<RollUp>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `ferry status --by` rolls lanes up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RollUp {
    /// The system each lane delivers to.
    System,
}

/// `ferry pause` and `ferry resume`.
#[derive(Debug, Args)]
pub struct LaneArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// The flow.
    pub flow: String,
    /// The destination within the flow.
    pub destination: String,
}

/// `ferry pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub lane: LaneArgs,
    /// Why (shown by `ferry status` and sent to the owner).
    #[arg(long)]
    pub reason: Option<String>,
}

/// Print every lane, then every pull flow (if any).
pub async fn status(args: StatusArgs) -> Result<ExitCode> {
    let hub = client(&args.target)?;
    if args.by == Some(RollUp::System) {
        let systems = hub.systems().await?.systems;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&systems)?);
        } else {
            print_systems(&systems, now_ms());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let lanes = hub.lanes().await?.lanes;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lanes)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    if lanes.is_empty() {
        println!("no lanes");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "flow",
            "destination",
            "state",
            "waiting",
            "oldest",
            "retrying",
            "delivered",
            "dead",
        ]);
    for lane in &lanes {
        let c = &lane.counts;
        table.add_row([
            c.lane.flow.clone(),
            c.lane.destination.clone(),
            gate_text(lane, now),
            (c.pending + c.in_flight + c.retrying).to_string(),
            c.oldest_waiting_received_at
                .map(|t| age(now - t))
                .unwrap_or_else(|| "-".to_string()),
            c.retrying.to_string(),
            c.delivered.to_string(),
            c.dead.to_string(),
        ]);
    }
    println!("{table}");
    for lane in &lanes {
        if let Some(pause) = lane.gate.as_ref().and_then(|g| g.paused.as_ref()) {
            println!(
                "{}/{} paused since {}: {}",
                lane.counts.lane.flow,
                lane.counts.lane.destination,
                rfc3339(pause.since),
                pause.reason
            );
        }
    }
    match hub.pulls().await {
        Ok(pulls) if !pulls.pulls.is_empty() => print_pulls(&pulls.pulls, now),
        Ok(_) => {}
        Err(e) => println!("pulls: not available ({e})"),
    }
    Ok(ExitCode::SUCCESS)
}

/// One row per system, worst first; then each system's lanes that are not ok.
fn print_systems(systems: &[SystemView], now: i64) {
    if systems.is_empty() {
        println!("no lanes");
        return;
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "system", "tier", "owner", "oncall", "state", "lanes", "waiting", "oldest", "retrying",
            "dead",
        ]);
    for s in systems {
        let info = s.info.as_ref();
        let text = |v: Option<&String>| v.cloned().unwrap_or_else(|| "-".to_string());
        table.add_row([
            s.system.clone(),
            info.map_or_else(|| "-".to_string(), |i| i.tier.clone()),
            text(info.and_then(|i| i.owner.as_ref())),
            text(info.and_then(|i| i.oncall.as_ref())),
            s.state.as_str().to_string(),
            s.lanes.len().to_string(),
            (s.pending + s.in_flight + s.retrying).to_string(),
            s.oldest_waiting_received_at
                .map(|t| age(now - t))
                .unwrap_or_else(|| "-".to_string()),
            s.retrying.to_string(),
            s.dead.to_string(),
        ]);
    }
    println!("{table}");
    for s in systems {
        for lane in s.lanes.iter().filter(|l| l.state != LaneHealth::Ok) {
            println!(
                "{}: {}/{} {}",
                s.system,
                lane.flow,
                lane.destination,
                lane.state.as_str()
            );
        }
    }
}

/// The pull flows: state, freshness against the SLA, next run; then the last errors.
fn print_pulls(pulls: &[PullView], now: i64) {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "pull",
            "state",
            "last success",
            "sla",
            "next run",
            "records",
        ]);
    for p in pulls {
        let since = p.seconds_since_success.map_or_else(
            || "never".to_string(),
            |s| format!("{} ago", age(s.saturating_mul(1000) as i64)),
        );
        let stale = if p.fresh { "" } else { " (stale)" };
        let state = if p.running {
            format!("{} (running)", p.status)
        } else {
            p.status.clone()
        };
        table.add_row([
            p.flow.clone(),
            state,
            format!("{since}{stale}"),
            p.freshness_sla_seconds
                .map_or_else(|| "-".to_string(), |s| age(s.saturating_mul(1000) as i64)),
            p.next_run_at
                .map_or_else(|| "-".to_string(), |t| format!("in {}", age(t - now))),
            p.records.to_string(),
        ]);
    }
    println!("{table}");
    for p in pulls {
        if let Some(error) = &p.last_error {
            println!("{} last run failed: {error}", p.flow);
        }
    }
}

/// What is holding a lane back, in a few words.
fn gate_text(lane: &LaneView, now: i64) -> String {
    let Some(g) = &lane.gate else {
        return "not configured".to_string();
    };
    if g.paused.is_some() {
        return "paused".to_string();
    }
    let mut parts = Vec::new();
    match g.breaker {
        BreakerState::Closed => {}
        BreakerState::Open => parts.push(match g.breaker_open_until {
            Some(t) if t > now => format!("breaker open (probe in {})", age(t - now)),
            _ => "breaker open".to_string(),
        }),
        BreakerState::HalfOpen => parts.push("breaker half-open".to_string()),
    }
    if let Some(t) = g.hold_until.filter(|&t| t > now) {
        parts.push(format!("429 hold {}", age(t - now)));
    }
    if let Some(t) = g.failing_since {
        parts.push(format!("failing for {}", age(now - t)));
    }
    if parts.is_empty() {
        "ok".to_string()
    } else {
        parts.join(", ")
    }
}

pub(super) fn age(ms: i64) -> String {
    let secs = u64::try_from(ms.max(0) / 1000).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(secs.max(1))).to_string()
}

/// Pause a lane.
pub async fn pause(args: PauseArgs) -> Result<ExitCode> {
    let lane = &args.lane;
    let answer = client(&lane.target)?
        .pause(&lane.flow, &lane.destination, args.reason)
        .await?;
    if answer.changed {
        println!(
            "paused {}/{}: deliveries wait, durably, until `ferry resume {} {}`",
            lane.flow, lane.destination, lane.flow, lane.destination
        );
    } else {
        println!("{}/{} was already paused", lane.flow, lane.destination);
    }
    Ok(ExitCode::SUCCESS)
}

/// Resume a lane.
pub async fn resume(args: LaneArgs) -> Result<ExitCode> {
    let answer = client(&args.target)?
        .resume(&args.flow, &args.destination)
        .await?;
    let c = &answer.lane.counts;
    if answer.changed {
        println!(
            "resumed {}/{}: {} deliveries waiting",
            args.flow,
            args.destination,
            c.pending + c.in_flight + c.retrying
        );
    } else {
        println!("{}/{} was not paused", args.flow, args.destination);
    }
    Ok(ExitCode::SUCCESS)
}
