//! What the store's VFSs (`wal_gather`, `paced_writeback`) share: SQLite's `unix` VFS,
//! which each of them wraps, and their registration as `unix` with an `xOpen` of their own.
//!
//! A VFS is SQLite's C interface, reached through `rusqlite::ffi`, hence the `unsafe`.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// A VFS's `xOpen`.
pub(crate) type XOpen = unsafe extern "C" fn(
    *mut ffi::sqlite3_vfs,
    ffi::sqlite3_filename,
    *mut ffi::sqlite3_file,
    c_int,
    *mut c_int,
) -> c_int;

/// SQLite's `unix` VFS, found once (null if this SQLite has none).
struct Unix(*mut ffi::sqlite3_vfs);
// SAFETY: a registered VFS is immutable and SQLite calls it from any thread.
unsafe impl Send for Unix {}
unsafe impl Sync for Unix {}

fn unix() -> *mut ffi::sqlite3_vfs {
    static UNIX: OnceLock<Unix> = OnceLock::new();
    // SAFETY: `sqlite3_vfs_find` returns SQLite's static `unix` VFS or null.
    UNIX.get_or_init(|| Unix(unsafe { ffi::sqlite3_vfs_find(c"unix".as_ptr()) }))
        .0
}

/// Registers, once per process (`once`), a VFS named `name` that is `unix` but for its
/// `x_open` and `extra` bytes allotted before `unix`'s file object; returns its name for
/// `Connection::open_with_flags_and_vfs`, or `None` if SQLite has no `unix` VFS to wrap.
pub(crate) fn registered(
    once: &'static OnceLock<bool>,
    name: &'static CStr,
    extra: usize,
    x_open: XOpen,
) -> Option<&'static CStr> {
    let register = || {
        let parent = unix();
        if parent.is_null() {
            return false;
        }
        let Ok(extra) = c_int::try_from(extra) else {
            return false;
        };
        // SAFETY: `parent` is SQLite's static `unix` VFS. The copy registered is leaked, so
        // it outlives every connection. Its methods other than `xOpen` are `unix`'s, which
        // read only `mxPathname` and `pAppData` of the VFS they are given, copied unchanged.
        unsafe {
            let mut vfs = ptr::read(parent);
            vfs.szOsFile += extra;
            vfs.pNext = ptr::null_mut();
            vfs.zName = name.as_ptr();
            vfs.xOpen = Some(x_open);
            ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0) == ffi::SQLITE_OK
        }
    };
    once.get_or_init(register).then_some(name)
}

/// `unix`'s open of `name` into `file` (`unix`'s file object).
///
/// # Safety
/// The arguments are those SQLite gave a registered VFS's `xOpen`, `file` moved past any
/// bytes of the wrapper's own.
pub(crate) unsafe fn open(
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // A VFS of ours is registered only when `unix` was found, so this is never null.
    let parent = unix();
    // SAFETY: `parent` is null or SQLite's static `unix` VFS; the rest is the caller's.
    unsafe {
        match parent.as_ref().and_then(|p| p.xOpen) {
            Some(open) => open(parent, name, file, flags, out_flags),
            None => ffi::SQLITE_CANTOPEN,
        }
    }
}
