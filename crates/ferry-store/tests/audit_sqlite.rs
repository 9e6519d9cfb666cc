//! SQLite-only behaviour of the audit trail: one record per kind per commit, the table
//! refusing edits, a failed command's entries rolled back with it inside a shared batch,
//! and `StoreReader` verifying beside an open store and naming a tampered record.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ferry_store::audit::ChainFault;
use ferry_store::sqlite::{DB_FILE, SqliteOptions, SqliteStore, StoreReader};
use ferry_store::{
    AuditEntry, DeliveryAudit, DeliveryId, DeliveryOutcome, EventAudit, EventId, LaneKey,
    NewDelivery, NewEvent, Next, Store,
};

const T0: i64 = 1_700_000_000_000;

fn event(flow: &str, at: i64) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        flow: flow.to_owned(),
        source: "src".to_owned(),
        dedupe_key: None,
        event_type: Some("t".to_owned()),
        received_at: at,
        headers: Vec::new(),
        payload: Bytes::from_static(b"{}"),
        deliveries: vec![NewDelivery {
            id: DeliveryId::new(),
            destination: "dest".to_owned(),
            due_at: at,
            order_key: None,
            claimed_until: None,
        }],
        dedupe_window: None,
        audit: EventAudit {
            flow_version: 2,
            subject: None,
            categories: vec!["user.contact.email".to_owned()],
        },
    }
}

/// Copy the store file with its WAL (what is committed may still be there).
fn copy_store(from: &Path, to: &Path) {
    for suffix in ["", "-wal"] {
        let name = format!("{DB_FILE}{suffix}");
        if from.join(&name).exists() {
            std::fs::copy(from.join(&name), to.join(&name)).expect("copy");
        }
    }
}

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, SqliteOptions::default()).expect("open store")
}

