//! Retention through the real binary: the hub's purge (every second here) deletes the
//! events of a source kept for one second once they are delivered, keeps those of a source
//! kept for 30 days and those whose delivery is still retrying (held, in the report and the
//! metric), and records each purge in the audit trail; `ferry retention report` shows what
//! each system keeps and flags the destinations keeping orphaned copies, from the hub or,
//! once it is stopped, from the data dir.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Settings with `data_dir` (so a report without a hub finds the store); flows `short` (from `ephemeral`, kept 1s) to `crm` (no retention declared) and
/// `warehouse` (365d); `long` (from `archive`, kept 30d) to `crm`; `stuck` (from
/// `ephemeral`) to a receiver that always answers 503.
fn write_retention_config(cfg: &Path, data: &Path, ok: &TestReceiver, failing: &TestReceiver) {
    std::fs::create_dir_all(cfg).unwrap();
    std::fs::write(cfg.join("admin-token"), ADMIN_TOKEN).unwrap();
    let dest = |name: &str, system: &str, url: String| {
        format!(
            "      {name}:\n        system: {system}\n        http: {{ url: \"{url}\" }}\n        retry: {{ max_attempts: 1000, initial_backoff: 50ms, max_backoff: 200ms, max_age: 1h }}\n"
        )
    };
    let flow = |name: &str, system: &str, dests: String| {
        format!(
            "  {name}:\n    source:\n      webhook:\n        system: {system}\n        signature: {{ none: {{}} }}\n        event_id: {{ header: X-Event-Id }}\n    destinations:\n{dests}"
        )
    };
    let yaml = format!(
        "settings:
  listen: 127.0.0.1:0
  data_dir: \"{}\"
  admin: {{ token: {{ file: admin-token }} }}
  delivery: {{ shutdown_grace: 1s, egress_allow: [127.0.0.0/8] }}
  protection:
    purge_every: 1s
systems:
  ephemeral: {{ owner: team-a, retention: 1s }}
  archive: {{ owner: team-b, retention: 30d }}
  crm: {{ owner: team-c }}
  warehouse: {{ owner: team-d, retention: 365d }}
  flaky: {{ owner: team-e, retention: 1s }}
flows:
{}{}{}",
        data.display(),
        flow(
            "short",
            "ephemeral",
            dest("crm", "crm", ok.url("/short"))
                + &dest("warehouse", "warehouse", ok.url("/short-wh"))
        ),
        flow("long", "archive", dest("crm", "crm", ok.url("/long"))),
        flow(
            "stuck",
            "ephemeral",
            dest("flaky", "flaky", failing.url("/stuck"))
        ),
    );
    std::fs::write(cfg.join("ferry.yaml"), yaml).unwrap();
}

