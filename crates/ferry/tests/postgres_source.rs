//! The `postgres` table source against a real PostgreSQL, through the hub: rows delivered
//! once, later runs taking only new and updated rows, rows sharing an `updated_at` across
//! page boundaries each delivered once, a `kill -9` mid-read resumed without a gap, a row
//! the flow's schema refuses skipped (and counted) without holding the cursor back, and
//! `ferry validate` locating bad config.
//! Needs `FERRY_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); skips
//! with a reason without it.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;
use tokio_postgres::NoTls;

/// Every second: later runs come quickly.
const EVERY_SECOND: &str = "* * * * * *";

fn pg_url() -> Option<String> {
    match std::env::var("FERRY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped: FERRY_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A schema of this test's own with an `items` table; dropped by [`Db::drop`].
struct Db {
    client: tokio_postgres::Client,
    schema: String,
}

impl Db {
    async fn new(url: &str) -> Db {
        let (client, conn) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("PostgreSQL is reachable");
        tokio::spawn(conn);
        let schema = format!("ferry_src_{}", uuid::Uuid::now_v7().simple());
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.items (
                   id bigint PRIMARY KEY,
                   updated_at timestamptz NOT NULL,
                   kind text NOT NULL DEFAULT 'item.changed',
                   amount integer NOT NULL DEFAULT 1,
                   note text
                 );"
            ))
            .await
            .unwrap();
        Db { client, schema }
    }

    fn table(&self) -> String {
        format!("{}.items", self.schema)
    }

    async fn exec(&self, sql: &str) {
        let sql = sql.replace("{items}", &self.table());
        self.client.batch_execute(&sql).await.unwrap();
    }

    async fn drop(self) {
        self.client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await
            .unwrap();
    }
}

/// A config directory with one flow `tabled` reading `source` (the `postgres:` block's
/// fields, indented 8 spaces) into an HTTP receiver; `steps` indented 4 spaces.
fn write_table_config(dir: &Path, url: &str, source: &str, steps: &str, rx: &TestReceiver) {
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.join("pg-url"), url).unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        "settings:\n  listen: 127.0.0.1:0\n  admin:\n    token: { file: admin-token }\n  delivery:\n    shutdown_grace: 2s\n    egress_allow: [127.0.0.0/8]\nsystems:\n  src: { owner: team-a }\n  dst: { owner: team-b }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("flows/tabled.yaml"),
        format!(
            "flows:\n  tabled:\n    source:\n      postgres:\n        system: src\n        url: {{ file: pg-url }}\n{source}{steps}    destinations:\n{}",
            http_destination("sink", &rx.url("/in"), 5)
        ),
    )
    .unwrap();
}

/// The `postgres:` fields of an `updated_at` source of `table`.
fn updated_at_source(table: &str, schedule: &str, page_size: u32, extra: &str) -> String {
    format!(
        "        table: {table}\n        cursor: {{ column: updated_at }}\n        record_id: id\n        event_type: kind\n        schedule: \"{schedule}\"\n        page_size: {page_size}\n{extra}"
    )
}

/// `(id, updated_at)` of every body the receiver got, once per request.
fn received(rx: &TestReceiver) -> Vec<(i64, String)> {
    rx.received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|v| {
            (
                v["id"].as_i64().expect("id"),
                v["updated_at"].as_str().expect("updated_at").to_owned(),
            )
        })
        .collect()
}

fn counts(rx: &TestReceiver) -> HashMap<i64, usize> {
    let mut out = HashMap::new();
    for (id, _) in received(rx) {
        *out.entry(id).or_default() += 1;
    }
    out
}

/// The `tabled` flow as `GET /admin/v1/pulls` shows it.
async fn view(hub: SocketAddr) -> Value {
    let all = admin_get(hub, "/admin/v1/pulls").await;
    let pulls = all["pulls"].as_array().cloned().unwrap_or_default();
    assert_eq!(pulls.len(), 1, "{all}");
    pulls[0].clone()
}

