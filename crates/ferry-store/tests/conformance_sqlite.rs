//! The store conformance suite on the embedded SQLite backend.

use std::sync::Arc;

use ferry_store::Store;
use ferry_store::conformance::{CommitFaults, Reopen};
use ferry_store::sqlite::{SqliteOptions, SqliteStore};

async fn fresh() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open store");
    (Arc::new(store), dir)
}

ferry_store::conformance_suite!(fresh);

/// Reopens the store of one temp dir.
struct Reopener(tempfile::TempDir);

#[async_trait::async_trait]
impl Reopen for Reopener {
    async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        // Dropping the last handle stops the writer and releases the data-dir lock.
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .expect("close store");
        let store = SqliteStore::open(self.0.path(), SqliteOptions::default()).expect("reopen");
        Arc::new(store)
    }
}

async fn reopenable() -> (Arc<dyn Store>, Reopener) {
    let (store, dir) = fresh().await;
    (store, Reopener(dir))
}

ferry_store::conformance_reopen_suite!(reopenable);

/// Fails the commits of one store on purpose.
struct Faults {
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl CommitFaults for Faults {
    async fn fail_commits(&mut self, fail: bool) {
        self.store
            .fail_commits(fail.then_some("database or disk is full (injected)"));
    }
}

async fn faulty() -> (Arc<dyn Store>, Faults) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open"));
    let faults = Faults {
        store: store.clone(),
        _dir: dir,
    };
    (store, faults)
}

ferry_store::conformance_fault_suite!(faulty);
