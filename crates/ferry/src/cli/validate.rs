//! `ferry validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Arguments of `ferry validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config directory to check.
    pub dir: PathBuf,
    /// Do not read secrets (env vars, files): check everything else. Useful in CI.
    #[arg(long)]
    pub skip_secrets: bool,
}

/// Exit 0 when the config is valid (warnings allowed), 1 otherwise.
pub fn run(args: ValidateArgs) -> Result<ExitCode> {
    match super::serve::load_config_counted(&args.dir, !args.skip_secrets) {
        Some((config, warnings)) => {
            let destinations: usize = config.flows.values().map(|f| f.destinations.len()).sum();
            println!(
                "{}: valid — {}, {}, {}, {}",
                args.dir.display(),
                count(config.systems.len(), "system"),
                count(config.flows.len(), "flow"),
                count(destinations, "destination"),
                count(warnings, "warning"),
            );
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::FAILURE),
    }
}

/// `1 flow`, `2 flows`.
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}
