//! "Which deliveries needed retries?": deliveries filtered by how many attempts they took,
//! the error class and the HTTP status their attempts met; and a replay kept in a
//! delivery's history, between the attempts before and after it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn ids(list: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = list
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Send one order, wait until its delivery settles (delivered or dead); its delivery id.
async fn settle(hub: std::net::SocketAddr, id: &str) -> String {
    let resp = send(hub, id, r#"{"type":"order.created"}"#).await;
    assert_eq!(resp.status().as_u16(), 202);
    let event: Value = resp.json().await.unwrap();
    let query = format!("event_id={}", event["event_id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(d) = deliveries(hub, &query).await.first()
            && (d["state"] == "delivered" || d["state"] == "dead")
        {
            return d["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "{id} did not settle within 30s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_are_filtered_by_attempts_error_class_and_status() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        &dir.path().join("cfg"),
        &http_destination("sink", &rx.url("/in"), 3),
    );
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();

    // One at a time, so each meets its own script: at once; after a 503; dead on a 422.
    let first_time = settle(addr, "m1").await;
    rx.script([Answer::status(503)]);
    let after_503 = settle(addr, "m2").await;
    rx.script([Answer::status(422)]);
    let refused = settle(addr, "m3").await;

    let check = |query: &'static str, want: Vec<&String>| {
        let mut want: Vec<String> = want.into_iter().cloned().collect();
        want.sort();
        async move {
            assert_eq!(ids(&deliveries(addr, query).await), want, "{query}");
        }
    };
    check("min_attempts=2", vec![&after_503]).await;
    check("min_attempts=1", vec![&first_time, &after_503, &refused]).await;
    check("status=503", vec![&after_503]).await;
    check("status=5xx", vec![&after_503]).await;
    check("status=4xx", vec![&refused]).await;
    check("status=200", vec![&first_time, &after_503]).await;
    check("error_class=http_5xx", vec![&after_503]).await;
    check("error_class=http_4xx&state=dead", vec![&refused]).await;
    check("min_attempts=2&state=delivered", vec![&after_503]).await;

    // A status that is not one is refused, naming the field.
    let resp = client()
        .get(format!("http://{addr}/admin/v1/deliveries?status=5"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let problem: Value = resp.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().starts_with("status:"));
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_stays_in_the_delivery_history() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        &dir.path().join("cfg"),
        &http_destination("sink", &rx.url("/in"), 3),
    );
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();

    rx.script([Answer::status(422)]);
    let id = settle(addr, "m1").await;
    let r = admin_post(
        addr,
        "/admin/v1/replay",
        json!({"delivery_id": id, "requested_by": "ferry dlq replay (ops)"}),
    )
    .await;
    assert_eq!(r["replayed"], 1);
    wait_until(30, "delivered after the replay", || async {
        deliveries(addr, "state=delivered").await.len() == 1
    })
    .await;

    let v = admin_get(addr, &format!("/admin/v1/deliveries/{id}")).await;
    let history = v["history"].as_array().unwrap();
    let kinds: Vec<&str> = history
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["attempt", "replay", "attempt"], "{v:#}");
    assert_eq!(history[0]["status"], 422);
    assert_eq!(history[0]["number"], 1);
    let replay = &history[1];
    // Who asked, and with which admin token (its id, never the token).
    let token_id = ferry::admin::token_id("admin", common::ADMIN_TOKEN);
    assert_eq!(
        replay["by"],
        format!("admin API: ferry dlq replay (ops) [{token_id}]")
    );
    assert_eq!(replay["from_state"], "dead");
    assert_eq!(replay["attempts_before"], 1);
    assert!(
        replay["last_error"].as_str().unwrap().contains("422"),
        "{replay}"
    );
    assert!(replay["at"].as_i64().unwrap() >= history[0]["started_at"].as_i64().unwrap());
    assert_eq!(history[2]["status"], 200);
    assert_eq!(history[2]["number"], 2);
    // The raw lists are there too.
    assert_eq!(v["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(v["replay_history"].as_array().unwrap().len(), 1);
    assert_eq!(v["summary"]["replays"], 1);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_lists_retried_deliveries_and_shows_replays() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    write_config(&cfg, &http_destination("sink", &rx.url("/in"), 3));
    let (child, addr) = spawn_ferry(&cfg, &dir.path().join("data"), &dir.path().join("log"));
    let _child = KillOnDrop(child);

    let once = settle(addr, "m1").await;
    rx.script([Answer::status(503)]);
    let retried = settle(addr, "m2").await;
    rx.script([Answer::status(422)]);
    let dead = settle(addr, "m3").await;

    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .args(["--url", &format!("http://{addr}"), "--token", ADMIN_TOKEN])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?}: {stdout}");
        stdout
    };
    let out = cli(&["deliveries", "--min-attempts", "2"]);
    assert!(out.contains(&retried), "{out}");
    assert!(!out.contains(&once) && !out.contains(&dead), "{out}");
    let out = cli(&["deliveries", "--status", "4xx"]);
    assert!(out.contains(&dead) && !out.contains(&retried), "{out}");
    let out = cli(&["dlq", "list", "--error-class", "http_4xx"]);
    assert!(out.contains(&dead), "{out}");
    let out = cli(&["dlq", "list", "--status", "503"]);
    assert!(out.contains("No dead delivery matches"), "{out}");

    let out = cli(&["dlq", "replay", &dead]);
    assert!(out.contains("replayed 1"), "{out}");
    wait_until(30, "delivered after the replay", || async {
        deliveries(addr, "state=dead").await.is_empty()
    })
    .await;
    let out = cli(&["dlq", "show", &dead]);
    assert!(out.contains("replay"), "{out}");
    assert!(out.contains("by admin API: ferry dlq replay"), "{out}");
    assert!(out.contains("was dead"), "{out}");
}
