//! Reading a data dir's store without opening it (no writer, no lock).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use super::codec::SqlResultExt;
use super::{DB_FILE, audit, files, retention, schema};
use crate::audit::{Anchor, AuditRecord, ChainFault, ChainVerifier};
use crate::{StoreError, StoreResult, SystemHoldings};

/// Records read per page when verifying or exporting.
const PAGE: usize = 1000;

/// The store of a data dir, read without opening it: a read-only connection and no lock,
/// so it works beside a running hub (WAL lets readers in while it writes). For `ferry audit
/// verify|export` and `ferry retention report` without a hub.
pub struct StoreReader {
    conn: Connection,
    /// The store file; its WAL is fsynced before a verify reports a head (`verify_audit`).
    path: PathBuf,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader").finish_non_exhaustive()
    }
}

/// What [`StoreReader::verify_audit`] found in an intact trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// The last record's position and hash (hex), the value to anchor; `None` when the
    /// trail is empty.
    pub head: Option<(u64, String)>,
}

impl StoreReader {
    /// Opens the store file of `data_dir` read-only. Refused when there is none, or when its
    /// schema predates the audit trail or is newer than this Ferry.
    pub fn open(data_dir: &Path) -> StoreResult<StoreReader> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::Invalid(format!(
                "no store in {} (no {DB_FILE}): pass the hub's data dir",
                data_dir.display()
            )));
        }
        let conn = schema::open_reader(&path, Duration::from_secs(5), 1024)?;
        let version = schema::user_version(&conn)?;
        if version > schema::SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "the store's schema version is {version}, newer than this Ferry knows ({}): use the Ferry that wrote it",
                schema::SCHEMA_VERSION
            )));
        }
        let has_trail = conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'")
            .and_then(|mut s| s.exists([]))
            .store()?;
        if !has_trail {
            return Err(StoreError::Invalid(format!(
                "the store in {} has no audit trail yet (schema version {version}): start this Ferry's hub on it once to upgrade it",
                data_dir.display()
            )));
        }
        Ok(StoreReader { conn, path })
    }

    /// Audit records after position `after`, in order, at most `limit`.
    pub fn audit_records(&self, after: Option<u64>, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        audit::records(&self.conn, after, limit)
    }

    /// What the store keeps per source system (see [`crate::Store::holdings`]).
    pub fn holdings(&self) -> StoreResult<Vec<SystemHoldings>> {
        retention::holdings(&self.conn)
    }

    /// Recompute the whole chain, a page at a time (in one read transaction, so a hub
    /// writing meanwhile does not move what is checked). `Ok(Err(fault))` names the first
    /// bad record; with an `anchor`, the chain must also hold that record with that hash.
    pub fn verify_audit(
        &self,
        anchor: Option<Anchor>,
    ) -> StoreResult<Result<Verified, ChainFault>> {
        self.conn.execute_batch("BEGIN").store()?;
        let result = self.verify_pages(anchor);
        let _ = self.conn.execute_batch("COMMIT");
        if matches!(result, Ok(Ok(_))) {
            self.sync_wal()?;
        }
        result
    }

    /// Makes what was read durable before its head is reported (and perhaps anchored): a
    /// running hub commits delivery outcomes, and their audit records, without an fsync of
    /// their own (see the writer), so a power failure could otherwise undo records a
    /// verify had already printed. Nothing to do when there is no WAL (no hub running).
    fn sync_wal(&self) -> StoreResult<()> {
        files::sync_wal(&self.path).map_err(|e| {
            StoreError::Unavailable(format!("fsync of {}'s WAL: {e}", self.path.display()))
        })
    }

    fn verify_pages(&self, anchor: Option<Anchor>) -> StoreResult<Result<Verified, ChainFault>> {
        let mut verifier = ChainVerifier::new(anchor);
        let mut after = None;
        loop {
            let page = audit::records(&self.conn, after, PAGE)?;
            for r in &page {
                if let Err(fault) = verifier.push(r) {
                    return Ok(Err(fault));
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.seq),
                _ => break,
            }
        }
        Ok(verifier
            .finish()
            .map(|(records, head)| Verified { records, head }))
    }
}
