//! Group commit for per-event upserts: the rows of concurrent sends share one transaction.
//!
//! One upsert per transaction is bound by the database's commit rate (each commit waits for
//! its WAL flush). Here each send hands its row to a queue; as many committers as the pool
//! has connections each take what is queued (up to [`MAX_ROWS`]), write it in one
//! transaction with the statements pipelined, and answer every send only after the commit:
//! a delivered outcome still means committed. Should the table refuse a row, the batch is
//! split until that row stands alone, so only the rows at fault fail, each with its own error.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::upsert;
use crate::outcome::Failure;
use ferry_delivery::Verdict;

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

/// Write `batch` in one transaction. Should the table refuse a row, the batch is split in
/// halves, each written on its own, until the refused rows stand alone: the others still
/// share transactions, and each refused row gets its own error. Any other failure (a lost
/// connection, a time-out, a deadlock) is every row's: each is retried.
fn commit(target: &Target, batch: Vec<Request>) -> futures_util::future::BoxFuture<'_, ()> {
    Box::pin(async move {
        let rows: Vec<&Map<String, Value>> = batch.iter().map(|r| &r.row).collect();
        let result = upsert_in_one_transaction(target, &rows).await;
        match result {
            Ok(()) => {
                for request in batch {
                    let _ = request.reply.send(Ok(()));
                }
            }
            Err(failure) if batch.len() > 1 && failure.verdict == Verdict::Permanent => {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                commit(target, first).await;
                commit(target, second).await;
            }
            Err(failure) => {
                for request in batch {
                    let _ = request.reply.send(Err(failure.clone()));
                }
            }
        }
    })
}

/// Upsert `rows` in one transaction, all of them or none: consecutive rows of one shape
/// with distinct keys in one statement, the statements pipelined in order.
pub(crate) async fn upsert_in_one_transaction(
    target: &Target,
    rows: &[&Map<String, Value>],
) -> Result<(), Failure> {
    let mut client = target
        .pool
        .get()
        .await
        .map_err(|e| Failure::retry("connect", format!("no PostgreSQL connection: {e}")))?;
    // Consecutive rows of one shape with distinct keys share a statement.
    let mut chunks: Vec<(Vec<&str>, Vec<Value>)> = Vec::new();
    let mut keys = std::collections::HashSet::new();
    for row in rows {
        let columns = match upsert::columns(row, &target.key) {
            Ok(columns) => columns,
            Err(message) => return Err(Failure::permanent("record_invalid", message)),
        };
        let key = upsert::key_text(row, &target.key);
        match chunks.last_mut() {
            Some((shape, members)) if *shape == columns && !keys.contains(&key) => {
                members.push(Value::Object((*row).clone()));
            }
            _ => {
                keys.clear();
                chunks.push((columns, vec![Value::Object((*row).clone())]));
            }
        }
        keys.insert(key);
    }
    let arrays: Vec<Value> = chunks
        .iter_mut()
        .map(|(_, members)| Value::Array(std::mem::take(members)))
        .collect();
    let work = async {
        let tx = client.transaction().await?;
        let mut statements = Vec::with_capacity(chunks.len());
        for (columns, _) in &chunks {
            let sql = upsert::statement(&target.table, &target.key, columns);
            statements.push(tx.prepare_cached(&sql).await?);
        }
        let params: Vec<[&(dyn ToSql + Sync); 1]> =
            arrays.iter().map(|v| [v as &(dyn ToSql + Sync)]).collect();
        // Sent one after another without waiting for each answer: one round trip for all.
        futures_util::future::try_join_all(
            statements
                .iter()
                .zip(&params)
                .map(|(statement, params)| tx.execute(statement, params)),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(())
    };
    match tokio::time::timeout(target.timeout, work).await {
        Err(_) => Err(Failure::retry(
            "timeout",
            "the upsert did not finish in time".to_string(),
        )),
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(super::destination::classify(&e)),
    }
}
