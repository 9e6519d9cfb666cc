//! `run` and `load`: send, drain, measure, report.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ferry_signature::SigningKey;
use tokio::task::JoinSet;

use crate::cli::{DEFAULT_EVENTS, FaultOpts, HubOpts, LoadArgs, LoadOpts, RunArgs};
use crate::clock::{Clock, unix_secs};
use crate::destinations::{self, Destination};
use crate::faults::{FaultTally, Faults};
use crate::hub::{self, Hub, HubSpec, Tuning};
use crate::payload::{self, Template};
use crate::receiver::{self, Sink, SinkStats};
use crate::report::{
    BenchUsage, DestinationReport, Drain, Events, HubUsage, Latencies, Latency, MachineUsage,
    ReceiverFaults, Report, RunConfig, Throughput,
};
use crate::sampler::{Sample, Sampler, Watched};
use crate::sender::{self, Plan, Shared, Target, WorkerResult};
use crate::{metrics, probe, procfs};

/// Exit status when some accepted event never reached the receiver.
const EXIT_UNDELIVERED: u8 = 3;

/// CPU seconds of the hub and of this process at one moment.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    hub: Option<f64>,
    bench: Option<f64>,
    machine: Option<f64>,
}

impl CpuSample {
    fn take(hub_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            hub: hub_pid.and_then(|p| procfs::cpu_secs(&p.to_string())),
            bench: procfs::cpu_secs("self"),
            machine: procfs::machine_busy_secs(),
        }
    }
}

fn cores(a: &CpuSample, b: &CpuSample, pick: fn(&CpuSample) -> Option<f64>) -> Option<f64> {
    let wall = b.at.saturating_duration_since(a.at).as_secs_f64();
    (wall > 0.0).then_some(())?;
    Some((pick(b)? - pick(a)?) / wall)
}

/// Everything measured by one send-and-drain pass.
struct Measured {
    start: Instant,
    send: WorkerResult,
    send_end: Instant,
    drain_end: Instant,
    /// Accepted events missing at the drained (healthy) destinations, summed.
    missing: u64,
    /// The drained destinations' receivers, merged.
    sink: SinkStats,
    /// Every destination's receiver and its missing events, in order.
    each: Vec<(SinkStats, u64)>,
    samples: Vec<Sample>,
    /// When the lanes were resumed (`--deliver-after-load`): deliveries start here.
    resumed_at: Option<Instant>,
    /// [`probe::cpu`] before sending and after the drain.
    probes: [Duration; 2],
    cpu: [CpuSample; 3],
    bench_threads: usize,
    loadavg_before: Option<f64>,
}

/// Validated load options.
struct Load {
    opts: LoadOpts,
    events: Option<u64>,
    bench_threads: usize,
}

impl Load {
    fn new(opts: LoadOpts) -> anyhow::Result<Self> {
        if let Some(r) = opts.rate {
            anyhow::ensure!(
                r.is_finite() && r > 0.0,
                "--rate must be a positive number of events/s"
            );
        }
        anyhow::ensure!(
            opts.body_bytes >= payload::MIN_BODY,
            "--body-bytes must be at least {}",
            payload::MIN_BODY
        );
        let events = match opts.duration {
            Some(_) => opts.events,
            None => Some(opts.events.unwrap_or(DEFAULT_EVENTS)),
        };
        let bench_threads = opts
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1);
        Ok(Self {
            opts,
            events,
            bench_threads,
        })
    }
}

/// The receiver's faults from the command line, and the seed they were drawn with.
pub fn faults(opts: &FaultOpts) -> anyhow::Result<(Arc<Faults>, u64)> {
    let seed = opts.seed.unwrap_or_else(rand::random);
    Ok((Arc::new(Faults::new(opts, seed)?), seed))
}

/// Where the receiver listens: a fixed port when it must listen again after an outage.
pub fn receiver_addr(faults: &Faults) -> anyhow::Result<SocketAddr> {
    match faults.outage() {
        Some(_) => crate::ports::stable_loopback(),
        None => Ok(SocketAddr::from(([127, 0, 0, 1], 0))),
    }
}

