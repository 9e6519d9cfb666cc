//! `ferry migrate`: bring the store's schema to this version of Ferry, without serving.
//! `ferry serve` migrates at start too; this is for a deployment that upgrades the schema
//! as its own step (before rolling out new nodes), and to check the database is reachable.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use ferry_store::postgres::PgStore;
use ferry_store::sqlite::{SqliteOptions, SqliteStore};

use crate::backend::StoreChoice;

/// Arguments of `ferry migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The config directory, for `settings.store` and `settings.data_dir`.
    #[arg(long, short, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// A PostgreSQL URL (`postgres://user@host:5432/db`), instead of settings.store.
    #[arg(long, env = "FERRY_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// The embedded store's data dir (default: settings.data_dir, else ./ferry-data).
    #[arg(long, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Run `ferry migrate`.
pub async fn run(args: MigrateArgs) -> Result<ExitCode> {
    let config = match &args.config {
        Some(dir) => match super::serve::load_config(dir, true) {
            Some(c) => c,
            None => bail!("the config in {} is invalid", dir.display()),
        },
        None => ferry_config::Config::default(),
    };
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| config.settings.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("ferry-data"));
    match StoreChoice::resolve(&config, args.store.as_deref(), data_dir)? {
        StoreChoice::Postgres { options, setting } => {
            let (from, to) =
                tokio::task::spawn_blocking(move || PgStore::migrate_blocking(&options))
                    .await?
                    .map_err(|e| anyhow::anyhow!("{e} ({setting})"))?;
            if from == to {
                println!("the PostgreSQL store is at schema version {to}: nothing to do");
            } else {
                println!("the PostgreSQL store moved from schema version {from} to {to}");
            }
        }
        StoreChoice::Sqlite(dir) => {
            let store = SqliteStore::open(&dir, SqliteOptions::default())
                .map_err(|e| anyhow::anyhow!("opening the store in {}: {e}", dir.display()))?;
            store.close().await?;
            println!(
                "the store in {} is at schema version {}",
                dir.display(),
                ferry_store::sqlite::SCHEMA_VERSION
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
