//! Background WAL checkpointing.
//!
//! Left to itself SQLite checkpoints inside the commit that crosses `wal_autocheckpoint`,
//! i.e. on the writer thread, stalling group commit. Instead a second thread copies the WAL
//! back into the database with `PASSIVE` checkpoints (which never block the writer or the
//! readers) every `interval` while commits happen. The writer keeps a much higher
//! `wal_autocheckpoint` as a safety net should this thread fall behind.
//!
//! On Linux its connection writes the database file through `paced_writeback`, so a
//! checkpoint's pages reach the disk in steps as they are written rather than all at once
//! in its fsync, ahead of the writer's WAL fsyncs.
//!
//! A checkpoint that fails for lack of space (the database file cannot grow) is the first
//! sign of a full disk; it is reported to the writer, which frees the disk reserve and
//! checkpoints the whole WAL before the WAL outgrows the reserve (see `space`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::codec::{SqlResultExt, map_err};
use super::health::Health;
use super::writer::Stats;
use crate::{StoreError, StoreResult};

/// WAL pages after which the writer checkpoints by itself (about 64 MiB of 4 KiB pages).
pub(crate) const SAFETY_NET_PAGES: i64 = 16_384;

/// A running checkpointer; dropping `stop` ends it.
pub(crate) struct Checkpointer {
    pub stop: Sender<()>,
    pub thread: JoinHandle<()>,
}

pub(crate) fn spawn(
    path: &Path,
    interval: Duration,
    stats: Arc<Stats>,
    health: Arc<Health>,
) -> StoreResult<Checkpointer> {
    let conn = open(path)?;
    let (stop, stopped) = channel();
    let thread = std::thread::Builder::new()
        .name("ferry-store-checkpoint".to_owned())
        .spawn(move || run(conn, stopped, interval, stats, health))
        .map_err(|e| StoreError::Backend(format!("cannot start the checkpointer: {e}")))?;
    Ok(Checkpointer { stop, thread })
}

/// Opens the checkpointer's connection: on Linux through `paced_writeback`, so that a
/// checkpoint's pages reach the disk in steps rather than in one burst at its fsync.
pub(crate) fn open(path: &Path) -> StoreResult<Connection> {
    #[cfg(target_os = "linux")]
    let vfs = super::paced_writeback::name();
    #[cfg(not(target_os = "linux"))]
    let vfs: Option<&std::ffi::CStr> = None;
    match vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs),
        None => Connection::open(path),
    }
    .store()
}

fn run(
    conn: Connection,
    stopped: Receiver<()>,
    interval: Duration,
    stats: Arc<Stats>,
    health: Arc<Health>,
) {
    let mut seen = stats.commits.load(Ordering::Relaxed);
    // Wake every `interval` until the store drops `stop`.
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        let commits = stats.commits.load(Ordering::Relaxed);
        if commits == seen {
            continue;
        }
        seen = commits;
        let res = health.checkpoint(|| {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
        });
        match res {
            Ok((wal, done)) => tracing::trace!(wal, done, "store: WAL checkpoint"),
            Err(e) => {
                tracing::warn!(error = %e, "store: WAL checkpoint failed");
                if matches!(map_err(e), StoreError::Unavailable(_)) {
                    health.checkpoint_failed();
                }
            }
        }
    }
}
