//! The data directory: the modes of the files in it, and fsyncing its WAL file.
//!
//! The store holds event payloads, which carry personal data, so the data directory is
//! `0700` and every file the store writes there `0600`, whatever the umask, and also when
//! they already exist with looser modes (fixed at open). SQLite creates `-wal` and `-shm`
//! with the mode of the database file (its `robust_open` copies it, and the umask can only
//! take bits away), so pre-creating `ferry.db` as `0600` before SQLite opens it covers the
//! files SQLite makes later; existing ones are tightened here before the first connection.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::{DB_FILE, LOCK_FILE, RESERVE_FILE};
use crate::{StoreError, StoreResult};

/// Mode of the data directory: only its owner may list or enter it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the store writes in the data directory: owner read and write only.
pub const FILE_MODE: u32 = 0o600;

/// Suffixes SQLite appends to the database file's name for its side files.
const SQLITE_SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Creates `dir` (and missing parents) with [`DIR_MODE`], or tightens an existing one, and
/// tightens every store file already in it to [`FILE_MODE`].
pub(crate) fn prepare_data_dir(dir: &Path) -> StoreResult<()> {
    create_dir(dir).map_err(|e| {
        StoreError::Backend(format!("cannot create data dir {}: {e}", dir.display()))
    })?;
    restrict(dir, DIR_MODE);
    for name in store_files() {
        let path = dir.join(&name);
        if path.exists() {
            restrict(&path, FILE_MODE);
        }
    }
    Ok(())
}

/// Every file name the store writes in its data directory.
fn store_files() -> Vec<String> {
    let mut names = vec![
        DB_FILE.to_owned(),
        LOCK_FILE.to_owned(),
        RESERVE_FILE.to_owned(),
    ];
    names.extend(SQLITE_SIDE_FILES.iter().map(|s| format!("{DB_FILE}{s}")));
    names
}

/// Opens `path` for reading and writing, creating it with [`FILE_MODE`] if missing; never
/// truncates.
pub(crate) fn open_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, FILE_MODE);
    opts.open(path)
}

/// Creates `path` empty with [`FILE_MODE`], truncating it if it exists.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, FILE_MODE);
    opts.open(path)
}

/// `create_dir_all` with [`DIR_MODE`] for every directory it creates.
fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)
}

/// Sets `path`'s permission bits to `mode` unless they already are. A failure (say, a
/// file owned by another user) is logged, not fatal: the store still works, and the
/// warning names the file to fix.
fn restrict(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = match std::fs::metadata(path) {
            Ok(meta) => meta.permissions().mode() & 0o7777,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the mode of a store file");
                return;
            }
        };
        if current == mode {
            return;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => tracing::info!(
                path = %path.display(),
                from = format!("{current:o}"),
                to = format!("{mode:o}"),
                "tightened the mode of a store file"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                mode = format!("{current:o}"),
                error = %e,
                "cannot restrict the mode of a store file; it may be readable by other users"
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// `fdatasync` of the WAL file of the database at `db`: makes every frame written so far
/// durable, whichever connection wrote it. No WAL file (no connection open) is nothing to do.
pub(crate) fn sync_wal(db: &Path) -> io::Result<()> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    match File::open(&wal) {
        Ok(file) => file.sync_data(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn loose_modes_are_tightened_and_new_files_are_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/data");
        prepare_data_dir(&dir).expect("create");
        assert_eq!(mode(&dir), DIR_MODE);

        let db = dir.join(DB_FILE);
        let wal = dir.join(format!("{DB_FILE}-wal"));
        let other = dir.join("not-ours");
        for path in [&db, &wal, &other] {
            std::fs::write(path, b"x").expect("write");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        prepare_data_dir(&dir).expect("again");
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&db), FILE_MODE);
        assert_eq!(mode(&wal), FILE_MODE);
        assert_eq!(
            mode(&other),
            0o666,
            "files the store does not write are left alone"
        );

        let fresh = dir.join(LOCK_FILE);
        drop(open_private(&fresh).expect("open"));
        assert_eq!(mode(&fresh) & !FILE_MODE, 0);
    }
}
