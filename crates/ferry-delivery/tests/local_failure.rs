//! A call that fails on this host for lack of a file descriptor is not the destination's
//! fault: the delivery is put back without spending an attempt, the circuit breaker is not
//! told, and it goes out once descriptors are free again.
//!
//! The failure is real: the test runs itself again in a child process whose descriptor
//! limit is lowered (`ulimit -n`), and there takes every free descriptor before the lane's
//! call, so the connect fails with `EMFILE` as it would on a busy host.
#![cfg(unix)]

mod common;

use std::fs::File;
use std::process::Command;
use std::time::Duration;

use common::recording::Recording;
use common::*;
use ferry_delivery::{BreakerSettings, BreakerState, DeliveryEngine, GateSpec};
use ferry_store::DeliveryState;

/// Set in the child process, which runs the test's body.
const CHILD: &str = "FERRY_TEST_LOCAL_FAILURE_CHILD";
/// The child's descriptor limit: small, so that taking every free one is quick.
const FD_LIMIT: u32 = 256;
/// Descriptors the child opens at most while looking for the limit.
const MAX_HOARD: usize = 65_536;
/// Releases (each one a failed call) to see before descriptors are freed.
const RELEASES: usize = 3;

const PAYLOAD: &[u8] = br#"{"order":1}"#;

#[test]
fn a_call_without_a_free_descriptor_spends_no_attempt_and_leaves_the_breaker_closed() {
    if std::env::var_os(CHILD).is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(child());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn {FD_LIMIT} 2>/dev/null; exec \"$0\" --exact \"$1\" --test-threads=1 --nocapture"
        ))
        .arg(exe)
        .arg("a_call_without_a_free_descriptor_spends_no_attempt_and_leaves_the_breaker_closed")
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran nothing:\n{stdout}"
    );
}

/// Every free descriptor of this process, held until dropped.
fn take_every_descriptor() -> Vec<File> {
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) if e.raw_os_error() == Some(24) => return held,
            Err(e) => panic!("opening /dev/null: {e}"),
        }
        assert!(held.len() < MAX_HOARD, "no descriptor limit was reached");
    }
}

async fn child() {
    let recording = Recording::default();
    metrics::set_global_recorder(recording.clone()).unwrap();
    let (_dir, store) = open_store();
    // The receiver closes every connection: each call needs a new socket.
    let receiver = Receiver::start(vec![Reply::status(200).header("connection", "close")]).await;
    let key = lane("orders", "crm");
    let mut lane_spec = spec(key.clone(), target(receiver.url("/")), fast_retry(1), 1);
    // One counted failure would dead-letter the delivery (one attempt allowed) and open the
    // breaker (one call is enough to judge).
    lane_spec.gate = GateSpec {
        breaker: BreakerSettings {
            min_requests: 1,
            failure_ratio: 0.5,
            ..Default::default()
        },
        ..Default::default()
    };
    let engine = DeliveryEngine::start(store.clone(), vec![lane_spec])
        .await
        .unwrap();
    // Everything the store and the lane need is open once a delivery went through.
    let warm_up = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    engine.wake(&key);
    wait_for(store.as_ref(), warm_up, "the warm-up delivered", |d| {
        d.summary.state == DeliveryState::Delivered
    })
    .await;

    let held = take_every_descriptor();
    let appended_at = now_millis();
    let id = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    engine.wake(&key);
    let mut releases: Vec<i64> = Vec::new();
    while releases.len() < RELEASES {
        let detail = wait_for(store.as_ref(), id, "the delivery put back", |d| {
            d.summary.state == DeliveryState::Pending
                && d.summary
                    .next_attempt_at
                    .is_some_and(|at| at >= appended_at + 1000 && releases.last() != Some(&at))
        })
        .await;
        assert_eq!(detail.summary.attempts, 0, "{detail:#?}");
        assert!(detail.attempts.is_empty(), "{detail:#?}");
        releases.push(detail.summary.next_attempt_at.unwrap());
    }
    let (_, gate) = engine.status().pop().unwrap();
    assert_eq!(gate.breaker, BreakerState::Closed, "{gate:?}");
    assert_eq!(
        (gate.window_calls, gate.window_failures),
        (1, 0),
        "only the warm-up counts: {gate:?}"
    );
    assert_eq!(gate.failing_since, None);
    assert_eq!(receiver.count(), 1, "only the warm-up reached the receiver");

    // Descriptors are free again: the next try delivers, as the first attempt.
    drop(held);
    let delivered = wait_for(store.as_ref(), id, "delivered", |d| {
        d.summary.state == DeliveryState::Delivered
    })
    .await;
    assert_eq!(delivered.attempts.len(), 1, "{delivered:#?}");
    assert_eq!(delivered.attempts[0].status, Some(200));
    assert_eq!(receiver.count(), 2);
    let lane = "destination=crm,flow=orders";
    assert!(
        recording.count(&format!(
            "ferry_delivery_local_failures_total{{{lane},reason=emfile}}"
        )) >= RELEASES as u64
    );
    assert_eq!(
        recording.count(&format!(
            "ferry_delivery_attempts_total{{{lane},outcome=retry}}"
        )),
        0
    );
    assert_eq!(
        recording.count(&format!(
            "ferry_delivery_attempts_total{{{lane},outcome=delivered}}"
        )),
        2
    );
    engine.shutdown(Duration::from_secs(1)).await;
}