/// The events of the `tabled` flow, each as `GET /admin/v1/events/{id}` shows it.
async fn events(hub: SocketAddr) -> Vec<Value> {
    let list = admin_get(hub, "/admin/v1/events?flow=tabled&limit=500").await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        let id = e["id"].as_str().expect("event id");
        out.push(admin_get(hub, &format!("/admin/v1/events/{id}")).await);
    }
    out
}

/// Wait until a whole run started after `after` (epoch ms) and succeeded: whatever the
/// table held by then has been read.
async fn wait_for_a_run_after(hub: SocketAddr, after: i64) {
    wait_until(30, "a full run after the change", || async {
        let v = view(hub).await;
        v["status"] == "ok"
            && v["running"] == false
            && v["last_started_at"].as_i64().is_some_and(|t| t > after)
            && v["last_finished_at"].as_i64() >= v["last_started_at"].as_i64()
    })
    .await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_are_delivered_once_and_later_runs_take_only_new_and_updated_rows() {
    let Some(url) = pg_url() else { return };
    let db = Db::new(&url).await;
    db.exec(
        "INSERT INTO {items} (id, updated_at, note)
         SELECT i, '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 second', 'n' || i
         FROM generate_series(1, 10) i",
    )
    .await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let source = updated_at_source(&db.table(), EVERY_SECOND, 4, "        freshness: 1h\n");
    write_table_config(&cfg, &url, &source, "", &rx);
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    wait_until(30, "10 rows delivered", || async {
        counts(&rx).len() == 10
    })
    .await;
    let v = view(addr).await;
    assert_eq!(v["system"], "src");
    assert_eq!(v["freshness_sla_seconds"], 3600);
    wait_for_a_run_after(addr, now_ms()).await;
    let v = view(addr).await;
    assert_eq!(
        v["cursor"],
        serde_json::json!({"id": "10", "updated_at": "2026-01-01 00:00:10+00"}),
        "{v}"
    );
    assert_eq!(v["records"], 10, "{v}");
    // Each row is a JSON object of every column, as PostgreSQL renders them.
    let row: Value = rx
        .received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .find(|v| v["id"] == 1)
        .expect("row 1");
    assert_eq!(row["id"], 1, "{row}");
    assert_eq!(row["updated_at"], "2026-01-01T00:00:01+00:00", "{row}");
    assert_eq!(row["note"], "n1");
    assert_eq!(row["amount"], 1);
    let stored = deliveries(addr, "flow=tabled&limit=100").await;
    assert_eq!(stored.len(), 10);

    // Three new rows, and row 2 updated: only those are read, the update as a new event.
    db.exec(
        "INSERT INTO {items} (id, updated_at) VALUES
           (11, '2026-01-02T00:00:00Z'), (12, '2026-01-02T00:00:01Z'), (13, '2026-01-02T00:00:02Z');
         UPDATE {items} SET updated_at = '2026-01-03T00:00:00Z', note = 'changed' WHERE id = 2;",
    )
    .await;
    wait_until(30, "the new and updated rows delivered", || async {
        let c = counts(&rx);
        c.len() == 13 && c.get(&2) == Some(&2)
    })
    .await;
    wait_for_a_run_after(addr, now_ms()).await;
    let got = received(&rx);
    assert_eq!(got.len(), 14, "each version once: {got:?}");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 14);
    assert!(got.contains(&(2, "2026-01-03T00:00:00+00:00".to_owned())));
    // The key of an `updated_at` source's event is `id@version`.
    let keys: HashSet<String> = events(addr)
        .await
        .iter()
        .filter_map(|e| e["dedupe_key"].as_str().map(str::to_owned))
        .collect();
    assert!(keys.contains("2@2026-01-01T00:00:02+00:00"), "{keys:?}");
    assert!(keys.contains("2@2026-01-03T00:00:00+00:00"), "{keys:?}");
    assert_eq!(view(addr).await["records"], 14);
    assert_eq!(
        view(addr).await["cursor"],
        serde_json::json!({"id": "2", "updated_at": "2026-01-03 00:00:00+00"})
    );
    hub.shutdown().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_sharing_an_updated_at_across_pages_are_each_delivered_once() {
    let Some(url) = pg_url() else { return };
    let db = Db::new(&url).await;
    // 3 rows before, 23 rows at one instant (pages of 5 cut through them), 4 after; ids
    // not in time order.
    db.exec(
        "INSERT INTO {items} (id, updated_at)
         SELECT 100 - i, '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 ms'
         FROM generate_series(1, 3) i;
         INSERT INTO {items} (id, updated_at)
         SELECT 200 + (i * 7) % 23, '2026-02-01T00:00:00.123456Z' FROM generate_series(0, 22) i;
         INSERT INTO {items} (id, updated_at)
         SELECT i, '2026-03-01T00:00:00Z'::timestamptz + i * interval '1 s'
         FROM generate_series(1, 4) i;",
    )
    .await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let source = updated_at_source(&db.table(), EVERY_SECOND, 5, "");
    write_table_config(&cfg, &url, &source, "", &rx);
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    wait_until(30, "30 rows delivered", || async {
        counts(&rx).len() == 30
    })
    .await;
    // Two more runs: the rows at the shared instant are not read again and again.
    wait_for_a_run_after(addr, now_ms()).await;
    wait_for_a_run_after(addr, now_ms()).await;
    let c = counts(&rx);
    assert!(c.values().all(|&n| n == 1), "{c:?}");
    assert_eq!(c.len(), 30);
    assert_eq!(deliveries(addr, "flow=tabled&limit=100").await.len(), 30);
    let v = view(addr).await;
    assert_eq!(v["records"], 30);
    assert_eq!(
        v["cursor"],
        serde_json::json!({"id": "4", "updated_at": "2026-03-01 00:00:04+00"})
    );
    // Two rows of the shared instant updated later: each read again once, as a new version.
    db.exec("UPDATE {items} SET updated_at = '2026-04-01T00:00:00Z' WHERE id IN (205, 210)")
        .await;
    wait_until(30, "the two updated rows", || async {
        counts(&rx).values().sum::<usize>() == 32
    })
    .await;
    wait_for_a_run_after(addr, now_ms()).await;
    let c = counts(&rx);
    assert_eq!(c.values().sum::<usize>(), 32, "{c:?}");
    assert_eq!((c[&205], c[&210]), (2, 2));
    hub.shutdown().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_id_cursor_with_listed_columns_reads_only_those() {
    let Some(url) = pg_url() else { return };
    let db = Db::new(&url).await;
    db.exec(
        "INSERT INTO {items} (id, updated_at, kind, note)
         SELECT i, now(), CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END, 'secret'
         FROM generate_series(1, 7) i",
    )
    .await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let source = format!(
        "        table: {}\n        columns: [id, kind, amount, updated_at]\n        cursor: {{ column: id, initial: \"3\" }}\n        record_id: id\n        event_type: kind\n        schedule: \"{EVERY_SECOND}\"\n        page_size: 2\n",
        db.table()
    );
    write_table_config(&cfg, &url, &source, "", &rx);
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    // `initial: 3`: rows 3 to 7.
    wait_until(30, "rows 3..=7 delivered", || async {
        counts(&rx).len() == 5
    })
    .await;
    wait_for_a_run_after(addr, now_ms()).await;
    let mut ids: Vec<i64> = counts(&rx).into_keys().collect();
    ids.sort();
    assert_eq!(ids, [3, 4, 5, 6, 7]);
    for r in rx.received() {
        let row: Value = serde_json::from_slice(&r.body).unwrap();
        let keys: HashSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            HashSet::from(["id", "kind", "amount", "updated_at"]),
            "{row}"
        );
    }
    assert_eq!(view(addr).await["cursor"], serde_json::json!({"id": "7"}));
    // Each event has its row's type and, with an id cursor, the id as its dedupe key.
    let events = events(addr).await;
    let types: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(types, HashSet::from(["even", "odd"]), "{events:?}");
    let mut keys: Vec<&str> = events
        .iter()
        .filter_map(|e| e["dedupe_key"].as_str())
        .collect();
    keys.sort();
    assert_eq!(keys, ["3", "4", "5", "6", "7"]);
    db.exec("INSERT INTO {items} (id, updated_at) VALUES (8, now())")
        .await;
    wait_until(30, "row 8", || async { counts(&rx).len() == 6 }).await;
    assert!(counts(&rx).values().all(|&n| n == 1));
    hub.shutdown().await.unwrap();
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_the_schema_refuses_is_skipped_and_the_cursor_moves_on() {
    let Some(url) = pg_url() else { return };
    let db = Db::new(&url).await;
    db.exec(
        "INSERT INTO {items} (id, updated_at, amount)
         SELECT i, '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 s',
                CASE WHEN i = 4 THEN -5 ELSE i END
         FROM generate_series(1, 6) i",
    )
    .await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let source = updated_at_source(&db.table(), EVERY_SECOND, 4, "");
    write_table_config(
        &cfg,
        &url,
        &source,
        "    steps:\n      - validate: { schema: item }\n",
        &rx,
    );
    write_schemas(
        &cfg,
        &[(
            "item",
            "schemas/item.json",
            r#"{"type":"object","required":["amount"],"properties":{"amount":{"type":"integer","minimum":0}}}"#,
        )],
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    wait_until(30, "the 5 valid rows delivered", || async {
        counts(&rx).len() == 5
    })
    .await;
    wait_for_a_run_after(addr, now_ms()).await;
    let c = counts(&rx);
    assert!(!c.contains_key(&4), "{c:?}");
    let v = view(addr).await;
    assert_eq!(
        v["cursor"],
        serde_json::json!({"id": "6", "updated_at": "2026-01-01 00:00:06+00"}),
        "{v}"
    );
    assert_eq!(v["records"], 5);
    let metrics = metrics_text(addr).await;
    let needle = "ferry_pull_records_skipped_total{flow=\"tabled\",reason=\"schema_violation\"} 1";
    assert!(metrics.contains(needle), "{needle} missing from /metrics");
    hub.shutdown().await.unwrap();
    db.drop().await;
}

/// The cursor the store holds for `tabled` (the hub stopped): `(updated_at, id)`.
async fn stored_cursor(data: &Path) -> Option<(String, i64)> {
    use ferry_store::Store;
    let store = ferry_store::sqlite::SqliteStore::open(data, Default::default()).unwrap();
    let state = store.pull_state("tabled").await.unwrap();
    store.close().await.unwrap();
    let text = state.and_then(|s| s.cursor)?;
    let v: Value = serde_json::from_str(&text).unwrap();
    Some((
        v["updated_at"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().parse().unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_read_resumes_from_the_committed_cursor_without_a_gap() {
    const ROWS: usize = 400;
    let Some(url) = pg_url() else { return };
    let db = Db::new(&url).await;
    // Groups of 4 rows share an instant, so pages of 7 cut through them.
    db.exec(&format!(
        "INSERT INTO {{items}} (id, updated_at)
         SELECT i, '2026-01-01T00:00:00Z'::timestamptz + (i / 4) * interval '1 s'
         FROM generate_series(1, {ROWS}) i"
    ))
    .await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data, log) = (
        dir.path().join("cfg"),
        dir.path().join("data"),
        dir.path().join("ferry.log"),
    );
    // A few pages per run, a run every second: the read is under way for a while.
    let source = updated_at_source(&db.table(), EVERY_SECOND, 7, "        max_pages: 3\n");
    write_table_config(&cfg, &url, &source, "", &rx);

    let mut last: Option<(String, i64)> = None;
    for round in 1..=3_usize {
        let (mut child, addr) = spawn_ferry(&cfg, &data, &log);
        let target = round * ROWS / 5;
        wait_until(60, "the read under way", || async {
            view(addr).await["records"].as_u64().unwrap_or(0) as usize >= target
        })
        .await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let cursor = stored_cursor(&data).await.expect("a committed cursor");
        if let Some(before) = &last {
            assert!(
                &cursor >= before,
                "the cursor went back: {before:?} -> {cursor:?}"
            );
        }
        last = Some(cursor);
    }
    let (mut child, addr) = spawn_ferry(&cfg, &data, &log);
    wait_until(90, "every row delivered", || async {
        counts(&rx).len() == ROWS
    })
    .await;
    wait_for_a_run_after(addr, now_ms()).await;
    let v = view(addr).await;
    assert_eq!(v["records"], ROWS, "one event per row, none twice: {v}");
    let stored = deliveries(addr, &format!("flow=tabled&limit={}", ROWS + 10)).await;
    assert_eq!(stored.len(), ROWS);
    let all: HashSet<i64> = (1..=ROWS as i64).collect();
    assert_eq!(counts(&rx).into_keys().collect::<HashSet<_>>(), all);
    child.kill().unwrap();
    child.wait().unwrap();
    db.drop().await;
}

fn ferry_validate(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("validate")
        .arg(dir)
        .env_remove("FERRY_PGSOURCE_TEST_UNSET")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A config directory with flow `tabled` whose `postgres:` block has `url` and `source`.
fn write_validate_case(dir: &Path, url: &str, source: &str) {
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("pg-url"), "postgres://u@127.0.0.1/db").unwrap();
    std::fs::write(dir.join("not-pg"), "mysql://u@127.0.0.1/db").unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        "systems:\n  src: { owner: team-a }\n  dst: { owner: team-b }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("flows/tabled.yaml"),
        format!(
            "flows:\n  tabled:\n    source:\n      postgres:\n        system: src\n        url: {url}\n{source}    destinations:\n{}",
            http_destination("sink", "https://crm.example/in", 1)
        ),
    )
    .unwrap();
}

/// `ferry validate` (no database needed) locates each broken field at its line.
#[test]
fn ferry_validate_locates_broken_table_sources() {
    let good = "        table: app.items\n        cursor: { column: updated_at }\n        record_id: id\n        schedule: \"*/5 * * * *\"\n";
    let dir = tempfile::tempdir().unwrap();
    write_validate_case(dir.path(), "{ file: pg-url }", good);
    let (ok, text) = ferry_validate(dir.path());
    assert!(ok, "the good config is refused:\n{text}");

    let cases = [
        (
            "table: app.items",
            "table: App.Items",
            "not a plain SQL name",
        ),
        (
            "record_id: id",
            "record_id: id\n        columns: [id, note]",
            "leaves out `updated_at`",
        ),
        (
            "record_id: id",
            "record_id: id\n        colour: blue",
            "colour",
        ),
        (
            "schedule: \"*/5 * * * *\"",
            "schedule: \"every minute\"",
            "cron",
        ),
        (
            "record_id: id",
            "record_id: \"id; drop table x\"",
            "not a plain SQL name",
        ),
        (
            "record_id: id",
            "record_id: id\n        page_size: 0",
            "page_size",
        ),
    ];
    for (from, to, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_validate_case(dir.path(), "{ file: pg-url }", &good.replace(from, to));
        let (ok, text) = ferry_validate(dir.path());
        assert!(!ok, "{to}: accepted:\n{text}");
        assert!(text.contains(needle), "{to}: `{needle}` not in:\n{text}");
        assert!(text.contains("tabled.yaml:"), "{to}: not located:\n{text}");
    }

    // A missing secret, and a secret that is not a postgres URL: located at `url` (line 6).
    for (url, needle) in [
        (
            "{ env: FERRY_PGSOURCE_TEST_UNSET }",
            "FERRY_PGSOURCE_TEST_UNSET",
        ),
        ("{ file: not-pg }", "not a `postgres://` connection URL"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_validate_case(dir.path(), url, good);
        let (ok, text) = ferry_validate(dir.path());
        assert!(!ok, "{url}: accepted:\n{text}");
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
        assert!(
            text.contains("tabled.yaml:6"),
            "not located at the url:\n{text}"
        );
    }
}
