//! The writer thread and its group commit, on one PostgreSQL connection.
//!
//! Every mutation is a [`Command`] sent over a bounded channel to one std thread that owns a
//! connection. The thread blocks for the first command, drains whatever else is queued (at
//! most `max_batch_commands` commands and about `max_batch_bytes` of payload), runs them all
//! in one transaction (one WAL flush on the server) and only then answers each caller: a
//! caller's `Ok` means committed. `synchronous_commit` is left as the server has it (on by
//! default), never turned off.
//!
//! As in the SQLite backend, commands first run back to back; should one fail, the
//! transaction is rolled back and the batch runs again with one savepoint per command, so
//! only the failing ones are undone (savepoints only then: each is a subtransaction). A
//! deadlock or serialization failure between nodes runs the batch again, a few times.
//!
//! Just before `COMMIT` the batch applies what its commands left ([`Effects`]): lane count
//! changes (one upsert per lane and state, in a fixed order), then the audit entries,
//! chained after the last record under an exclusive lock on `audit_log` (see `audit`).
//!
//! A lost connection fails the batch ([`StoreError::Unavailable`]: ingress answers 503 and
//! the caller retries); the next batch connects again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use postgres::{Client, Statement, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::Connector;
use super::audit;
use super::codec::PENDING;
use super::codec::{is_retryable, map_err};
use super::health::Health;
use super::listen;
use super::ops;
use crate::effects::Effects;
use crate::{AppendOutcome, NewEvent, StoreError, StoreResult};

/// One unit of work for the writer. Implemented by [`Job`].
pub(crate) trait Command: Send {
    /// Rough size in bytes, to bound a batch.
    fn cost(&self) -> usize;
    /// Runs inside the open batch transaction and keeps the result; with `isolated`, inside
    /// its own savepoint, so a failure undoes only this command. Returns whether it
    /// succeeded, and whether its failure may go away if the batch runs again.
    fn run(&mut self, tx: &mut Transaction<'_>, isolated: bool, effects: &mut Effects) -> Ran;
    /// Sends the kept result if the batch committed, else the batch error.
    fn answer(self: Box<Self>, commit: Result<(), &StoreError>);
    /// The events of a plain append (no window key, no order key), which the batch may
    /// store together with the other plain appends in one statement (see
    /// [`ops::append_plain_many`]).
    fn plain_events(&self) -> Option<&[NewEvent]> {
        None
    }
    /// Keep the outcomes of this command's events, stored by the batch's merged statement.
    fn merged(&mut self, _outcomes: Vec<AppendOutcome>) {}
}

/// A plain append: its events may be stored with the batch's other plain appends in one
/// statement; alone (or when the batch runs again command by command) as [`ops::append`].
pub(crate) struct AppendJob {
    cost: usize,
    events: Vec<NewEvent>,
    result: Option<StoreResult<Vec<AppendOutcome>>>,
    reply: oneshot::Sender<StoreResult<Vec<AppendOutcome>>>,
}

impl AppendJob {
    /// A command and the receiver of its answer.
    pub(crate) fn boxed(
        cost: usize,
        events: Vec<NewEvent>,
    ) -> (
        Box<dyn Command>,
        oneshot::Receiver<StoreResult<Vec<AppendOutcome>>>,
    ) {
        let (reply, rx) = oneshot::channel();
        let job = AppendJob {
            cost,
            events,
            result: None,
            reply,
        };
        (Box::new(job), rx)
    }
}

impl Command for AppendJob {
    fn cost(&self) -> usize {
        self.cost
    }

    fn run(&mut self, tx: &mut Transaction<'_>, isolated: bool, effects: &mut Effects) -> Ran {
        let events = &self.events;
        let (result, ran) = run_one(tx, isolated, effects, &|tx, fx| ops::append(tx, fx, events));
        self.result = Some(result);
        ran
    }

    fn answer(self: Box<Self>, commit: Result<(), &StoreError>) {
        reply(self.reply, self.result, commit);
    }

