//! `ferry test`: run the fixture tests beside a config's flows (see [`crate::fixture`]).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::fixture::{self, harness::Harness, report};

/// Arguments of `ferry test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The config directory; its `*.test.yaml` / `*.test.yml` files hold the tests.
    pub dir: PathBuf,
    /// Run only the tests whose name (or fixture file path) contains this text.
    #[arg(long, value_name = "NAME")]
    pub filter: Option<String>,
    /// Print the results as one JSON document instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Exit 0 when every test passed, 1 when one failed (or none was found, or a fixture file
/// cannot be read), 2 when the config is invalid.
pub async fn run(args: TestArgs) -> Result<ExitCode> {
    // Secrets are not read: nothing is verified, signed or sent.
    let Some(config) = super::serve::load_config(&args.dir, false) else {
        eprintln!(
            "ferry test: the config is invalid ({}); no test was run",
            args.dir.display()
        );
        return Ok(ExitCode::from(2));
    };
    let harness = match Harness::new(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ferry test: the config cannot be assembled: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let color = std::io::stderr().is_terminal();
    let run = match fixture::run_dir(&harness, &args.dir, args.filter.as_deref()).await {
        Ok(run) => run,
        Err(d) => {
            eprint!("{}", ferry_config::render(&[d], color));
            return Ok(ExitCode::FAILURE);
        }
    };
    if !run.file_errors.is_empty() {
        eprint!("{}", ferry_config::render(&run.file_errors, color));
    }
    if let (true, Some(filter)) = (run.results.is_empty(), &args.filter) {
        eprintln!("ferry test: no test's name or file path contains `{filter}`");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report::json(&run))?);
    } else {
        print!("{}", report::text(&run));
    }
    Ok(if run.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
