//! Group commit for per-event upserts: the rows of concurrent sends share one transaction.
//!
//! One upsert per transaction is bound by the database's commit rate (each commit waits for
//! its WAL flush). Here each send hands its row to a queue; as many committers as the pool
//! has connections each take what is queued (up to [`MAX_ROWS`]), write it in one
//! transaction with the statements pipelined, and answer every send only after the commit:
//! a delivered outcome still means committed. Should the shared transaction fail (one row
//! refused by a constraint, a lost connection), each of its rows is written again in a
//! transaction of its own, so only the rows at fault fail, each with its own error.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::upsert;
use crate::outcome::Failure;

/// Most rows in one shared transaction.
pub(crate) const MAX_ROWS: usize = 256;

/// One send's row and where its answer goes.
struct Request {
    row: Map<String, Value>,
    reply: oneshot::Sender<Result<(), Failure>>,
}

/// What the committers write with.
pub(crate) struct Target {
    pub pool: Pool,
    pub table: String,
    pub key: Vec<String>,
    pub timeout: Duration,
}

/// The queue of rows waiting for a shared transaction. Dropping it stops the committers once
/// they have answered what was queued.
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Request>,
}

impl GroupCommit {
    /// Start `committers` committer tasks on the current runtime.
    pub(crate) fn start(target: Arc<Target>, committers: usize) -> Self {
        let (queue, rx) = mpsc::channel(MAX_ROWS * committers.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..committers.max(1) {
            tokio::spawn(commit_loop(rx.clone(), target.clone()));
        }
        Self { queue }
    }

    /// Write `row`; `Ok` once the transaction holding it committed.
    pub(crate) async fn upsert(&self, row: Map<String, Value>) -> Result<(), Failure> {
        let (reply, answer) = oneshot::channel();
        let closed = || Failure::retry("connect", "the upsert queue is closed".to_string());
        self.queue
            .send(Request { row, reply })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// Take what is queued, write it, answer; until the queue is closed and empty.
async fn commit_loop(rx: Arc<Mutex<mpsc::Receiver<Request>>>, target: Arc<Target>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_ROWS {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            batch
        };
        commit(&target, batch).await;
    }
}

/// Write `batch` in one transaction, or, should that fail, each row in its own.
async fn commit(target: &Target, batch: Vec<Request>) {
    if batch.len() > 1 {
        let rows: Vec<&Map<String, Value>> = batch.iter().map(|r| &r.row).collect();
        if upsert_in_one_transaction(target, &rows).await.is_ok() {
            for request in batch {
                let _ = request.reply.send(Ok(()));
            }
            return;
        }
    }
    for request in batch {
        let result = upsert_in_one_transaction(target, &[&request.row]).await;
        let _ = request.reply.send(result);
    }
}

/// Upsert `rows` in one transaction (statements pipelined, in order): all of them, or none.
/// Every row is a JSON object whose fields are checked column names holding the key.
pub(crate) async fn upsert_in_one_transaction(
    target: &Target,
    rows: &[&Map<String, Value>],
) -> Result<(), Failure> {
    let mut client = target
        .pool
        .get()
        .await
        .map_err(|e| Failure::retry("connect", format!("no PostgreSQL connection: {e}")))?;
    let work = async {
        let tx = client.transaction().await?;
        let mut statements = Vec::with_capacity(rows.len());
        for row in rows {
            let columns = match upsert::columns(row, &target.key) {
                Ok(columns) => columns,
                Err(message) => return Ok(Err(message)),
            };
            let sql = upsert::statement(&target.table, &target.key, &columns);
            statements.push(tx.prepare_cached(&sql).await?);
        }
        let values: Vec<Value> = rows.iter().map(|r| Value::Object((*r).clone())).collect();
        let params: Vec<[&(dyn ToSql + Sync); 1]> =
            values.iter().map(|v| [v as &(dyn ToSql + Sync)]).collect();
        // Sent one after another without waiting for each answer: one round trip for all.
        futures_util::future::try_join_all(
            statements
                .iter()
                .zip(&params)
                .map(|(statement, params)| tx.execute(statement, params)),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(Ok(()))
    };
    match tokio::time::timeout(target.timeout, work).await {
        Err(_) => Err(Failure::retry(
            "timeout",
            "the upsert did not finish in time".to_string(),
        )),
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(message))) => Err(Failure::permanent("record_invalid", message)),
        Ok(Err(e)) => Err(super::destination::classify(&e)),
    }
}