    fn plain_events(&self) -> Option<&[NewEvent]> {
        self.events
            .iter()
            .all(ops::is_plain)
            .then_some(&self.events[..])
    }

    fn merged(&mut self, outcomes: Vec<AppendOutcome>) {
        self.result = Some(Ok(outcomes));
    }
}

/// How a command ran.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    Ok,
    Failed,
    /// Failed on a deadlock or serialization failure: the whole batch may run again.
    Conflict,
}

/// A command built from a closure; its result goes back over a oneshot channel.
pub(crate) struct Job<T, F> {
    cost: usize,
    work: F,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

/// The work of a [`Job`]: it may run more than once, so it must not consume its input.
pub(crate) trait Work<T>:
    Fn(&mut Transaction<'_>, &mut Effects) -> Result<T, Failure> + Send + 'static
{
}
impl<T, F> Work<T> for F where
    F: Fn(&mut Transaction<'_>, &mut Effects) -> Result<T, Failure> + Send + 'static
{
}

/// A failed statement, kept as the driver's error (to tell conflicts between nodes) or as
/// the store's.
#[derive(Debug)]
pub(crate) enum Failure {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Pg(e)
    }
}
impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}
impl Failure {
    fn conflict(&self) -> bool {
        matches!(self, Failure::Pg(e) if is_retryable(e))
    }
    pub(crate) fn into_store(self) -> StoreError {
        match self {
            Failure::Pg(e) => map_err(e),
            Failure::Store(e) => e,
        }
    }
}

impl<T, F> Job<T, F>
where
    T: Send + 'static,
    F: Work<T>,
{
    /// A command and the receiver of its answer.
    pub(crate) fn boxed(
        cost: usize,
        work: F,
    ) -> (Box<dyn Command>, oneshot::Receiver<StoreResult<T>>) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            cost,
            work,
            result: None,
            reply,
        };
        (Box::new(job), rx)
    }
}

impl<T, F> Command for Job<T, F>
where
    T: Send + 'static,
    F: Work<T>,
{
    fn cost(&self) -> usize {
        self.cost
    }

    fn run(&mut self, tx: &mut Transaction<'_>, isolated: bool, effects: &mut Effects) -> Ran {
        let (result, ran) = run_one(tx, isolated, effects, &self.work);
        self.result = Some(result);
        ran
    }

    fn answer(self: Box<Self>, commit: Result<(), &StoreError>) {
        reply(self.reply, self.result, commit);
    }
}

/// Runs one command's work in the open transaction (with `isolated`, in its own
/// savepoint); its effects join the batch's only if it succeeded.
fn run_one<T>(
    tx: &mut Transaction<'_>,
    isolated: bool,
    effects: &mut Effects,
    work: &dyn Fn(&mut Transaction<'_>, &mut Effects) -> Result<T, Failure>,
) -> (StoreResult<T>, Ran) {
    let mut own = Effects::default();
    let result = if isolated {
        match tx.savepoint("cmd") {
            Ok(mut sp) => match work(&mut sp, &mut own) {
                Ok(v) => sp.commit().map(|_| v).map_err(Failure::from),
                // Dropping the savepoint rolls it back.
                Err(e) => Err(e),
            },
            Err(e) => Err(Failure::from(e)),
        }
    } else {
        work(tx, &mut own)
    };
    let ran = match &result {
        Ok(_) => {
            effects.merge(own);
            Ran::Ok
        }
        Err(f) if f.conflict() => Ran::Conflict,
        Err(_) => Ran::Failed,
    };
    (result.map_err(Failure::into_store), ran)
}

/// Send a command's kept result if its batch committed, else the batch's error. The caller
/// may have gone away (cancelled); its work is committed regardless.
fn reply<T>(
    to: oneshot::Sender<StoreResult<T>>,
    result: Option<StoreResult<T>>,
    commit: Result<(), &StoreError>,
) {
    let out = match (commit, result) {
        (Ok(()), Some(result)) => result,
        (Ok(()), None) => Err(StoreError::Backend("command was not run".to_owned())),
        (Err(e), _) => Err(batch_error(e)),
    };
    let _ = to.send(out);
}

fn batch_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Closed => StoreError::Closed,
        // Kept as is: callers (ingress, `ping`) tell an unreachable database from the rest.
        StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()),
        other => StoreError::Backend(format!("batch not committed: {other}")),
    }
}