/// (kind, entries) of every record.
async fn records(store: &dyn Store) -> Vec<(String, usize)> {
    store
        .audit_records(None, 10_000)
        .await
        .expect("records")
        .into_iter()
        .map(|r| (r.kind.clone(), r.parse_entries().expect("parse").len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_record_per_kind_per_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let events: Vec<NewEvent> = (0..50).map(|i| event("f", T0 + i)).collect();
    store.append(events).await.expect("append");
    let lane = LaneKey {
        flow: "f".into(),
        destination: "dest".into(),
    };
    let claimed = store
        .claim(&lane, T0 + 100, 100, T0 + 60_000)
        .await
        .expect("claim");
    let outcomes = claimed
        .iter()
        .map(|c| DeliveryOutcome {
            claim: None,
            id: c.id,
            attempt: None,
            next: Next::Delivered,
            audit: DeliveryAudit::default(),
        })
        .collect();
    store.complete(outcomes, T0 + 101).await.expect("complete");
    assert_eq!(
        records(&store).await,
        vec![("accepted".to_owned(), 50), ("delivered".to_owned(), 50)]
    );
}

/// In a batch shared by many commands, a command that fails (a reused delivery id) leaves
/// no entry, and every command that committed has its entry.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_command_leaves_no_entry_in_a_shared_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let taken = event("mix", T0);
    store.append(vec![taken.clone()]).await.expect("append");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let store = Arc::clone(&store);
        let taken = taken.deliveries[0].id;
        tasks.spawn(async move {
            let mut ev = event("mix", T0 + 1 + i);
            if i % 3 == 0 {
                ev.deliveries[0].id = taken;
            }
            let stored = store.append(vec![ev.clone()]).await.is_ok();
            (ev.id, stored)
        });
    }
    let mut expected = vec![taken.id];
    while let Some(r) = tasks.join_next().await {
        let (id, stored) = r.expect("task");
        if stored {
            expected.push(id);
        }
    }
    assert_eq!(expected.len(), 41);
    let mut accepted: Vec<EventId> = Vec::new();
    for r in store.audit_records(None, 10_000).await.expect("records") {
        for e in r.parse_entries().expect("parse") {
            if let AuditEntry::Accepted { event, .. } = e {
                accepted.push(event);
            }
        }
    }
    expected.sort();
    accepted.sort();
    assert_eq!(accepted, expected);
    let reader = StoreReader::open(dir.path()).expect("reader");
    assert!(reader.verify_audit(None).expect("verify").is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_table_refuses_updates_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.append(vec![event("f", T0)]).await.expect("append");
    store.close().await.expect("close");
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open db");
    for sql in [
        "UPDATE audit_log SET entries = '[]' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 1",
    ] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

/// Three records, verified while the store is open; then each tampering of a copy (made
/// after closing the store) is named at its position.
#[tokio::test(flavor = "multi_thread")]
async fn the_reader_verifies_beside_an_open_store_and_names_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    for i in 0..4 {
        store
            .append(vec![event("f", T0 + i)])
            .await
            .expect("append");
    }
    let reader = StoreReader::open(dir.path()).expect("reader beside the open store");
    let verified = reader.verify_audit(None).expect("verify").expect("intact");
    assert_eq!(verified.records, 4);
    let last = store
        .audit_records(Some(3), 10)
        .await
        .expect("records")
        .pop()
        .expect("record 4");
    assert_eq!(
        verified.head,
        Some((4, ferry_store::audit::hex(&last.hash)))
    );
    let anchor = format!("4:{}", ferry_store::audit::hex(&last.hash));
    assert!(
        reader
            .verify_audit(Some(anchor.parse().unwrap()))
            .expect("verify")
            .is_ok()
    );
    drop(reader);
    store.close().await.expect("close");

    let tamper = |sql: &str| -> ChainFault {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_store(dir.path(), copy.path());
        let conn = rusqlite::Connection::open(copy.path().join(DB_FILE)).expect("open copy");
        conn.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
            .expect("drop the guards");
        conn.execute_batch(sql).expect(sql);
        drop(conn);
        StoreReader::open(copy.path())
            .expect("reader")
            .verify_audit(None)
            .expect("verify")
            .expect_err(sql)
    };
    let edited = tamper(
        "UPDATE audit_log SET entries = replace(entries, '\"flow_version\":2', '\"flow_version\":3') WHERE seq = 2",
    );
    assert_eq!(edited, ChainFault::Modified { seq: 2 });
    let removed = tamper("DELETE FROM audit_log WHERE seq = 3");
    assert_eq!(removed, ChainFault::Missing { from: 3, to: 3 });
    let swapped = tamper(
        "CREATE TEMP TABLE t AS SELECT * FROM audit_log WHERE seq IN (2, 3);
         UPDATE audit_log SET at = (SELECT at FROM t WHERE seq = 3),
             kind = (SELECT kind FROM t WHERE seq = 3),
             entries = (SELECT entries FROM t WHERE seq = 3),
             prev_hash = (SELECT prev_hash FROM t WHERE seq = 3),
             hash = (SELECT hash FROM t WHERE seq = 3) WHERE seq = 2;
         UPDATE audit_log SET at = (SELECT at FROM t WHERE seq = 2),
             kind = (SELECT kind FROM t WHERE seq = 2),
             entries = (SELECT entries FROM t WHERE seq = 2),
             prev_hash = (SELECT prev_hash FROM t WHERE seq = 2),
             hash = (SELECT hash FROM t WHERE seq = 2) WHERE seq = 3;",
    );
    assert_eq!(swapped, ChainFault::Unlinked { seq: 2 });
    // The last record removed: only an anchor tells.
    let cut = tempfile::tempdir().expect("tempdir");
    copy_store(dir.path(), cut.path());
    {
        let conn = rusqlite::Connection::open(cut.path().join(DB_FILE)).expect("open copy");
        conn.execute_batch(
            "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 4;",
        )
        .expect("cut");
    }
    let reader = StoreReader::open(cut.path()).expect("reader");
    assert!(reader.verify_audit(None).expect("verify").is_ok());
    let fault = reader
        .verify_audit(Some(anchor.parse().unwrap()))
        .expect("verify")
        .expect_err("the anchor is gone");
    assert_eq!(fault.position(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reader_refuses_a_dir_without_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = StoreReader::open(dir.path()).expect_err("no store");
    assert!(err.to_string().contains("no store"), "{err}");
}
