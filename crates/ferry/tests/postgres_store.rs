//! The hub on the PostgreSQL store, through the real binary: events accepted with a 2xx are
//! delivered, survive a `kill -9` and a restart, and are listed by the admin API; a database
//! that cannot be reached, or that a newer Ferry wrote, stops the start with a clear error.
//!
//! Needs `FERRY_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); each
//! test skips with a printed reason without it. Each works in its own schema, dropped at
//! the end.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::pg::Schema;
use common::*;

/// The body of event `sid`.
fn order(sid: &str) -> String {
    format!("{{\"type\":\"order.created\",\"sid\":\"{sid}\"}}")
}

/// Send `n` events `<prefix>-<i>` to `hub`, each answered 2xx; their sender ids.
async fn send_ok(hub: std::net::SocketAddr, prefix: &str, n: usize) -> Vec<String> {
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let sid = format!("{prefix}-{i}");
        let resp = send(hub, &sid, &order(&sid)).await;
        assert!(resp.status().is_success(), "{}", resp.status());
        sent.push(sid);
    }
    sent
}

/// Start `n` real `ferry serve` nodes on the config in `cfg`, each with a data dir of its
/// own (kept alive by the returned dirs), their stderr appended to `log`.
fn start_nodes(
    cfg: &Path,
    n: usize,
    log: &Path,
) -> (
    Vec<tempfile::TempDir>,
    Vec<(KillOnDrop, std::net::SocketAddr)>,
) {
    let data: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = data
        .iter()
        .map(|d| {
            let (child, addr) = spawn_ferry(cfg, d.path(), log);
            (KillOnDrop(child), addr)
        })
        .collect();
    (data, nodes)
}

