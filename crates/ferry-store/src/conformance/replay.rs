//! Cases: replay selectors and rounds.

use super::*;

/// Replay selects by delivery id and by event id.
pub async fn replay_by_delivery_and_event_id(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("replay-ids");
    let e1 = event(&f, T0, &["a", "b"]);
    let e2 = event(&f, T0 + 1, &["c"]);
    append_ok(store, vec![e1.clone(), e2.clone()]).await;
    let (d1a, d1b, d2c) = (
        e1.deliveries[0].id,
        e1.deliveries[1].id,
        e2.deliveries[0].id,
    );
    kill(store, &lane(&f, "a"), T0 + 5, d1a).await;
    kill(store, &lane(&f, "b"), T0 + 5, d1b).await;
    kill(store, &lane(&f, "c"), T0 + 5, d2c).await;

    let one = DeliveryFilter {
        delivery_id: Some(d1a),
        ..Default::default()
    };
    assert_eq!(
        store.replay(&one, T0 + 10, "test").await.expect("replay"),
        1
    );
    assert_eq!(state(store, d1a).await, DeliveryState::Pending);
    assert_eq!(state(store, d1b).await, DeliveryState::Dead);
    assert_eq!(state(store, d2c).await, DeliveryState::Dead);

    let ev2 = DeliveryFilter {
        event_id: Some(e2.id),
        ..Default::default()
    };
    assert_eq!(
        store.replay(&ev2, T0 + 10, "test").await.expect("replay"),
        1
    );
    assert_eq!(state(store, d2c).await, DeliveryState::Pending);
    assert_eq!(state(store, d1b).await, DeliveryState::Dead);

    let ev1 = DeliveryFilter {
        event_id: Some(e1.id),
        ..Default::default()
    };
    assert_eq!(
        store.replay(&ev1, T0 + 10, "test").await.expect("replay"),
        1,
        "d1a is already pending"
    );
    assert_eq!(state(store, d1b).await, DeliveryState::Pending);
    assert_eq!(summary(store, d1a).await.replays, 1);
}

/// Replay by flow (+ state) takes delivered, retrying and dead deliveries of that flow only,
/// and leaves pending and in-flight ones alone.
pub async fn replay_by_flow_and_state(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("replay-flow"), flow("replay-other"));
    let evs: Vec<NewEvent> = ["dead", "delivered", "retrying", "pending", "in_flight"]
        .iter()
        .map(|dest| event(&f, T0, &[dest]))
        .collect();
    let other = event(&g, T0, &["dead"]);
    let mut all = evs.clone();
    all.push(other.clone());
    append_ok(store, all).await;
    let id = |i: usize| evs[i].deliveries[0].id;
    kill(store, &lane(&f, "dead"), T0, id(0)).await;
    kill(store, &lane(&g, "dead"), T0, other.deliveries[0].id).await;
    claim_one(store, &lane(&f, "delivered"), T0, id(1)).await;
    claim_one(store, &lane(&f, "retrying"), T0, id(2)).await;
    claim_one(store, &lane(&f, "in_flight"), T0, id(4)).await;
    complete_ok(
        store,
        vec![
            outcome(
                id(1),
                Some(attempt(T0, Some(200), "ok", None)),
                Next::Delivered,
            ),
            outcome(
                id(2),
                Some(attempt(T0, Some(503), "http_5xx", Some("x"))),
                Next::Retry { at: T0 + 99_999 },
            ),
        ],
        T0 + 1,
    )
    .await;

    let pending_only = DeliveryFilter {
        flow: Some(f.clone()),
        state: Some(DeliveryState::Pending),
        ..Default::default()
    };
    assert_eq!(
        store
            .replay(&pending_only, T0 + 5, "test")
            .await
            .expect("replay"),
        0
    );
    let in_flight_only = DeliveryFilter {
        flow: Some(f.clone()),
        state: Some(DeliveryState::InFlight),
        ..Default::default()
    };
    assert_eq!(
        store
            .replay(&in_flight_only, T0 + 5, "test")
            .await
            .expect("replay"),
        0
    );

    let dead_only = DeliveryFilter {
        flow: Some(f.clone()),
        state: Some(DeliveryState::Dead),
        ..Default::default()
    };
    assert_eq!(
        store
            .replay(&dead_only, T0 + 5, "test")
            .await
            .expect("replay"),
        1
    );
    assert_eq!(state(store, id(0)).await, DeliveryState::Pending);
    assert_eq!(state(store, id(1)).await, DeliveryState::Delivered);
    assert_eq!(
        state(store, other.deliveries[0].id).await,
        DeliveryState::Dead,
        "other flow"
    );

    assert_eq!(
        store
            .replay(&by_flow(&f), T0 + 6, "test")
            .await
            .expect("replay"),
        2
    );
    for i in 0..4 {
        assert_eq!(
            state(store, id(i)).await,
            DeliveryState::Pending,
            "delivery {i}"
        );
    }
    assert_eq!(
        summary(store, id(3)).await.replays,
        0,
        "pending is left alone"
    );
    assert_eq!(summary(store, id(3)).await.next_attempt_at, Some(T0));
    let s = summary(store, id(4)).await;
    assert_eq!(
        (s.state, s.replays),
        (DeliveryState::InFlight, 0),
        "in flight is left alone"
    );
    assert_eq!(
        state(store, other.deliveries[0].id).await,
        DeliveryState::Dead
    );
}

