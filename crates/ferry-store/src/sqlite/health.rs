//! Whether the store can commit: what `ping` (and so `/readyz`) reports.
//!
//! The writer learns it from every batch: a commit that wrote rows proves the disk takes
//! writes; a commit (or a command) that failed for lack of space or an I/O error proves the
//! opposite. A batch that wrote nothing (a claim that found nothing, a no-op) proves neither.
//!
//! Two states come out of that:
//! - *failing*: the most recent write failed. Cleared by the next write that commits. The
//!   writer rescues disk space while it is set (see `space`).
//! - *unready*: set by every failure, cleared only by a [`probe`] that commits after it.
//!   Measured on a full disk: small commits (a delivery's state change, a tiny probe) keep
//!   succeeding now and then in WAL space SQLite reuses, while an event does not fit, so
//!   "some commit succeeded" would flip readiness back and forth many times a second. The
//!   probe instead writes [`PROBE_BYTES`], so ready again means room for real work.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;

use super::codec::SqlResultExt;
use crate::{StoreError, StoreResult};

/// What a readiness probe writes: room for a few hundred typical events. Written only while
/// the store is unready, into one row replaced each time, so it costs one 1 MiB commit per
/// check then, and the database file keeps one such row, not one per check.
pub(crate) const PROBE_BYTES: usize = 1024 * 1024;

/// What one batch says about the store's ability to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Committed with row changes: the disk took a write.
    Wrote,
    /// The commit, or a command in it, failed for this reason (disk full, I/O error...).
    Failed(String),
    /// Nothing to learn: nothing was written, or a caller's mistake was refused.
    Nothing,
}

/// Why the store is not ready, and which failure that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unready {
    /// Failures recorded so far when this was read; a probe clears only up to it.
    pub seen: u64,
    pub reason: String,
}

#[derive(Debug, Default)]
struct State {
    /// Why the most recent write failed; `None` once a write commits again.
    failure: Option<String>,
    /// Why the store is not ready; `None` once a probe commits after the last failure.
    unready: Option<String>,
    /// Failures recorded so far.
    failures: u64,
}

/// Shared by the writer, the checkpointer and the store handle.
#[derive(Debug, Default)]
pub(crate) struct Health {
    state: Mutex<State>,
    /// Set by the checkpointer when a checkpoint failed for lack of space or an I/O error;
    /// the writer takes it and frees space (see `space`).
    checkpoint_fault: AtomicBool,
    /// Held by whoever runs a checkpoint (the checkpointer thread, or the writer rescuing
    /// space), so the writer's `TRUNCATE` waits for a running checkpoint instead of
    /// failing at once with `SQLITE_BUSY` (SQLite does not wait for the checkpoint lock).
    checkpoints: Mutex<()>,
    /// Test hook: while set, every commit fails with this reason (see
    /// [`SqliteStore::fail_commits`](super::SqliteStore::fail_commits)).
    injected: Mutex<Option<String>>,
}

impl Health {
    /// Whether the most recent write failed.
    pub(crate) fn failing(&self) -> bool {
        lock(&self.state).failure.is_some()
    }

    /// Why the store is not ready, if it is not.
    pub(crate) fn unready(&self) -> Option<Unready> {
        let state = lock(&self.state);
        state.unready.as_ref().map(|reason| Unready {
            seen: state.failures,
            reason: reason.clone(),
        })
    }

    /// Records what a batch proved.
    pub(crate) fn record(&self, verdict: &Verdict) {
        let mut state = lock(&self.state);
        match verdict {
            Verdict::Wrote => state.failure = None,
            Verdict::Failed(reason) => {
                if state.unready.is_none() {
                    tracing::error!(%reason, "store: a commit failed; not ready until a probe write commits");
                }
                state.failures += 1;
                state.failure = Some(reason.clone());
                state.unready = Some(reason.clone());
            }
            Verdict::Nothing => {}
        }
    }

    /// A probe committed: ready again, unless a failure came after `seen`.
    pub(crate) fn probed(&self, seen: u64) {
        let mut state = lock(&self.state);
        if state.failures == seen
            && let Some(was) = state.unready.take()
        {
            tracing::info!(%was, "store: ready again (a probe write committed)");
        }
    }

    /// Notes that a checkpoint failed for lack of space or an I/O error.
    pub(crate) fn checkpoint_failed(&self) {
        self.checkpoint_fault.store(true, Ordering::Relaxed);
    }

    /// Whether a checkpoint failed since the last call.
    pub(crate) fn take_checkpoint_fault(&self) -> bool {
        self.checkpoint_fault.swap(false, Ordering::Relaxed)
    }

    /// Runs `checkpoint` while no other checkpoint of this store runs.
    pub(crate) fn checkpoint<T>(&self, checkpoint: impl FnOnce() -> T) -> T {
        let _running = lock(&self.checkpoints);
        checkpoint()
    }

    /// The injected commit failure, if any.
    pub(crate) fn injected(&self) -> Option<String> {
        lock(&self.injected).clone()
    }

    /// Sets (`Some`) or clears (`None`) the injected commit failure.
    pub(crate) fn inject(&self, reason: Option<String>) {
        *lock(&self.injected) = reason;
    }
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data is a plain value).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The write of a readiness check: the `ready_probe` row of `store_meta` set to
/// [`PROBE_BYTES`] of random bytes (random, so no file system compresses them away), so it
/// commits only where that much room is.
pub(crate) fn probe(conn: &Connection) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO store_meta (key, value) VALUES ('ready_probe', randomblob(?1))
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .store()?
    .execute([PROBE_BYTES as i64])
    .store()?;
    Ok(())
}

/// The error a failed readiness check answers with: the probe's own, as unavailable.
pub(crate) fn not_ready(err: StoreError) -> StoreError {
    match err {
        StoreError::Backend(reason) => StoreError::Unavailable(reason),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{DB_FILE, SqliteOptions, schema};

    fn pages(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "page_count", |r| r.get(0))
            .expect("page_count")
    }

    /// Checks do not grow the database file: each probe replaces the last one's bytes.
    #[test]
    fn probes_replace_their_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = schema::open_writer(&dir.path().join(DB_FILE), &SqliteOptions::default())
            .expect("open");
        probe(&conn).expect("first probe");
        let after_one = pages(&conn);
        for _ in 0..5 {
            probe(&conn).expect("probe");
        }
        assert!(
            pages(&conn) <= after_one + 8,
            "{} pages after 6 probes, {after_one} after one",
            pages(&conn)
        );
    }

    /// A probe clears unreadiness only if no failure came after the one it saw.
    #[test]
    fn a_probe_clears_only_what_it_saw() {
        let health = Health::default();
        assert!(health.unready().is_none());
        health.record(&Verdict::Failed("disk full".into()));
        let seen = health.unready().expect("unready").seen;
        health.record(&Verdict::Wrote);
        assert!(!health.failing(), "a write that commits clears failing");
        assert!(health.unready().is_some(), "but not unready");
        health.record(&Verdict::Failed("disk full again".into()));
        health.probed(seen);
        assert_eq!(
            health.unready().map(|u| u.reason).as_deref(),
            Some("disk full again")
        );
        let seen = health.unready().expect("unready").seen;
        health.probed(seen);
        assert!(health.unready().is_none());
    }
}
