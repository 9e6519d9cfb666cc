//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::faults::Outage;

/// Events sent when neither `--events` nor `--duration` is given.
pub const DEFAULT_EVENTS: u64 = 100_000;
/// Most destinations `run --destinations` generates.
pub const MAX_DESTINATIONS: i64 = 16;

/// Load tool for Ferry: signed webhooks in, a local receiver out, throughput and latency
/// reported.
#[derive(Debug, Parser)]
#[command(name = "ferry-bench", version, about, long_about = None)]
#[command(after_help = "\
Examples:
  ferry-bench run                                  # 100000 events, 64 connections, own hub
  ferry-bench run --connections 4 --events 20000   # latency at low concurrency
  ferry-bench run --rate 5000 --duration 30s       # fixed rate, coordinated-omission free
  ferry-bench load --url http://127.0.0.1:8080 --flow orders --secret whsec_...
  ferry-bench ceiling                              # bare HTTP server for wrk
  ferry-bench crash --kills 100                    # SIGKILL the hub 100 times, check nothing is lost
  ferry-bench run --fail-ratio 0.2 --latency 5ms   # a receiver that fails a fifth of deliveries")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a hub (`ferry serve`) with a bench config, load it, stop it and report.
    #[command(after_help = "\
The hub gets a generated config in a temporary directory: flow `bench` with a Standard
Webhooks source and one HTTP destination pointing at ferry-bench's own receiver (or, with
--destinations N, N destinations with a receiver each, some of which may hang or be down).
Its store lives in that directory too (removed afterwards unless --keep-data).

Exit status: 0 when every accepted event reached the receiver of every destination that is
neither hanging nor down, 3 when some did not (the report is printed either way), 1 when
the run could not be carried out.

Examples:
  ferry-bench run
  ferry-bench run --connections 32 --events 100000
  ferry-bench run --connections 4 --events 20000 --json > latency.json
  ferry-bench run --rate 10000 --duration 60s --connections 128
  ferry-bench run --ferry ./target/release/ferry --keep-data
  ferry-bench run --fail-ratio 0.2 --429-ratio 0.05 --reset-ratio 0.02 --latency 2ms
  ferry-bench run --deliver-after-load --connections 64 --events 100000
  ferry-bench run --destinations 3 --hang-destination 2 --hub-timeout 30s --rate 3000 --duration 90s
  ferry-bench run --destinations 3 --down-destination 2 --max-pending 2000000 \\
      --events 1100000 --sample-every 5s")]
    Run(RunArgs),
    /// Load an already running hub; its flow's destination must point at this tool's receiver.
    #[command(after_help = "\
Configure the hub's flow with a Standard Webhooks source using the same secret, and a
destination `http: { url: \"http://127.0.0.1:8098/sink\" }` (the --receiver-listen address).
Deliveries of other runs or flows reaching the receiver are counted as foreign and ignored.
Only plain http:// hub URLs are supported. Exit status as for `run`.

Examples:
  ferry-bench load --url http://127.0.0.1:8080 --flow bench --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  ferry-bench load --url http://127.0.0.1:8080 --flow bench --secret-file ./secret \\
      --receiver-listen 127.0.0.1:9000 --hub-pid $(pgrep -x ferry) --duration 30s
  ferry-bench load --url http://127.0.0.1:8081 --url http://127.0.0.1:8082 --flow bench \\
      --secret-file ./secret   # two nodes on one PostgreSQL store")]
    Load(LoadArgs),
    /// Serve a bare HTTP endpoint answering 200 to any POST: the ceiling to compare with.
    #[command(after_help = "\
