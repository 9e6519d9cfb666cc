//! `ferry audit verify|export`: the audit trail, read straight from the store (a data
//! dir's file read-only without its lock, or the PostgreSQL database), so both work while
//! the hub runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ferry_store::audit::{Anchor, ChainVerifier, hex};
use ferry_store::postgres::PgStore;
use ferry_store::sqlite::{StoreReader, Verified};
use ferry_store::{AuditRecord, Store};

use crate::backend::StoreChoice;
use serde_json::{Map, Value, json};

use crate::clock::{now_ms, parse_time, rfc3339};

/// Exit code when the trail could not be read at all (no store, unreadable file).
const CANNOT_READ: u8 = 2;

/// `ferry audit`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit trail's hash chain. Prints the record count and the head
    /// (`SEQ:HASH`, to keep elsewhere as an anchor); exits 1 naming the first record that was
    /// modified, removed or reordered, 2 when the store cannot be read.
    #[command(
        after_help = "Examples:\n  ferry audit verify --data-dir /var/lib/ferry\n  ferry audit verify --config ./ferry --anchor 1842:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n  ferry audit verify --json"
    )]
    Verify {
        #[command(flatten)]
        dir: DataDirArgs,
        /// A head printed by an earlier verify (`SEQ:HASH`): the trail must still hold that
        /// record with that hash, which catches a trail cut short or rewritten whole.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the audit trail as JSON lines, one entry per line with its record's position
    /// (`seq`) and hash. The chain is verified on the way; a broken one stops the export
    /// (exit 1) at the first bad record.
    #[command(
        after_help = "Examples:\n  ferry audit export --data-dir /var/lib/ferry > audit.jsonl\n  ferry audit export --since 24h | jq 'select(.kind == \"delivered\")'\n  ferry audit export --since 2026-11-01T00:00:00Z --config ./ferry"
    )]
    Export {
        #[command(flatten)]
        dir: DataDirArgs,
        /// Only entries at or after this time: RFC 3339, epoch milliseconds, or an age
        /// such as `24h`.
        #[arg(long)]
        since: Option<String>,
    },
}

/// Where the store is: `--store` (a PostgreSQL URL), `--data-dir`, else the config's
/// `settings.store` or `settings.data_dir`, else `./ferry-data` (as `ferry serve` decides).
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// The hub's data dir.
    #[arg(long, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Read the store from this config directory's `settings.store` or `settings.data_dir`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The PostgreSQL store at this URL (`postgres://user@host:5432/db`).
    #[arg(long, env = "FERRY_STORE", value_name = "URL")]
    pub store: Option<String>,
}

impl DataDirArgs {
    /// The data dir to read.
    pub fn resolve(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        if let Some(config_dir) = &self.config {
            let Some(config) = super::serve::load_config(config_dir, false) else {
                bail!("the config in {} is invalid", config_dir.display());
            };
            if let Some(dir) = config.settings.data_dir {
                return Ok(dir);
            }
        }
        Ok(PathBuf::from("ferry-data"))
    }
}

impl DataDirArgs {
    /// The store to read: PostgreSQL when `--store` or the config's `settings.store` says
    /// so (and no `--data-dir` was given), else the data dir.
    pub fn source(&self) -> Result<StoreChoice> {
        if self.data_dir.is_none() {
            let config = match &self.config {
                Some(dir) => match super::serve::load_config(dir, false) {
                    Some(c) => c,
                    None => bail!("the config in {} is invalid", dir.display()),
                },
                None => ferry_config::Config::default(),
            };
            let choice = StoreChoice::resolve(&config, self.store.as_deref(), PathBuf::new())?;
            if let StoreChoice::Postgres { .. } = choice {
                return Ok(choice);
            }
        }
        Ok(StoreChoice::Sqlite(self.resolve()?))
    }
}

/// The audit trail's records, from either store.
enum Trail {
    Sqlite(StoreReader),
    Postgres(PgStore),
}

impl Trail {
    async fn open(args: &DataDirArgs) -> std::result::Result<Trail, ExitCode> {
        let source = args.source().map_err(|e| {
            eprintln!("error: {e:#}");
            ExitCode::from(CANNOT_READ)
        })?;
        match source {
            StoreChoice::Sqlite(dir) => open(&dir).map(Trail::Sqlite),
            StoreChoice::Postgres { options, setting } => PgStore::open(options)
                .await
                .map(Trail::Postgres)
                .map_err(|e| {
                    eprintln!("error: cannot read the audit trail ({setting}): {e}");
                    ExitCode::from(CANNOT_READ)
                }),
        }
    }

