//! The store a hub runs on: the embedded SQLite store in its data dir (the default), or
//! PostgreSQL, which several nodes share.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use ferry_config::Config;
use ferry_store::postgres::{PgOptions, PgStore};
use ferry_store::sqlite::{CommitStats, SqliteOptions, SqliteStore};
use ferry_store::{Store, StoreResult};
use secrecy::ExposeSecret;

/// Which store, and where.
#[derive(Clone, Debug)]
pub enum StoreChoice {
    /// The embedded store in this data dir.
    Sqlite(PathBuf),
    /// PostgreSQL; `setting` names where the URL came from, for messages.
    Postgres {
        options: PgOptions,
        setting: &'static str,
    },
}

impl StoreChoice {
    /// `--store` (a `postgres://` URL) if given, else `settings.store.postgres`, else the
    /// embedded store in `data_dir`.
    pub fn resolve(config: &Config, store_url: Option<&str>, data_dir: PathBuf) -> Result<Self> {
        if let Some(url) = store_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "--store: `{}` is not a PostgreSQL URL (postgres://user@host:5432/database); \
                     without --store the embedded store in the data dir is used",
                    redact(url)
                );
            }
            let mut options = PgOptions::new(url);
            if let Some(pg) = &config.settings.store.postgres {
                options.schema = pg.schema.clone();
                options.read_connections = pg.pool;
            }
            return Ok(StoreChoice::Postgres {
                options,
                setting: "--store",
            });
        }
        if let Some(pg) = &config.settings.store.postgres {
            let url = pg
                .url
                .resolve(&config.root)
                .context("settings.store.postgres.url")?;
            let mut options = PgOptions::new(url.expose_secret());
            options.schema = pg.schema.clone();
            options.read_connections = pg.pool;
            return Ok(StoreChoice::Postgres {
                options,
                setting: "settings.store.postgres.url",
            });
        }
        Ok(StoreChoice::Sqlite(data_dir))
    }
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Reads a store's group-commit counters.
pub type StatsSource = Arc<dyn Fn() -> CommitStats + Send + Sync>;

/// The opened store.
pub enum HubStore {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl HubStore {
    /// Open (and migrate) the chosen store. A database that cannot be reached is an error
    /// naming the host and the setting.
    pub async fn open(choice: &StoreChoice) -> Result<Self> {
        match choice {
            StoreChoice::Sqlite(dir) => Ok(HubStore::Sqlite(Arc::new(
                SqliteStore::open(dir, SqliteOptions::default())
                    .with_context(|| format!("opening the store in {}", dir.display()))?,
            ))),
            StoreChoice::Postgres { options, setting } => {
                let store = PgStore::open(options.clone())
                    .await
                    .with_context(|| format!("opening the PostgreSQL store ({setting})"))?;
                tracing::info!(database = store.target(), "store: PostgreSQL");
                Ok(HubStore::Postgres(Arc::new(store)))
            }
        }
    }

    /// The store, for the engine, ingress and the admin API.
    pub fn handle(&self) -> Arc<dyn Store> {
        match self {
            HubStore::Sqlite(s) => s.clone(),
            HubStore::Postgres(s) => s.clone(),
        }
    }

    /// Whether other nodes may use the store at the same time. A store of its own is
    /// recovered at start by releasing every claim; a shared one by leases, which expire.
    pub fn shared(&self) -> bool {
        matches!(self, HubStore::Postgres(_))
    }

    /// The PostgreSQL store, when that is the backend.
    pub fn postgres(&self) -> Option<Arc<PgStore>> {
        match self {
            HubStore::Postgres(s) => Some(s.clone()),
            HubStore::Sqlite(_) => None,
        }
    }

    /// Where it is, for logs.
    pub fn describe(&self) -> String {
        match self {
            HubStore::Sqlite(s) => s.path().display().to_string(),
            HubStore::Postgres(s) => format!("postgres at {}", s.target()),
        }
    }

    /// Group-commit counters.
    pub fn commit_stats(&self) -> CommitStats {
        match self {
            HubStore::Sqlite(s) => s.commit_stats(),
            HubStore::Postgres(s) => s.commit_stats(),
        }
    }

    /// Reads the group-commit counters, for `/metrics`.
    pub fn stats_source(&self) -> StatsSource {
        match self {
            HubStore::Sqlite(s) => {
                let s = s.clone();
                Arc::new(move || s.commit_stats())
            }
            HubStore::Postgres(s) => {
                let s = s.clone();
                Arc::new(move || s.commit_stats())
            }
        }
    }

    /// Test hook: every commit fails with `reason` while it is set.
    pub fn fail_commits(&self, reason: Option<&str>) {
        match self {
            HubStore::Sqlite(s) => s.fail_commits(reason),
            HubStore::Postgres(s) => s.fail_commits(reason),
        }
    }

    /// Close the store once this is its last holder, waiting up to `grace` for the others.
    pub async fn close(self, grace: std::time::Duration) {
        let closed: Option<StoreResult<()>> = match self {
            HubStore::Sqlite(s) => match crate::hub::sole_owner(s, grace).await {
                Some(s) => Some(s.close().await),
                None => None,
            },
            HubStore::Postgres(s) => match crate::hub::sole_owner(s, grace).await {
                Some(s) => Some(s.close().await),
                None => None,
            },
        };
        match closed {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "closing the store"),
            None => tracing::warn!(
                "store still referenced at shutdown; it closes when the last user drops it"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact("postgres://ferry:s3cret@db:5432/ferry"),
            "postgres://ferry:***@db:5432/ferry"
        );
        assert_eq!(redact("mysql://db/x"), "mysql://db/x");
    }
}
