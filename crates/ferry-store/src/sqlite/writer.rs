//! The single writer thread and its group commit.
//!
//! Every mutation is a [`Command`] sent over a bounded channel to one std thread that owns
//! the write connection. The thread blocks for the first command, drains whatever else is
//! queued (at most `max_batch_commands` commands and about `max_batch_bytes` of payload),
//! runs them all inside one `BEGIN IMMEDIATE … COMMIT` (one fsync), and only then answers
//! each caller. Commands that arrive while the batch's SQL runs join it before its `COMMIT`
//! (see `Late`), so they share its fsync rather than wait for the next one.
//!
//! Each command runs in its own `SAVEPOINT`, so a command that fails (say, an
//! invalid request) is rolled back alone while the rest of the batch commits. If the
//! transaction itself is lost or `COMMIT` fails, every command of the batch gets the error
//! and nothing of the batch is applied.
//!
//! A batch made only of claims and delivery outcomes ([`Command::durable`] false) commits
//! with `synchronous=NORMAL`: its WAL frames are written but not fsynced. A crash of the
//! process cannot lose them (they are in the kernel's page cache); a power failure can undo
//! the last ones, until the next durable commit or the checkpointer's next checkpoint
//! fsyncs the WAL (an fsync covers every frame before it, and the WAL keeps commit order).
//! What is undone is only repeated: a claim is released at start anyway, and a delivery
//! whose outcome is undone is sent again with the same `webhook-id`. Every other batch, and
//! any batch that holds one durable command, is fsynced before its callers are answered.
//!
//! Each batch's [`Verdict`] feeds the store's readiness ([`Health`]) and the disk-full
//! handling ([`Space`]), which runs between batches.
//!
//! Just before `COMMIT`, the batch applies what its commands left ([`Effects`]): the lane
//! count changes, and the audit entries, written as records chained after the head the
//! writer keeps (see `audit`), so every change commits with its audit record or not at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::audit::{self, ChainHead};
use super::codec::map_err;
use super::health::{Health, Verdict};
use super::space::Space;
use crate::effects::Effects;
use crate::{StoreError, StoreResult};

/// One unit of work for the writer. Implemented by [`Job`].
pub(crate) trait Command: Send {
    /// Rough size in bytes, to bound a batch.
    fn cost(&self) -> usize;
    /// Runs inside the open batch transaction and keeps the result; with `isolated`, inside
    /// its own savepoint, so a failure undoes only this command. Returns whether it succeeded.
    /// May run twice (see [`run_batch`]), so the work must not consume its input.
    fn run(&mut self, conn: &Connection, isolated: bool, effects: &mut Effects) -> bool;
    /// The reason the kept result failed for lack of space or an I/O error, if it did.
    fn fault(&self) -> Option<String>;
    /// Sends the kept result if the batch committed, else the batch error.
    fn answer(self: Box<Self>, commit: Result<(), &StoreError>);
    /// Whether the caller's answer must wait for an fsync that covers the command.
    fn durable(&self) -> bool;
}

/// Work a [`Job`] runs on its committed result before answering.
pub(crate) type After<T> = Box<dyn FnOnce(&T) + Send>;

/// A command built from a closure; its result goes back over a oneshot channel.
pub(crate) struct Job<T, F> {
    cost: usize,
    durable: bool,
    work: F,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
    after: Option<After<T>>,
}

impl<T, F> Job<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection, &mut Effects) -> StoreResult<T> + Send + 'static,
{
    /// A command and the receiver of its answer. `after`, if any, runs on the writer thread
    /// with the result once it is committed, before the caller is answered, whether or not
    /// the caller still waits.
    pub(crate) fn boxed(
        cost: usize,
        durable: bool,
        work: F,
        after: Option<After<T>>,
    ) -> (Box<dyn Command>, oneshot::Receiver<StoreResult<T>>) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            cost,
            durable,
            work,
            result: None,
            reply,
            after,
        };
        (Box::new(job), rx)
    }
}

impl<T, F> Command for Job<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection, &mut Effects) -> StoreResult<T> + Send + 'static,
{
    fn cost(&self) -> usize {
        self.cost
    }

