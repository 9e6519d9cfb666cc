//! Scheduled pulls against a local paginated API: every record stored and delivered exactly
//! once per cursor kind, new records picked up by later runs, missed runs caught up once,
//! failures recorded and retried, freshness against the SLA shown, and a `kill -9` in the
//! middle of a run resumed from the committed cursor without gaps or duplicates.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pages::{PageServer, Paging, cursor_yaml, write_pull_config};
use common::*;
use serde_json::Value;

/// Every second: later runs come quickly.
const EVERY_SECOND: &str = "* * * * * *";
/// Once a year: only the first run (and the resumption of an interrupted one) happen.
const YEARLY: &str = "0 0 1 1 *";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The ids of the records the receiver got, once per request.
fn received_ids(rx: &TestReceiver) -> Vec<String> {
    rx.received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

fn distinct(rx: &TestReceiver) -> usize {
    received_ids(rx).into_iter().collect::<HashSet<_>>().len()
}

/// How often each id was received.
fn counts(rx: &TestReceiver) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for id in received_ids(rx) {
        *out.entry(id).or_default() += 1;
    }
    out
}

/// The `pulled` flow as `GET /admin/v1/pulls` shows it.
async fn view(hub: SocketAddr) -> Value {
    let all = admin_get(hub, "/admin/v1/pulls").await;
    let pulls = all["pulls"].as_array().cloned().unwrap_or_default();
    assert_eq!(pulls.len(), 1, "{all}");
    pulls[0].clone()
}

async fn wait_view(hub: SocketAddr, secs: u64, what: &str, check: impl Fn(&Value) -> bool) {
    wait_until(secs, what, || async { check(&view(hub).await) }).await;
}