Drive it with wrk and the bundled script (a 1 KB JSON POST, like ferry-bench's events):

Examples:
  ferry-bench ceiling &
  wrk -t2 -c64 -d10s -s crates/ferry-bench/wrk/post-1k.lua http://127.0.0.1:8099/
  ferry-bench ceiling --listen 0.0.0.0:9000 --threads 1")]
    Ceiling(CeilingArgs),
    /// The crash oracle: load a hub, SIGKILL and restart it K times, drain, and check that
    /// every acknowledged event reached the receiver intact.
    #[command(after_help = "\
The hub runs with a generated config as in `run` (retries fast and practically forever, a
2 s destination timeout, a circuit breaker that recovers in a second), on a fixed port and
data directory. While senders load it, it is killed with SIGKILL after a random uptime
(--uptime) and restarted at once, K times. Then the load stops, the backlog drains, the hub
is stopped with SIGTERM and the oracle compares what was sent with what arrived:

  - every event answered 2xx must have reached the receiver (answered 200 by it), with a
    body hashing the same as the one sent;
  - events that got no 2xx (refused, reset, timed out while the hub was down) may or may
    not arrive, but intact if they do;
  - duplicates are allowed (at-least-once) and counted, but every delivery of an event
    must carry the `webhook-id` of its first delivery;
  - the hub must not panic, exit on its own, or fail to restart.

Exit status: 0 when the oracle passes, 3 when it finds a failure (the report says which;
the hub's directory is kept), 1 when the run could not be carried out.

Examples:
  ferry-bench crash                                # 10 kills, 16 connections
  ferry-bench crash --kills 100 --json > crash.json
  ferry-bench crash --kills 20 --rate 2000 --fail-ratio 0.1 --reset-ratio 0.02 \\
      --hang-ratio 0.01 --429-ratio 0.02 --latency 2ms --latency-jitter 5ms \\
      --outage every=10s,for=3s")]
    Crash(CrashArgs),
    /// Time a hub's deliveries to a NATS, RabbitMQ or PostgreSQL destination, per event or
    /// batched.
    #[command(after_help = "\
The hub gets the bench flow with one destination of that kind, its lane paused; the
events are posted, the lane resumed, and the drain timed until the hub counts every
accepted event delivered. The stream, queue or table is created for the run, its
contents counted afterwards, and removed. HTTP's figure: `run --deliver-after-load`.
`--direct` publishes from the tool itself with no hub, as the destination would: what
the broker alone confirms per second, the ceiling for the hub's figure.

Examples:
  ferry-bench sink --kind nats --events 50000
  ferry-bench sink --kind rabbitmq --events 50000 --rabbitmq-queue quorum
  ferry-bench sink --kind rabbitmq --events 50000 --direct
  ferry-bench sink --kind rabbitmq --events 50000 --batch 100
  ferry-bench sink --kind postgres --events 50000 --batch 500 --hub-concurrency 4")]
    Sink(SinkArgs),
    /// Time the disk's write-then-fsync, as the store's writer meets it, with 1, 2 and 4
    /// writers: the pace of durable commits at low concurrency, and what more writers
    /// could gain.
    #[command(after_help = "\
Each writer thread writes one block (--write-kib, about one commit's WAL frames at 4
connections) and fsyncs it, in a closed loop, overwriting a ring of 4 MiB of blocks written
beforehand, as a reused WAL is. Each writer count runs for --duration in turn, with a file
per writer or, with --shared, one file at disjoint offsets. Run it on the disk the hub's
store lives on: the files go in a fresh directory under --dir, removed afterwards.

Examples:
  ferry-bench disk
  ferry-bench disk --dir /var/lib/ferry --writers 1,2,4,8 --duration 5s
  ferry-bench disk --write-kib 8 --shared --json")]
    Disk(DiskArgs),
}

/// How much load, and how it is shaped.
#[derive(Debug, Clone, Args)]
pub struct LoadOpts {
    /// Concurrent HTTP/1.1 connections to the hub, each carrying one request at a time.
    #[arg(long, short = 'c', default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub connections: u64,
    /// Events to send [default: 100000 unless --duration is given].
    #[arg(long, short = 'n', conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub events: Option<u64>,
    /// Send for this long instead of a fixed number of events (e.g. `30s`, `2m`).
    #[arg(long, short = 'd', value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Fixed-rate mode: events per second, scheduled independently of responses; latency is
    /// measured from each event's intended send time (no coordinated omission).
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Size of each JSON event body in bytes.
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// Per-request timeout towards the hub's ingress.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// After sending, wait for deliveries until every accepted event arrived or none arrived
    /// for this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Worker threads of ferry-bench itself [default: number of CPUs].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The hub `run` and `crash` start.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Hub")]
pub struct HubOpts {
    /// The `ferry` binary [default: `ferry` next to this executable].
    #[arg(long)]
    pub ferry: Option<PathBuf>,
    /// Keep the hub's config and data directory (its path is printed).
    #[arg(long)]
    pub keep_data: bool,
    /// Create the hub's temporary directory under this directory [default: the system
    /// temp dir]. Its filesystem is where the hub fsyncs.
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// `concurrency` of the hub's destination (deliveries in flight at once).
    #[arg(long, default_value_t = 64)]
    pub hub_concurrency: usize,
    /// The destination's `http.timeout` [default: 10s; 2s with receiver faults and in
    /// `crash`].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub hub_timeout: Option<Duration>,
    /// The destination's circuit breaker [default: `fast` with receiver faults and in
    /// `crash`, else the hub's own defaults].
    #[arg(long, value_enum)]
    pub breaker: Option<Breaker>,
    /// `backlog.max_pending` of every destination: deliveries waiting beyond which ingress
    /// answers 503 [default: the hub's, 1000000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending: Option<u64>,
    /// Data protection of the bench flow: `off` (no schema), `validated` (a `validate` step
    /// on a schema that classifies nothing: the baseline of protection's own cost),
    /// `classified` (the same schema classifying the event's `pad` and `run`, the receiving
    /// system's policy applied to every delivery, no encryption),
    /// `encrypted` (the same, encrypted at rest; one data subject per run, so the data key
    /// is found in memory: the steady state), `encrypted-new-subjects` (the subject is the
    /// event's `seq`: every event creates a data key, the worst case).
    #[arg(long, value_enum, default_value_t = Protect::Off)]
    pub protect: Protect,
    /// Export the hub's spans (`settings.tracing`) to an OTLP/HTTP sink the bench runs on
    /// loopback, recording this share of new traces (0 to 1). Without it the hub exports no
    /// span.
    #[arg(long, value_name = "RATIO")]
    pub trace_sample: Option<f64>,
}

/// What the generated hub does to protect the bench events (see [`HubOpts::protect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protect {
    Off,
    Validated,
    Classified,
    Encrypted,
    EncryptedNewSubjects,
}

/// Several destinations in the generated flow, each delivering to a receiver of its own.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Destinations")]
pub struct DestinationOpts {
    /// Destinations of the bench flow (`d1`..`dN`; one is called `sink`). Every event goes
    /// to each of them, and each has its own receiver; the receiver faults above apply to
    /// every destination that is neither hanging nor down.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_DESTINATIONS))]
    pub destinations: u16,
    /// Destination N's receiver accepts the connection and the request, and never answers:
    /// the hub gives up after its destination timeout (see --hub-timeout). Repeatable.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=MAX_DESTINATIONS))]
    pub hang_destination: Vec<u16>,
    /// Destination N has no receiver: nothing listens on its port, connections are
    /// refused. Repeatable.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=MAX_DESTINATIONS))]
    pub down_destination: Vec<u16>,
    /// Every this long (e.g. `5s`), record accepted and delivered counts, the hub's RSS and
    /// each destination's backlog (`ferry_backlog_depth` and `ferry_breaker_state` from its
    /// `/metrics`); the report shows the timeline.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub sample_every: Option<Duration>,
}

/// Circuit breaker settings written into the generated hub config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Breaker {
    /// Opens when over 90% of at least 20 calls in 10 s failed, probes after 1 s.
    Fast,
    /// The hub's defaults (nothing written).
    Default,
    /// `enabled: false`.
    Off,
}