/// The hub to start for `run` and `crash`, one destination per receiver; `chaos` when
/// deliveries fail on purpose.
pub fn hub_spec(
    opts: &HubOpts,
    receivers: Vec<SocketAddr>,
    listen: SocketAddr,
    chaos: bool,
    trace_sink: Option<SocketAddr>,
) -> anyhow::Result<HubSpec> {
    let base = if chaos { Tuning::CHAOS } else { Tuning::PLAIN };
    let tuning = Tuning {
        timeout: opts.hub_timeout.unwrap_or(base.timeout),
        breaker: opts.breaker.unwrap_or(base.breaker),
        max_pending: opts.max_pending,
        protect: opts.protect,
        trace: match (opts.trace_sample, trace_sink) {
            (Some(ratio), Some(sink)) => {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&ratio),
                    "--trace-sample is a share of traces, from 0 to 1"
                );
                Some((sink, (ratio * 1000.0).round() as u16))
            }
            _ => None,
        },
        ..base
    };
    anyhow::ensure!(
        !tuning.timeout.is_zero(),
        "--hub-timeout must be longer than zero"
    );
    let ferry = match &opts.ferry {
        Some(f) => f.clone(),
        None => hub::default_ferry()?,
    };
    Ok(HubSpec {
        ferry,
        receivers,
        concurrency: opts.hub_concurrency,
        data_root: opts.data_root.clone(),
        keep: opts.keep_data,
        listen,
        tuning,
        sink: None,
    })
}

/// A progress line on stderr every second; with several destinations, the deliveries of
/// each.
fn progress(shared: Arc<Shared>, sinks: Vec<(String, Arc<Sink>)>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = shared.plan.start;
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::from_std(start + Duration::from_secs(1)),
            Duration::from_secs(1),
        );
        let mut last_ok = 0;
        let mut last_dlv = vec![0; sinks.len()];
        loop {
            tick.tick().await;
            let ok = shared.ok.load(std::sync::atomic::Ordering::Relaxed);
            let sent = shared.sent.load(std::sync::atomic::Ordering::Relaxed);
            let failed = shared.failed.load(std::sync::atomic::Ordering::Relaxed);
            let mut delivered = String::new();
            for ((name, sink), last) in sinks.iter().zip(last_dlv.iter_mut()) {
                let dlv = sink.unique();
                let label = if sinks.len() == 1 {
                    "delivered".to_string()
                } else {
                    name.clone()
                };
                delivered.push_str(&format!("  {label} {dlv:>8} ({:>6}/s)", dlv - *last));
                *last = dlv;
            }
            eprintln!(
                "[{:>6.1}s] sent {sent:>8}  accepted {ok:>8} ({:>6}/s){delivered}  failed {failed}",
                start.elapsed().as_secs_f64(),
                ok - last_ok,
            );
            last_ok = ok;
        }
    })
}

/// Pause or resume (`action`) every destination's lane of the bench flow through the hub's
/// admin API.
async fn set_lanes(target: &Target, dests: &[Destination], action: &str) -> anyhow::Result<()> {
    for d in dests {
        let path = format!("/admin/v1/lanes/{}/{}/{action}", hub::FLOW, d.name);
        metrics::post(target, &path, Some(hub::ADMIN_TOKEN))
            .await
            .with_context(|| format!("could not {action} destination {} (POST {path})", d.name))?;
    }
    Ok(())
}

/// Accepted events that have not reached the drained destinations, summed.
fn missing_at(drained: &[&Destination], accepted: &[u64]) -> u64 {
    drained.iter().map(|d| d.sink.missing(accepted)).sum()
}

