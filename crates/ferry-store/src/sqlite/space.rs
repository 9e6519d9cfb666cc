//! Disk space: the reserve file, and what the writer does when the disk runs full.
//!
//! **Why.** In WAL mode a commit appends to `ferry.db-wal`; a checkpoint later copies those
//! pages into `ferry.db`, which grows by every page that is new since the last checkpoint,
//! and only a *complete* checkpoint lets a later commit start the WAL over from its
//! beginning. On a full disk both fail. Free a little space and the commits and the
//! checkpoint race for it: when a commit wins, the WAL grows, the checkpoint then needs more
//! room than is left, the WAL cannot restart, and the hub stays wedged until about as much
//! as the WAL holds for the database file is free.
//!
//! Measured with the store alone (release build, 64 tasks appending 1 KiB events, tmpfs):
//! under sustained load the background checkpoints hardly ever complete between two
//! commits, so the WAL grows to the writer's 64 MiB safety net (55–64 MiB seen). With a
//! reserve but no tight mode (below), a disk filled then left the database file needing
//! more than the 8 MiB reserve to take in the WAL: the `TRUNCATE` checkpoint failed and the
//! store stayed wedged. So the WAL is kept short *before* the disk is full, not only handled
//! after.
//!
//! **What the writer does** (between batches, on the writer thread, so no commit races it):
//! - The data dir holds a reserve file ([`RESERVE_FILE`], [`DEFAULT_RESERVE_BYTES`] by
//!   default), written at open if the disk has room (see *roomy* below).
//! - *Tight mode*: while the reserve is missing, or the disk is not *roomy* — less free
//!   than twice the reserve plus the WAL file's length, which bounds what a checkpoint may
//!   add to the database file — the writer checkpoints after every commit that wrote (free
//!   space is looked up at most every [`LOOK_EVERY`]). Nothing commits meanwhile, so the
//!   checkpoint completes and the next commit restarts the WAL: it never holds more than
//!   about a batch the database file has not taken, and reuses its file instead of growing.
//! - *Rescue*: on a failure for lack of space (a commit, a command, a checkpoint), and then
//!   at most every [`RESCUE_EVERY`] while writes keep failing, it deletes the reserve if
//!   still there and the disk is not roomy (an I/O error with space to spare keeps it), and
//!   runs `wal_checkpoint(TRUNCATE)` at once (after waiting for a running background
//!   checkpoint). That checkpoint needs about a batch of room, which the reserve
//!   gives; then the WAL is cut to zero and its space is free for the next commits and the
//!   readiness probe. Without a reserve the rescue still runs before the next commit, so
//!   what an operator frees goes to the checkpoint first.
//! - Once the disk is roomy again the reserve is written again (at most every
//!   [`REFILL_EVERY`]), and tight mode ends while it stays roomy.
//!
//! Same set-up with all of this, filled by another file at 36k appends/s: tight mode began
//! with 81 MiB still free, the rescue found a 64 MiB WAL and the database file grew by
//! 104 KiB to take it in; later rescues found at most 1.4 MiB of WAL, and freeing 4 MiB let
//! 2,300 more appends commit at once.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::health::{Health, Verdict};
use super::{DB_FILE, files};

/// The reserve file inside the data dir.
pub const RESERVE_FILE: &str = "ferry.reserve";

/// Default size of the reserve file.
///
/// It must hold what a `TRUNCATE` checkpoint adds to the database file plus the next
/// commits. Near a full disk (tight mode) that is about one batch. Measured: on a 20–32 MiB
/// tmpfs filled while a hub ingests and delivers (the `ferry` crate's disk-full test) the
/// rescue found 0.1–0.8 MiB of WAL and the database file grew by 4–32 KiB; under full load
/// (see the module docs) by 104 KiB. A batch may carry up to `max_batch_bytes` of
/// payload (8 MiB by default), so 8 MiB covers the largest batch, and costs little on any
/// real disk.
pub const DEFAULT_RESERVE_BYTES: u64 = 8 * 1024 * 1024;

/// Least time between two rescues while writes keep failing.
pub(crate) const RESCUE_EVERY: Duration = Duration::from_secs(1);

/// Least time between two looks at the free space (to enter or leave tight mode). Short:
/// measured on tmpfs, a store under full load took 32 MiB of free space in under 100 ms.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(10);

/// Least time between two attempts to write the reserve again.
pub(crate) const REFILL_EVERY: Duration = Duration::from_secs(5);

/// The writer's view of the disk: the reserve, tight mode and the rescue schedule.
pub(crate) struct Space {
    /// The data dir (where free space is measured).
    dir: PathBuf,
    reserve: Reserve,
    /// Whether the reserve file is in place (always `false` when it is disabled).
    held: bool,
    /// Whether to checkpoint after every commit that wrote.
    tight: bool,
    last_rescue: Option<Instant>,
    next_look: Instant,
    next_refill: Instant,
}

