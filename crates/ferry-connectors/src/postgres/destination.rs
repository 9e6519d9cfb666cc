//! The PostgreSQL upsert destination connector.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Pool, PoolConfig, Runtime, Timeouts};
use ferry_config::PostgresDestination;
use ferry_delivery::{AttemptResult, BatchCall, Connector, Rendered};
use ferry_store::ClaimedDelivery;
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::upsert;
use crate::outcome::{Failure, record_body, timed};

/// Upserts records into one table through a bounded connection pool.
pub struct PostgresConnector {
    config: PostgresDestination,
    /// The pool, or why the URL cannot make one (each upsert then fails with it).
    pool: Result<Pool, String>,
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
        let pool = pg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|_| "the postgres URL is not a valid connection string".to_string());
        Self { config, pool }
    }

    /// Upsert `records` in one transaction: all of them, or none.
    async fn upsert(&self, records: &[&Bytes]) -> Result<(), Failure> {
        let mut rows = Vec::with_capacity(records.len());
        for body in records {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                Failure::permanent("record_invalid", format!("the record is not JSON: {e}"))
            })?;
            let serde_json::Value::Object(record) = value else {
                return Err(Failure::permanent(
                    "record_invalid",
                    "the record is not a JSON object (a row needs named fields)".to_string(),
                ));
            };
            rows.push(record);
        }
        let pool = self
            .pool
            .as_ref()
            .map_err(|e| Failure::permanent("config", e.clone()))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| Failure::retry("connect", format!("no PostgreSQL connection: {e}")))?;
        let work = async {
            let tx = client.transaction().await?;
            for record in &rows {
                let columns = match upsert::columns(record, &self.config.key) {
                    Ok(columns) => columns,
                    Err(message) => return Ok(Err(message)),
                };
                let sql = upsert::statement(&self.config.table, &self.config.key, &columns);
                let statement = tx.prepare_cached(&sql).await?;
                let value = serde_json::Value::Object(record.clone());
                tx.execute(&statement, &[&value]).await?;
            }
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>(Ok(()))
        };
        match tokio::time::timeout(self.config.timeout, work).await {
            Err(_) => Err(Failure::retry(
                "timeout",
                "the upsert did not finish in time".to_string(),
            )),
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(message))) => Err(Failure::permanent("record_invalid", message)),
            Ok(Err(e)) => Err(classify(&e)),
        }
    }
}

/// A database error by its SQLSTATE class: the data or the schema refused the row
/// (constraint, type, unknown table or column): dead; lost connections, resource shortages,
/// deadlocks and the like: retried. The error names the SQLSTATE and the table, column and
/// constraint involved; the database's own message and detail, which may quote the row's
/// values (`Failing row contains (…)`), are kept as the attempt's excerpt, never logged.
fn classify(e: &tokio_postgres::Error) -> Failure {
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
        timed(self.upsert(&[&body])).await
    }

    /// The whole batch in one transaction: every row is written, or none is.
    async fn send_batch(&self, call: BatchCall<'_>) -> (AttemptResult, Option<Bytes>) {
        let bodies: Vec<&Bytes> = call.records.iter().map(|(_, body)| body).collect();
        (timed(self.upsert(&bodies)).await, None)
    }
}
