//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Events sent when neither `--events` nor `--duration` is given.
pub const DEFAULT_EVENTS: u64 = 100_000;

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
  ferry-bench ceiling                              # bare HTTP server for wrk")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a hub (`ferry serve`) with a bench config, load it, stop it and report.
    #[command(after_help = "\
The hub gets a generated config in a temporary directory: flow `bench` with a Standard
Webhooks source and one HTTP destination pointing at ferry-bench's own receiver. Its store
lives in that directory too (removed afterwards unless --keep-data).

Exit status: 0 when every accepted event reached the receiver, 3 when some did not (the
report is printed either way), 1 when the run could not be carried out.

Examples:
  ferry-bench run
  ferry-bench run --connections 32 --events 100000
  ferry-bench run --connections 4 --events 20000 --json > latency.json
  ferry-bench run --rate 10000 --duration 60s --connections 128
  ferry-bench run --ferry ./target/release/ferry --keep-data")]
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
      --receiver-listen 127.0.0.1:9000 --hub-pid $(pgrep -x ferry) --duration 30s")]
    Load(LoadArgs),
    /// Serve a bare HTTP endpoint answering 200 to any POST: the ceiling to compare with.
    #[command(after_help = "\
Drive it with wrk and the bundled script (a 1 KB JSON POST, like ferry-bench's events):

Examples:
  ferry-bench ceiling &
  wrk -t2 -c64 -d10s -s crates/ferry-bench/wrk/post-1k.lua http://127.0.0.1:8099/
  ferry-bench ceiling --listen 0.0.0.0:9000 --threads 1")]
    Ceiling(CeilingArgs),
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

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub load: LoadOpts,
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
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub load: LoadOpts,
    /// Base URL of the running hub, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub url: String,
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