/// Group-commit counters, shared with the store handle.
#[derive(Default)]
pub(crate) struct Stats {
    pub commits: AtomicU64,
    pub commands: AtomicU64,
}

/// Batch bounds.
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    pub max_commands: usize,
    pub max_bytes: usize,
}

/// What the writer thread owns besides its queue.
pub(crate) struct WriterParts {
    pub connector: Arc<Connector>,
    /// The connection made at open (migrations ran on it).
    pub client: Client,
    pub stats: Arc<Stats>,
    pub health: Arc<Health>,
    pub bounds: Bounds,
    /// Where batches that leave deliveries pending notify the other nodes (`listen`).
    pub channel: String,
}

/// How often a batch runs again after a conflict between nodes before it fails.
const CONFLICT_RETRIES: usize = 5;

/// The writer loop: runs until every sender is gone and the queue is drained.
pub(crate) fn run(mut rx: mpsc::Receiver<Box<dyn Command>>, parts: WriterParts) {
    let WriterParts {
        connector,
        client,
        stats,
        health,
        bounds,
        channel,
    } = parts;
    let mut client = Some(client);
    let max_commands = bounds.max_commands.max(1);
    let mut batch: Vec<Box<dyn Command>> = Vec::with_capacity(max_commands.min(4096));
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.cost();
        batch.push(first);
        while batch.len() < max_commands && bytes < bounds.max_bytes {
            match rx.try_recv() {
                Ok(cmd) => {
                    bytes += cmd.cost();
                    batch.push(cmd);
                }
                Err(_) => break,
            }
        }
        let outcome = match connected(&mut client, &connector) {
            Ok(c) => run_batch(c, &mut batch, &health, &channel),
            Err(e) => Err(e),
        };
        match &outcome {
            Ok(true) => {
                health.committed();
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats
                    .commands
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, commands = batch.len(), "store: batch failed to commit");
                health.failed(e);
                if client.as_ref().is_some_and(Client::is_closed) {
                    client = None;
                }
            }
        }
        let outcome = outcome.map(|_| ());
        for cmd in batch.drain(..) {
            cmd.answer(outcome.as_ref().map(|_| ()));
        }
    }
}

/// The writer's connection, made again if it was lost.
fn connected<'a>(
    client: &'a mut Option<Client>,
    connector: &Connector,
) -> StoreResult<&'a mut Client> {
    if client.as_ref().is_some_and(Client::is_closed) {
        *client = None;
    }
    if client.is_none() {
        forget_statements();
        *client = Some(connector.connect()?);
        tracing::info!("store: the writer is connected to PostgreSQL again");
    }
    client
        .as_mut()
        .ok_or_else(|| StoreError::Unavailable("no connection to PostgreSQL".to_owned()))
}

/// Runs one batch: optimistically, then with savepoints if a command failed, again on a
/// conflict between nodes. `Ok(true)`: committed. `Ok(false)`: a lone command failed and was
/// rolled back; it answers with its own error. `Err`: nothing was applied.
fn run_batch(
    client: &mut Client,
    batch: &mut [Box<dyn Command>],
    health: &Health,
    channel: &str,
) -> StoreResult<bool> {
    let mut isolated = false;
    let mut conflicts = 0;
    loop {
        match run_transaction(client, batch, isolated, health, channel) {
            Attempt::Committed => return Ok(true),
            Attempt::CommandFailed if batch.len() > 1 && !isolated => isolated = true,
            Attempt::CommandFailed => return Ok(false),
            Attempt::Conflict(e) => {
                conflicts += 1;
                if conflicts > CONFLICT_RETRIES {
                    return Err(e);
                }
                tracing::debug!(error = %e, conflicts, "store: batch conflicted with another node; running it again");
                std::thread::sleep(Duration::from_millis(2 * conflicts as u64));
            }
            Attempt::Failed(e) => return Err(e),
        }
    }
}