/// The sender ids (`body.sid`) the receiver got, and how many requests in all.
fn received_sids(rx: &TestReceiver) -> (HashSet<String>, usize) {
    let all = rx.received();
    let sids = all
        .iter()
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            v["sid"].as_str().map(str::to_owned)
        })
        .collect();
    (sids, all.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_on_postgres_delivers_and_recovers_after_kill_9() {
    let Some(schema) = Schema::new() else { return };
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let log = cfg.path().join("ferry.log");
    schema.configure(cfg.path(), &rx);

    let (child, hub) = spawn_ferry(cfg.path(), data.path(), &log);
    let mut child = KillOnDrop(child);
    let mut sent = Vec::new();
    sent.extend(send_ok(hub, "pg-a", 20).await);
    wait_until(30, "the first 20 delivered", || {
        let rx = rx.clone();
        async move { received_sids(&rx).0.len() == 20 }
    })
    .await;
    // The admin API reads the same store.
    wait_until(30, "the first 20 recorded as delivered", || async move {
        deliveries(hub, "state=delivered").await.len() == 20
    })
    .await;
    let metrics = metrics_text(hub).await;
    let commits = metrics
        .lines()
        .find(|l| l.starts_with("ferry_store_commits_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("ferry_store_commits_total");
    assert!(commits >= 1.0, "{metrics}");

    // The database drops the hub's connections: the calls of that moment fail with 503
    // (nothing acknowledged), and the hub connects again for the next ones.
    let c = schema.client().await;
    let dropped: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1) t",
            &[&format!("ferry:{}", schema.name)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        dropped >= 1,
        "the hub's connections are named after its schema"
    );
    let mut refused = 0;
    for i in 0..10 {
        let sid = format!("pg-r-{i}");
        let body = order(&sid);
        let resp = send(hub, &sid, &body).await;
        if resp.status().is_success() {
            sent.push(sid);
        } else {
            assert_eq!(resp.status(), 503);
            assert!(resp.headers().contains_key("retry-after"));
            refused += 1;
        }
    }
    assert!(
        refused <= 2,
        "{refused} refused after the connections were dropped"
    );

    // Killed mid-load: what it acknowledged is on the database.
    sent.extend(send_ok(hub, "pg-b", 10).await);
    child.0.kill().unwrap();
    let _ = child.0.wait();

    let (child2, hub2) = spawn_ferry(cfg.path(), data.path(), &log);
    let _child2 = KillOnDrop(child2);
    sent.extend(send_ok(hub2, "pg-c", 5).await);
    // Deliveries the killed node held in flight are due again when their lease ends (a
    // minute past the destination's timeouts).
    let want: HashSet<String> = sent.iter().cloned().collect();
    for _ in 0..1200 {
        if want.is_subset(&received_sids(&rx).0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let missing: Vec<_> = want.difference(&received_sids(&rx).0).cloned().collect();
    let not_yet: Vec<_> = deliveries(hub2, "")
        .await
        .into_iter()
        .filter(|d| d["state"] != "delivered")
        .collect();
    assert!(
        missing.is_empty(),
        "{missing:?}\n{not_yet:#?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The receiver answers before the outcome commits, and a delivery the killed node had
    // sent but not recorded is sent again once its lease ends: wait for the last ones.
    let n = sent.len();
    for _ in 0..1200 {
        if deliveries(hub2, "state=delivered").await.len() == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let not_yet: Vec<_> = deliveries(hub2, "")
        .await
        .into_iter()
        .filter(|d| d["state"] != "delivered")
        .collect();
    assert!(
        not_yet.is_empty(),
        "{not_yet:#?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let listed = deliveries(hub2, "").await;
    assert_eq!(listed.len(), n, "one delivery per event");
    // A delivery sent twice (across the kill) carried one webhook-id both times.
    let mut ids_by_sid: std::collections::HashMap<String, HashSet<String>> = Default::default();
    for r in rx.received() {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let id = r.headers["webhook-id"].to_str().unwrap().to_owned();
        ids_by_sid
            .entry(v["sid"].as_str().unwrap().to_owned())
            .or_default()
            .insert(id);
    }
    assert!(
        ids_by_sid.values().all(|ids| ids.len() == 1),
        "{ids_by_sid:?}"
    );
    let ready = client()
        .get(format!("http://{hub2}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // Nothing was written to the data dir: the store is the database.
    assert!(!data.path().join("ferry.db").exists());
    let c = schema.client().await;
    let n: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".events", schema.name),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, sent.len());
}

/// Three `ferry serve` nodes on one database under load, one of them `kill -9`'d twice and
/// started again: every event acknowledged 2xx by any node is delivered, each delivery with
/// one `webhook-id`, and no delivery is sent by two nodes at once (the receiver holds each
/// request 50 ms and looks for overlapping requests of one id).
#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_share_the_work_and_survive_kill_9() {
    let Some(schema) = Schema::new() else { return };
    let rx = TestReceiver::start().await;
    rx.set_default(Answer {
        status: 200,
        retry_after: None,
        delay: std::time::Duration::from_millis(50),
    });
    let cfg = tempfile::tempdir().unwrap();
    schema.configure(cfg.path(), &rx);
    let log = cfg.path().join("nodes.log");
    let (data, mut nodes) = start_nodes(cfg.path(), 3, &log);

    let mut acked: Vec<String> = Vec::new();
    for round in 0..3 {
        for i in 0..60 {
            let sid = format!("n-{round}-{i}");
            let body = order(&sid);
            // Sent one at a time: a node is killed between two requests, never during one.
            let node = nodes[i % nodes.len()].1;
            let resp = send(node, &sid, &body).await;
            assert!(resp.status().is_success(), "{}", resp.status());
            acked.push(sid);
            if i == 31 && round < 2 {
                // Node 2 dies mid-load, with the delivery of the event it just took in
                // flight, and comes back.
                let (child, _) = &mut nodes[1];
                child.0.kill().unwrap();
                let _ = child.0.wait();
                let (child, addr) = spawn_ferry(cfg.path(), data[1].path(), &log);
                nodes[1] = (KillOnDrop(child), addr);
            }
        }
    }
    // A dead node's claims are due again when their leases end.
    let want: HashSet<String> = acked.iter().cloned().collect();
    for _ in 0..1500 {
        if want.is_subset(&received_sids(&rx).0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let missing: Vec<_> = want.difference(&received_sids(&rx).0).cloned().collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );

    // One webhook-id per event, and no two requests of one id overlapping in time.
    let mut by_id: std::collections::HashMap<String, Vec<std::time::Instant>> = Default::default();
    let mut ids_by_sid: std::collections::HashMap<String, HashSet<String>> = Default::default();
    for r in rx.received() {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let id = r.headers["webhook-id"].to_str().unwrap().to_owned();
        ids_by_sid
            .entry(v["sid"].as_str().unwrap().to_owned())
            .or_default()
            .insert(id.clone());
        by_id.entry(id).or_default().push(r.at);
    }
    assert!(
        ids_by_sid.values().all(|ids| ids.len() == 1),
        "{ids_by_sid:?}"
    );
    for (id, mut arrivals) in by_id {
        arrivals.sort();
        for pair in arrivals.windows(2) {
            assert!(
                pair[1].duration_since(pair[0]) >= std::time::Duration::from_millis(50),
                "delivery {id} was sent twice at once"
            );
        }
    }
    // Every node served ingress, and the deliveries are recorded once each.
    let hub = nodes[0].1;
    let n = acked.len();
    for _ in 0..1200 {
        if deliveries(hub, "state=delivered&limit=1000").await.len() == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(deliveries(hub, "state=delivered&limit=1000").await.len(), n);
}

/// A pause made through one node's admin API holds on the others (they follow the store's
/// pauses), and a resume through another node lets everything go.
#[tokio::test(flavor = "multi_thread")]
async fn a_pause_holds_on_every_node() {
    let Some(schema) = Schema::new() else { return };
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    schema.configure(cfg.path(), &rx);
    let log = cfg.path().join("nodes.log");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, hub_a) = spawn_ferry(cfg.path(), da.path(), &log);
    let (b, hub_b) = spawn_ferry(cfg.path(), db.path(), &log);
    let (_a, _b) = (KillOnDrop(a), KillOnDrop(b));

    let paused = admin_post(
        hub_a,
        "/admin/v1/lanes/orders/crm/pause",
        serde_json::json!({ "reason": "vendor maintenance" }),
    )
    .await;
    assert_eq!(paused["changed"], true, "{paused}");
    // Node B learns of it from the database: its own lane's gate shows it paused.
    wait_until(10, "node B's lane paused", || async move {
        let lanes = admin_get(hub_b, "/admin/v1/lanes").await;
        lanes["lanes"].as_array().is_some_and(|lanes| {
            lanes
                .iter()
                .any(|l| l["lane"]["flow"] == "orders" && l["gate"]["paused"].is_object())
        })
    })
    .await;
    send_ok(hub_b, "p", 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        rx.count(),
        0,
        "node B sent while the lane was paused on node A"
    );

    admin_post(
        hub_b,
        "/admin/v1/lanes/orders/crm/resume",
        serde_json::json!({}),
    )
    .await;
    wait_until(30, "the paused events delivered after the resume", || {
        let rx = rx.clone();
        async move { received_sids(&rx).0.len() == 5 }
    })
    .await;
}

/// `--role api` takes events and delivers nothing; `--role worker` delivers them and serves
/// no ingress. With the embedded store a split role is refused.
#[tokio::test(flavor = "multi_thread")]
async fn api_and_worker_roles_split_ingress_and_delivery() {
    let Some(schema) = Schema::new() else { return };
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    schema.configure(cfg.path(), &rx);
    let log = cfg.path().join("nodes.log");
    let (da, dw) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (api, hub_api) = spawn_ferry_env(cfg.path(), da.path(), &log, &[("FERRY_ROLE", "api")]);
    let _api = KillOnDrop(api);
    send_ok(hub_api, "role", 10).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(rx.count(), 0, "an api node delivered");
    assert_eq!(deliveries(hub_api, "state=pending").await.len(), 10);

    let (worker, hub_worker) =
        spawn_ferry_env(cfg.path(), dw.path(), &log, &[("FERRY_ROLE", "worker")]);
    let _worker = KillOnDrop(worker);
    wait_until(30, "the worker delivered what the api node took in", || {
        let rx = rx.clone();
        async move { received_sids(&rx).0.len() == 10 }
    })
    .await;
    let resp = client()
        .post(format!("http://{hub_worker}/ingest/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "a worker serves no ingress");
    let ready = client()
        .get(format!("http://{hub_worker}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // One node on its own data dir cannot split its work.
    let solo = tempfile::tempdir().unwrap();
    write_config(solo.path(), &http_destination("crm", &rx.url("/hook"), 1));
    let (code, _, stderr) = run_ferry(&[
        "serve",
        "--config",
        solo.path().to_str().unwrap(),
        "--data-dir",
        solo.path().join("data").to_str().unwrap(),
        "--role",
        "worker",
    ]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("needs a store they share"), "{stderr}");
}

/// A destination's rate limit holds for the cluster: three nodes with a backlog send at
/// most the limit together (within 10 %), not three times it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_holds_across_three_nodes() {
    let Some(schema) = Schema::new() else { return };
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let destination = http_destination("crm", &rx.url("/hook"), 5)
        + "        rate_limit: { requests: 20, per: 1s }\n";
    schema.configure_with(cfg.path(), &destination);
    let log = cfg.path().join("nodes.log");
    let (_data, nodes) = start_nodes(cfg.path(), 3, &log);
    // Every node knows of the others (they beat every second).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // A backlog at once, on every node: 300 events from 30 senders.
    let mut senders = Vec::new();
    for w in 0..30 {
        let hubs: Vec<_> = nodes.iter().map(|n| n.1).collect();
        senders.push(tokio::spawn(async move {
            for k in 0..10 {
                let i = w * 10 + k;
                let sid = format!("rl-{i}");
                let body = order(&sid);
                let resp = send(hubs[i % 3], &sid, &body).await;
                assert!(resp.status().is_success());
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    wait_until(60, "all 300 delivered", || {
        let rx = rx.clone();
        async move { received_sids(&rx).0.len() == 300 }
    })
    .await;
    // The steady rate, between the 30th and the 270th call (leaving out the start, when
    // each node may spend its burst).
    let mut at: Vec<_> = rx.received().iter().map(|r| r.at).collect();
    at.sort();
    let span = at[269].duration_since(at[29]).as_secs_f64();
    let rate = 240.0 / span;
    assert!(
        (18.0..=22.0).contains(&rate),
        "{rate:.1} calls/s from three nodes at a cluster limit of 20/s"
    );
}

/// `ferry audit verify` and `export` read the trail from the database the config names, and
/// a record changed in the database is named.
#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_and_export_read_the_database() {
    let Some(schema) = Schema::new() else { return };
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    schema.configure(cfg.path(), &rx);
    let data = tempfile::tempdir().unwrap();
    let log = cfg.path().join("ferry.log");
    let (child, hub) = spawn_ferry(cfg.path(), data.path(), &log);
    let _hub = KillOnDrop(child);
    send_ok(hub, "au", 3).await;
    delivered_at_least(hub, 3).await;
    let dir = cfg.path().to_str().unwrap();

    let (code, stdout, stderr) = run_ferry(&["audit", "verify", "--config", dir]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("audit trail intact"), "{stdout}");
    let (code, stdout, stderr) = run_ferry(&["audit", "export", "--config", dir]);
    assert_eq!(code, Some(0), "{stderr}");
    let accepted = stdout
        .lines()
        .filter(|l| l.contains("\"kind\":\"accepted\""))
        .count();
    assert_eq!(accepted, 3, "{stdout}");

    // Someone with database access rewrites a record.
    let c = schema.client().await;
    c.batch_execute(&format!(
        "SET search_path TO \"{s}\";
         ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update;
         UPDATE audit_log SET entries = replace(entries, 'order', 'other') WHERE seq = 1;",
        s = schema.name
    ))
    .await
    .unwrap();
    let (code, stdout, _) = run_ferry(&["audit", "verify", "--config", dir]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("BROKEN at record 1"), "{stdout}");
}

/// A destination's `concurrency` holds for the cluster: three nodes with a backlog never
/// have more calls in flight together than it (the receiver holds each call 300 ms).
#[tokio::test(flavor = "multi_thread")]
async fn concurrency_holds_across_three_nodes() {
    let Some(schema) = Schema::new() else { return };
    let rx = TestReceiver::start().await;
    rx.set_default(Answer {
        status: 200,
        retry_after: None,
        delay: std::time::Duration::from_millis(300),
    });
    let cfg = tempfile::tempdir().unwrap();
    let destination = http_destination("crm", &rx.url("/hook"), 5) + "        concurrency: 3\n";
    schema.configure_with(cfg.path(), &destination);
    let log = cfg.path().join("nodes.log");
    let (_data, nodes) = start_nodes(cfg.path(), 3, &log);
    // Every node knows of the others (they beat every second).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    for (k, (_, hub)) in nodes.iter().enumerate() {
        send_ok(*hub, &format!("cc{k}"), 12).await;
    }
    wait_until(60, "all 36 delivered", || {
        let rx = rx.clone();
        async move { received_sids(&rx).0.len() == 36 }
    })
    .await;
    // Each call occupies [arrival, arrival + 300 ms): the most at once.
    let mut edges: Vec<(std::time::Instant, i32)> = Vec::new();
    for r in rx.received() {
        edges.push((r.at, 1));
        edges.push((r.at + std::time::Duration::from_millis(300), -1));
    }
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    assert!(
        most <= 3,
        "{most} calls in flight at once at a cluster concurrency of 3"
    );
}

#[test]
fn an_unreachable_database_stops_the_start_naming_host_and_setting() {
    let cfg = tempfile::tempdir().unwrap();
    write_config(
        cfg.path(),
        &http_destination("crm", "http://127.0.0.1:9/x", 1),
    );
    let (code, _, stderr) = run_ferry(&[
        "serve",
        "--config",
        cfg.path().to_str().unwrap(),
        "--store",
        "postgres://ferry:hunter2@127.0.0.1:1/ferry",
    ]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(stderr.contains("--store"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is never printed: {stderr}"
    );

    let (code, _, stderr) = run_ferry(&[
        "serve",
        "--config",
        cfg.path().to_str().unwrap(),
        "--store",
        "mysql://db/x",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not a PostgreSQL URL"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_brings_the_schema_up_and_a_newer_database_is_refused() {
    let Some(schema) = Schema::new() else { return };
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    schema.configure(cfg.path(), &rx);
    let dir = cfg.path().to_str().unwrap();

    let (code, stdout, stderr) = run_ferry(&["migrate", "--config", dir]);
    assert_eq!(code, Some(0), "{stderr}");
    let version = ferry_store::postgres::SCHEMA_VERSION;
    assert!(
        stdout.contains(&format!("from schema version 0 to {version}")),
        "{stdout}"
    );
    let (code, stdout, _) = run_ferry(&["migrate", "--config", dir]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("nothing to do"), "{stdout}");

    // As if a newer Ferry had migrated it.
    let c = schema.client().await;
    c.batch_execute(&format!(
        "UPDATE \"{}\".ferry_schema SET version = 99",
        schema.name
    ))
    .await
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_ferry(&[
        "serve",
        "--config",
        dir,
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("schema version is 99")
            && stderr.contains(&format!("only up to {version}")),
        "{stderr}"
    );
}