/// Faults injected by the receiver. A faulty answer never counts as a delivery. `Default`:
/// none.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Receiver faults")]
pub struct FaultOpts {
    /// Share of deliveries answered with 500 (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub fail_ratio: f64,
    /// Share of deliveries answered with 429 and `Retry-After: 1`.
    #[arg(long = "429-ratio", default_value_t = 0.0)]
    pub too_many_ratio: f64,
    /// Share of deliveries never answered: the connection is held until the hub gives up
    /// (after its destination timeout, see --hub-timeout).
    #[arg(long, default_value_t = 0.0)]
    pub hang_ratio: f64,
    /// Share of deliveries whose connection is reset (TCP RST) once the request was read,
    /// without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub reset_ratio: f64,
    /// Wait this long before every answer, e.g. `50ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,
    /// Wait up to this much longer, uniformly at random.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency_jitter: Option<Duration>,
    /// Intermittent outages, e.g. `every=10s,for=3s`: for the last 3 s of every 10 s the
    /// receiver stops listening (connections are refused) and resets its open connections,
    /// then listens again on the same port. `every=10s,for=3s,mode=503` answers 503 instead.
    #[arg(long)]
    pub outage: Option<Outage>,
    /// Seed of the fault draws and of `crash`'s kill schedule [default: random; the report
    /// prints it].
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `A..B`: a range of durations, e.g. `200ms..3s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl std::str::FromStr for DurationRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once("..").unwrap_or((s, s));
        let parse =
            |x: &str| humantime::parse_duration(x.trim()).map_err(|e| format!("`{x}`: {e}"));
        let (min, max) = (parse(a)?, parse(b)?);
        if min > max {
            return Err(format!("`{s}`: the first bound is larger than the second"));
        }
        Ok(Self { min, max })
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub load: LoadOpts,
    #[command(flatten)]
    pub hub: HubOpts,
    #[command(flatten)]
    pub faults: FaultOpts,
    #[command(flatten)]
    pub destinations: DestinationOpts,
    /// Measure ingest and delivery apart: every destination is paused (admin API) while
    /// the events are sent, so the hub only accepts; then resumed, so it only delivers.
    /// Delivered/s is then the drain of that backlog (first to last arrival).
    #[arg(long)]
    pub deliver_after_load: bool,
}

#[derive(Debug, Args)]
pub struct CrashArgs {
    /// SIGKILLs to deliver; the hub is restarted after each.
    #[arg(long, short = 'k', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub kills: u32,
    /// How long the hub runs before each kill: uniformly at random in `MIN..MAX`.
    #[arg(long, default_value = "200ms..3s")]
    pub uptime: DurationRange,
    /// After the last restart, keep sending this long before the load stops.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub tail: Duration,
    /// Concurrent HTTP/1.1 connections to the hub, one request in flight on each.
    #[arg(long, short = 'c', default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub connections: u64,
    /// Fixed rate in events/s instead of a closed loop.
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Stop sending after this many events even if kills remain (the kills go on).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub events: Option<u64>,
    /// Size of each JSON event body in bytes.
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// Per-request timeout towards the hub's ingress.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Fail when no new event reached the receiver for this long while some acknowledged
    /// events are still missing.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Worker threads of ferry-bench itself [default: number of CPUs].
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub hub: HubOpts,
    #[command(flatten)]
    pub faults: FaultOpts,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub load: LoadOpts,
    /// Base URL of the running hub, e.g. `http://127.0.0.1:8080`. Repeat it for the nodes of
    /// one cluster (sharing a PostgreSQL store): the connections are spread over them, round
    /// robin; the first answers the metrics.
    #[arg(long, required = true)]
    pub url: Vec<String>,
    /// The flow's ingest path segment: events go to `{url}/ingest/{flow}`.
    #[arg(long)]
    pub flow: String,
    /// The flow's Standard Webhooks secret (`whsec_...`).
    #[arg(
        long,
        env = "FERRY_BENCH_SECRET",
        hide_env_values = true,
        required_unless_present = "secret_file"
    )]
    pub secret: Option<String>,
    /// Read the secret from this file instead.
    #[arg(long, conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,
    /// Where the receiver listens; the hub's destination URL is `http://ADDR/sink`.
    #[arg(long, default_value = "127.0.0.1:8098")]
    pub receiver_listen: SocketAddr,
    /// PID of the hub, to report its peak RSS and CPU use (same machine only).
    #[arg(long)]
    pub hub_pid: Option<u32>,
    #[command(flatten)]
    pub faults: FaultOpts,
}

