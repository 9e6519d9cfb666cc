//! `ferry keys status|rotate` and `ferry erase --subject`: the data keys of encryption at
//! rest, through a running hub's admin API.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::HubTarget;
use super::admin_cmds::client;

/// `ferry keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the current key-encryption key, the data keys per KEK, and how many were
    /// shredded.
    #[command(
        after_help = "Examples:\n  ferry keys status --config ./ferry\n  ferry keys status --json"
    )]
    Status {
        #[command(flatten)]
        target: HubTarget,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-wrap every data key still wrapped by an older key-encryption key under the current
    /// one (`settings.protection.keys[0]`), while the hub serves. Events are not rewritten.
    /// Safe to run again. Afterwards the older KEK can be removed from the config.
    #[command(after_help = "Examples:\n  ferry keys rotate --config ./ferry")]
    Rotate {
        #[command(flatten)]
        target: HubTarget,
        #[arg(long)]
        json: bool,
    },
}

/// `ferry erase`.
#[derive(Debug, Args)]
pub struct EraseArgs {
    #[command(flatten)]
    pub target: HubTarget,
    /// The data subject's identifier, as its events carry it in the schema's
    /// `x-ferry-subject` field (e.g. the customer's email).
    #[arg(long)]
    pub subject: String,
    #[arg(long)]
    pub json: bool,
}

/// Run a `ferry keys` command.
pub async fn keys(cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Status { target, json } => {
            let s = client(&target)?.keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("current key-encryption key: {}", s.current_kek);
            for (kek, n) in &s.data_keys {
                let note = if *kek == s.current_kek {
                    " (current)"
                } else if s.configured_keks.contains(kek) {
                    ""
                } else {
                    " (not configured!)"
                };
                println!("  {kek}: {n} data keys{note}");
            }
            println!("to re-wrap (ferry keys rotate): {}", s.to_rotate);
            println!("shredded (erased subjects): {}", s.shredded);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate { target, json } => {
            let r = client(&target)?.rotate_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "re-wrapped {} data keys under `{}` ({} changed meanwhile, {} left)",
                    r.rewrapped, r.current_kek, r.skipped, r.remaining
                );
                if r.remaining == 0 {
                    println!(
                        "every data key is wrapped by `{}`: older keys can be removed from settings.protection.keys",
                        r.current_kek
                    );
                }
            }
            Ok(if r.remaining == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Run `ferry erase`.
pub async fn erase(args: EraseArgs) -> Result<ExitCode> {
    let r = client(&args.target)?.erase(&args.subject).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.shredded > 0 {
        println!(
            "erased subject {}: {} data key(s) shredded; every stored copy of its classified fields is unreadable",
            r.subject_ref, r.shredded
        );
    } else {
        println!(
            "subject {}: no data key held (nothing of it stored encrypted, or erased already)",
            r.subject_ref
        );
    }
    Ok(ExitCode::SUCCESS)
}
