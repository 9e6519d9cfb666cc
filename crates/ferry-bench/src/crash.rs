//! `ferry-bench crash`: the crash oracle. Load a hub, SIGKILL and restart it K times at
//! random moments, drain, and check that every acknowledged event arrived intact.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ferry_signature::SigningKey;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::task::JoinSet;

use crate::cli::CrashArgs;
use crate::clock::{Clock, unix_secs};
use crate::hub::{self, Hub};
use crate::oracle::{
    self, CrashConfig, CrashDrain, CrashHub, CrashReport, Kill, Kills, LoadSummary,
    ReceiverSummary, Spread,
};
use crate::payload::{self, Template};
use crate::receiver::{self, Sink};
use crate::sender::{self, Plan, Shared, Target, WorkerResult};
use crate::{metrics, ports, runner};

/// Exit status when the oracle finds a failure.
const EXIT_FAILED: u8 = 3;
/// Kept apart from the fault draws, which use the seed itself.
const KILL_SEED_SALT: u64 = 0x6b69_6c6c;
/// How often the drain checks what is still missing.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// The kill loop's record.
struct KillLog {
    each: Vec<Kill>,
    unexpected_exits: Vec<String>,
    restart_failure: Option<String>,
}

fn validate(args: &CrashArgs) -> anyhow::Result<()> {
    if let Some(r) = args.rate {
        anyhow::ensure!(
            r.is_finite() && r > 0.0,
            "--rate must be a positive number of events/s"
        );
    }
    anyhow::ensure!(
        args.body_bytes >= payload::MIN_BODY,
        "--body-bytes must be at least {}",
        payload::MIN_BODY
    );
    anyhow::ensure!(
        !args.uptime.max.is_zero(),
        "--uptime must allow the hub to run a while, e.g. 200ms..3s"
    );
    Ok(())
}

/// Progress on stderr once a second.
fn progress(
    shared: Arc<Shared>,
    sink: Arc<Sink>,
    kills: Arc<AtomicU32>,
    total: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = shared.plan.start;
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::from_std(start + Duration::from_secs(1)),
            Duration::from_secs(1),
        );
        loop {
            tick.tick().await;
            eprintln!(
                "[{:>6.1}s] kills {:>3}/{total}  acked {:>8}  failed {:>7}  delivered {:>8}  receiver requests {:>8}",
                start.elapsed().as_secs_f64(),
                kills.load(Ordering::Relaxed),
                shared.ok.load(Ordering::Relaxed),
                shared.failed.load(Ordering::Relaxed),
                sink.unique(),
                sink.requests(),
            );
        }
    })
}

/// Kill and restart the hub `args.kills` times after random uptimes.
async fn kill_loop(
    hub: &mut Hub,
    args: &CrashArgs,
    rng: &mut StdRng,
    shared: &Shared,
    done: &AtomicU32,
) -> KillLog {
    let mut log = KillLog {
        each: Vec::new(),
        unexpected_exits: Vec::new(),
        restart_failure: None,
    };
    let mut ready_at = Instant::now();
    for n in 1..=args.kills {
        let uptime = rng.random_range(args.uptime.min..=args.uptime.max);
        tokio::time::sleep_until((ready_at + uptime).into()).await;
        if let Some(status) = hub.exited() {
            log.unexpected_exits.push(format!(
                "before kill {n}: {status}; last lines of its log:\n{}",
                hub.log_tail(20)
            ));
        }
        let acked_before = shared.ok.load(Ordering::Relaxed);
        let up_since = ready_at;
        let killed_at = Instant::now();
        let exit = hub.kill().await;
        if let Err(e) = hub.restart().await {
            log.restart_failure = Some(format!("after kill {n}: {e:#}"));
            break;
        }
        ready_at = Instant::now();
        log.each.push(Kill {
            n,
            at_secs: killed_at
                .saturating_duration_since(shared.plan.start)
                .as_secs_f64(),
            uptime_secs: killed_at.saturating_duration_since(up_since).as_secs_f64(),
            acked_before,
            exit,
            restart_secs: ready_at.saturating_duration_since(killed_at).as_secs_f64(),
        });
        done.store(n, Ordering::Relaxed);
    }
    log
}