/// `ferry-bench disk`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Directory on the disk to measure (a scratch directory is made and removed in it).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Writer counts to measure in turn, comma-separated (each 1 to 64).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub writers: Vec<u64>,
    /// KiB written before each fsync (1 to 4096).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub write_kib: u64,
    /// How long each writer count runs (e.g. `3s`).
    #[arg(long, short = 'd', default_value = "3s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// All writers share one file, at disjoint offsets, instead of one file each.
    #[arg(long)]
    pub shared: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CeilingArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub listen: SocketAddr,
    /// Worker threads [default: number of CPUs].
    #[arg(long)]
    pub threads: Option<usize>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_consistent_and_parses_fault_flags() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "ferry-bench",
            "crash",
            "--kills",
            "3",
            "--uptime",
            "300ms..1s",
            "--429-ratio",
            "0.05",
            "--outage",
            "every=10s,for=3s",
            "--breaker",
            "off",
        ])
        .unwrap();
        let Command::Crash(a) = cli.command else {
            panic!("not crash")
        };
        assert_eq!(a.kills, 3);
        assert_eq!(a.uptime.min, Duration::from_millis(300));
        assert_eq!(a.faults.too_many_ratio, 0.05);
        assert_eq!(
            a.faults.outage.map(|o| o.down),
            Some(Duration::from_secs(3))
        );
        assert_eq!(a.hub.breaker, Some(Breaker::Off));
        assert!("2s..1s".parse::<DurationRange>().is_err());
        assert_eq!(
            "1s".parse::<DurationRange>().unwrap().max,
            Duration::from_secs(1)
        );
    }
}

