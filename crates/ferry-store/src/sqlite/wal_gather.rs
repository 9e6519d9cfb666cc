//! A SQLite VFS that writes each commit's WAL frames with one `pwrite`.
//!
//! SQLite's `unix` VFS writes every WAL frame with two system calls, its 24-byte header and
//! then its page: about 34 `pwrite`s for a commit of the store's writer, a quarter of that
//! thread's time (docs/benchmarks.md, sessions 14 and 19). This VFS wraps `unix` and, for
//! WAL files only, gathers consecutive writes in memory and hands them to `unix` in one
//! write when the transaction's commit frame has been written, and before anything that
//! looks at the file (a read, a sync, its size, a truncation, a file control, the close).
//! Every other file, and every other method, is `unix`'s own.
//!
//! What it keeps of SQLite's guarantees:
//! - Writes are only delayed, never reordered or merged across a gap: a write that does
//!   not continue the gathered run first writes the run out.
//! - The commit frame's write returns only after the whole transaction is in the file,
//!   so a commit's `xSync` (for `synchronous=FULL`) covers every frame, and the frames
//!   are in the file before SQLite publishes the commit in the wal-index, where the
//!   store's readers (each with its own file handle) look for them.
//! - A failed write of the gathered run is the commit frame's (or the sync's) error, so
//!   the transaction fails as it would have.
//!
//! No crate offers this: a VFS is SQLite's C interface, reached through `rusqlite::ffi`,
//! hence the `unsafe` below (measured: the writer's CPU −20 % at 4 connections).
#![allow(unsafe_code)]
// Every function below is a callback of SQLite's C interface: its whole body is unsafe.
#![allow(unsafe_op_in_unsafe_fn)]

use std::ffi::{CStr, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

use super::unix_vfs;

/// The VFS's registered name.
pub(crate) const NAME: &CStr = c"ferry-wal-gather";

/// A WAL frame header's size: the commit flag is its bytes 4..8 (non-zero on a commit).
const FRAME_HEADER: usize = 24;
/// The most bytes `unix` takes in one write: its `seekAndWrite` keeps the low 17 bits of
/// the length. A write that would make the run longer writes the run out first.
const MAX_RUN: usize = 0x1ffff;

/// Registers the VFS (once per process) and returns its name for
/// `Connection::open_with_flags_and_vfs`, or `None` if SQLite has no `unix` VFS to wrap.
pub(crate) fn name() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    unix_vfs::registered(&REGISTERED, NAME, std::mem::size_of::<GatherFile>(), x_open)
}

/// The file object SQLite allocates (`szOsFile` bytes): ours, then `unix`'s.
#[repr(C)]
struct GatherFile {
    base: ffi::sqlite3_file,
    /// `unix`'s io methods for the file that follows this struct.
    real_methods: *const ffi::sqlite3_io_methods,
    /// The gathered run (WAL files only), or null.
    run: *mut Run,
}

/// Consecutive bytes written but not yet handed to `unix`.
struct Run {
    offset: i64,
    bytes: Vec<u8>,
    /// The last write was a commit frame's header: its page ends the transaction.
    commit_header: bool,
}

impl Run {
    /// An empty run with room for `MAX_RUN` bytes: it never grows, and stays below the
    /// allocator's large-object size (128 KiB).
    fn new() -> Self {
        Run {
            offset: 0,
            bytes: Vec::with_capacity(MAX_RUN),
            commit_header: false,
        }
    }

    fn end(&self) -> i64 {
        self.offset + self.bytes.len() as i64
    }
}

unsafe fn real(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    (file as *mut u8).add(std::mem::size_of::<GatherFile>()) as *mut ffi::sqlite3_file
}

unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    &*(*(file as *mut GatherFile)).real_methods
}

/// Hands `file`'s gathered run, if any, to `unix` in one write.
unsafe fn write_out(file: *mut ffi::sqlite3_file) -> c_int {
    let run = (*(file as *mut GatherFile)).run;
    if run.is_null() {
        return ffi::SQLITE_OK;
    }
    write_run(file, &mut *run)
}

/// Hands `run`, `file`'s, to `unix` in one write and empties it.
unsafe fn write_run(file: *mut ffi::sqlite3_file, run: &mut Run) -> c_int {
    if run.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    #[cfg(test)]
    tests::COUNTS.with(|c| c.set((c.get().0, c.get().1 + 1)));
    let rc = real_write(
        file,
        run.bytes.as_ptr() as *const c_void,
        run.bytes.len(),
        run.offset,
    );
    run.bytes.clear();
    run.commit_header = false;
    rc
}