    fn run(&mut self, conn: &Connection, isolated: bool, effects: &mut Effects) -> bool {
        // A command's count changes and audit entries join the batch only if the command
        // succeeded.
        let mut own = Effects::default();
        let result = if isolated {
            in_savepoint(conn, |c| (self.work)(c, &mut own))
        } else {
            (self.work)(conn, &mut own)
        };
        let ok = result.is_ok();
        if ok {
            effects.merge(own);
        }
        self.result = Some(result);
        ok
    }

    fn fault(&self) -> Option<String> {
        match &self.result {
            Some(Err(StoreError::Unavailable(reason))) => Some(reason.clone()),
            _ => None,
        }
    }

    fn durable(&self) -> bool {
        self.durable
    }

    fn answer(self: Box<Self>, commit: Result<(), &StoreError>) {
        let out = match (commit, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Backend("command was not run".to_owned())),
            (Err(e), _) => Err(batch_error(e)),
        };
        if let (Ok(value), Some(after)) = (&out, self.after) {
            after(value);
        }
        // The caller may have gone away (cancelled); its work is committed regardless.
        let _ = self.reply.send(out);
    }
}

fn batch_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Closed => StoreError::Closed,
        // Kept as is: callers (and `ping`) tell a full disk from other failures.
        StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()),
        other => StoreError::Backend(format!("batch not committed: {other}")),
    }
}

/// Runs `work` atomically inside the open transaction.
fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    exec(conn, "SAVEPOINT cmd")?;
    match work(conn) {
        Ok(v) => {
            exec(conn, "RELEASE cmd")?;
            Ok(v)
        }
        Err(e) => {
            // If the whole transaction is already gone, the batch loop notices.
            if !conn.is_autocommit() {
                exec(conn, "ROLLBACK TO cmd")?;
                exec(conn, "RELEASE cmd")?;
            }
            Err(e)
        }
    }
}

fn exec(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(map_err)
}

/// Group-commit counters, shared with the store handle.
#[derive(Default)]
pub(crate) struct Stats {
    pub commits: AtomicU64,
    pub commands: AtomicU64,
    /// Commits made without an fsync (every command in them was deferrable).
    pub deferred: AtomicU64,
}

/// Batch bounds.
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    pub max_commands: usize,
    pub max_bytes: usize,
}

impl Bounds {
    /// Whether a batch of `len` commands and `bytes` of payload may take one more.
    fn room(&self, len: usize, bytes: usize) -> bool {
        len < self.max_commands.max(1) && bytes < self.max_bytes
    }
}

/// What the writer thread owns besides its connection and queue.
pub(crate) struct WriterParts {
    pub stats: Arc<Stats>,
    pub health: Arc<Health>,
    pub space: Space,
    pub bounds: Bounds,
    /// The audit chain's head as stored when the store opened.
    pub head: ChainHead,
}

