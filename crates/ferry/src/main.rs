#![forbid(unsafe_code)]
//! The `ferry` binary.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the hub allocates per request and per
/// delivery on every worker thread, and glibc's malloc cost ~8% of the hub's CPU at load
/// (docs/benchmarks.md, "Where the time goes").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = ferry::cli::Cli::parse();
    // The demo has its own live view; its logs would only interleave with it. `ferry test`
    // reports what its tests' deliveries would log (contract warnings) itself.
    let default_level = match cli.command {
        ferry::cli::Command::Demo(_) | ferry::cli::Command::Test(_) => "error",
        _ => "info",
    };
    // `ferry serve` logs per its config's `settings.logs` (see `cli::serve`).
    if !matches!(cli.command, ferry::cli::Command::Serve(_)) {
        ferry::telemetry::init_logging(cli.log_json, default_level);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(ferry::cli::run(cli))
}
