//! The store conformance suite on the embedded SQLite backend.

use std::sync::Arc;

use ferry_store::Store;
use ferry_store::sqlite::{SqliteOptions, SqliteStore};

async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open store");
    (Arc::new(store), dir)
}

ferry_store::conformance_suite!(fresh);