async fn post(addr: std::net::SocketAddr, path: &str, id: &str) -> String {
    let resp = post_to(addr, path, r#"{"n":1}"#, &[("x-event-id", id.to_owned())]).await;
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    body["event_id"].as_str().unwrap().to_owned()
}

async fn event_exists(addr: std::net::SocketAddr, id: &str) -> bool {
    let resp = client()
        .get(format!("http://{addr}/admin/v1/events/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        200 => true,
        404 => false,
        other => panic!("GET event {id}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_purge_deletes_what_is_past_retention_and_the_report_flags_orphaned_copies() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    let ok = TestReceiver::start().await;
    let failing = TestReceiver::start().await;
    failing.set_default(Answer::status(503));
    write_retention_config(&cfg, &data, &ok, &failing);
    let (child, addr) = spawn_ferry(&cfg, &data, &dir.path().join("ferry.log"));
    let hub = KillOnDrop(child);

    let short = post(addr, "short", "s-1").await;
    let long = post(addr, "long", "l-1").await;
    let stuck = post(addr, "stuck", "x-1").await;
    // The stuck delivery is retrying (the receiver refuses it) before anything is purged.
    wait_until(30, "the stuck delivery retried", || async {
        failing.count() >= 2
    })
    .await;
    wait_until(30, "the short event purged", || async {
        !event_exists(addr, &short).await
    })
    .await;
    assert!(event_exists(addr, &long).await, "30 days are not over");
    assert!(
        event_exists(addr, &stuck).await,
        "a retrying delivery holds its event past retention"
    );
    assert!(
        deliveries(addr, "flow=short").await.is_empty(),
        "its deliveries went with it"
    );
    assert_eq!(
        ok.received()
            .iter()
            .filter(|r| r.path.starts_with("/short"))
            .count(),
        2
    );

    // The report, from the hub: held events counted, orphaned copies flagged.
    let cfg_arg = cfg.to_str().unwrap();
    // The config listens on port 0: say where the hub is.
    let url = format!("http://{addr}");
    let mut report = Value::Null;
    wait_until(30, "a purge that saw the held event", || {
        let (code, out, err) = run_ferry(&[
            "retention",
            "report",
            "--config",
            cfg_arg,
            "--url",
            &url,
            "--json",
        ]);
        assert_eq!(code, Some(0), "{err}");
        report = serde_json::from_str(&out).unwrap();
        let held = report["last_purge"]["held"].as_u64() == Some(1);
        async move { held }
    })
    .await;
    let system = |name: &str| -> Value {
        report["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["system"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))
    };
    assert_eq!(system("ephemeral")["retention"], "1s");
    assert_eq!(
        system("ephemeral")["events"],
        1,
        "only the held one is kept"
    );
    assert_eq!(system("archive")["events"], 1);
    assert_eq!(system("archive")["retention"], "30d");
    assert_eq!(system("warehouse")["destination"], true);
    let orphaned: Vec<(String, String)> = report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| {
            f["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| !d["orphaned"].is_null())
                .map(|d| {
                    (
                        format!(
                            "{}/{}",
                            f["flow"].as_str().unwrap(),
                            d["destination"].as_str().unwrap()
                        ),
                        d["orphaned"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let flagged: Vec<&str> = orphaned.iter().map(|(l, _)| l.as_str()).collect();
    // crm declares nothing (orphaned under `short` and `long`); the warehouse keeps 365d
    // against `short`'s 1s; `flaky` keeps what its source keeps.
    assert_eq!(
        flagged,
        ["long/crm", "short/crm", "short/warehouse"],
        "{orphaned:?}"
    );
    assert!(
        orphaned[2].1.contains("365d, longer than its source's 1s"),
        "{orphaned:?}"
    );
    assert_eq!(report["orphaned"], 3);
    let (code, text, _) = run_ferry(&["retention", "report", "--config", cfg_arg, "--url", &url]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("3 destinations may keep orphaned copies"),
        "{text}"
    );
    assert!(text.contains("1 held past retention"), "{text}");

    let metrics = metrics_text(addr).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "ferry_retention_held_events 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferry_retention_purged_events_total ")),
        "{metrics}"
    );

    // The purge is in the audit trail, naming the event.
    let (code, export, err) = run_ferry(&["audit", "export", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let purged: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["kind"] == "purged")
        .collect();
    assert_eq!(purged.len(), 1, "{export}");
    assert_eq!(purged[0]["event_ids"], serde_json::json!([short]));
    assert_eq!(
        (
            purged[0]["events"].as_u64(),
            purged[0]["deliveries"].as_u64()
        ),
        (Some(1), Some(2))
    );

    // Stopped: the report comes from the data dir.
    let pid = hub.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut hub = hub;
    let deadline = Instant::now() + Duration::from_secs(20);
    while hub.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ferry did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, err) = run_ferry(&[
        "retention",
        "report",
        "--config",
        cfg_arg,
        "--url",
        &url,
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("no hub answers"), "{err}");
    let offline: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(offline["orphaned"], 3);
    assert!(offline["last_purge"].is_null());
    let ephemeral = offline["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == "ephemeral")
        .cloned()
        .unwrap();
    assert_eq!(ephemeral["events"], 1);
    let (code, _, err) = run_ferry(&[
        "retention",
        "report",
        "--config",
        cfg_arg,
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        run_ferry(&["audit", "verify", "--data-dir", data.to_str().unwrap()]).0,
        Some(0)
    );
}
