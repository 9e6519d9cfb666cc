//! A SQLite VFS for the checkpointer: the pages a checkpoint copies into the database file
//! go to the disk in steps as they are written, not all at once in its final fsync.
//!
//! A checkpoint writes every page changed since the previous one into the database file
//! (a few MB every 250 ms under load), then fsyncs it. Left to that fsync, the whole lot
//! reaches the disk's queue at once, and the writer's WAL fsyncs, which every 2xx waits for,
//! queue behind it: that made the slowest 0.1 % of accepts (docs/benchmarks.md, session
//! 22). Through this VFS, after every [`STEP`] bytes written into the database file, the
//! checkpointer waits for the writeback it started one step before, then starts the
//! writeback of what it wrote since (`sync_file_range`). So a WAL fsync finds at most about
//! one step of the checkpoint's pages in the disk's queue ahead of it, and the checkpointer,
//! a background thread, goes at the disk's pace.
//!
//! What it keeps of SQLite's guarantees: everything. The writes themselves are `unix`'s,
//! and so is the checkpoint's fsync, which alone makes the pages durable and reports a
//! failure. The steps only start writeback earlier; their own errors are ignored (that
//! fsync reports what matters).
//!
//! How: `unix` opens every file. For a database file, the VFS swaps in a copy of `unix`'s
//! io methods in which `xWrite` is `unix`'s followed by the step. The step needs the file's
//! descriptor, which SQLite's interface does not give: it is read from `unix`'s file object
//! (`unixFile.h`, after three pointers), and checked at open against the path (same device
//! and inode). A mismatch leaves the file as `unix` opened it: unpaced, never wrong.
//!
//! No crate offers this: a VFS is SQLite's C interface, reached through `rusqlite::ffi`,
//! and `sync_file_range` is Linux's (through `libc`), hence the `unsafe` below (measured:
//! the p99.9 of accepts 20–30 % lower at 4 connections and about 40 % at 64,
//! docs/benchmarks.md, session 22).
#![allow(unsafe_code)]
// Every function below is a callback of SQLite's C interface: its whole body is unsafe.
#![allow(unsafe_op_in_unsafe_fn)]

use std::cell::Cell;
use std::ffi::{CStr, c_int, c_void};
use std::os::unix::fs::MetadataExt;
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

use super::unix_vfs;

/// The VFS's registered name.
pub(crate) const NAME: &CStr = c"ferry-paced-writeback";

/// Bytes written into a database file between two steps of its writeback. Measured against
/// 512 KiB and 2 MiB: the same p99.9, and the p99 at 4 connections unchanged from unpaced
/// checkpoints, where the larger steps raised it by about 0.1 ms.
pub(crate) const STEP: u64 = 128 * 1024;

/// Where `unix` keeps a file's descriptor in its file object: after the io methods, the
/// VFS and the inode pointers (`struct unixFile` in SQLite's `os_unix.c`).
const FD_OFFSET: usize = 3 * std::mem::size_of::<*const c_void>();

thread_local! {
    /// Bytes written through paced files on this thread since its last step.
    static UNSTEPPED: Cell<u64> = const { Cell::new(0) };
}

#[cfg(test)]
thread_local! {
    /// On this thread: (database files opened paced, steps taken).
    pub(super) static COUNTS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Registers the VFS (once per process) and returns its name for
/// `Connection::open_with_flags_and_vfs`, or `None` if SQLite has no `unix` VFS to wrap.
pub(crate) fn name() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    unix_vfs::registered(&REGISTERED, NAME, 0, x_open)
}

/// The io methods `unix` gives a database file, and the copy with the paced `xWrite`.
struct Methods {
    /// `unix`'s (the copy is made of these; the paced `xWrite` calls theirs).
    unix: *const ffi::sqlite3_io_methods,
    paced: ffi::sqlite3_io_methods,
}
// SAFETY: `unix`'s io methods are immutable statics of SQLite, callable from any thread;
// `paced` is a plain copy of them.
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}
static METHODS: OnceLock<Methods> = OnceLock::new();

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let rc = unix_vfs::open(name, file, flags, out_flags);
    if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
        pace(name, file);
    }
    rc
}