enum Attempt {
    Committed,
    CommandFailed,
    Conflict(StoreError),
    Failed(StoreError),
}

fn failed(e: postgres::Error) -> Attempt {
    if is_retryable(&e) {
        Attempt::Conflict(map_err(e))
    } else {
        Attempt::Failed(map_err(e))
    }
}

fn run_transaction(
    client: &mut Client,
    batch: &mut [Box<dyn Command>],
    isolated: bool,
    health: &Health,
    channel: &str,
) -> Attempt {
    let mut tx = match client.transaction() {
        Ok(tx) => tx,
        Err(e) => return failed(e),
    };
    let mut effects = Effects::default();
    // First the plain appends, all in one statement (not when the batch runs command by
    // command: then each is on its own, in its savepoint).
    let mut merged = vec![false; batch.len()];
    if !isolated {
        let plain: Vec<usize> = (0..batch.len())
            .filter(|&i| batch[i].plain_events().is_some())
            .collect();
        if plain.len() > 1 {
            let groups: Vec<&[NewEvent]> = plain
                .iter()
                .filter_map(|&i| batch[i].plain_events())
                .collect();
            match ops::append_plain_many(&mut tx, &mut effects, &groups) {
                Ok(outcomes) => {
                    for (&i, out) in plain.iter().zip(outcomes) {
                        batch[i].merged(out);
                        merged[i] = true;
                    }
                }
                Err(Failure::Pg(e)) if is_retryable(&e) => return Attempt::Conflict(map_err(e)),
                // Which command broke it is found command by command.
                Err(_) => return Attempt::CommandFailed,
            }
        }
    }
    for (i, cmd) in batch.iter_mut().enumerate() {
        if merged[i] {
            continue;
        }
        match cmd.run(&mut tx, isolated, &mut effects) {
            Ran::Ok => {}
            Ran::Conflict => {
                return Attempt::Conflict(StoreError::Backend(
                    "conflict with another node".to_owned(),
                ));
            }
            // Outside a savepoint the transaction is aborted: roll it all back (by drop).
            Ran::Failed if !isolated => return Attempt::CommandFailed,
            Ran::Failed => {}
        }
    }
    // Other nodes' lanes wake when deliveries wait for them (sent at commit).
    let waiting = effects.lanes.lanes_entering(i64::from(PENDING));
    let applied = listen::notify(&mut tx, channel, &waiting)
        .and_then(|()| super::counts::flush(&mut effects.lanes, &mut tx))
        .and_then(|()| audit::write(&mut tx, &effects.audit));
    if let Err(f) = applied {
        return match f {
            Failure::Pg(e) => failed(e),
            Failure::Store(e) => Attempt::Failed(e),
        };
    }
    if let Some(reason) = health.injected() {
        return Attempt::Failed(StoreError::Unavailable(reason));
    }
    match tx.commit() {
        Ok(()) => Attempt::Committed,
        Err(e) => failed(e),
    }
}

thread_local! {
    /// The writer connection's prepared statements, by SQL text (the writer is one thread
    /// with one connection; cleared when it connects again).
    static STATEMENTS: std::cell::RefCell<std::collections::HashMap<&'static str, Statement>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// `sql` prepared once per writer connection: a statement is then one round trip, not two.
/// Protocol-level prepared statements survive rollbacks, so savepoints and failed batches
/// do not invalidate them.
pub(crate) fn prepared(
    tx: &mut Transaction<'_>,
    sql: &'static str,
) -> Result<Statement, postgres::Error> {
    if let Some(stmt) = STATEMENTS.with(|m| m.borrow().get(sql).cloned()) {
        return Ok(stmt);
    }
    let stmt = tx.prepare(sql)?;
    STATEMENTS.with(|m| m.borrow_mut().insert(sql, stmt.clone()));
    Ok(stmt)
}

fn forget_statements() {
    STATEMENTS.with(|m| m.borrow_mut().clear());
}
