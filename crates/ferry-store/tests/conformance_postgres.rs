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

/// Nodes wake each other: an append that leaves a delivery pending in a lane reaches every
/// store on the same schema listening for lane work, once committed; a delivery claimed in
/// its append (sent by the node that took it) wakes nobody.
#[test]
fn pending_work_wakes_the_other_nodes() {
    use ferry_store::{DeliveryId, EventAudit, EventId, LaneKey, NewDelivery, NewEvent};
    use std::time::Duration;

    ferry_store::conformance::run_case(async {
        let Some(schema) = Schema::new() else { return };
        let a = open(&schema).await;
        let b = open(&schema).await;
        let mut work = b.lane_work().expect("listen");
        let event = |claimed_until: Option<i64>| NewEvent {
            id: EventId::new(),
            flow: "orders".into(),
            source: "shop".into(),
            dedupe_key: None,
            event_type: None,
            received_at: 1_700_000_000_000,
            headers: Vec::new(),
            payload: bytes::Bytes::from_static(b"{}"),
            deliveries: vec![NewDelivery {
                id: DeliveryId::new(),
                destination: if claimed_until.is_some() {
                    "fresh"
                } else {
                    "crm"
                }
                .into(),
                due_at: 1_700_000_000_000,
                order_key: None,
                claimed_until,
            }],
            dedupe_window: None,
            audit: EventAudit::default(),
        };
        // The listener connects in the background: append until it hears (a few tries).
        let mut heard = None;
        for _ in 0..50 {
            a.append(vec![event(Some(1_700_000_060_000)), event(None)])
                .await
                .expect("append");
            if let Ok(Some(lane)) =
                tokio::time::timeout(Duration::from_millis(200), work.recv()).await
            {
                heard = Some(lane);
                break;
            }
        }
        assert_eq!(
            heard,
            Some(LaneKey {
                flow: "orders".into(),
                destination: "crm".into()
            })
        );
        // Only the pending lane is ever named.
        while let Ok(Some(lane)) =
            tokio::time::timeout(Duration::from_millis(300), work.recv()).await
        {
            assert_eq!(lane.destination, "crm");
        }
        assert!(b.lane_work().is_err(), "one receiver per store");
        drop(work);
        for store in [a, b] {
            tokio::task::spawn_blocking(move || drop(store))
                .await
                .expect("close");
        }
    });
}

/// Concurrent appends share statements (a batch's plain appends are stored together): each
/// call still gets its own outcomes, a re-sent event is a duplicate of the first one stored,
/// and a call reusing a stored event id fails alone, leaving the others of its batch stored.
#[test]
fn merged_appends_keep_each_call_apart() {
    use ferry_store::{
        AppendOutcome, DeliveryId, EventAudit, EventId, NewDelivery, NewEvent, StoreError,
    };

    ferry_store::conformance::run_case(async {
        let Some(schema) = Schema::new() else { return };
        let store = open(&schema).await;
        let event = |id: EventId, key: Option<String>| NewEvent {
            id,
            flow: "orders".into(),
            source: "shop".into(),
            dedupe_key: key,
            event_type: None,
            received_at: 1_700_000_000_000,
            headers: Vec::new(),
            payload: bytes::Bytes::from_static(b"{}"),
            deliveries: vec![NewDelivery {
                id: DeliveryId::new(),
                destination: "crm".into(),
                due_at: 1_700_000_000_000,
                order_key: None,
                claimed_until: None,
            }],
            dedupe_window: None,
            audit: EventAudit::default(),
        };
        let taken = EventId::new();
        store.append(vec![event(taken, None)]).await.expect("first");
        for round in 0..5 {
            let mut calls = Vec::new();
            for i in 0..40 {
                let store = store.clone();
                // Every fourth call re-sends key `k<round>-<i/4>`; one call reuses `taken`.
                let ev = if i == 17 {
                    event(taken, None)
                } else {
                    event(EventId::new(), Some(format!("k{round}-{}", i / 4)))
                };
                calls.push(tokio::spawn(async move {
                    (i, ev.id, store.append(vec![ev]).await)
                }));
            }
            let mut first_of_key = std::collections::HashMap::new();
            let mut results = Vec::new();
            for c in calls {
                results.push(c.await.expect("task"));
            }
            for (i, id, res) in results {
                if i == 17 {
                    assert!(matches!(res, Err(StoreError::Invalid(_))), "{res:?}");
                    continue;
                }
                let out = res.expect("append");
                assert_eq!(out.len(), 1);
                let key = i / 4;
                match out[0] {
                    AppendOutcome::Stored(stored) => {
                        assert_eq!(stored, id);
                        assert!(
                            first_of_key.insert(key, id).is_none(),
                            "key {key} stored twice"
                        );
                    }
                    AppendOutcome::Duplicate(_) => {}
                    other => panic!("{other:?}"),
                }
            }
            // Every key was stored once, and its duplicates name that event.
            assert_eq!(first_of_key.len(), 10);
            for id in first_of_key.values() {
                assert!(store.event(*id).await.expect("read").is_some());
            }
        }
        let stats = store.commit_stats();
        assert!(
            stats.commands > stats.commits,
            "{stats:?}: no batch held two calls"
        );
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .expect("close");
    });
}