/// Send the planned events, then wait for their deliveries at every healthy destination;
/// sample the run every `sample_every` if given.
#[allow(clippy::too_many_arguments)]
async fn measure(
    load: &Load,
    target: Target,
    also: Vec<Target>,
    key: SigningKey,
    run: &str,
    clock: Clock,
    dests: &[Destination],
    hub_pid: Option<u32>,
    sample_every: Option<Duration>,
    pause_during_load: bool,
) -> anyhow::Result<Measured> {
    let opts = &load.opts;
    if pause_during_load {
        set_lanes(&target, dests, "pause").await?;
    }
    let template = Template::new(run, opts.body_bytes)?;
    let loadavg_before = procfs::loadavg_1m();
    let probe_before = probe::cpu();
    let cpu0 = CpuSample::take(hub_pid);
    let start = Instant::now();
    let plan = Plan {
        start,
        limit: load.events,
        deadline: opts.duration.map(|d| start + d),
        rate: opts.rate,
        request_timeout: opts.timeout,
    };
    let shared = Arc::new(
        Shared::new(plan, target.clone(), template, key, run.to_string(), clock).spreading(also),
    );
    let sinks: Vec<(String, Arc<Sink>)> = dests
        .iter()
        .map(|d| (d.name.clone(), d.sink.clone()))
        .collect();
    let ticker = (!opts.quiet).then(|| progress(shared.clone(), sinks.clone()));
    let sampler = sample_every.map(|every| {
        Sampler::spawn(
            every,
            Watched {
                shared: shared.clone(),
                destinations: sinks,
                target: target.clone(),
                hub_pid,
            },
        )
    });

    let mut tasks = JoinSet::new();
    for _ in 0..opts.connections {
        tasks.spawn(sender::worker(shared.clone()));
    }
    let mut send = WorkerResult::empty();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(r) => send.merge(r),
            Err(e) => eprintln!("ferry-bench: a sender task failed: {e}"),
        }
    }
    let send_end = Instant::now();
    let cpu1 = CpuSample::take(hub_pid);
    let resumed_at = if pause_during_load {
        set_lanes(&target, dests, "resume").await?;
        Some(Instant::now())
    } else {
        None
    };

    // Wait until every accepted event has arrived at every healthy destination, or
    // deliveries to them stop for drain_timeout.
    send.accepted.sort_unstable();
    let drained: Vec<&Destination> = dests.iter().filter(|d| d.drained()).collect();
    let requests = || drained.iter().map(|d| d.sink.requests()).sum::<u64>();
    let accepted = send.accepted.len() as u64;
    let mut last_requests = requests();
    let mut last_change = Instant::now();
    let mut last_check: Option<Instant> = None;
    let missing = loop {
        let now = Instant::now();
        if drained.iter().all(|d| d.sink.unique() >= accepted)
            && last_check.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(200))
        {
            last_check = Some(now);
            let missing = missing_at(&drained, &send.accepted);
            if missing == 0 {
                break 0;
            }
        }
        let r = requests();
        if r != last_requests {
            last_requests = r;
            last_change = now;
        } else if now.duration_since(last_change) >= opts.drain_timeout {
            break missing_at(&drained, &send.accepted);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let drain_end = Instant::now();
    let cpu2 = CpuSample::take(hub_pid);
    if let Some(t) = ticker {
        t.abort();
    }
    let samples = match sampler {
        Some(s) => s.finish().await,
        None => Vec::new(),
    };
    let probe_after = probe::cpu();
    let each: Vec<(SinkStats, u64)> = dests
        .iter()
        .map(|d| (d.sink.stats(), d.sink.missing(&send.accepted)))
        .collect();
    let sink = SinkStats::merged(
        dests
            .iter()
            .zip(&each)
            .filter(|(d, _)| d.drained())
            .map(|(_, (s, _))| s),
    );
    Ok(Measured {
        start,
        send,
        send_end,
        drain_end,
        missing,
        sink,
        each,
        samples,
        resumed_at,
        probes: [probe_before, probe_after],
        cpu: [cpu0, cpu1, cpu2],
        bench_threads: load.bench_threads,
        loadavg_before,
    })
}