fn config(
    dir: &Path,
    api: &PageServer,
    schedule: &str,
    cursor: &str,
    extra: &str,
    rx: &TestReceiver,
) {
    write_pull_config(
        dir,
        &api.url(),
        schedule,
        cursor,
        extra,
        &http_destination("sink", &rx.url("/in"), 5),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_token_pull_delivers_each_record_once_and_follows_new_pages() {
    let api = PageServer::start(Paging::Token, 25, 10).await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let cursor = cursor_yaml(Paging::Token, 10);
    config(
        &cfg,
        &api,
        EVERY_SECOND,
        &cursor,
        "        freshness: 1h\n",
        &rx,
    );
    let started = now_ms();
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    wait_until(20, "25 records delivered", || async { distinct(&rx) == 25 }).await;
    wait_view(addr, 10, "a successful run", |v| {
        v["records"] == 25 && v["last_success_at"].is_i64()
    })
    .await;
    let v = view(addr).await;
    assert_eq!(v["system"], "src");
    assert_eq!(
        v["cursor"],
        serde_json::json!({"page_token": "tok-20"}),
        "{v}"
    );
    assert_eq!(v["freshness_sla_seconds"], 3600);
    assert_eq!(v["fresh"], true);
    // The success was during this test (bounded by the test's own age, not a fixed time).
    let test_age_secs = (now_ms() - started) as u64 / 1000 + 1;
    assert!(
        v["seconds_since_success"].as_u64().unwrap() <= test_age_secs,
        "{v}"
    );
    assert!(v["next_run_at"].is_i64() || v["running"] == true, "{v}");
    assert!(
        api.requests()
            .iter()
            .all(|q| q.get("@authorization").map(String::as_str) == Some(SOURCE_SECRET)),
        "the secret header goes with every page request"
    );

    // Later runs start from the committed cursor (the last page), never from the start.
    let seen = api.requests().len();
    wait_until(10, "two more runs", || async {
        api.requests().len() >= seen + 2
    })
    .await;
    assert_eq!(api.first_page_requests(), 1, "{:?}", api.requests());
    api.add(7);
    wait_until(20, "the 7 new records delivered", || async {
        distinct(&rx) == 32
    })
    .await;
    wait_view(addr, 10, "32 records stored", |v| v["records"] == 32).await;

    // Exactly once: the receiver always answers 200, and records read again are duplicates.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let counts = counts(&rx);
    assert_eq!(counts.len(), 32);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert_eq!(deliveries(addr, "flow=pulled&limit=1000").await.len(), 32);
    assert_eq!(api.first_page_requests(), 1);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offset_pull_goes_on_after_the_last_record() {
    let api = PageServer::start(Paging::Offset, 20, 7).await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    config(
        &cfg,
        &api,
        EVERY_SECOND,
        &cursor_yaml(Paging::Offset, 7),
        "",
        &rx,
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;

    wait_until(20, "20 records delivered", || async { distinct(&rx) == 20 }).await;
    let offsets = |from: usize| -> Vec<String> {
        api.requests()[from..]
            .iter()
            .map(|q| q["offset"].clone())
            .collect()
    };
    assert_eq!(offsets(0)[..3], ["0", "7", "14"]);
    assert!(api.requests().iter().all(|q| q["limit"] == "7"));
    let seen = api.requests().len();
    wait_until(10, "another run", || async { api.requests().len() > seen }).await;
    assert!(offsets(3).iter().all(|o| o == "20"), "{:?}", offsets(0));

    api.add(3);
    wait_until(20, "the 3 new records", || async { distinct(&rx) == 23 }).await;
    wait_view(hub.addr(), 10, "cursor at 23", |v| {
        v["cursor"] == serde_json::json!({"offset": 23})
    })
    .await;
    assert!(counts(&rx).values().all(|&n| n == 1), "{:?}", counts(&rx));
    assert_eq!(api.first_page_requests(), 1);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updated_since_pull_delivers_each_version_once() {
    let api = PageServer::start(Paging::UpdatedSince, 15, 4).await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    config(
        &cfg,
        &api,
        EVERY_SECOND,
        &cursor_yaml(Paging::UpdatedSince, 4),
        "",
        &rx,
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;

    wait_until(20, "15 records delivered", || async { distinct(&rx) == 15 }).await;
    wait_view(hub.addr(), 10, "cursor at the newest", |v| {
        v["cursor"] == serde_json::json!({"updated_since": "1014"})
    })
    .await;
    let version = api.touch("r3");
    wait_until(20, "the new version of r3", || async {
        counts(&rx).get("r3") == Some(&2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let versions: Vec<(String, u64)> = rx
        .received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["updated"].as_u64().unwrap(),
            )
        })
        .collect();
    let unique: HashSet<_> = versions.iter().cloned().collect();
    assert_eq!(versions.len(), 16, "each version once: {versions:?}");
    assert_eq!(unique.len(), 16);
    assert!(unique.contains(&("r3".to_string(), version)));
    assert_eq!(api.first_page_requests(), 1);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missed_runs_are_caught_up_once() {
    let api = PageServer::start(Paging::Token, 5, 10).await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    // Hourly, half an hour from now: the last run, 3 hours ago, missed three of them, and
    // the next is far enough away not to come during the test.
    let minute = (now_ms() / 60_000 + 30) % 60;
    let hourly = format!("{minute} * * * *");
    config(
        &cfg,
        &api,
        &hourly,
        &cursor_yaml(Paging::Token, 10),
        "",
        &rx,
    );
    {
        use ferry_store::{PullRunUpdate, Store};
        let store = ferry_store::sqlite::SqliteStore::open(&data, Default::default()).unwrap();
        let long_ago = now_ms() - 3 * 3_600_000;
        store
            .set_pull_run("pulled", PullRunUpdate::Started { at: long_ago })
            .await
            .unwrap();
        store
            .set_pull_run(
                "pulled",
                PullRunUpdate::Succeeded {
                    at: long_ago + 1000,
                },
            )
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let started = now_ms();
    let hub = start_hub(&cfg, &data).await;
    wait_until(20, "the catch-up run delivered", || async {
        distinct(&rx) == 5
    })
    .await;
    wait_view(hub.addr(), 10, "the catch-up run finished", |v| {
        v["status"] == "ok"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        api.requests().len(),
        1,
        "one run, not three: {:?}",
        api.requests()
    );
    let v = view(hub.addr()).await;
    assert!(v["last_started_at"].as_i64().unwrap() >= started, "{v}");
    let next = v["next_run_at"].as_i64().unwrap();
    assert!(
        next > now_ms() + 20 * 60_000,
        "next run at the schedule: {v}"
    );
    hub.shutdown().await.unwrap();

    // Restarted on time: nothing was missed, nothing runs.
    let hub = start_hub(&cfg, &data).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(api.requests().len(), 1);
    assert_eq!(view(hub.addr()).await["next_run_at"].as_i64(), Some(next));
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_source_is_recorded_and_retried() {
    let api = PageServer::start(Paging::Token, 6, 10).await;
    api.fail_next(u32::MAX);
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    config(
        &cfg,
        &api,
        EVERY_SECOND,
        &cursor_yaml(Paging::Token, 10),
        "        freshness: 1h\n",
        &rx,
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    wait_view(addr, 20, "a failed run", |v| v["status"] == "failed").await;
    let v = view(addr).await;
    let error = v["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("HTTP 503"), "{v}");
    assert!(
        !error.contains("page="),
        "no query (tokens) in errors: {error}"
    );
    assert_eq!(v["fresh"], false);
    assert_eq!(v["seconds_since_success"], Value::Null);
    assert_eq!(v["records"], 0);
    // Each run tried the page three times.
    assert!(api.requests().len() >= 3);

    api.fail_next(0);
    wait_until(20, "delivered after the source recovered", || async {
        distinct(&rx) == 6
    })
    .await;
    wait_view(addr, 10, "a successful run", |v| {
        v["status"] == "ok" && v["fresh"] == true
    })
    .await;
    assert_eq!(view(addr).await["last_error"], Value::Null);

    let metrics = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "ferry_pull_runs_total{flow=\"pulled\",outcome=\"failure\"}",
        "ferry_pull_runs_total{flow=\"pulled\",outcome=\"success\"}",
        "ferry_pull_records_total{flow=\"pulled\"}",
        "ferry_pull_freshness_sla_seconds{flow=\"pulled\"} 3600",
        "ferry_pull_seconds_since_success{flow=\"pulled\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics");
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshness_goes_stale_past_the_sla_and_status_shows_it() {
    let api = PageServer::start(Paging::Token, 3, 10).await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    config(
        &cfg,
        &api,
        YEARLY,
        &cursor_yaml(Paging::Token, 10),
        "        freshness: 2s\n",
        &rx,
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    wait_view(addr, 20, "fresh after the first run", |v| {
        v["fresh"] == true
    })
    .await;
    wait_view(addr, 10, "stale past the 2s SLA", |v| v["fresh"] == false).await;
    let v = view(addr).await;
    assert_eq!(v["status"], "ok");
    assert!(v["seconds_since_success"].as_u64().unwrap() > 2, "{v}");
    assert_eq!(v["freshness_sla_seconds"], 2);

    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args([
                "status",
                "--url",
                &format!("http://{addr}"),
                "--token",
                ADMIN_TOKEN,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in ["pull", "pulled", "ok", "(stale)", "2s"] {
        assert!(stdout.contains(needle), "`{needle}` not in:\n{stdout}");
    }
    hub.shutdown().await.unwrap();
}

/// The page index of a token request (`tok-<start>` / page size); `None` for the first.
fn token_start(q: &HashMap<String, String>) -> Option<usize> {
    q.get("page")
        .and_then(|t| t.strip_prefix("tok-"))
        .map(|n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_run_resumes_from_the_committed_cursor() {
    const RECORDS: usize = 200;
    const PAGE: usize = 5;
    let api = PageServer::start(Paging::Token, RECORDS, PAGE).await;
    // Slow pages: the run takes several seconds, so the kills land in the middle of it.
    api.set_delay(Duration::from_millis(100));
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data, log) = (
        dir.path().join("cfg"),
        dir.path().join("data"),
        dir.path().join("ferry.log"),
    );
    config(
        &cfg,
        &api,
        YEARLY,
        &cursor_yaml(Paging::Token, PAGE),
        "        max_pages: 1000\n",
        &rx,
    );

    for round in 0..2 {
        let before = api.requests().len();
        let (mut child, _addr) = spawn_ferry(&cfg, &data, &log);
        let target = before + 8 + 3 * round;
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.requests().len() < target {
            assert!(Instant::now() < deadline, "the run did not get going");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Land somewhere within a page's fetch or commit.
        tokio::time::sleep(Duration::from_millis(37 * (round as u64 + 1))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let requests = api.requests();
        let mine = &requests[before..];
        if round == 0 {
            assert_eq!(
                token_start(&mine[0]),
                None,
                "the first run starts at the start"
            );
        } else {
            let resumed = token_start(&mine[0]).expect("resumed from a cursor, not the start");
            let last_before = token_start(&requests[before - 1]).unwrap_or(0);
            assert!(
                resumed == last_before || resumed == last_before + PAGE,
                "resumed at tok-{resumed}; the killed run last asked for tok-{last_before}"
            );
        }
    }

    let before = api.requests().len();
    let (mut child, addr) = spawn_ferry(&cfg, &data, &log);
    wait_until(60, "every record delivered", || async {
        distinct(&rx) == RECORDS
    })
    .await;
    wait_view(addr, 30, "the resumed run finished", |v| {
        v["status"] == "ok"
    })
    .await;

    let requests = api.requests();
    let resumed = token_start(&requests[before]).expect("resumed from a cursor, not the start");
    let last_before = token_start(&requests[before - 1]).unwrap_or(0);
    assert!(
        resumed == last_before || resumed == last_before + PAGE,
        "resumed at tok-{resumed}; the killed run last asked for tok-{last_before}"
    );
    assert_eq!(api.first_page_requests(), 1, "never back to the start");
    // No gaps: every page was asked for; no duplicates stored: one event per record.
    let asked: HashSet<usize> = requests
        .iter()
        .map(|q| token_start(q).unwrap_or(0))
        .collect();
    assert_eq!(asked.len(), RECORDS / PAGE);
    let v = view(addr).await;
    assert_eq!(v["records"], RECORDS, "{v}");
    let stored = deliveries(addr, "flow=pulled&limit=1000").await;
    assert_eq!(stored.len(), RECORDS);
    let events: HashSet<&str> = stored
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(events.len(), RECORDS);
    // The receiver may have seen a delivery twice (at least once), but has every record.
    let got: HashSet<String> = received_ids(&rx).into_iter().collect();
    let all: HashSet<String> = api.ids().into_iter().collect();
    assert_eq!(got, all);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulled_records_go_through_the_flow_steps() {
    let api = PageServer::start(Paging::Offset, 10, 4).await;
    let (sink, big) = (TestReceiver::start().await, TestReceiver::start().await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    // A filter drops `r1`; a second filter fails at run time on `r3` (`to_int!` of "r3");
    // a route sends records updated at 1006 or later to `big` too.
    let steps = "    steps:
      - filter: .id != \"r1\"
      - filter: .id != \"r3\" || to_int!(.id) > 0
      - route:
          big: .updated >= 1006 ?? false
";
    let destinations = format!(
        "{}{}",
        http_destination("sink", &sink.url("/in"), 3),
        http_destination("big", &big.url("/in"), 3)
    );
    write_pull_config(
        &cfg,
        &api.url(),
        YEARLY,
        &cursor_yaml(Paging::Offset, 4),
        steps,
        &destinations,
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    // The skipped records do not hold the cursor back: the run reads every page.
    wait_view(addr, 20, "a successful run to the end", |v| {
        v["status"] == "ok" && v["cursor"] == serde_json::json!({"offset": 10})
    })
    .await;
    wait_until(10, "8 records to sink, 4 to big", || async {
        distinct(&sink) == 8 && distinct(&big) == 4
    })
    .await;
    let mut to_sink = received_ids(&sink);
    to_sink.sort();
    assert_eq!(to_sink, ["r0", "r2", "r4", "r5", "r6", "r7", "r8", "r9"]);
    let mut to_big = received_ids(&big);
    to_big.sort();
    assert_eq!(to_big, ["r6", "r7", "r8", "r9"]);
    assert_eq!(view(addr).await["records"], 8);
    // One event per kept record, with a delivery per destination its route chose.
    assert_eq!(deliveries(addr, "flow=pulled&limit=100").await.len(), 12);

    let metrics = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "ferry_pull_records_skipped_total{flow=\"pulled\",reason=\"filtered\"} 1",
        "ferry_pull_records_skipped_total{flow=\"pulled\",reason=\"step_failed\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics");
    }
    hub.shutdown().await.unwrap();
}

/// A page with a duplicate key (which `id` is the record's?) fails the run the way a page
/// that is not JSON does: the error names the key and its object, nothing of the page is
/// stored and the cursor stays; once the source serves proper pages, they are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_with_a_duplicate_key_fails_the_run_and_stores_nothing() {
    let api = PageServer::start(Paging::Token, 3, 10).await;
    api.set_raw(Some(
        r#"{"data":[{"id":"r0","updated":1000,"type":"item.changed"},
                    {"id":"r1","updated":1001,"type":"item.changed","id":"r9"}],"next":null}"#,
    ));
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    config(
        &cfg,
        &api,
        EVERY_SECOND,
        &cursor_yaml(Paging::Token, 10),
        "",
        &rx,
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    wait_view(addr, 20, "a failed run", |v| v["status"] == "failed").await;
    let v = view(addr).await;
    let error = v["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r#"duplicate key "id" in the object at "/data/1""#),
        "{v}"
    );
    assert_eq!(v["records"], 0, "{v}");
    assert!(v["cursor"].is_null(), "{v}");
    assert!(deliveries(addr, "flow=pulled").await.is_empty());
    assert_eq!(rx.count(), 0);

    api.set_raw(None);
    wait_until(20, "the proper pages delivered", || async {
        distinct(&rx) == 3
    })
    .await;
    assert_eq!(
        counts(&rx).keys().cloned().collect::<HashSet<_>>(),
        HashSet::from(["r0".to_string(), "r1".to_string(), "r2".to_string()])
    );
    hub.shutdown().await.unwrap();
}