impl Space {
    /// Takes stock of `dir`: keeps a complete reserve file, else writes one of `size` bytes
    /// if the disk has room for it (`size` 0: no reserve, no tight mode).
    pub(crate) fn open(dir: &Path, size: u64) -> Space {
        let now = Instant::now();
        let mut space = Space {
            dir: dir.to_path_buf(),
            reserve: Reserve {
                path: dir.join(RESERVE_FILE),
                size,
            },
            held: false,
            tight: false,
            last_rescue: None,
            next_look: now,
            next_refill: now,
        };
        if size == 0 {
            // Disabled: drop a reserve an earlier run left behind.
            let _ = space.reserve.release();
            return space;
        }
        space.held = space.reserve.is_complete();
        space.look();
        if !space.held {
            tracing::warn!(
                dir = %dir.display(),
                bytes = size,
                "store: too little free space to write the disk reserve (it needs twice its size)"
            );
        }
        space
    }

    /// Before a batch: rescue if the last write failed or a checkpoint did (when due).
    pub(crate) fn before_batch(&mut self, conn: &Connection, health: &Health) {
        let fault = health.failing() || health.take_checkpoint_fault();
        if fault && self.rescue_due() {
            self.rescue(conn, health);
        }
    }

    /// After a batch: rescue at once on a failure (when due); after a write, look at the
    /// free space now and then, and checkpoint in tight mode.
    pub(crate) fn after_batch(&mut self, conn: &Connection, health: &Health, verdict: &Verdict) {
        match verdict {
            Verdict::Failed(_) if self.rescue_due() => self.rescue(conn, health),
            Verdict::Wrote if self.reserve.size > 0 => {
                if Instant::now() >= self.next_look {
                    self.look();
                }
                if self.tight {
                    checkpoint_now(conn, health);
                }
            }
            _ => {}
        }
    }

    /// Looks at the free space: writes the reserve again if it is missing and fits twice
    /// over, and enters or leaves tight mode.
    fn look(&mut self) {
        let now = Instant::now();
        self.next_look = now + LOOK_EVERY;
        if !self.held && self.roomy() && now >= self.next_refill {
            self.next_refill = now + REFILL_EVERY;
            self.refill();
        }
        let tight = !self.held || !self.roomy();
        self.set_tight(tight);
    }

    /// Whether the disk has free space for the reserve twice over plus the WAL (or cannot
    /// tell). The WAL's length bounds what a checkpoint may add to the database file, so
    /// while this holds a checkpoint always fits.
    fn roomy(&self) -> bool {
        let needed = self
            .reserve
            .size
            .saturating_mul(2)
            .saturating_add(file_len(&self.wal()));
        free_bytes(&self.dir).is_none_or(|free| free >= needed)
    }

    /// The WAL file.
    fn wal(&self) -> PathBuf {
        wal_path(&self.dir)
    }

    /// Enters or leaves tight mode, logging the change.
    fn set_tight(&mut self, tight: bool) {
        if tight && !self.tight {
            tracing::info!(
                reserve_held = self.held,
                "store: free disk space is low; checkpointing after every commit"
            );
        } else if !tight && self.tight {
            tracing::info!("store: free disk space is back; checkpointing in the background");
        }
        self.tight = tight;
    }

    /// Whether the last rescue is at least [`RESCUE_EVERY`] ago.
    fn rescue_due(&self) -> bool {
        self.last_rescue
            .is_none_or(|at| at.elapsed() >= RESCUE_EVERY)
    }

    /// Frees the reserve if the disk is short of space (a failure with plenty free, an
    /// I/O error say, leaves it), then checkpoints the whole WAL into the database file,
    /// truncating the WAL to zero.
    fn rescue(&mut self, conn: &Connection, health: &Health) {
        self.last_rescue = Some(Instant::now());
        if self.held && !self.roomy() {
            self.release();
        }
        truncate_wal(conn, health, &self.dir);
    }

    /// Deletes the reserve file, giving its space back to the file system.
    fn release(&mut self) {
        self.held = false;
        self.set_tight(true);
        match self.reserve.release() {
            Ok(_) => tracing::warn!(
                bytes = self.reserve.size,
                path = %self.reserve.path.display(),
                "store: disk full; released the disk reserve to recover"
            ),
            Err(e) => tracing::warn!(
                path = %self.reserve.path.display(),
                error = %e,
                "store: cannot delete the disk reserve"
            ),
        }
    }

    /// Writes the reserve file.
    fn refill(&mut self) {
        match self.reserve.create() {
            Ok(()) => {
                self.held = true;
                tracing::info!(
                    bytes = self.reserve.size,
                    path = %self.reserve.path.display(),
                    "store: disk reserve in place"
                );
            }
            Err(e) => tracing::warn!(
                path = %self.reserve.path.display(),
                error = %e,
                "store: cannot write the disk reserve"
            ),
        }
    }
}

