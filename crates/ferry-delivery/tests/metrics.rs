//! The metrics the hub exports: names, labels and values, through a recording `metrics`
//! recorder (this test binary owns the process-wide recorder).

mod common;

use std::time::Duration;

use common::recording::Recording;
use common::*;
use ferry_delivery::DeliveryEngine;
use ferry_store::DeliveryState;

const PAYLOAD: &[u8] = b"{}";

#[tokio::test]
async fn attempts_durations_and_in_flight_are_recorded_per_lane() {
    let recording = Recording::default();
    metrics::set_global_recorder(recording.clone()).unwrap();
    let (_dir, store) = open_store();

    let flaky = Receiver::start(vec![Reply::status(503), Reply::status(200)]).await;
    let refusing = Receiver::start(vec![Reply::status(422)]).await;
    // Neither its answer nor its time-out comes during the test.
    let hanging = Receiver::start(vec![Reply::status(200).delay(Duration::from_secs(3600))]).await;
    let (l1, l2, l3) = (
        lane("m", "flaky"),
        lane("m", "refusing"),
        lane("m", "hanging"),
    );
    let d1 = append(store.as_ref(), &l1, PAYLOAD, &[]).await;
    let d2 = append(store.as_ref(), &l2, PAYLOAD, &[]).await;
    append(store.as_ref(), &l3, PAYLOAD, &[]).await;
    let mut slow = target(hanging.url("/"));
    slow.timeout = Duration::from_secs(3600);
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![
            spec(l1.clone(), target(flaky.url("/")), fast_retry(5), 1),
            spec(l2.clone(), target(refusing.url("/")), fast_retry(5), 1),
            spec(l3.clone(), slow, fast_retry(5), 1),
        ],
    )
    .await
    .unwrap();
    wait_for(store.as_ref(), d1, "delivered", |d| {
        d.summary.state == DeliveryState::Delivered
    })
    .await;
    wait_for(store.as_ref(), d2, "dead", |d| {
        d.summary.state == DeliveryState::Dead
    })
    .await;
    eventually("the hanging receiver to get its request", || {
        hanging.count() == 1
    })
    .await;

    let attempts = "ferry_delivery_attempts_total";
    assert_eq!(
        recording.count(&format!(
            "{attempts}{{destination=flaky,flow=m,outcome=retry}}"
        )),
        1
    );
    assert_eq!(
        recording.count(&format!(
            "{attempts}{{destination=flaky,flow=m,outcome=delivered}}"
        )),
        1
    );
    assert_eq!(
        recording.count(&format!(
            "{attempts}{{destination=refusing,flow=m,outcome=dead}}"
        )),
        1
    );
    let durations =
        recording.samples("ferry_delivery_attempt_duration_seconds{destination=flaky,flow=m}");
    assert_eq!(durations.len(), 2);
    assert!(
        durations.iter().all(|s| *s >= 0.0 && *s < 10.0),
        "{durations:?}"
    );
    let in_flight = "ferry_delivery_in_flight{destination=hanging,flow=m}";
    eventually("the in-flight gauge to show the hanging send", || {
        recording.gauge(in_flight) == 1.0
    })
    .await;
    assert_eq!(
        recording.gauge("ferry_delivery_in_flight{destination=flaky,flow=m}"),
        0.0
    );

    engine.shutdown(Duration::from_millis(50)).await;
    assert_eq!(recording.gauge(in_flight), 0.0);
    // An aborted send is not an attempt.
    assert_eq!(
        recording.count(&format!(
            "{attempts}{{destination=hanging,flow=m,outcome=retry}}"
        )),
        0
    );
}