/// What a report says about the run besides the measurements.
struct Meta<'a> {
    mode: &'static str,
    target: &'a Target,
    dests: &'a [Destination],
    run: &'a str,
    started_at_unix: i64,
    hub_concurrency: Option<usize>,
    /// The receiver faults of the command line.
    faults: &'a Faults,
    seed: u64,
    /// The hub's `/metrics` at the end of the run (empty if unknown).
    end_metrics: &'a str,
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// From the first accept (or arrival; or the resume of paused lanes) to the last arrival
/// at `sink`.
fn delivery_window(m: &Measured, sink: &SinkStats) -> f64 {
    let first = match (m.resumed_at.or(m.send.first_ok), sink.first) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match (first, sink.last) {
        (Some(f), Some(l)) => l.saturating_duration_since(f).as_secs_f64(),
        _ => 0.0,
    }
}

/// Each destination's line of the report.
fn destination_reports(meta: &Meta<'_>, m: &Measured) -> Vec<DestinationReport> {
    let backlog = metrics::by_destination(meta.end_metrics, ferry_metrics::BACKLOG_DEPTH, None);
    let breaker = metrics::by_destination(meta.end_metrics, ferry_metrics::BREAKER_STATE, None);
    meta.dests
        .iter()
        .zip(&m.each)
        .map(|(d, (stats, missing))| {
            let window = delivery_window(m, stats);
            let attempts = ["delivered", "retry", "dead"]
                .into_iter()
                .filter_map(|outcome| {
                    let by = metrics::by_destination(
                        meta.end_metrics,
                        ferry_metrics::DELIVERY_ATTEMPTS_TOTAL,
                        Some(("outcome", outcome)),
                    );
                    Some((outcome.to_string(), *by.get(&d.name)?))
                })
                .collect();
            DestinationReport {
                name: d.name.clone(),
                role: d.role,
                receiver: format!("http://{}/sink", d.addr),
                faults: d.faults.config().describe(),
                faults_answered: d.faults.counts.tally(),
                delivered: stats.unique,
                receiver_requests: stats.requests,
                accepted_not_delivered: *missing,
                delivery_window_secs: window,
                delivered_per_sec: per_sec(stats.unique, window),
                end_to_end: Latency::from_histogram(&stats.e2e_us),
                backlog_at_end: backlog.get(&d.name).copied(),
                breaker_at_end: breaker.get(&d.name).copied(),
                attempts,
            }
        })
        .collect()
}