/// `wal_checkpoint(TRUNCATE)` on the writer's connection, once no background checkpoint
/// runs, logging what it took. Nothing commits meanwhile (this is the writer thread), so the
/// space the reserve gave back goes to the checkpoint, not to a growing WAL.
fn truncate_wal(conn: &Connection, health: &Health, dir: &Path) {
    let db = dir.join(DB_FILE);
    let wal_bytes = file_len(&wal_path(dir));
    let db_before = file_len(&db);
    let res = health.checkpoint(|| checkpoint(conn, "TRUNCATE"));
    // How much the database file had to grow is what the checkpoint needed free.
    let db_grew = file_len(&db).saturating_sub(db_before);
    match res {
        Ok((0, _, _)) => {
            tracing::info!(wal_bytes, db_grew, "store: WAL checkpointed and truncated")
        }
        Ok((_, frames, done)) => tracing::warn!(
            wal_bytes,
            db_grew,
            frames,
            done,
            "store: WAL checkpoint incomplete (readers busy)"
        ),
        Err(e) => tracing::warn!(
            wal_bytes,
            db_grew,
            error = %e,
            "store: WAL checkpoint failed; free some space in the data dir"
        ),
    }
}

/// A passive checkpoint on the writer's connection, right after a commit, so the WAL holds
/// at most one batch that the database file has not taken. A failure for lack of space is
/// noted for the next rescue.
fn checkpoint_now(conn: &Connection, health: &Health) {
    if let Err(e) = health.checkpoint(|| checkpoint(conn, "PASSIVE")) {
        tracing::debug!(error = %e, "store: WAL checkpoint after a commit failed");
        health.checkpoint_failed();
    }
}

/// The WAL file of the store in `dir`.
fn wal_path(dir: &Path) -> PathBuf {
    dir.join(format!("{DB_FILE}-wal"))
}

/// Size of the file at `path`; 0 if it is missing.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// `PRAGMA wal_checkpoint(mode)`: (busy, WAL frames, frames checkpointed).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// Bytes an unprivileged process may still write on the file system holding `dir`; `None`
/// where that cannot be known (the reserve is then written whenever it is missing).
#[cfg(unix)]
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    match rustix::fs::statvfs(dir) {
        Ok(st) => Some(st.f_bavail.saturating_mul(st.f_frsize)),
        Err(e) => {
            tracing::debug!(error = %e, dir = %dir.display(), "statvfs failed");
            None
        }
    }
}

/// Bytes free on the file system holding `dir`: unknown on this platform.
#[cfg(not(unix))]
pub(crate) fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// The reserve file: `size` bytes that can be given back to the file system at once.
struct Reserve {
    path: PathBuf,
    size: u64,
}

impl Reserve {
    /// Whether the file is there with its full size (a crash while writing it leaves it short).
    fn is_complete(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.len() == self.size)
    }

    /// Deletes the file; `false` if there was none.
    fn release(&self) -> io::Result<bool> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes the file in full and syncs it; removes what was written on failure.
    ///
    /// The bytes are pseudo-random rather than zeros: a sparse file (`set_len`) or zeros on
    /// a compressing file system (btrfs, ZFS) would not take the space they claim. One
    /// [`NOISE_BLOCK`] is generated and written over and over: those file systems compress
    /// each record (128 KiB by default, at most 1 MiB in common set-ups) on its own, so a
    /// repeat that far apart saves them nothing.
    fn create(&self) -> io::Result<()> {
        let written = self.write_all();
        if written.is_err() {
            let _ = self.release();
        }
        written
    }

    fn write_all(&self) -> io::Result<()> {
        let mut file = files::create_private(&self.path)?;
        let mut block = vec![0u8; NOISE_BLOCK];
        Noise(0x9E37_79B9_7F4A_7C15).fill(&mut block);
        let mut left = self.size;
        while left > 0 {
            let n = usize::try_from(left).map_or(block.len(), |l| l.min(block.len()));
            file.write_all(&block[..n])?;
            left -= n as u64;
        }
        file.sync_all()
    }
}

/// Bytes of noise generated for the reserve file, then repeated.
const NOISE_BLOCK: usize = 1024 * 1024;

/// xorshift64: cheap bytes no file system compresses.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_written_in_full_and_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let space = Space::open(dir.path(), 300_000);
        let path = dir.path().join(RESERVE_FILE);
        assert!(space.held);
        let bytes = std::fs::read(&path).expect("read reserve");
        assert_eq!(bytes.len(), 300_000);
        assert!(
            bytes.iter().filter(|b| **b == 0).count() < 10_000,
            "not zeros"
        );
        assert!(space.reserve.release().expect("release"));
        assert!(!path.exists());
        assert!(!space.reserve.release().expect("release again"));
    }

    #[test]
    fn short_reserve_is_rewritten_and_disabled_reserve_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(RESERVE_FILE);
        std::fs::write(&path, b"short").expect("write");
        let space = Space::open(dir.path(), 4096);
        assert!(space.held);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 4096);
        let space = Space::open(dir.path(), 0);
        assert!(!space.held);
        assert!(!path.exists());
    }
}