/// The writer loop: runs until every sender is gone and the queue is drained.
pub(crate) fn run(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Command>>, parts: WriterParts) {
    let WriterParts {
        stats,
        health,
        mut space,
        bounds,
        mut head,
    } = parts;
    let mut batch: Vec<Box<dyn Command>> = Vec::with_capacity(bounds.max_commands.clamp(1, 4096));
    // What the connection is set to now (`open_writer` sets FULL).
    let mut sync = SyncMode::Full;
    // A durable command that arrived too late for a deferred batch: it starts the next one.
    let mut carried: Option<Box<dyn Command>> = None;
    while let Some(first) = carried.take().or_else(|| rx.blocking_recv()) {
        let mut bytes = first.cost();
        batch.push(first);
        while bounds.room(batch.len(), bytes) {
            match rx.try_recv() {
                Ok(cmd) => {
                    bytes += cmd.cost();
                    batch.push(cmd);
                }
                Err(_) => break,
            }
        }
        space.before_batch(&conn, &health);
        let wanted = if batch.iter().any(|c| c.durable()) {
            SyncMode::Full
        } else {
            SyncMode::Deferred
        };
        if wanted != sync {
            match set_sync(&conn, wanted) {
                Ok(()) => sync = wanted,
                // Fail closed: a durable call is never answered after a commit made
                // without its fsync; the callers get the error and may try again.
                Err(e) if wanted == SyncMode::Full => {
                    tracing::error!(error = %e, "store: cannot set PRAGMA synchronous=FULL");
                    let err = StoreError::Unavailable(format!(
                        "cannot set PRAGMA synchronous=FULL before a commit: {e}"
                    ));
                    for command in batch.drain(..) {
                        command.answer(Err(&err));
                    }
                    continue;
                }
                // Staying at FULL only costs an fsync the batch could have skipped.
                Err(e) => tracing::warn!(error = %e, "store: cannot set PRAGMA synchronous=NORMAL"),
            }
        }
        let mut late = Late {
            rx: &mut rx,
            bounds,
            bytes,
            sync,
            carried: &mut carried,
        };
        let verdict = run_batch(&conn, &mut batch, &stats, &health, &mut head, &mut late);
        space.after_batch(&conn, &health, &verdict);
    }
    if sync == SyncMode::Deferred
        && let Some(db) = conn.path()
        && let Err(e) = super::files::sync_wal(std::path::Path::new(db))
    {
        // The process is stopping cleanly: its last outcomes are in the page cache, and
        // only a power failure before the kernel writes them back would undo them.
        tracing::warn!(error = %e, "store: fsync of the WAL at close failed");
    }
    if let Err(e) = conn.execute_batch("PRAGMA optimize") {
        tracing::debug!(error = %e, "PRAGMA optimize at close failed");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the store's write connection failed");
    }
}

/// Runs one batch in one transaction, records what it proved about the disk in `health`
/// (before answering, so a caller that saw its write fail finds the store unready), and
/// answers every command.
///
/// Optimistic first: commands run back to back without savepoints (a savepoint makes SQLite
/// copy every page a command touches into a sub-journal). Should any command fail, the
/// transaction is rolled back and, if other commands share the batch, the batch runs again
/// with one savepoint per command, so only the failing ones are undone.
fn run_batch(
    conn: &Connection,
    batch: &mut Vec<Box<dyn Command>>,
    stats: &Stats,
    health: &Health,
    head: &mut ChainHead,
    late: &mut Late<'_>,
) -> Verdict {
    let sync = late.sync;
    // Rows changed by the attempt whose outcome stands (not by a rolled-back first try).
    let mut changes = conn.total_changes();
    let mut outcome = run_transaction(conn, batch, false, health, head, Some(late));
    if matches!(outcome, Ok(false)) && batch.len() > 1 {
        changes = conn.total_changes();
        outcome = run_transaction(conn, batch, true, health, head, None);
    }
    let n = batch.len() as u64;
    let verdict = verdict(&outcome, conn.total_changes() > changes, batch);
    health.record(&verdict);
    match &outcome {
        Ok(true) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.commands.fetch_add(n, Ordering::Relaxed);
            if sync == SyncMode::Deferred {
                stats.deferred.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A lone command failed and was rolled back; it answers with its own error.
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, commands = n, "store: batch failed to commit");
            // Should the chain head in memory be what made it fail (the table was written
            // by something else meanwhile), the next batch starts from the stored one.
            if let Ok(stored) = audit::load_head(conn) {
                *head = stored;
            }
        }
    }
    let outcome = outcome.map(|_| ());
    for cmd in batch.drain(..) {
        cmd.answer(outcome.as_ref().map(|_| ()));
    }
    verdict
}

/// What a batch proved: `outcome` is [`run_transaction`]'s, `changed` whether any row
/// changed on the way.
fn verdict(outcome: &StoreResult<bool>, changed: bool, batch: &[Box<dyn Command>]) -> Verdict {
    match outcome {
        Err(StoreError::Closed | StoreError::Invalid(_)) => Verdict::Nothing,
        Err(StoreError::Unavailable(reason) | StoreError::Backend(reason)) => {
            Verdict::Failed(reason.clone())
        }
        Ok(committed) => match batch.iter().find_map(|cmd| cmd.fault()) {
            Some(reason) => Verdict::Failed(reason),
            None if *committed && changed => Verdict::Wrote,
            None => Verdict::Nothing,
        },
    }
}