fn build_report(meta: &Meta<'_>, load: &Load, m: &Measured, hub: Option<HubUsage>) -> Report {
    let Meta {
        mode,
        target,
        dests,
        run,
        started_at_unix,
        hub_concurrency,
        faults,
        seed,
        end_metrics: _,
    } = *meta;
    let s = &m.send;
    let sink = &m.sink;
    let accepted = s.accepted.len() as u64;
    let send_end = s.last_done.unwrap_or(m.send_end);
    let send_window = send_end.saturating_duration_since(m.start).as_secs_f64();
    let delivery_window = delivery_window(m, sink);
    let failed: u64 = s.errors.values().sum();
    let drained = dests.iter().filter(|d| d.drained()).count() as u64;
    let delivered_accepted = (accepted * drained).saturating_sub(m.missing);
    let mut answered = FaultTally::default();
    for d in dests.iter().filter(|d| d.drained()) {
        answered.add(&d.faults.counts.tally());
    }
    let receivers: Vec<String> = dests
        .iter()
        .map(|d| format!("http://{}/sink", d.addr))
        .collect();
    let [cpu0, cpu1, cpu2] = &m.cpu;
    let hub = hub.map(|mut h| {
        h.cpu_cores_sending = cores(cpu0, cpu1, |c| c.hub);
        h.cpu_cores_draining = cores(cpu1, cpu2, |c| c.hub);
        h.cpu_secs = cpu2.hub.zip(cpu0.hub).map(|(b, a)| b - a);
        h
    });
    let busy = cores(cpu0, cpu1, |c| c.machine);
    let mine = |c: &CpuSample| Some(c.bench? + c.hub.unwrap_or(0.0));
    let machine = MachineUsage {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg_1m_before: m.loadavg_before,
        busy_cores_sending: busy,
        other_cores_sending: busy
            .zip(cores(cpu0, cpu1, mine))
            .map(|(b, m)| (b - m).max(0.0)),
        cpu_probe_ms: m.probes.map(|d| d.as_secs_f64() * 1e3),
    };
    Report {
        mode,
        target: target.url(),
        receiver: receivers.join(", "),
        run_id: run.to_string(),
        started_at_unix,
        config: RunConfig {
            connections: load.opts.connections,
            events: load.events,
            duration_secs: load.opts.duration.map(|d| d.as_secs_f64()),
            rate: load.opts.rate,
            body_bytes: load.opts.body_bytes,
            request_timeout_secs: load.opts.timeout.as_secs_f64(),
            bench_threads: m.bench_threads,
            hub_concurrency,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        },
        events: Events {
            sent: s.sent,
            accepted,
            accepted_new: s.accepted_new,
            accepted_duplicate: s.duplicate,
            accepted_other: s.other_2xx,
            failed,
            delivered: sink.unique,
            receiver_requests: sink.requests,
            accepted_not_delivered: m.missing,
            delivered_not_accepted: sink.unique.saturating_sub(delivered_accepted),
            duplicate_deliveries: sink.duplicate_ids,
            redelivered_events: sink.redelivered_events,
            deliveries_without_webhook_id: sink.missing_id,
            foreign_deliveries: sink.foreign,
            unparsable_deliveries: sink.unparsable,
        },
        throughput: Throughput {
            send_window_secs: send_window,
            accepted_per_sec: per_sec(accepted, send_window),
            delivery_window_secs: delivery_window,
            delivery_window_from: if m.resumed_at.is_some() {
                "lanes resumed"
            } else {
                "first accept"
            },
            delivered_per_sec: per_sec(sink.unique, delivery_window),
        },
        latency: Latencies {
            measured_from: if load.opts.rate.is_some() {
                "intended send"
            } else {
                "actual send"
            },
            accept: Latency::from_histogram(&s.latency_us),
            end_to_end: Latency::from_histogram(&sink.e2e_us),
        },
        errors: s.errors.clone(),
        error_examples: s.examples.clone(),
        receiver_faults: faults.any().then(|| ReceiverFaults {
            config: faults.config().clone(),
            seed,
            answered,
        }),
        destinations: destination_reports(meta, m),
        samples: m.samples.clone(),
        drain: Drain {
            complete: m.missing == 0,
            waited_secs: m
                .drain_end
                .saturating_duration_since(m.send_end)
                .as_secs_f64(),
        },
        hub,
        bench: BenchUsage {
            cpu_cores_sending: cores(cpu0, cpu1, |c| c.bench),
            cpu_secs: cpu2.bench.zip(cpu0.bench).map(|(b, a)| b - a),
            peak_rss_bytes: procfs::memory("self").map(|m| m.peak_rss_bytes),
        },
        machine,
    }
}

fn emit(report: &Report, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(if report.drain.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_UNDELIVERED)
    })
}

/// What `/proc` says about the hub, if its pid is known.
fn hub_usage(pid: Option<u32>) -> HubUsage {
    let p = pid.map(|p| p.to_string());
    let mem = p.as_deref().and_then(procfs::memory);
    HubUsage {
        pid,
        peak_rss_bytes: mem.map(|m| m.peak_rss_bytes),
        rss_bytes: mem.map(|m| m.rss_bytes),
        cpu_cores_sending: None,
        cpu_cores_draining: None,
        cpu_secs: None,
        threads: p.as_deref().map(procfs::thread_cpu).unwrap_or_default(),
        metrics: BTreeMap::new(),
        store_commits: None,
        exit: None,
        stop_secs: None,
        data_dir: None,
        log: None,
    }
}