/// The nodes' heartbeats: delivering nodes alive are counted by the region they serve, a
/// node that stops beating stops counting, and one that leaves is gone at once.
#[test]
fn heartbeats_count_the_delivering_nodes_by_region() {
    ferry_store::conformance::run_case(async {
        let Some(schema) = Schema::new() else { return };
        let store = open(&schema).await;
        let live_within = 3_000;
        let now = 1_700_000_000_000;
        store
            .heartbeat("eu-1", true, Some("eu"), now, live_within)
            .await
            .unwrap();
        store
            .heartbeat("eu-2", true, Some("eu"), now, live_within)
            .await
            .unwrap();
        store
            .heartbeat("api", false, None, now, live_within)
            .await
            .unwrap();
        let live = store
            .heartbeat("any", true, None, now, live_within)
            .await
            .unwrap();
        assert_eq!((live.all, live.any_region), (3, 1));
        assert_eq!(live.by_region.get("eu"), Some(&2));
        // An eu flow is shared by the eu nodes and the node of every region; a us flow by
        // that one only; a flow of no region by every delivering node.
        assert_eq!(live.serving(Some("eu")), 3);
        assert_eq!(live.serving(Some("us")), 1);
        assert_eq!(live.serving(None), 3);

        // eu-2 stops beating: after `live_within` it no longer counts; `any` leaves.
        let later = now + live_within + 1;
        store
            .heartbeat("eu-1", true, Some("eu"), later, live_within)
            .await
            .unwrap();
        store.leave("any").await.unwrap();
        let live = store
            .heartbeat("us-1", true, Some("us"), later, live_within)
            .await
            .unwrap();
        assert_eq!((live.all, live.any_region), (2, 0));
        assert_eq!(live.serving(Some("eu")), 1);
        assert_eq!(live.serving(Some("us")), 1);
        // Never zero, even with no node of the region alive.
        assert_eq!(live.serving(Some("apac")), 1);
    });
}

/// The hot references (an event's deliveries, a delivery's attempts) have no foreign keys
/// since schema version 4: the store keeps them whole. After the purge case (deliveries,
/// attempts and a purge of finished events), no attempt is left without its delivery and no
/// delivery without its event, and the purged events' rows are gone from every table.
#[test]
fn purge_leaves_no_orphan_rows() {
    ferry_store::conformance::run_case(async {
        let Some(schema) = Schema::new() else { return };
        let store = open(&schema).await;
        ferry_store::conformance::purge_removes_expired_finished_events(store.clone()).await;
        let (url, name) = (schema.url.clone(), schema.name.clone());
        let counts = tokio::task::spawn_blocking(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            c.batch_execute(&format!("SET search_path TO \"{name}\""))
                .expect("schema");
            let count = |c: &mut postgres::Client, sql: &str| -> i64 {
                c.query_one(sql, &[]).expect(sql).get(0)
            };
            (
                count(
                    &mut c,
                    "SELECT count(*) FROM attempts a
                     WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id)",
                ),
                count(
                    &mut c,
                    "SELECT count(*) FROM deliveries d
                     WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id)",
                ),
                count(&mut c, "SELECT count(*) FROM events"),
                count(&mut c, "SELECT count(*) FROM attempts"),
            )
        })
        .await
        .expect("count");
        // Only the young event is left (the case purges the other three), with the attempt
        // that delivered it.
        assert_eq!(counts, (0, 0, 1, 1));
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .expect("close");
    });
}

/// Keyed events stored before version 5 (under `events_dedupe` and `events_sender_id`) keep
/// deduplicating and are still found by sender id once both indexes are replaced by
/// `events_dedupe_key`; the same key in another flow is still a different event.
#[test]
fn keyed_events_from_before_v5_still_deduplicate_and_are_found() {
    use ferry_store::{EventAudit, EventId, NewEvent};

    ferry_store::conformance::run_case(async {
        let Some(schema) = Schema::new() else { return };
        let old = NewEvent {
            id: EventId::new(),
            flow: "orders".into(),
            source: "shop".into(),
            dedupe_key: Some("evt_1".into()),
            event_type: None,
            received_at: 1_700_000_000_000,
            headers: Vec::new(),
            payload: bytes::Bytes::from_static(b"{}"),
            deliveries: Vec::new(),
            dedupe_window: None,
            audit: EventAudit::default(),
        };
        let store = open(&schema).await;
        store.append(vec![old.clone()]).await.expect("append");
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .expect("close");

        // The schema as version 4 left it: the two indexes, over the stored event.
        let sql = format!(
            "SET search_path TO \"{0}\";
             DROP INDEX events_dedupe_key;
             CREATE UNIQUE INDEX events_dedupe ON events (flow, dedupe_key)
                 WHERE dedupe_key IS NOT NULL;
             CREATE INDEX events_sender_id ON events (dedupe_key) WHERE dedupe_key IS NOT NULL;
             UPDATE ferry_schema SET version = 4;",
            schema.name
        );
        let before = run_then_list_event_indexes(&schema, sql).await;
        assert!(
            before.contains(&"events_sender_id".to_string()),
            "{before:?}"
        );

        let store = open(&schema).await;
        ferry_store::conformance::keys_stored_before_an_upgrade_still_work(
            &*store, old.id, "orders", "evt_1",
        )
        .await;
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .expect("close");

        let after = run_then_list_event_indexes(&schema, String::new()).await;
        assert!(
            after.contains(&"events_dedupe_key".to_string()),
            "{after:?}"
        );
        assert!(
            !after.contains(&"events_dedupe".to_string())
                && !after.contains(&"events_sender_id".to_string()),
            "{after:?}"
        );
    });
}

/// Runs `sql` in the test database (a blocking client, off the runtime's threads), then
/// names the indexes of the schema's `events` table.
async fn run_then_list_event_indexes(schema: &Schema, sql: String) -> Vec<String> {
    let (url, name) = (schema.url.clone(), schema.name.clone());
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.batch_execute(&sql).expect("sql");
        c.query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 \
             AND tablename = 'events' ORDER BY 1",
            &[&name],
        )
        .expect("indexes")
        .iter()
        .map(|r| r.get(0))
        .collect()
    })
    .await
    .expect("blocking client")
}
