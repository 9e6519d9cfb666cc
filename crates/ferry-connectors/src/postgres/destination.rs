//! The PostgreSQL upsert destination connector.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{PoolConfig, Runtime, Timeouts};
use ferry_config::PostgresDestination;
use ferry_delivery::{AttemptResult, BatchCall, Connector, Rendered};
use ferry_store::ClaimedDelivery;
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::group::{GroupCommit, Target, upsert_in_one_transaction};
use super::upsert;
use crate::outcome::{Failure, record_body, timed};

/// Upserts records into one table through a bounded connection pool. Per-event sends share
/// transactions ([`GroupCommit`]); a batch call is one transaction of its own.
pub struct PostgresConnector {
    config: PostgresDestination,
    /// Where and how rows are written, or why the URL cannot make a pool (each upsert then
    /// fails with it).
    target: Result<Arc<Target>, String>,
    /// The per-event sends' shared transactions, started with the first send.
    group: OnceLock<GroupCommit>,
}

impl fmt::Debug for PostgresConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnector")
            .field("table", &self.config.table)
            .field("key", &self.config.key)
            .field("pool", &self.config.pool)
            .finish()
    }
}

impl PostgresConnector {
    /// A connector for `config` with its connection URL resolved. No connection is made
    /// until the first upsert; the pool holds at most `config.pool` connections. A URL that
    /// is not a connection string fails every upsert (`ferry validate` refuses it first).
    pub fn new(config: PostgresDestination, url: &SecretString) -> Self {
        let mut pg = deadpool_postgres::Config::new();
        pg.url = Some(url.expose_secret().to_string());
        let mut pool = PoolConfig::new(config.pool.max(1));
        pool.timeouts = Timeouts {
            wait: Some(config.timeout),
            create: Some(config.timeout),
            recycle: Some(config.timeout),
        };
        pg.pool = Some(pool);
        // The URL is not echoed: it holds the password.
        let target = pg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map(|pool| {
                Arc::new(Target {
                    pool,
                    table: config.table.clone(),
                    key: config.key.clone(),
                    timeout: config.timeout,
                })
            })
            .map_err(|_| "the postgres URL is not a valid connection string".to_string());
        Self {
            config,
            target,
            group: OnceLock::new(),
        }
    }

    fn target(&self) -> Result<&Arc<Target>, Failure> {
        self.target
            .as_ref()
            .map_err(|e| Failure::permanent("config", e.clone()))
    }

    /// Upsert one event's record, in a transaction shared with the other sends of the moment.
    async fn upsert_one(&self, body: &Bytes) -> Result<(), Failure> {
        let row = row_of(body)?;
        upsert::columns(&row, &self.config.key)
            .map_err(|message| Failure::permanent("record_invalid", message))?;
        let target = self.target()?;
        let group = self
            .group
            .get_or_init(|| GroupCommit::start(target.clone(), self.config.pool));
        group.upsert(row).await
    }

    /// Upsert `records` in one transaction: all of them, or none.
    async fn upsert(&self, records: &[&Bytes]) -> Result<(), Failure> {
        let rows = records
            .iter()
            .map(|body| row_of(body))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<&serde_json::Map<String, serde_json::Value>> = rows.iter().collect();
        upsert_in_one_transaction(self.target()?, &rows).await
    }
}

/// A record's row: a JSON object.
fn row_of(body: &Bytes) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        Failure::permanent("record_invalid", format!("the record is not JSON: {e}"))
    })?;
    let serde_json::Value::Object(record) = value else {
        return Err(Failure::permanent(
            "record_invalid",
            "the record is not a JSON object (a row needs named fields)".to_string(),
        ));
    };
    Ok(record)
}

/// A database error by its SQLSTATE class: the data or the schema refused the row
/// (constraint, type, unknown table or column): dead; lost connections, resource shortages,
/// deadlocks and the like: retried. The error names the SQLSTATE and the table, column and
/// constraint involved; the database's own message and detail, which may quote the row's
/// values (`Failing row contains (…)`), are kept as the attempt's excerpt, never logged.
pub(super) fn classify(e: &tokio_postgres::Error) -> Failure {
    let Some(db) = e.as_db_error() else {
        return Failure::retry("connect", format!("PostgreSQL connection failed: {e}"));
    };
    let code = db.code();
    let mut message = format!("PostgreSQL {}", code.code());
    for (what, name) in [
        ("table", db.table()),
        ("column", db.column()),
        ("constraint", db.constraint()),
    ] {
        if let Some(name) = name {
            message.push_str(&format!(", {what} `{name}`"));
        }
    }
    let mut said = db.message().to_string();
    if let Some(detail) = db.detail() {
        said.push_str(&format!(" ({detail})"));
    }
    let class = &code.code()[..2];
    let mut failure = match class {
        // integrity constraint, data exception, syntax or access rule (unknown table/column)
        "23" | "22" | "42" => Failure::permanent(constraint_class(code), message),
        _ => Failure::retry("database", message),
    };
    failure.excerpt = Some(said);
    failure
}

fn constraint_class(code: &SqlState) -> &'static str {
    match &code.code()[..2] {
        "23" => "constraint_violation",
        "22" => "data_invalid",
        _ => "schema_mismatch",
    }
}

#[async_trait]
impl Connector for PostgresConnector {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn timeout(&self) -> Duration {
        // Waiting for a connection, then the transaction: each bounded by the timeout.
        self.config.timeout.saturating_mul(2)
    }

    async fn send(&self, delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> AttemptResult {
        let body = record_body(delivery, rendered);
        timed(self.upsert_one(&body)).await
    }

    /// The whole batch in one transaction: every row is written, or none is.
    async fn send_batch(&self, call: BatchCall<'_>) -> (AttemptResult, Option<Bytes>) {
        let bodies: Vec<&Bytes> = call.records.iter().map(|(_, body)| body).collect();
        (timed(self.upsert(&bodies)).await, None)
    }
}