/// `ferry-bench run`.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let load = Load::new(args.load)?;
    let (faults, seed) = faults(&args.faults)?;
    let started_at_unix = unix_secs();
    let clock = Clock::new();
    let run_id = payload::new_run_id();
    let dests = destinations::start(&args.destinations, &args.faults, seed, clock, &run_id).await?;
    let otlp = match args.hub.trace_sample {
        Some(_) => Some(crate::otlp_sink::start().await?),
        None => None,
    };
    let spec = hub_spec(
        &args.hub,
        dests.iter().map(|d| d.addr).collect(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        faults.any(),
        otlp.as_ref().map(|(addr, _)| *addr),
    )?;
    let mut hub = Hub::start(&spec).await?;
    if !load.opts.quiet {
        let receivers: Vec<String> = dests
            .iter()
            .map(|d| format!("{} http://{}/sink ({})", d.name, d.addr, d.role.as_str()))
            .collect();
        eprintln!(
            "ferry-bench: hub pid {} on http://{} (log {}), receivers: {}",
            hub.pid,
            hub.addr,
            hub.log_path().display(),
            receivers.join(", ")
        );
    }
    let target = Target::local(hub.addr, hub::FLOW)?;
    let key = SigningKey::from_standard_webhooks(hub::SOURCE_SECRET)
        .context("the bench secret is not a valid Standard Webhooks secret")?;
    let measured = measure(
        &load,
        target.clone(),
        Vec::new(),
        key,
        &run_id,
        clock,
        &dests,
        Some(hub.pid),
        args.destinations.sample_every,
        args.deliver_after_load,
    )
    .await;
    let mut usage = hub_usage(Some(hub.pid));
    let end_metrics = metrics::text(&target).await.unwrap_or_default();
    usage.metrics = metrics::timings(&end_metrics);
    usage.store_commits = metrics::store_commits(&end_metrics);
    let alive = hub.running();
    let log = hub.log_path();
    let stopped = hub.stop().await;
    let measured = measured?;
    usage.exit = Some(if alive {
        stopped.exit.clone()
    } else {
        format!("died during the run: {}", stopped.exit)
    });
    usage.stop_secs = Some(stopped.stop_secs);
    if let Some(dir) = &stopped.kept_dir {
        usage.data_dir = Some(dir.display().to_string());
        usage.log = Some(dir.join("hub.log").display().to_string());
    } else {
        usage.log = Some(log.display().to_string());
    }
    if !stopped.clean {
        eprintln!(
            "ferry-bench: the hub did not stop cleanly: {}",
            stopped.exit
        );
    }
    let meta = Meta {
        mode: "run",
        target: &target,
        dests: &dests,
        run: &run_id,
        started_at_unix,
        hub_concurrency: Some(args.hub.hub_concurrency),
        faults: &faults,
        seed,
        end_metrics: &end_metrics,
    };
    let report = build_report(&meta, &load, &measured, Some(usage));
    if let Some((_, sink)) = &otlp {
        use std::sync::atomic::Ordering::Relaxed;
        eprintln!(
            "ferry-bench: the OTLP sink received {} exports, {} bytes of spans",
            sink.requests.load(Relaxed),
            sink.bytes.load(Relaxed)
        );
    }
    emit(&report, load.opts.json)
}

/// `ferry-bench load`.
pub async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let load = Load::new(args.load)?;
    let secret = match (&args.secret, &args.secret_file) {
        (Some(s), _) => s.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        (None, None) => anyhow::bail!("give --secret or --secret-file"),
    };
    let key = SigningKey::from_standard_webhooks(&secret).context("invalid --secret")?;
    let (first, rest) = args
        .url
        .split_first()
        .context("give the hub's URL with --url")?;
    let target = Target::from_url(first, &args.flow).await?;
    let mut also = Vec::with_capacity(rest.len());
    for url in rest {
        also.push(Target::from_url(url, &args.flow).await?);
    }
    let (faults, seed) = faults(&args.faults)?;
    let started_at_unix = unix_secs();
    let clock = Clock::new();
    let run_id = payload::new_run_id();
    let sink = Arc::new(Sink::new(clock, &run_id));
    let receiver = receiver::start(args.receiver_listen, sink.clone(), faults.clone()).await?;
    if !load.opts.quiet {
        eprintln!(
            "ferry-bench: sending to {}, receiver on http://{receiver}/sink",
            target.url()
        );
    }
    let dests = [Destination::healthy("sink", receiver, sink, faults.clone())];
    let measured = measure(
        &load,
        target.clone(),
        also,
        key,
        &run_id,
        clock,
        &dests,
        args.hub_pid,
        None,
        false,
    )
    .await?;
    let end_metrics = metrics::text(&target).await;
    let usage = (args.hub_pid.is_some() || end_metrics.is_some()).then(|| HubUsage {
        metrics: end_metrics
            .as_deref()
            .map(metrics::timings)
            .unwrap_or_default(),
        store_commits: end_metrics.as_deref().and_then(metrics::store_commits),
        ..hub_usage(args.hub_pid)
    });
    let meta = Meta {
        mode: "load",
        target: &target,
        dests: &dests,
        run: &run_id,
        started_at_unix,
        hub_concurrency: None,
        faults: &faults,
        seed,
        end_metrics: end_metrics.as_deref().unwrap_or(""),
    };
    let report = build_report(&meta, &load, &measured, usage);
    emit(&report, load.opts.json)
}

