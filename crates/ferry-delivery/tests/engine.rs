//! End to end through the engine: a real store, real loopback receivers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ferry_delivery::DeliveryEngine;
use ferry_signature::schemes::StandardWebhooks;
use ferry_signature::{SignatureScheme, SigningKey};
use ferry_store::{DeliveryFilter, DeliveryState};
use reqwest::header::{HeaderMap, HeaderValue};

const PAYLOAD: &[u8] = br#"{"order":{"id":"ord_1","total":42}}"#;

#[tokio::test]
async fn delivers_body_and_headers_signed() {
    let (_dir, store) = open_store();
    let receiver = Receiver::start(vec![Reply::status(204)]).await;
    let key = lane("orders", "crm");
    // "whsec_" + base64("0123456789abcdef0123456789abcdef")
    let signing_key =
        SigningKey::from_standard_webhooks("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
            .unwrap();
    let mut t = target(receiver.url("/hooks/orders"));
    t.signing_key = Some(signing_key.clone());
    let mut static_headers = HeaderMap::new();
    static_headers.insert("x-api-key", HeaderValue::from_static("k-123"));
    t.headers = static_headers;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let id = append(
        store.as_ref(),
        &key,
        PAYLOAD,
        &[
            ("Content-Type", "application/vnd.orders+json"),
            ("traceparent", traceparent),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    let engine = DeliveryEngine::start(store.clone(), vec![spec(key.clone(), t, fast_retry(5), 2)])
        .await
        .unwrap();
    engine.wake(&key);

    let detail = wait_for(store.as_ref(), id, "delivered", |d| {
        d.summary.state == DeliveryState::Delivered
    })
    .await;
    assert_eq!(detail.attempts.len(), 1);
    let attempt = &detail.attempts[0];
    assert_eq!(attempt.status, Some(204));
    assert_eq!(attempt.error_class.as_deref(), Some("ok"));
    assert_eq!(attempt.error, None);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let req = &received[0];
    assert_eq!(req.path, "/hooks/orders");
    assert_eq!(&req.body[..], PAYLOAD);
    let h = |name: &str| {
        req.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(h("webhook-id"), Some(id.to_string()));
    assert!(h("webhook-id").unwrap().starts_with("dlv_"));
    assert_eq!(h("idempotency-key"), Some(id.to_string()));
    assert_eq!(
        h("content-type").as_deref(),
        Some("application/vnd.orders+json")
    );
    assert_eq!(h("traceparent").as_deref(), Some(traceparent));
    assert_eq!(h("tracestate").as_deref(), Some("congo=t61rcWkgMzE"));
    assert_eq!(h("x-api-key").as_deref(), Some("k-123"));
    assert!(h("user-agent").unwrap().starts_with("ferry/"));
    let ts: i64 = h("webhook-timestamp").unwrap().parse().unwrap();
    assert!((ts - now_millis() / 1000).abs() < 60, "timestamp {ts}");
    let signature = h("webhook-signature").unwrap();
    assert!(signature.starts_with("v1,"), "{signature}");
    assert_eq!(
        signature,
        ferry_signature::standard_webhooks::sign(&signing_key, &id.to_string(), ts, PAYLOAD)
    );
    // The receiver side of ferry_signature accepts it, and only with the right key and body.
    let verifier = StandardWebhooks::with_default_tolerance(signing_key.clone());
    verifier
        .verify(&req.headers, &req.body, now_millis() / 1000)
        .expect("signature verifies");
    assert!(
        verifier
            .verify(&req.headers, b"{}", now_millis() / 1000)
            .is_err()
    );
    let other = StandardWebhooks::with_default_tolerance(SigningKey::from_bytes(
        b"another key, another signature!!".to_vec(),
    ));
    assert!(
        other
            .verify(&req.headers, &req.body, now_millis() / 1000)
            .is_err()
    );
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unsigned_target_defaults_content_type_and_omits_signature() {
    let (_dir, store) = open_store();
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let key = lane("orders", "erp");
    let id = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![spec(
            key.clone(),
            target(receiver.url("/")),
            fast_retry(5),
            1,
        )],
    )
    .await
    .unwrap();
    wait_for(store.as_ref(), id, "delivered", |d| {
        d.summary.state == DeliveryState::Delivered
    })
    .await;
    let req = &receiver.received()[0];
    assert_eq!(req.headers["content-type"], "application/json");
    assert!(req.headers.get("webhook-signature").is_none());
    assert!(req.headers.get("traceparent").is_none());
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn retries_503_then_delivers_with_stable_idempotency_key() {
    let (_dir, store) = open_store();
    let receiver = Receiver::start(vec![
        Reply::status(503).body("busy"),
        Reply::status(503).body("still busy"),
        Reply::status(200).body("thanks"),
    ])
    .await;
    let key = lane("billing", "warehouse");
    let id = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![spec(
            key.clone(),
            target(receiver.url("/")),
            fast_retry(5),
            1,
        )],
    )
    .await
    .unwrap();
    let detail = wait_for(store.as_ref(), id, "delivered", |d| {
        d.summary.state == DeliveryState::Delivered
    })
    .await;
    let statuses: Vec<_> = detail.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![Some(503), Some(503), Some(200)]);
    let classes: Vec<_> = detail
        .attempts
        .iter()
        .map(|a| a.error_class.clone().unwrap())
        .collect();
    assert_eq!(classes, vec!["http_5xx", "http_5xx", "ok"]);
    assert_eq!(detail.attempts[0].response_excerpt.as_deref(), Some("busy"));
    assert_eq!(
        detail.attempts[0].error.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
    assert_eq!(
        detail.attempts[2].response_excerpt.as_deref(),
        Some("thanks")
    );
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    for req in &received {
        assert_eq!(req.headers["webhook-id"], id.to_string().as_str());
        assert_eq!(req.headers["idempotency-key"], id.to_string().as_str());
        assert_eq!(&req.body[..], PAYLOAD);
    }
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn retry_after_is_honoured_over_backoff() {
    let (_dir, store) = open_store();
    let receiver = Receiver::start(vec![
        Reply::status(429).header("retry-after", "1"),
        Reply::status(200),
    ])
    .await;
    let key = lane("crm", "support");
    let id = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    // Backoff alone would retry within 10 ms.
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![spec(
            key.clone(),
            target(receiver.url("/")),
            fast_retry(5),
            1,
        )],
    )
    .await
    .unwrap();
    let retrying = wait_for(store.as_ref(), id, "retrying", |d| {
        d.summary.state == DeliveryState::Retrying
    })
    .await;
    let first = &retrying.attempts[0];
    assert_eq!(first.status, Some(429));
    assert_eq!(first.error_class.as_deref(), Some("http_429"));
    let retry_at = retrying.summary.next_attempt_at.unwrap();
    assert!(
        retry_at >= first.started_at + 1000,
        "retry at +{} ms",
        retry_at - first.started_at
    );
    let done = wait_for(store.as_ref(), id, "delivered", |d| {
        d.summary.state == DeliveryState::Delivered
    })
    .await;
    assert_eq!(done.attempts.len(), 2);
    assert!(
        done.attempts[1].started_at >= first.started_at + 1000,
        "second attempt +{} ms",
        done.attempts[1].started_at - first.started_at
    );
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn permanent_400_dies_at_once() {
    let (_dir, store) = open_store();
    let receiver = Receiver::start(vec![
        Reply::status(400).body(r#"{"error":"missing field customer"}"#),
    ])
    .await;
    let key = lane("orders", "netsuite");
    let id = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![spec(
            key.clone(),
            target(receiver.url("/")),
            fast_retry(5),
            1,
        )],
    )
    .await
    .unwrap();
    let dead = wait_for(store.as_ref(), id, "dead", |d| {
        d.summary.state == DeliveryState::Dead
    })
    .await;
    assert_eq!(dead.attempts.len(), 1);
    assert_eq!(dead.attempts[0].error_class.as_deref(), Some("http_4xx"));
    let reason = dead.summary.last_error.unwrap();
    assert!(
        reason.starts_with("permanent failure: HTTP 400 Bad Request"),
        "{reason}"
    );
    assert!(reason.contains("missing field customer"), "{reason}");
    engine.shutdown(Duration::from_secs(1)).await;
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn redirect_is_not_followed_and_is_permanent() {
    let (_dir, store) = open_store();
    let elsewhere = Receiver::start(vec![Reply::status(200)]).await;
    let receiver = Receiver::start(vec![
        Reply::status(307).header("location", elsewhere.url("/moved").as_str()),
    ])
    .await;
    let key = lane("orders", "moved");
    let id = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![spec(
            key.clone(),
            target(receiver.url("/")),
            fast_retry(5),
            1,
        )],
    )
    .await
    .unwrap();
    let dead = wait_for(store.as_ref(), id, "dead", |d| {
        d.summary.state == DeliveryState::Dead
    })
    .await;
    assert_eq!(dead.attempts.len(), 1);
    assert_eq!(dead.attempts[0].error_class.as_deref(), Some("http_3xx"));
    assert!(dead.summary.last_error.unwrap().contains("HTTP 307"));
    engine.shutdown(Duration::from_secs(1)).await;
    assert_eq!(elsewhere.count(), 0);
}

#[tokio::test]
async fn connection_refused_is_class_connect_and_retried() {
    let (_dir, store) = open_store();
    let addr = closed_port();
    let key = lane("orders", "gone");
    let id = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    let url = reqwest::Url::parse(&format!("http://{addr}/")).unwrap();
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![spec(key.clone(), target(url), fast_retry(3), 1)],
    )
    .await
    .unwrap();
    let dead = wait_for(store.as_ref(), id, "dead", |d| {
        d.summary.state == DeliveryState::Dead
    })
    .await;
    assert_eq!(dead.attempts.len(), 3, "{:#?}", dead.attempts);
    for attempt in &dead.attempts {
        assert_eq!(attempt.status, None);
        assert_eq!(attempt.error_class.as_deref(), Some("connect"));
        let error = attempt.error.as_deref().unwrap().to_lowercase();
        assert!(
            error.contains("refused") || error.contains("connect"),
            "{error}"
        );
    }
    let reason = dead.summary.last_error.unwrap();
    assert!(reason.starts_with("gave up after 3 attempts: "), "{reason}");
    // The address (and so any credentials in a URL) is not in the error text.
    assert!(!reason.contains(&addr.port().to_string()), "{reason}");
    engine.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn slow_receiver_is_class_timeout() {
    let (_dir, store) = open_store();
    // Answers ten minutes late: only the 300 ms time-out can end an attempt, however late
    // the hub gets to its timer.
    let receiver = Receiver::start(vec![Reply::status(200).delay(Duration::from_secs(600))]).await;
    let key = lane("orders", "slow");
    let id = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    let mut t = target(receiver.url("/"));
    t.timeout = Duration::from_millis(300);
    let engine = DeliveryEngine::start(store.clone(), vec![spec(key.clone(), t, fast_retry(2), 1)])
        .await
        .unwrap();
    let dead = wait_for(store.as_ref(), id, "dead", |d| {
        d.summary.state == DeliveryState::Dead
    })
    .await;
    assert_eq!(dead.attempts.len(), 2);
    for attempt in &dead.attempts {
        assert_eq!(attempt.status, None);
        assert_eq!(attempt.error_class.as_deref(), Some("timeout"));
        // Not before the time-out, and long before the answer.
        assert!(
            attempt.latency_ms >= 250 && attempt.latency_ms < 600_000,
            "{}",
            attempt.latency_ms
        );
    }
    engine.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn shutdown_releases_in_flight_deliveries() {
    let (_dir, store) = open_store();
    // Neither the answer nor the time-out comes within an hour: only the shutdown's grace
    // period ends the send.
    let receiver = Receiver::start(vec![Reply::status(200).delay(Duration::from_secs(3600))]).await;
    let key = lane("orders", "hangs");
    let id = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    let mut t = target(receiver.url("/"));
    t.timeout = Duration::from_secs(3600);
    let engine = DeliveryEngine::start(store.clone(), vec![spec(key.clone(), t, fast_retry(5), 1)])
        .await
        .unwrap();
    eventually("the receiver to get the request", || receiver.count() == 1).await;
    let in_flight = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(in_flight.summary.state, DeliveryState::InFlight);

    // Generous: the alternative is waiting an hour for the send.
    let started = Instant::now();
    engine.shutdown(Duration::from_millis(200)).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let after = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(after.summary.state, DeliveryState::Pending);
    assert!(after.attempts.is_empty(), "a release records no attempt");
    assert!(after.summary.next_attempt_at.unwrap() <= now_millis());
}

#[tokio::test]
async fn shutdown_lets_in_flight_deliveries_finish_within_grace() {
    let (_dir, store) = open_store();
    let receiver =
        Receiver::start(vec![Reply::status(200).delay(Duration::from_millis(500))]).await;
    let key = lane("orders", "finishes");
    let first = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    let second = append(store.as_ref(), &key, PAYLOAD, &[]).await;
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![spec(
            key.clone(),
            target(receiver.url("/")),
            fast_retry(5),
            1,
        )],
    )
    .await
    .unwrap();
    eventually("the receiver to get a request", || receiver.count() == 1).await;
    // A grace far beyond the half-second answer (shutdown returns as soon as it is in).
    engine.shutdown(Duration::from_secs(60)).await;
    // The one being sent finished; the one waiting for a send permit was released unsent.
    let first = store.delivery(first).await.unwrap().unwrap();
    let second = store.delivery(second).await.unwrap().unwrap();
    let mut states = [first.summary.state, second.summary.state];
    states.sort_by_key(|s| s.as_str());
    assert_eq!(states, [DeliveryState::Delivered, DeliveryState::Pending]);
    assert_eq!(receiver.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_deliveries_respect_concurrency_and_all_arrive_once() {
    let (_dir, store) = open_store();
    let receiver = Receiver::start(vec![Reply::status(200).delay(Duration::from_millis(20))]).await;
    let key = lane("bulk", "api");
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(append(store.as_ref(), &key, PAYLOAD, &[]).await);
    }
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![spec(
            key.clone(),
            target(receiver.url("/")),
            fast_retry(5),
            4,
        )],
    )
    .await
    .unwrap();
    for id in &ids {
        wait_for(store.as_ref(), *id, "delivered", |d| {
            d.summary.state == DeliveryState::Delivered
        })
        .await;
    }
    engine.shutdown(Duration::from_secs(1)).await;
    assert_eq!(receiver.count(), 60);
    assert!(
        receiver.max_concurrent() <= 4,
        "{}",
        receiver.max_concurrent()
    );
    assert!(
        receiver.max_concurrent() >= 2,
        "{}",
        receiver.max_concurrent()
    );
    let mut seen: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 60);
}

#[tokio::test]
async fn a_hanging_destination_does_not_starve_another_lane() {
    let (_dir, store) = open_store();
    // Neither its answer nor its time-out comes within the test, however slow the machine.
    let stuck = Receiver::start(vec![Reply::status(200).delay(Duration::from_secs(3600))]).await;
    let healthy = Receiver::start(vec![Reply::status(200)]).await;
    let stuck_lane = lane("orders", "stuck");
    let healthy_lane = lane("orders", "healthy");
    for _ in 0..10 {
        append(store.as_ref(), &stuck_lane, PAYLOAD, &[]).await;
    }
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(append(store.as_ref(), &healthy_lane, PAYLOAD, &[]).await);
    }
    let mut stuck_target = target(stuck.url("/"));
    stuck_target.timeout = Duration::from_secs(3600);
    let engine = DeliveryEngine::start(
        store.clone(),
        vec![
            spec(stuck_lane.clone(), stuck_target, fast_retry(5), 2),
            spec(
                healthy_lane.clone(),
                target(healthy.url("/")),
                fast_retry(5),
                2,
            ),
        ],
    )
    .await
    .unwrap();
    for id in &ids {
        wait_for(store.as_ref(), *id, "delivered", |d| {
            d.summary.state == DeliveryState::Delivered
        })
        .await;
    }
    // The stuck lane sends only its concurrency at once, and holds (claims) no more than its
    // prefetch of twice that: the rest of its backlog stays pending on disk. (Its first claim
    // took the whole prefetch; its two sends may start after the healthy lane is done.)
    eventually("the stuck lane's two sends", || stuck.count() == 2).await;
    assert_eq!(stuck.count(), 2);
    let filter = DeliveryFilter {
        destination: Some("stuck".into()),
        state: Some(DeliveryState::InFlight),
        ..Default::default()
    };
    let claimed = store.list_deliveries(&filter, None, 100).await.unwrap();
    assert_eq!(claimed.len(), 4, "{claimed:#?}");
    let pending = DeliveryFilter {
        state: Some(DeliveryState::Pending),
        ..filter
    };
    assert_eq!(
        store
            .list_deliveries(&pending, None, 100)
            .await
            .unwrap()
            .len(),
        6
    );
    engine.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn wake_for_unknown_lane_is_ignored_and_bad_specs_are_refused() {
    let (_dir, store) = open_store();
    let key = lane("a", "b");
    let url = reqwest::Url::parse("http://127.0.0.1:9/").unwrap();
    let err = DeliveryEngine::start(
        store.clone(),
        vec![
            spec(key.clone(), target(url.clone()), fast_retry(1), 1),
            spec(key.clone(), target(url.clone()), fast_retry(1), 1),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ferry_delivery::EngineError::DuplicateLane { .. }),
        "{err}"
    );
    let err = DeliveryEngine::start(
        store.clone(),
        vec![spec(key.clone(), target(url), fast_retry(1), 0)],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ferry_delivery::EngineError::ZeroConcurrency { .. }),
        "{err}"
    );
    let engine = DeliveryEngine::start(store.clone(), vec![]).await.unwrap();
    engine.wake(&lane("no", "such"));
    engine.shutdown(Duration::from_millis(10)).await;
}
