//! SQLite-only behaviour: restart durability, the data-dir lock, schema versions, group commit.

use std::sync::Arc;

use bytes::Bytes;
use ferry_store::sqlite::{DB_FILE, SCHEMA_VERSION, SqliteOptions, SqliteStore};
use ferry_store::{
    AppendOutcome, DeliveryFilter, DeliveryId, DeliveryOutcome, DeliveryState, EventId, LaneKey,
    LanePause, NewDelivery, NewEvent, Next, Store, StoreError,
};

const T0: i64 = 1_700_000_000_000;

fn event(flow: &str, at: i64, key: Option<&str>) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        flow: flow.to_owned(),
        source: "src".to_owned(),
        dedupe_key: key.map(str::to_owned),
        event_type: Some("t".to_owned()),
        received_at: at,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        payload: Bytes::from(format!("{{\"at\":{at}}}")),
        deliveries: vec![NewDelivery {
            id: DeliveryId::new(),
            destination: "dest".to_owned(),
            due_at: at,
            order_key: None,
            claimed_until: None,
        }],
        dedupe_window: None,
        audit: Default::default(),
    }
}

fn lane(flow: &str) -> LaneKey {
    LaneKey {
        flow: flow.to_owned(),
        destination: "dest".to_owned(),
    }
}

fn open(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(dir, SqliteOptions::default()).expect("open store")
}

fn user_version(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).expect("open db");
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stored = event("f", T0, Some("k"));
    let done = event("f", T0 + 1, None);
    {
        let store = open(dir.path());
        store
            .append(vec![stored.clone(), done.clone()])
            .await
            .expect("append");
        let claimed = store
            .claim(&lane("f"), T0 + 5, 10, T0 + 1000)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 2);
        store
            .complete(
                vec![DeliveryOutcome {
                    claim: None,
                    audit: Default::default(),
                    id: done.deliveries[0].id,
                    attempt: None,
                    next: Next::Delivered,
                }],
                T0 + 6,
            )
            .await
            .expect("complete");
        store.close().await.expect("close");
    }
    assert_eq!(user_version(dir.path()), SCHEMA_VERSION);
    // Reopen: migrations are not re-applied (they would fail on existing tables).
    let store = open(dir.path());
    assert_eq!(user_version(dir.path()), SCHEMA_VERSION);
    let ev = store
        .event(stored.id)
        .await
        .expect("event")
        .expect("survived restart");
    assert_eq!(ev.payload, stored.payload);
    let d = store
        .delivery(stored.deliveries[0].id)
        .await
        .expect("delivery")
        .expect("survived");
    assert_eq!(d.summary.state, DeliveryState::InFlight);
    let d = store
        .delivery(done.deliveries[0].id)
        .await
        .expect("delivery")
        .expect("survived");
    assert_eq!(d.summary.state, DeliveryState::Delivered);
    // Dedupe state survives too; restart is recovery.
    let again = store
        .append(vec![event("f", T0 + 2, Some("k"))])
        .await
        .expect("append");
    assert_eq!(again, vec![AppendOutcome::Duplicate(stored.id)]);
    assert_eq!(store.release_all_claims(T0 + 10).await.expect("release"), 1);
    drop(store);
    // Dropping (not only `close`) releases the lock.
    let store = open(dir.path());
    let listed = store
        .list_deliveries(&DeliveryFilter::default(), None, 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 2);
}

/// Lane pauses and the order of keyed deliveries are on disk, not in memory.
#[tokio::test(flavor = "multi_thread")]
async fn pauses_and_key_order_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (paused, resumed) = (lane("paused"), lane("resumed"));
    let pause = LanePause {
        since: T0,
        reason: "circuit breaker open".to_owned(),
    };
    let keyed: Vec<NewEvent> = (0..2)
        .map(|i| {
            let mut ev = event("ordered", T0 + i, None);
            ev.deliveries[0].order_key = Some("customer-7".to_owned());
            ev
        })
        .collect();
    {
        let store = open(dir.path());
        store
            .set_lane_pause(&paused, Some(pause.clone()))
            .await
            .expect("pause");
        store
            .set_lane_pause(&resumed, Some(pause.clone()))
            .await
            .expect("pause");
        store.set_lane_pause(&resumed, None).await.expect("resume");
        store.append(keyed.clone()).await.expect("append");
        store.close().await.expect("close");
    }
    let store = open(dir.path());
    assert_eq!(
        store.lane_pauses().await.expect("pauses"),
        vec![(paused, pause)]
    );
    let claimed = store
        .claim(&lane("ordered"), T0 + 5, 10, T0 + 1000)
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![keyed[0].deliveries[0].id],
        "the second delivery of the key is still held back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_open_of_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let err = SqliteStore::open(dir.path(), SqliteOptions::default()).expect_err("must be locked");
    let msg = err.to_string();
    assert!(
        msg.contains("another Ferry process"),
        "unclear lock error: {msg}"
    );
    store.ping().await.expect("first store still works");
    store.close().await.expect("close");
    open(dir.path()).close().await.expect("reopen after close");
}

#[tokio::test(flavor = "multi_thread")]
async fn newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    open(dir.path()).close().await.expect("close");
    {
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open db");
        conn.pragma_update(None, "user_version", 999)
            .expect("set version");
    }
    let err = SqliteStore::open(dir.path(), SqliteOptions::default()).expect_err("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains("999") && msg.contains("newer"),
        "unclear version error: {msg}"
    );
    assert_eq!(
        user_version(dir.path()),
        999,
        "refusal must not touch the database"
    );
    // The failed open released the lock.
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("open db");
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .expect("reset version");
    drop(conn);
    open(dir.path()).close().await.expect("opens again");
}