#[cfg(test)]
mod tests {
    //! `measure` against a mock hub in the same process: it verifies signatures, refuses
    //! every 10th event with 503, delivers the rest to the receiver over HTTP (one of them
    //! twice under the same webhook-id), and drops one connection without answering.

    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use ferry_signature::SignatureScheme as _;
    use ferry_signature::schemes::StandardWebhooks;
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;

    use super::*;

    struct Mock {
        verifier: StandardWebhooks,
        receiver: SocketAddr,
        n: AtomicU64,
    }

    async fn deliver(to: SocketAddr, id: String, body: Bytes) {
        let Ok(stream) = tokio::net::TcpStream::connect(to).await else {
            return;
        };
        let Ok((mut tx, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            return;
        };
        tokio::spawn(conn);
        let req = http::Request::post("/sink")
            .header("host", to.to_string())
            .header("webhook-id", id)
            .body(Full::new(body));
        if let Ok(req) = req {
            let _ = tx.send_request(req).await;
        }
    }

    async fn ingest(State(m): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> Response {
        if m.verifier.verify(&headers, &body, unix_secs()).is_err() {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let n = m.n.fetch_add(1, Ordering::Relaxed);
        if n % 10 == 9 {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    ("retry-after", "1"),
                    ("content-type", "application/problem+json"),
                ],
                "{\"title\":\"saturated\"}",
            )
                .into_response();
        }
        let id = format!("dlv_{n}");
        let times = if n == 3 { 2 } else { 1 };
        let to = m.receiver;
        tokio::spawn(async move {
            for _ in 0..times {
                deliver(to, id.clone(), body.clone()).await;
            }
        });
        StatusCode::ACCEPTED.into_response()
    }

    fn opts(events: u64, rate: Option<f64>) -> LoadOpts {
        LoadOpts {
            connections: 4,
            events: Some(events),
            duration: None,
            rate,
            body_bytes: 1024,
            timeout: Duration::from_secs(5),
            // Generous: the drain ends as soon as every delivery is in; it only gives up
            // after this long without one, which a busy machine must not cause.
            drain_timeout: Duration::from_secs(30),
            json: false,
            quiet: true,
            threads: Some(2),
        }
    }

    async fn against_mock(opts: LoadOpts) -> Report {
        let clock = Clock::new();
        let run = payload::new_run_id();
        let sink = Arc::new(Sink::new(clock, &run));
        let receiver = receiver::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            sink.clone(),
            Arc::new(Faults::none()),
        )
        .await
        .unwrap();
        let key = SigningKey::from_standard_webhooks(hub::SOURCE_SECRET).unwrap();
        let mock = Arc::new(Mock {
            verifier: StandardWebhooks::with_default_tolerance(key.clone()),
            receiver,
            n: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hub_addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/ingest/bench", axum::routing::post(ingest))
            .with_state(mock);
        tokio::spawn(async move { axum::serve(listener, app).await });

        let target = Target::local(hub_addr, "bench").unwrap();
        let load = Load::new(opts).unwrap();
        let dests = [Destination::healthy(
            "sink",
            receiver,
            sink,
            Arc::new(Faults::none()),
        )];
        let m = measure(
            &load,
            target.clone(),
            Vec::new(),
            key,
            &run,
            clock,
            &dests,
            None,
            None,
            false,
        )
        .await
        .unwrap();
        let meta = Meta {
            mode: "load",
            target: &target,
            dests: &dests,
            run: &run,
            started_at_unix: 0,
            hub_concurrency: None,
            faults: &Faults::none(),
            seed: 0,
            end_metrics: "",
        };
        build_report(&meta, &load, &m, None)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_counts_everything() {
        let r = against_mock(opts(500, None)).await;
        let e = &r.events;
        assert_eq!(e.sent, 500);
        assert_eq!((e.accepted, e.accepted_new, e.failed), (450, 450, 50));
        assert_eq!(r.errors.get("status 503 (with Retry-After)"), Some(&50));
        assert!(r.error_examples["status 503 (with Retry-After)"].contains("saturated"));
        assert_eq!(
            (
                e.delivered,
                e.accepted_not_delivered,
                e.delivered_not_accepted
            ),
            (450, 0, 0)
        );
        assert_eq!(
            (
                e.duplicate_deliveries,
                e.redelivered_events,
                e.receiver_requests
            ),
            (1, 0, 451)
        );
        assert!(r.drain.complete);
        assert_eq!(r.latency.accept.count, 450);
        assert_eq!(r.latency.end_to_end.count, 450);
        assert!(r.throughput.accepted_per_sec > 0.0 && r.throughput.delivered_per_sec > 0.0);
        assert!(r.latency.accept.p50_us <= r.latency.accept.max_us);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["events"]["accepted"], 450);
        assert!(r.render().contains("status 503 (with Retry-After): 50"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fixed_rate_follows_the_schedule() {
        let t0 = Instant::now();
        let r = against_mock(opts(200, Some(1000.0))).await;
        // 200 events at 1000/s are due over 0.2 s.
        assert!(t0.elapsed() >= Duration::from_millis(199));
        assert!(
            r.throughput.send_window_secs >= 0.19,
            "{}",
            r.throughput.send_window_secs
        );
        assert_eq!(r.events.sent, 200);
        assert_eq!(r.latency.measured_from, "intended send");
        assert_eq!(r.events.delivered, 180);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_hub_is_counted_not_fatal() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let clock = Clock::new();
        let run = payload::new_run_id();
        let sink = Arc::new(Sink::new(clock, &run));
        let key = SigningKey::from_standard_webhooks(hub::SOURCE_SECRET).unwrap();
        let mut o = opts(20, None);
        o.drain_timeout = Duration::from_millis(100);
        let load = Load::new(o).unwrap();
        let target = Target::local(addr, "bench").unwrap();
        let dests = [Destination::healthy(
            "sink",
            addr,
            sink,
            Arc::new(Faults::none()),
        )];
        let m = measure(
            &load,
            target,
            Vec::new(),
            key,
            &run,
            clock,
            &dests,
            None,
            None,
            false,
        )
        .await
        .unwrap();
        assert_eq!(m.send.accepted.len(), 0);
        assert_eq!(m.send.errors.get("connect: connection refused"), Some(&20));
        assert_eq!(m.missing, 0);
    }

    #[tokio::test]
    async fn target_from_url() {
        let t = Target::from_url("http://127.0.0.1:8080/", "orders")
            .await
            .unwrap();
        assert_eq!(t.url(), "http://127.0.0.1:8080/ingest/orders");
        let t = Target::from_url("http://127.0.0.1/hub", "orders")
            .await
            .unwrap();
        assert_eq!(t.path, "/hub/ingest/orders");
        assert_eq!(t.addr.port(), 80);
        assert!(Target::from_url("https://127.0.0.1", "x").await.is_err());
        assert!(Target::from_url("http://127.0.0.1", "a/b").await.is_err());
    }
}