/// `ferry-bench sink`.
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// The destination's kind.
    #[arg(long, value_enum)]
    pub kind: SinkKind,
    /// Events to post before the lane is resumed.
    #[arg(long, short = 'n', default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Send in batches of up to N records (`batch.max_items`) [default: one per call].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: Option<u64>,
    /// `concurrency` of the destination (calls in flight at once).
    #[arg(long, default_value_t = 64)]
    pub hub_concurrency: usize,
    /// HTTP connections posting the events.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: u64,
    /// Bytes of each event's JSON body.
    #[arg(long, default_value_t = 512)]
    pub body_bytes: usize,
    /// The `ferry` binary [default: `ferry` next to this executable].
    #[arg(long)]
    pub ferry: Option<PathBuf>,
    /// NATS server (JetStream enabled).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// RabbitMQ broker (a password in the URL is handed to the hub as a secret file).
    #[arg(long, default_value = "amqp://127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// No hub: publish the events from this tool, as the hub's destination does (the same
    /// number in flight, each waiting for the broker's confirm), to measure the broker alone.
    #[arg(long, conflicts_with = "batch")]
    pub direct: bool,
    /// The type of the durable queue the RabbitMQ run publishes to [default: classic].
    #[arg(long, value_enum)]
    pub rabbitmq_queue: Option<RabbitmqQueue>,
    /// PostgreSQL database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
}

/// The type of the durable queue `ferry-bench sink --kind rabbitmq` declares: where the
/// broker writes a persistent message before it confirms it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RabbitmqQueue {
    /// A classic queue, the broker's default (`x-queue-version` left to the broker).
    Classic,
    /// A classic queue with `x-queue-version: 2` (RabbitMQ 3.10 and later).
    ClassicV2,
    /// A quorum queue (`x-queue-type: quorum`): replicated, confirmed after its log is
    /// written.
    Quorum,
}

/// A destination kind `ferry-bench sink` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    Nats,
    Rabbitmq,
    Postgres,
}

impl SinkKind {
    /// The kind as written in config.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Nats => "nats",
            SinkKind::Rabbitmq => "rabbitmq",
            SinkKind::Postgres => "postgres",
        }
    }
}
