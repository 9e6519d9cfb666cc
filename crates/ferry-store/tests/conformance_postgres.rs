//! The store conformance suite on the PostgreSQL backend.
//!
//! Needs a PostgreSQL server: `FERRY_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`). Without it every case prints why and passes
//! without running; `.ci/run` sets it. Each case works in its own schema, dropped at the end.

use std::sync::Arc;

use ferry_store::Store;
use ferry_store::conformance::{CommitFaults, Reopen};
use ferry_store::postgres::{PgOptions, PgStore};

/// A schema of its own in the test database, dropped when the case ends.
pub struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new() -> Option<Schema> {
        let Ok(url) = std::env::var("FERRY_TEST_POSTGRES_URL") else {
            eprintln!("skipped: FERRY_TEST_POSTGRES_URL is not set (a PostgreSQL URL)");
            return None;
        };
        Some(Schema {
            url,
            name: format!("ferry_test_{}", uuid::Uuid::now_v7().simple()),
        })
    }

    fn options(&self) -> PgOptions {
        let mut opts = PgOptions::new(self.url.clone());
        opts.schema = Some(self.name.clone());
        opts.read_connections = 2;
        opts
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // The blocking client starts its own runtime: off the test's runtime threads.
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
            }
        })
        .join();
    }
}

async fn open(schema: &Schema) -> Arc<PgStore> {
    Arc::new(PgStore::open(schema.options()).await.expect("open store"))
}

async fn fresh() -> Option<(Arc<dyn Store>, Schema)> {
    let schema = Schema::new()?;
    Some((open(&schema).await, schema))
}

ferry_store::conformance_suite!(fresh);

/// Reopens the store of one schema.
pub struct Reopener(Schema);

#[async_trait::async_trait]
impl Reopen for Reopener {
    async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .expect("close store");
        open(&self.0).await
    }
}

async fn reopenable() -> Option<(Arc<dyn Store>, Reopener)> {
    let (store, schema) = fresh().await?;
    Some((store, Reopener(schema)))
}

ferry_store::conformance_reopen_suite!(reopenable);

/// Fails the commits of one store on purpose.
pub struct Faults {
    store: Arc<PgStore>,
    _schema: Schema,
}

#[async_trait::async_trait]
impl CommitFaults for Faults {
    async fn fail_commits(&mut self, fail: bool) {
        self.store.fail_commits(
            fail.then_some("could not extend file: No space left on device (injected)"),
        );
    }
}

async fn faulty() -> Option<(Arc<dyn Store>, Faults)> {
    let schema = Schema::new()?;
    let store = open(&schema).await;
    let faults = Faults {
        store: store.clone(),
        _schema: schema,
    };
    Some((store, faults))
}

ferry_store::conformance_fault_suite!(faulty);