/// `unix`'s write of `len` bytes (at most `MAX_RUN`) at `offset`.
unsafe fn real_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    len: usize,
    offset: i64,
) -> c_int {
    match methods(file).xWrite {
        Some(write) => write(real(file), buf, len as c_int, offset),
        None => ffi::SQLITE_IOERR_WRITE,
    }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Not a WAL: the file is `unix`'s own, in the first bytes of our larger object.
        return unix_vfs::open(name, file, flags, out_flags);
    }
    let ours = file as *mut GatherFile;
    ptr::write(
        ours,
        GatherFile {
            base: ffi::sqlite3_file {
                pMethods: ptr::null(),
            },
            real_methods: ptr::null(),
            run: ptr::null_mut(),
        },
    );
    let rc = unix_vfs::open(name, real(file), flags, out_flags);
    let real_methods = (*real(file)).pMethods;
    if rc != ffi::SQLITE_OK || real_methods.is_null() {
        return rc;
    }
    (*ours).real_methods = real_methods;
    (*ours).run = Box::into_raw(Box::new(Run::new()));
    (*ours).base.pMethods = &GATHER_METHODS;
    rc
}

static GATHER_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // Version 1: a WAL file has no shared memory and no memory map.
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let written = write_out(file);
    let ours = file as *mut GatherFile;
    if !(*ours).run.is_null() {
        drop(Box::from_raw((*ours).run));
        (*ours).run = ptr::null_mut();
    }
    let closed = match methods(file).xClose {
        Some(close) => close(real(file)),
        None => ffi::SQLITE_OK,
    };
    if written != ffi::SQLITE_OK {
        written
    } else {
        closed
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    #[cfg(test)]
    tests::COUNTS.with(|c| c.set((c.get().0 + 1, c.get().1)));
    let run = &mut *(*(file as *mut GatherFile)).run;
    if !run.bytes.is_empty() && (offset != run.end() || run.bytes.len() + len > MAX_RUN) {
        let rc = write_run(file, run);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if len > MAX_RUN {
        // Larger than any page: passed on as it is.
        return real_write(file, buf, len, offset);
    }
    if run.bytes.is_empty() {
        run.offset = offset;
    }
    let data = std::slice::from_raw_parts(buf as *const u8, len);
    run.bytes.extend_from_slice(data);
    let ends_commit = run.commit_header;
    run.commit_header = len == FRAME_HEADER && data[4..8] != [0, 0, 0, 0];
    if ends_commit || run.bytes.len() >= MAX_RUN {
        // The commit frame's page, or as much as `unix` takes in one write.
        return write_run(file, run);
    }
    ffi::SQLITE_OK
}

/// Writes the run out, then calls `unix`'s method through `call` (`missing` if it has none).
unsafe fn after_write_out(
    file: *mut ffi::sqlite3_file,
    missing: c_int,
    call: impl FnOnce(&ffi::sqlite3_io_methods) -> Option<c_int>,
) -> c_int {
    match write_out(file) {
        ffi::SQLITE_OK => call(methods(file)).unwrap_or(missing),
        failed => failed,
    }
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    after_write_out(file, ffi::SQLITE_IOERR_READ, |m| {
        m.xRead.map(|read| read(real(file), buf, amount, offset))
    })
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    after_write_out(file, ffi::SQLITE_IOERR_TRUNCATE, |m| {
        m.xTruncate.map(|truncate| truncate(real(file), size))
    })
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_write_out(file, ffi::SQLITE_IOERR_FSYNC, |m| {
        m.xSync.map(|sync| sync(real(file), flags))
    })
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    after_write_out(file, ffi::SQLITE_IOERR_FSTAT, |m| {
        m.xFileSize.map(|file_size| file_size(real(file), size))
    })
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    match methods(file).xLock {
        Some(lock) => lock(real(file), level),
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    match methods(file).xUnlock {
        Some(unlock) => unlock(real(file), level),
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    match methods(file).xCheckReservedLock {
        Some(check) => check(real(file), out),
        None => {
            *out = 0;
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    after_write_out(file, ffi::SQLITE_NOTFOUND, |m| {
        m.xFileControl.map(|control| control(real(file), op, arg))
    })
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    match methods(file).xSectorSize {
        Some(sector_size) => sector_size(real(file)),
        None => 4096,
    }
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    match methods(file).xDeviceCharacteristics {
        Some(characteristics) => characteristics(real(file)),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::Path;
    use std::time::Duration;

    use rusqlite::Connection;

    use crate::sqlite::{DB_FILE, SqliteOptions, schema};

    thread_local! {
        /// On this thread: (writes SQLite gave a WAL, writes handed to `unix`).
        pub(super) static COUNTS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }

    /// Runs `work` on this thread; returns the WAL writes SQLite made meanwhile and those
    /// handed to `unix`.
    fn counted(work: impl FnOnce()) -> (u64, u64) {
        COUNTS.with(|c| c.set((0, 0)));
        work();
        COUNTS.with(Cell::get)
    }

    /// Commits `rows` rows of `size` random bytes in one transaction; returns what
    /// [`counted`] does.
    fn commit_rows(conn: &Connection, rows: usize, size: usize) -> (u64, u64) {
        counted(|| {
            let tx = conn.unchecked_transaction().expect("begin");
            insert(&tx, rows, size);
            tx.commit().expect("commit");
        })
    }

    fn writer(dir: &Path) -> Connection {
        let conn =
            schema::open_writer(&dir.join(DB_FILE), &SqliteOptions::default()).expect("writer");
        conn.execute_batch("CREATE TABLE scratch (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .expect("table");
        conn
    }

    fn insert(conn: &Connection, rows: usize, size: usize) {
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
             INSERT INTO scratch (body) SELECT randomblob(?2) FROM n",
            (rows as i64, size as i64),
        )
        .expect("insert");
    }

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
            .expect("count")
    }

    /// The files as a crash would leave them, while the writer is still open.
    fn copy_of_files(from: &Path, to: &Path) -> Connection {
        for name in [DB_FILE.to_string(), format!("{DB_FILE}-wal")] {
            std::fs::copy(from.join(&name), to.join(&name)).expect("copy");
        }
        let conn = Connection::open(to.join(DB_FILE)).expect("open the copy");
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");
        conn
    }

    /// A commit of many pages reaches the WAL in one write, and is there, whole, for a
    /// reader on its own connection and in the files before the writer closes: with
    /// `synchronous=FULL` (appends) and with `NORMAL` (the store's commits of outcomes
    /// alone), which has no sync to write the run out.
    #[test]
    fn a_commit_reaches_the_wal_in_one_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = writer(dir.path());
        let reader = schema::open_reader(&dir.path().join(DB_FILE), Duration::from_secs(1), 1024)
            .expect("reader");
        for (synchronous, expected) in [("FULL", 50), ("NORMAL", 100)] {
            conn.pragma_update(None, "synchronous", synchronous)
                .expect("synchronous");
            let (gathered, written) = commit_rows(&conn, 50, 1000);
            assert!(
                gathered >= 20,
                "50 KB is many frames, each two writes: {gathered}"
            );
            assert_eq!(
                written, 1,
                "{synchronous}: one write for the commit ({gathered} gathered)"
            );

            assert_eq!(
                rows(&reader),
                expected,
                "{synchronous}: the reader sees the commit"
            );
            let copy = tempfile::tempdir().expect("tempdir");
            let copied = copy_of_files(dir.path(), copy.path());
            assert_eq!(
                rows(&copied),
                expected,
                "{synchronous}: the commit is in the files"
            );
        }
    }

    /// A transaction larger than the run limit is written in pieces, and one that spilled
    /// pages to the WAL and then rolled back leaves a log the next commit extends soundly.
    #[test]
    fn large_and_rolled_back_transactions_leave_a_sound_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = writer(dir.path());
        let (_, written) = commit_rows(&conn, 3000, 1000);
        assert!(
            written >= 24,
            "3 MB is written in runs of less than 128 KiB: {written}"
        );

        // A cache of 64 KiB makes a 2 MB transaction spill frames before it ends.
        conn.pragma_update(None, "cache_size", -64_i64)
            .expect("cache");
        let tx = conn.unchecked_transaction().expect("begin");
        let (spilled, _) = counted(|| insert(&tx, 2000, 1000));
        assert!(
            spilled > 0,
            "the transaction wrote frames to the WAL before it ended"
        );
        tx.rollback().expect("rollback");
        commit_rows(&conn, 10, 1000);

        assert_eq!(rows(&conn), 3010);
        let copy = tempfile::tempdir().expect("tempdir");
        assert_eq!(rows(&copy_of_files(dir.path(), copy.path())), 3010);
    }
}
