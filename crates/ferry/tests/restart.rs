//! Restart is recovery: the real binary is loaded, killed with SIGKILL, restarted, and every
//! event it acknowledged with a 2xx must reach the receiver. SIGTERM drains and exits 0.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Send signed events from `workers` tasks until `stop` is set, pushing the sender id of
/// every event acknowledged 2xx to `acked` as the answer comes.
async fn load(
    hub: SocketAddr,
    prefix: &str,
    workers: usize,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (acked, stop) = (acked.clone(), stop.clone());
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let sid = format!("{prefix}-{w}-{n}");
                let body = format!(
                    "{{\"type\":\"load\",\"sid\":\"{sid}\",\"pad\":\"{}\"}}",
                    "p".repeat(200)
                );
                let mut req = client
                    .post(format!("http://{hub}/ingest/orders"))
                    .body(body.clone());
                for (k, v) in signed(&sid, &body) {
                    req = req.header(k, v);
                }
                match req.timeout(Duration::from_secs(5)).send().await {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(sid),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// SIGKILL `child` once it has acknowledged an event (or after a minute without one), a
/// little later still so that the kill lands in the middle of the load; then set `stop`.
async fn kill_under_load(
    mut child: std::process::Child,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    later: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(later).await;
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    status
}

fn delivered_sids(rx: &TestReceiver) -> HashSet<String> {
    rx.received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter_map(|v| v["sid"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_event_and_sigterm_exits_cleanly() {
    let rx = TestReceiver::start().await;
    // Slow the receiver a little so deliveries are in flight when the kill lands.
    rx.set_default(Answer {
        status: 200,
        retry_after: None,
        delay: Duration::from_millis(3),
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    write_config(&cfg, &http_destination("sink", &rx.url("/in"), 50));
    let data = dir.path().join("data");
    let log = dir.path().join("ferry.log");

    let mut acked_all = Vec::new();
    for round in 0..3 {
        let (child, addr) = spawn_ferry(&cfg, &data, &log);
        // Killed once the load is under way (judged by acknowledgements, not by time).
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let killer = tokio::spawn(kill_under_load(
            child,
            acked.clone(),
            stop.clone(),
            Duration::from_millis(300 + 300 * round),
        ));
        load(addr, &format!("r{round}"), 16, acked.clone(), stop).await;
        let status = killer.await.unwrap();
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        assert!(
            !status.success(),
            "the hub must have been killed, not exited"
        );
        assert!(
            !acked.is_empty(),
            "round {round}: nothing was acknowledged before the kill"
        );
        acked_all.extend(acked);
    }

    let (child, addr) = spawn_ferry(&cfg, &data, &log);
    // Gauges the lanes set once, at start, are on /metrics of a freshly started process.
    let metrics = metrics_text(addr).await;
    for want in [
        "ferry_breaker_state{flow=\"orders\",destination=\"sink\"} 0",
        "ferry_lane_paused{flow=\"orders\",destination=\"sink\"} 0",
    ] {
        assert!(metrics.contains(want), "missing `{want}` in:\n{metrics}");
    }
    let expected: HashSet<String> = acked_all.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = delivered_sids(&rx);
        let missing: Vec<_> = expected.difference(&got).take(5).collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "{} of {} acknowledged events never reached the receiver, e.g. {missing:?}\nlog: {}",
                expected.difference(&got).count(),
                expected.len(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGTERM: graceful drain and exit 0.
    let pid = child.id().to_string();
    let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(st.success());
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "ferry did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    eprintln!(
        "{} acknowledged events, all delivered across 3 SIGKILLs",
        expected.len()
    );
}