/// Commands that arrive while a batch's SQL runs, before its `COMMIT`: they join the batch,
/// so they share its fsync instead of waiting a whole commit for the next one. Nothing
/// waits for them; the writer only looks once its batch's commands have run.
struct Late<'a> {
    rx: &'a mut mpsc::Receiver<Box<dyn Command>>,
    bounds: Bounds,
    /// The batch's payload so far.
    bytes: usize,
    /// How the batch commits: a durable command cannot join a batch committed without its
    /// fsync, so it is carried over to start the next batch.
    sync: SyncMode,
    carried: &'a mut Option<Box<dyn Command>>,
}

impl Late<'_> {
    /// The next command that may join a batch of `len` commands, if one is queued.
    fn next(&mut self, len: usize) -> Option<Box<dyn Command>> {
        if self.carried.is_some() || !self.bounds.room(len, self.bytes) {
            return None;
        }
        let cmd = self.rx.try_recv().ok()?;
        if cmd.durable() && self.sync == SyncMode::Deferred {
            *self.carried = Some(cmd);
            return None;
        }
        self.bytes += cmd.cost();
        Some(cmd)
    }
}

/// One attempt at the batch. `Ok(true)`: committed, and `head` moved past the batch's audit
/// records. `Ok(false)`: a command failed outside a savepoint, so everything was rolled
/// back (its error is kept in the command). `Err`: the transaction could not begin or
/// commit, or SQLite abandoned it; nothing was applied. With `late`, commands that arrived
/// meanwhile join the batch (appended to it) before the `COMMIT`.
fn run_transaction(
    conn: &Connection,
    batch: &mut Vec<Box<dyn Command>>,
    isolated: bool,
    health: &Health,
    head: &mut ChainHead,
    mut late: Option<&mut Late<'_>>,
) -> StoreResult<bool> {
    exec(conn, "BEGIN IMMEDIATE")?;
    let mut effects = Effects::default();
    let mut next = 0;
    loop {
        if next == batch.len() {
            match late.as_deref_mut().and_then(|l| l.next(batch.len())) {
                Some(cmd) => batch.push(cmd),
                None => break,
            }
        }
        let cmd = &mut batch[next];
        next += 1;
        let ok = cmd.run(conn, isolated, &mut effects);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (I/O error, disk full, ...).
            return Err(match cmd.fault() {
                Some(reason) => StoreError::Unavailable(reason),
                None => StoreError::Backend(
                    "the write transaction was rolled back by SQLite".to_owned(),
                ),
            });
        }
        if !ok && !isolated {
            rollback(conn);
            return Ok(false);
        }
    }
    if let Err(e) = super::counts::flush(&mut effects.lanes, conn) {
        rollback(conn);
        return Err(e);
    }
    let new_head = match audit::write(conn, head, &effects.audit) {
        Ok(h) => h,
        Err(e) => {
            rollback(conn);
            return Err(e);
        }
    };
    if let Some(reason) = health.injected() {
        rollback(conn);
        return Err(StoreError::Unavailable(reason));
    }
    if let Err(e) = exec(conn, "COMMIT") {
        rollback(conn);
        return Err(e);
    }
    *head = new_head;
    Ok(true)
}

/// How a batch's `COMMIT` reaches the disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SyncMode {
    /// `synchronous=FULL`: the WAL is fsynced before `COMMIT` returns.
    Full,
    /// `synchronous=NORMAL`: the frames are written, not fsynced; the next `Full` commit
    /// (or checkpoint) makes them durable, since an fsync covers the whole WAL file.
    Deferred,
}