/// Replay by receive-time range: `since` inclusive, `until` exclusive.
pub async fn replay_by_time_range(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("replay-time");
    let evs: Vec<NewEvent> = [(0, "a"), (100, "b"), (200, "c")]
        .iter()
        .map(|&(t, dest)| event(&f, T0 + t, &[dest]))
        .collect();
    append_ok(store, evs.clone()).await;
    for e in &evs {
        let d = &e.deliveries[0];
        kill(store, &lane(&f, &d.destination), T0 + 1000, d.id).await;
    }
    let range = DeliveryFilter {
        flow: Some(f.clone()),
        since: Some(T0 + 100),
        until: Some(T0 + 200),
        ..Default::default()
    };
    assert_eq!(
        store
            .replay(&range, T0 + 2000, "test")
            .await
            .expect("replay"),
        1
    );
    let states: Vec<DeliveryState> = {
        let mut v = Vec::new();
        for e in &evs {
            v.push(state(store, e.deliveries[0].id).await);
        }
        v
    };
    assert_eq!(
        states,
        vec![
            DeliveryState::Dead,
            DeliveryState::Pending,
            DeliveryState::Dead
        ]
    );
    let since = DeliveryFilter {
        flow: Some(f.clone()),
        since: Some(T0 + 150),
        ..Default::default()
    };
    assert_eq!(
        store
            .replay(&since, T0 + 2000, "test")
            .await
            .expect("replay"),
        1
    );
    let until = DeliveryFilter {
        flow: Some(f.clone()),
        until: Some(T0 + 1),
        ..Default::default()
    };
    assert_eq!(
        store
            .replay(&until, T0 + 2000, "test")
            .await
            .expect("replay"),
        1
    );
}

/// Replay starts a new round (round attempts 0, round start = now, replays + 1) and keeps
/// the attempt history; replaying an in-flight delivery does nothing.
pub async fn replay_resets_round_keeps_history(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("round");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let (la, id) = (lane(&f, "a"), ev.deliveries[0].id);
    claim_one(store, &la, T0, id).await;
    let a1 = attempt(T0, Some(503), "http_5xx", Some("one"));
    complete_ok(
        store,
        vec![outcome(id, Some(a1.clone()), Next::Retry { at: T0 + 100 })],
        T0 + 1,
    )
    .await;
    let c = claim_one(store, &la, T0 + 100, id).await;
    assert_eq!(c.round_attempts, 1);
    let a2 = attempt(T0 + 100, Some(503), "http_5xx", Some("two"));
    complete_ok(
        store,
        vec![outcome(
            id,
            Some(a2.clone()),
            Next::Dead {
                reason: "gave up".into(),
            },
        )],
        T0 + 101,
    )
    .await;

    let only = DeliveryFilter {
        delivery_id: Some(id),
        ..Default::default()
    };
    assert_eq!(
        store
            .replay(&only, T0 + 9000, "test")
            .await
            .expect("replay"),
        1
    );
    let d = store.delivery(id).await.expect("delivery").expect("exists");
    assert_eq!(d.summary.state, DeliveryState::Pending);
    assert_eq!(d.summary.next_attempt_at, Some(T0 + 9000));
    assert_eq!((d.summary.replays, d.summary.attempts), (1, 2));
    assert_eq!(d.attempts, vec![a1, a2], "history kept");
    assert!(
        claim_ids(store, &la, T0 + 8999, 10).await.is_empty(),
        "due at replay time"
    );

    let c = claim_one(store, &la, T0 + 9000, id).await;
    assert_eq!(
        (c.attempts, c.round_attempts, c.round_started_at),
        (2, 0, T0 + 9000)
    );
    assert_eq!(
        store
            .replay(&only, T0 + 9001, "test")
            .await
            .expect("replay"),
        0,
        "in flight"
    );
    assert_eq!(summary(store, id).await.replays, 1);
}