#[tokio::test(flavor = "multi_thread")]
async fn group_commit_batches_concurrent_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let before = store.commit_stats();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .append(vec![event("gc", T0 + i, None)])
                .await
                .expect("append")
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    let after = store.commit_stats();
    let commands = after.commands - before.commands;
    let commits = after.commits - before.commits;
    assert_eq!(commands, 200);
    assert!(
        commits < commands,
        "no batching: {commits} commits for {commands} commands"
    );
}

/// Appends are fsynced before they answer; a commit of claims or outcomes alone is not
/// (the next fsync of the WAL covers it), and what it wrote is there after a reopen.
#[tokio::test(flavor = "multi_thread")]
async fn claims_and_outcomes_alone_commit_without_an_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = event("defer", T0, None);
    {
        let store = open(dir.path());
        let start = store.commit_stats();
        store.append(vec![ev.clone()]).await.expect("append");
        let after_append = store.commit_stats();
        assert_eq!(
            after_append.deferred, start.deferred,
            "an append must be fsynced before it answers"
        );
        let claimed = store
            .claim(&lane("defer"), T0 + 5, 10, T0 + 1000)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        let outcome = DeliveryOutcome {
            claim: None,
            audit: Default::default(),
            id: ev.deliveries[0].id,
            attempt: None,
            next: Next::Delivered,
        };
        store
            .complete(vec![outcome], T0 + 6)
            .await
            .expect("complete");
        let after_outcome = store.commit_stats();
        assert_eq!(after_outcome.commits - after_append.commits, 2);
        assert_eq!(
            after_outcome.deferred - after_append.deferred,
            2,
            "the claim and the outcome should each commit without an fsync"
        );
        store
            .append(vec![event("defer", T0 + 7, None)])
            .await
            .expect("append");
        assert_eq!(store.commit_stats().deferred, after_outcome.deferred);
        store.close().await.expect("close");
    }
    let store = open(dir.path());
    let d = store
        .delivery(ev.deliveries[0].id)
        .await
        .expect("delivery")
        .expect("survived");
    assert_eq!(d.summary.state, DeliveryState::Delivered);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_command_does_not_spoil_its_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let taken = event("mix", T0, None);
    store.append(vec![taken.clone()]).await.expect("append");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let store = Arc::clone(&store);
        let taken = taken.deliveries[0].id;
        tasks.spawn(async move {
            let mut ev = event("mix", T0 + 1 + i, None);
            let bad = i % 3 == 0;
            if bad {
                ev.deliveries[0].id = taken;
            }
            let res = store.append(vec![ev.clone()]).await;
            (bad, ev.id, res)
        });
    }
    let mut good = 0;
    while let Some(r) = tasks.join_next().await {
        let (bad, id, res) = r.expect("task");
        let stored = store.event(id).await.expect("event").is_some();
        if bad {
            assert!(matches!(res, Err(StoreError::Invalid(_))), "{res:?}");
            assert!(!stored);
        } else {
            assert_eq!(res.expect("append"), vec![AppendOutcome::Stored(id)]);
            assert!(stored);
            good += 1;
        }
    }
    let listed = store
        .list_deliveries(
            &DeliveryFilter {
                flow: Some("mix".into()),
                ..Default::default()
            },
            None,
            1000,
        )
        .await
        .expect("list");
    assert_eq!(listed.len(), good + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_appends_finish_before_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let appends: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.append(vec![event("q", T0 + i, None)]).await })
        })
        .collect();
    for a in appends {
        a.await.expect("task").expect("queued appends finish");
    }
    let store = Arc::into_inner(store).expect("sole owner");
    store.close().await.expect("close");
    let store = open(dir.path());
    let n = store
        .list_deliveries(&DeliveryFilter::default(), None, 1000)
        .await
        .expect("list")
        .len();
    assert_eq!(n, 50);
}

const CRASH_DIR_ENV: &str = "FERRY_STORE_CRASH_CHILD_DIR";

/// Child half of `acked_appends_survive_kill_9`: appends forever, printing every acked event
/// id. A no-op unless started by that test.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let store = Arc::new(open(std::path::Path::new(&dir)));
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..16 {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                for i in 0.. {
                    let ev = event("crash", T0 + i, Some(&format!("{t}-{i}")));
                    store.append(vec![ev.clone()]).await.expect("append");
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "acked {}", ev.id).expect("stdout");
                    out.flush().expect("flush");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

/// "Accepted means durable": kill -9 a process that is appending; every append it had
/// acknowledged is in the store afterwards.
#[test]
fn acked_appends_survive_kill_9() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut acked: Vec<EventId> = Vec::new();
    let stdout = child.stdout.take().expect("child stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child");
        if let Some(id) = line.strip_prefix("acked ") {
            acked.push(id.parse().expect("event id"));
            if acked.len() >= 2000 {
                break;
            }
        }
    }
    child.kill().expect("kill -9 the child");
    child.wait().expect("reap child");
    assert!(
        acked.len() >= 2000,
        "child stopped early after {} appends",
        acked.len()
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = open(dir.path());
        for id in &acked {
            assert!(
                store.event(*id).await.expect("event").is_some(),
                "acked event {id} lost"
            );
        }
    });
}