/// Swaps in the paced io methods for the database file `file`, just opened by `unix` at
/// `name`, if its descriptor can be told for sure; otherwise leaves it as it is.
unsafe fn pace(name: *const std::ffi::c_char, file: *mut ffi::sqlite3_file) {
    let methods = (*file).pMethods;
    if methods.is_null() || name.is_null() {
        return;
    }
    let ours = METHODS.get_or_init(|| Methods {
        unix: methods,
        paced: ffi::sqlite3_io_methods {
            xWrite: Some(x_write),
            ..ptr::read(methods)
        },
    });
    if ours.unix != methods || !fd_is(file, name) {
        return;
    }
    (*file).pMethods = &ours.paced;
    #[cfg(test)]
    COUNTS.with(|c| c.set((c.get().0 + 1, c.get().1)));
}

/// The descriptor `unix` keeps in `file`.
unsafe fn fd(file: *mut ffi::sqlite3_file) -> c_int {
    ptr::read((file as *const u8).add(FD_OFFSET) as *const c_int)
}

/// True when `file`'s descriptor is open on the file at `name` (same device and inode).
unsafe fn fd_is(file: *mut ffi::sqlite3_file, name: *const std::ffi::c_char) -> bool {
    let Ok(path) = CStr::from_ptr(name).to_str() else {
        return false;
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let mut st: libc::stat = std::mem::zeroed();
    libc::fstat(fd(file), &mut st) == 0 && st.st_dev == meta.dev() && st.st_ino == meta.ino()
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // Only files given `paced` get here, and `pace` set METHODS first.
    let Some(write) = METHODS.get().and_then(|m| (*m.unix).xWrite) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let rc = write(file, buf, amount, offset);
    if rc == ffi::SQLITE_OK {
        let written = UNSTEPPED.with(|n| {
            let total = n.get() + u64::try_from(amount).unwrap_or(0);
            n.set(if total >= STEP { 0 } else { total });
            total
        });
        if written >= STEP {
            step(fd(file));
        }
    }
    rc
}

/// Waits for the writeback started at the last step, then starts the writeback of every
/// page written since. Errors are ignored: the checkpoint's fsync reports what matters.
unsafe fn step(fd: c_int) {
    libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WAIT_BEFORE);
    libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    #[cfg(test)]
    COUNTS.with(|c| c.set((c.get().0, c.get().1 + 1)));
}

#[cfg(test)]
mod tests {
    use super::{COUNTS, STEP};
    use crate::sqlite::{DB_FILE, SqliteOptions, checkpoint, schema};
    use rusqlite::Connection;

    /// A checkpoint of 4 MB through the checkpointer's connection writes the database file
    /// in steps, and leaves a database file that holds every row by itself.
    #[test]
    fn a_checkpoint_writes_the_database_file_in_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DB_FILE);
        let writer = schema::open_writer(&path, &SqliteOptions::default()).expect("writer");
        // As in the store, the writer leaves checkpoints to the checkpointer.
        writer
            .pragma_update(None, "wal_autocheckpoint", checkpoint::SAFETY_NET_PAGES)
            .expect("wal_autocheckpoint");
        writer
            .execute_batch(
                "CREATE TABLE scratch (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)
                 INSERT INTO scratch (body) SELECT randomblob(1000) FROM n;",
            )
            .expect("4 MB in the WAL");

        COUNTS.with(|c| c.set((0, 0)));
        let conn = checkpoint::open(&path).expect("checkpointer");
        let (busy, log, done): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("checkpoint");
        let (opened, steps) = COUNTS.with(std::cell::Cell::get);
        assert_eq!((busy, done), (0, log), "the whole WAL was checkpointed");
        assert_eq!(opened, 1, "the database file was opened paced");
        let written = u64::try_from(done).expect("frames") * 4096;
        assert!(
            steps >= written / STEP - 1,
            "{written} bytes written in {steps} steps of {STEP}"
        );

        // The database file alone, as the checkpoint left it, holds every row.
        let copy = tempfile::tempdir().expect("tempdir");
        std::fs::copy(&path, copy.path().join(DB_FILE)).expect("copy");
        let copied = Connection::open(copy.path().join(DB_FILE)).expect("open the copy");
        let check: String = copied
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");
        let rows: i64 = copied
            .query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 4000);
    }
}