    async fn records(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditRecord>> {
        Ok(match self {
            Trail::Sqlite(r) => r.audit_records(after, limit)?,
            Trail::Postgres(s) => s.audit_records(after, limit).await?,
        })
    }

    /// Recompute the whole chain. The SQLite file is read in one read transaction; the
    /// database a page at a time (the trail only grows, so a page read later only adds
    /// records after those checked).
    async fn verify(
        &self,
        anchor: Option<Anchor>,
    ) -> Result<std::result::Result<Verified, ferry_store::audit::ChainFault>> {
        if let Trail::Sqlite(r) = self {
            return Ok(r.verify_audit(anchor)?);
        }
        let mut verifier = ChainVerifier::new(anchor);
        let mut after = None;
        loop {
            let page = self.records(after, PAGE).await?;
            for r in &page {
                if let Err(fault) = verifier.push(r) {
                    return Ok(Err(fault));
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.seq),
                _ => break,
            }
        }
        Ok(verifier
            .finish()
            .map(|(records, head)| Verified { records, head }))
    }

    /// Close the database connections off the async workers.
    async fn close(self) {
        if let Trail::Postgres(s) = self {
            let _ = s.close().await;
        }
    }
}

/// Run a `ferry audit` command.
pub async fn run(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { dir, anchor, json } => {
            let anchor = anchor
                .as_deref()
                .map(str::parse::<Anchor>)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            verify(&dir, anchor, json).await
        }
        AuditCommand::Export { dir, since } => {
            let since = since
                .as_deref()
                .map(|s| parse_time(s, now_ms()))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            export(&dir, since).await
        }
    }
}

fn open(data_dir: &Path) -> std::result::Result<StoreReader, ExitCode> {
    StoreReader::open(data_dir).map_err(|e| {
        eprintln!("error: cannot read the audit trail: {e}");
        ExitCode::from(CANNOT_READ)
    })
}

async fn verify(args: &DataDirArgs, anchor: Option<Anchor>, json: bool) -> Result<ExitCode> {
    let trail = match Trail::open(args).await {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let result = trail.verify(anchor).await;
    trail.close().await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read the audit trail: {e}");
            return Ok(ExitCode::from(CANNOT_READ));
        }
    };
    match result {
        Ok(Verified { records, head }) => {
            let head = head.map(|(seq, hash)| format!("{seq}:{hash}"));
            if json {
                println!(
                    "{}",
                    json!({"intact": true, "records": records, "head": head})
                );
            } else {
                println!("audit trail intact: {records} records");
                match head {
                    Some(head) => println!("head {head}"),
                    None => println!("head none (the trail is empty)"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            if json {
                println!(
                    "{}",
                    json!({"intact": false, "position": fault.position(), "problem": fault.to_string()})
                );
            } else {
                println!("audit trail BROKEN at record {}: {fault}", fault.position());
                println!(
                    "the records before it verify; see \"A failed verify\" in docs/governance.md"
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Records read per page.
const PAGE: usize = 1000;

async fn export(args: &DataDirArgs, since: Option<i64>) -> Result<ExitCode> {
    let trail = match Trail::open(args).await {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let result = export_trail(&trail, since).await;
    trail.close().await;
    result
}

async fn export_trail(trail: &Trail, since: Option<i64>) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut verifier = ChainVerifier::default();
    let mut after = None;
    loop {
        let page = trail
            .records(after, PAGE)
            .await
            .context("reading the audit trail")?;
        for record in &page {
            if let Err(fault) = verifier.push(record) {
                out.flush()?;
                eprintln!(
                    "error: audit trail BROKEN at record {}: {fault}; the export stops here",
                    fault.position()
                );
                return Ok(ExitCode::FAILURE);
            }
            let entries: Vec<Value> =
                serde_json::from_str(&record.entries).context("an audit record's entries")?;
            let hash = hex(&record.hash);
            for entry in entries {
                let Value::Object(fields) = entry else {
                    continue;
                };
                if since.is_some_and(|s| fields.get("at").and_then(Value::as_i64) < Some(s)) {
                    continue;
                }
                let mut line = Map::new();
                line.insert("seq".into(), json!(record.seq));
                line.insert("hash".into(), json!(hash));
                if let Some(at) = fields.get("at").and_then(Value::as_i64) {
                    line.insert("time".into(), json!(rfc3339(at)));
                }
                line.extend(fields);
                serde_json::to_writer(&mut out, &Value::Object(line))?;
                out.write_all(b"\n")?;
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.seq),
            _ => break,
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