fn set_sync(conn: &Connection, mode: SyncMode) -> rusqlite::Result<()> {
    let value = match mode {
        SyncMode::Full => "FULL",
        SyncMode::Deferred => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", value)
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(e) = exec(conn, "ROLLBACK")
    {
        tracing::error!(error = %e, "store: rollback failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::sqlite::{DB_FILE, SqliteOptions, schema};

    type Slot = Arc<Mutex<Option<Box<dyn Command>>>>;

    /// A writer on a fresh store in `dir`, fed by the returned sender.
    fn writer(
        dir: &std::path::Path,
    ) -> (
        mpsc::Sender<Box<dyn Command>>,
        Arc<Stats>,
        std::thread::JoinHandle<()>,
    ) {
        let conn =
            schema::open_writer(&dir.join(DB_FILE), &SqliteOptions::default()).expect("open");
        conn.execute_batch("CREATE TABLE t (x TEXT NOT NULL)")
            .expect("table");
        let head = audit::load_head(&conn).expect("head");
        let stats = Arc::new(Stats::default());
        let parts = WriterParts {
            stats: Arc::clone(&stats),
            health: Arc::new(Health::default()),
            space: Space::open(dir, 0),
            bounds: Bounds {
                max_commands: 64,
                max_bytes: 1 << 20,
            },
            head,
        };
        let (tx, rx) = mpsc::channel(16);
        let thread = std::thread::spawn(move || run(conn, rx, parts));
        (tx, stats, thread)
    }

    /// A command that inserts `x`; if `joiner` holds one, it first queues it, as if it
    /// arrived while this command's SQL ran.
    fn insert(
        x: &'static str,
        durable: bool,
        tx: mpsc::Sender<Box<dyn Command>>,
        joiner: Slot,
    ) -> (Box<dyn Command>, oneshot::Receiver<StoreResult<()>>) {
        Job::boxed(
            1,
            durable,
            move |conn, _| {
                if let Some(next) = joiner.lock().expect("lock").take() {
                    tx.try_send(next).map_err(|_| StoreError::Closed)?;
                }
                conn.execute("INSERT INTO t (x) VALUES (?1)", [x])
                    .map(|_| ())
                    .map_err(map_err)
            },
            None,
        )
    }

    fn rows(dir: &std::path::Path) -> Vec<String> {
        let conn = Connection::open(dir.join(DB_FILE)).expect("open");
        let mut stmt = conn.prepare("SELECT x FROM t ORDER BY x").expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// Runs `first`, whose SQL queues `late` meanwhile; returns the writer's counters.
    fn run_pair(dir: &std::path::Path, first_durable: bool, late_durable: bool) -> Arc<Stats> {
        let (tx, stats, thread) = writer(dir);
        let slot: Slot = Arc::new(Mutex::new(None));
        let (late, late_rx) = insert("b", late_durable, tx.clone(), Arc::new(Mutex::new(None)));
        *slot.lock().expect("lock") = Some(late);
        let (first, first_rx) = insert("a", first_durable, tx.clone(), slot);
        tx.blocking_send(first).expect("send");
        first_rx.blocking_recv().expect("answer").expect("first");
        late_rx.blocking_recv().expect("answer").expect("late");
        drop(tx);
        thread.join().expect("writer");
        assert_eq!(rows(dir), ["a", "b"]);
        stats
    }

    #[test]
    fn a_command_that_arrives_during_a_batch_joins_its_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = run_pair(dir.path(), true, true);
        assert_eq!(stats.commands.load(Ordering::Relaxed), 2);
        assert_eq!(
            stats.commits.load(Ordering::Relaxed),
            1,
            "the late command should have shared the batch's commit"
        );
    }

    #[test]
    fn a_durable_command_does_not_join_a_batch_committed_without_fsync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = run_pair(dir.path(), false, true);
        assert_eq!(stats.commits.load(Ordering::Relaxed), 2);
        assert_eq!(
            stats.deferred.load(Ordering::Relaxed),
            1,
            "only the first batch may skip its fsync"
        );
    }

    #[test]
    fn a_deferrable_command_joins_a_durable_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = run_pair(dir.path(), true, false);
        assert_eq!(stats.commits.load(Ordering::Relaxed), 1);
        assert_eq!(stats.deferred.load(Ordering::Relaxed), 0);
    }
}