/// Wait until every event in `missing` has arrived, or none arrived for `stall`.
async fn drain(sink: &Sink, missing: &mut Vec<u64>, stall: Duration) -> CrashDrain {
    let start = Instant::now();
    let mut last = sink.unique();
    let mut last_change = start;
    loop {
        sink.retain_missing(missing);
        let now = Instant::now();
        if missing.is_empty() {
            break;
        }
        let unique = sink.unique();
        if unique != last {
            (last, last_change) = (unique, now);
        } else if now.duration_since(last_change) >= stall {
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    CrashDrain {
        complete: missing.is_empty(),
        secs: start.elapsed().as_secs_f64(),
        missing: missing.len() as u64,
    }
}

/// `ferry-bench crash`.
pub async fn run(args: CrashArgs) -> anyhow::Result<ExitCode> {
    validate(&args)?;
    let (faults, seed) = runner::faults(&args.faults)?;
    let mut rng = StdRng::seed_from_u64(seed ^ KILL_SEED_SALT);
    let started_at_unix = unix_secs();
    let clock = Clock::new();
    let run_id = payload::new_run_id();
    let sink = Arc::new(Sink::new(clock, &run_id));
    let receiver = receiver::start(
        runner::receiver_addr(&faults)?,
        sink.clone(),
        faults.clone(),
    )
    .await?;
    // A fixed port outside the ephemeral range: see `ports`.
    let spec = runner::hub_spec(
        &args.hub,
        vec![receiver],
        ports::stable_loopback()?,
        true,
        None,
    )?;
    let mut hub = Hub::start(&spec).await?;
    // Kept until the verdict is known; removed afterwards if it passes.
    hub.keep();
    if !args.quiet {
        eprintln!(
            "ferry-bench crash: hub pid {} on http://{} (log {}), receiver on http://{receiver}/sink, seed {seed}",
            hub.pid,
            hub.addr,
            hub.log_path().display()
        );
    }
    let target = Target::local(hub.addr, hub::FLOW)?;
    let key = SigningKey::from_standard_webhooks(hub::SOURCE_SECRET)
        .context("the bench secret is not a valid Standard Webhooks secret")?;
    let start = Instant::now();
    let plan = Plan {
        start,
        limit: args.events,
        deadline: None,
        rate: args.rate,
        request_timeout: args.timeout,
    };
    let template = Template::new(&run_id, args.body_bytes)?;
    let shared = Arc::new(
        Shared::new(plan, target.clone(), template, key, run_id.clone(), clock).recording(),
    );
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        tasks.spawn(sender::worker(shared.clone()));
    }
    let kills_done = Arc::new(AtomicU32::new(0));
    let ticker = (!args.quiet)
        .then(|| progress(shared.clone(), sink.clone(), kills_done.clone(), args.kills));

    let kills = kill_loop(&mut hub, &args, &mut rng, &shared, &kills_done).await;
    if kills.restart_failure.is_none() {
        tokio::time::sleep(args.tail).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut send = WorkerResult::empty();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(r) => send.merge(r),
            Err(e) => eprintln!("ferry-bench: a sender task failed: {e}"),
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!(
            "ferry-bench crash: load stopped after {send_secs:.1} s; draining {} acknowledged events",
            send.log.iter().filter(|s| s.acked).count()
        );
    }

    let mut missing: Vec<u64> = send.log.iter().filter(|s| s.acked).map(|s| s.seq).collect();
    let drain = if kills.restart_failure.is_none() {
        drain(&sink, &mut missing, args.drain_timeout).await
    } else {
        sink.retain_missing(&mut missing);
        CrashDrain {
            complete: missing.is_empty(),
            secs: 0.0,
            missing: missing.len() as u64,
        }
    };
    if let Some(t) = ticker {
        t.abort();
    }
    let lanes = metrics::get(&target, "/admin/v1/lanes", Some(hub::ADMIN_TOKEN))
        .await
        .and_then(|body| serde_json::from_str(&body).ok());
    let mut unexpected_exits = kills.unexpected_exits;
    if let Some(status) = hub.exited()
        && kills.restart_failure.is_none()
    {
        unexpected_exits.push(format!(
            "after the load: {status}; last lines of its log:\n{}",
            hub.log_tail(20)
        ));
    }
    let stopped = hub.stop().await;
    let dir = stopped.kept_dir.clone();
    let panics = dir
        .as_ref()
        .map(|d| hub::panics(&d.join("hub.log")))
        .unwrap_or_default();

    let stats = sink.stats();
    let events = oracle::compare(&run_id, &send.log, &sink.events());
    let acked = send.accepted.len() as u64;
    let attempted = shared.attempted().min(args.events.unwrap_or(u64::MAX));
    let mut report = CrashReport {
        mode: "crash",
        passed: false,
        failures: Vec::new(),
        run_id,
        seed,
        started_at_unix,
        target: target.url(),
        receiver: format!("http://{receiver}/sink"),
        config: CrashConfig {
            kills: args.kills,
            uptime_min_secs: args.uptime.min.as_secs_f64(),
            uptime_max_secs: args.uptime.max.as_secs_f64(),
            tail_secs: args.tail.as_secs_f64(),
            connections: args.connections,
            rate: args.rate,
            events: args.events,
            body_bytes: args.body_bytes,
            request_timeout_secs: args.timeout.as_secs_f64(),
            drain_timeout_secs: args.drain_timeout.as_secs_f64(),
            hub_concurrency: spec.concurrency,
            hub_timeout_secs: spec.tuning.timeout.as_secs_f64(),
            breaker: spec.tuning.breaker,
            faults: faults.config().clone(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        },
        kills: Kills {
            requested: args.kills,
            done: kills.each.len() as u32,
            restart_secs: Spread::of(kills.each.iter().map(|k| k.restart_secs)),
            unexpected_exits,
            restart_failure: kills.restart_failure,
            each: kills.each,
        },
        load: LoadSummary {
            attempted,
            sent: send.sent,
            acked,
            not_acked: attempted.saturating_sub(acked),
            connect_failed: send.connect_failed,
            secs: send_secs,
            acked_per_sec: if send_secs > 0.0 {
                acked as f64 / send_secs
            } else {
                0.0
            },
            errors: send.errors,
        },
        events,
        receiver_side: ReceiverSummary {
            requests: stats.requests,
            faults: faults.counts.tally(),
            without_webhook_id: stats.missing_id,
            foreign: stats.foreign,
            unparsable: stats.unparsable,
            unparsable_example: stats.unparsable_example,
        },
        drain,
        hub: CrashHub {
            panics,
            final_stop: stopped.exit,
            clean_stop: stopped.clean,
            lanes_after_drain: lanes,
            data_dir: None,
        },
    };
    report.failures = oracle::failures(&report);
    report.passed = report.failures.is_empty();
    if let Some(dir) = dir {
        if report.passed && !args.hub.keep_data {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            report.hub.data_dir = Some(dir.display().to_string());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
