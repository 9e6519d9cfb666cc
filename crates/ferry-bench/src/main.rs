#![forbid(unsafe_code)]
//! `ferry-bench`: the load tool of Ferry.
//!
//! It sends signed Standard Webhooks to a hub's ingress over a fixed number of HTTP/1.1
//! connections, receives the hub's deliveries on a local sink, and reports accepted and
//! delivered throughput, accept and end-to-end latency, errors, duplicates and the hub's
//! resource use. Its receiver can misbehave on purpose (faults), and `crash` is an oracle
//! for durability: it SIGKILLs the hub under load and checks that nothing acknowledged is
//! lost or altered.

mod ceiling;
mod cli;
mod clock;
mod crash;
mod destinations;
mod disk;
mod faults;
mod hub;
mod metrics;
mod oracle;
mod otlp_sink;
mod payload;
mod ports;
mod probe;
mod procfs;
mod receiver;
mod report;
mod runner;
mod sampler;
mod sender;
mod sink;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Run(a) => a.load.threads,
        Command::Load(a) => a.load.threads,
        Command::Ceiling(a) => a.threads,
        Command::Crash(a) => a.threads,
        Command::Sink(_) | Command::Disk(_) => None,
    }
    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    .max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => runner::run(args).await,
            Command::Load(args) => runner::load(args).await,
            Command::Ceiling(args) => ceiling::serve(args).await,
            Command::Crash(args) => crash::run(args).await,
            Command::Sink(args) => sink::run(args).await,
            // Its writers are threads of its own; block_on runs this on the main thread.
            Command::Disk(args) => disk::run(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
