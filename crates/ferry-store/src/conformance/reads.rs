//! Cases: listing, paging, lane counts, release, `next_due`, payload bytes, ping, and
//! filtering by any of several flows.

use super::*;

/// Every filter field narrows the listing; results are oldest event first.
pub async fn list_deliveries_filters(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("list"), flow("list-other"));
    let e1 = event(&f, T0 + 300, &["a", "b"]);
    let e2 = event(&f, T0 + 100, &["a"]);
    let e3 = event(&f, T0 + 200, &["b"]);
    let e4 = event(&g, T0 + 150, &["a"]);
    append_ok(store, vec![e1.clone(), e2.clone(), e3.clone(), e4.clone()]).await;
    kill(store, &lane(&f, "b"), T0 + 250, e3.deliveries[0].id).await;

    let all_f = list_all(store, &by_flow(&f)).await;
    assert_eq!(
        ids(&all_f)[..2],
        [e2.deliveries[0].id, e3.deliveries[0].id],
        "oldest event first"
    );
    assert_eq!(
        id_set(ids(&all_f)[2..].iter().copied()),
        id_set(e1.deliveries.iter().map(|d| d.id))
    );
    assert!(
        all_f
            .windows(2)
            .all(|w| w[0].received_at <= w[1].received_at),
        "oldest first"
    );

    let check = |filter: DeliveryFilter, want: Vec<DeliveryId>| async move {
        let got = list_all(store, &filter).await;
        assert_eq!(id_set(ids(&got)), id_set(want), "filter {filter:?}");
    };
    check(
        DeliveryFilter {
            delivery_id: Some(e1.deliveries[1].id),
            ..Default::default()
        },
        vec![e1.deliveries[1].id],
    )
    .await;
    check(
        DeliveryFilter {
            event_id: Some(e1.id),
            ..Default::default()
        },
        e1.deliveries.iter().map(|d| d.id).collect(),
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            destination: Some("a".into()),
            ..Default::default()
        },
        vec![e1.deliveries[0].id, e2.deliveries[0].id],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            state: Some(DeliveryState::Dead),
            ..Default::default()
        },
        vec![e3.deliveries[0].id],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            state: Some(DeliveryState::Pending),
            ..Default::default()
        },
        vec![
            e1.deliveries[0].id,
            e1.deliveries[1].id,
            e2.deliveries[0].id,
        ],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            since: Some(T0 + 200),
            ..Default::default()
        },
        vec![
            e1.deliveries[0].id,
            e1.deliveries[1].id,
            e3.deliveries[0].id,
        ],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(f.clone()),
            until: Some(T0 + 200),
            ..Default::default()
        },
        vec![e2.deliveries[0].id],
    )
    .await;
    check(
        DeliveryFilter {
            destination: Some("a".into()),
            since: Some(T0 + 100),
            until: Some(T0 + 151),
            ..Default::default()
        },
        vec![e2.deliveries[0].id, e4.deliveries[0].id],
    )
    .await;
    check(
        DeliveryFilter {
            flow: Some(flow("nothing")),
            ..Default::default()
        },
        vec![],
    )
    .await;
    let summary_listed = list_all(
        store,
        &DeliveryFilter {
            delivery_id: Some(e3.deliveries[0].id),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        summary_listed,
        vec![summary(store, e3.deliveries[0].id).await],
        "listing shows the same summary"
    );
}

/// Cursor paging walks the whole listing once, in order, with or without filters.
pub async fn list_deliveries_cursor_paging(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("pages");
    // Ties in receive time on purpose.
    let evs: Vec<NewEvent> = (0..25)
        .map(|i| event(&f, T0 + (i / 3), &["a", "b"]))
        .collect();
    append_ok(store, evs).await;
    for filter in [
        by_flow(&f),
        DeliveryFilter {
            flow: Some(f.clone()),
            destination: Some("b".into()),
            ..Default::default()
        },
    ] {
        let full = list_all(store, &filter).await;
        let mut paged = Vec::new();
        let mut after = None;
        for round in 0.. {
            assert!(round <= full.len() / 7 + 1, "paging does not end");
            let page = store
                .list_deliveries(&filter, after, 7)
                .await
                .expect("page");
            assert!(page.len() <= 7);
            if page.is_empty() {
                break;
            }
            after = page.last().map(|s| s.id);
            paged.extend(page);
        }
        assert_eq!(
            ids(&paged),
            ids(&full),
            "pages concatenate to the full listing"
        );
        assert_eq!(id_set(ids(&paged)).len(), paged.len(), "no repeats");
        assert!(
            paged
                .windows(2)
                .all(|w| w[0].received_at <= w[1].received_at)
        );
    }
    assert_eq!(list_all(store, &by_flow(&f)).await.len(), 50);
    assert_eq!(
        store
            .list_deliveries(&by_flow(&f), None, 0)
            .await
            .expect("list")
            .len(),
        0
    );
}

/// Lane counts by state, and the receive time of the oldest waiting delivery.
pub async fn lane_counts_by_state(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("counts");
    let la = lane(&f, "a");
    let evs: Vec<NewEvent> = (0..6).map(|i| event(&f, T0 + 10 * i, &["a"])).collect();
    let b = event(&f, T0 + 5, &["b"]);
    let done = event(&f, T0 + 1, &["c"]);
    let mut all = evs.clone();
    all.extend([b, done.clone()]);
    append_ok(store, all).await;
    let id = |i: usize| evs[i].deliveries[0].id;
    // Oldest first: 0 -> delivered, 1 -> dead, 2 -> retrying, 3 -> in flight; 4, 5 pending.
    let claimed = claim_ids(store, &la, T0 + 100, 4).await;
    assert_eq!(claimed, (0..4).map(id).collect::<Vec<_>>());
    complete_ok(
        store,
        vec![
            outcome(
                id(0),
                Some(attempt(T0, Some(200), "ok", None)),
                Next::Delivered,
            ),
            outcome(
                id(1),
                None,
                Next::Dead {
                    reason: "no".into(),
                },
            ),
            outcome(
                id(2),
                Some(attempt(T0, Some(503), "http_5xx", None)),
                Next::Retry { at: T0 + 999 },
            ),
        ],
        T0 + 101,
    )
    .await;
    claim_one(store, &lane(&f, "c"), T0 + 100, done.deliveries[0].id).await;
    complete_ok(
        store,
        vec![outcome(done.deliveries[0].id, None, Next::Delivered)],
        T0 + 101,
    )
    .await;

    let a = lane_of(store, &la).await;
    assert_eq!(
        (a.pending, a.in_flight, a.delivered, a.retrying, a.dead),
        (2, 1, 1, 1, 1)
    );
    assert_eq!(
        a.oldest_waiting_received_at,
        Some(T0 + 20),
        "the retrying one"
    );
    let b = lane_of(store, &lane(&f, "b")).await;
    assert_eq!(
        (b.pending, b.in_flight, b.delivered, b.retrying, b.dead),
        (1, 0, 0, 0, 0)
    );
    assert_eq!(b.oldest_waiting_received_at, Some(T0 + 5));
    let c = lane_of(store, &lane(&f, "c")).await;
    assert_eq!((c.pending, c.delivered), (0, 1));
    assert_eq!(c.oldest_waiting_received_at, None);
    let lanes: Vec<LaneKey> = store
        .lane_counts()
        .await
        .expect("lane counts")
        .into_iter()
        .map(|c| c.lane)
        .filter(|l| l.flow == f)
        .collect();
    assert_eq!(lanes.len(), 3, "one entry per lane: {lanes:?}");
}

/// Every in-flight delivery goes back to pending, due now, with no attempt counted.
pub async fn release_all_claims_returns_in_flight(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("release"), flow("release-other"));
    let evs: Vec<NewEvent> = (0..3).map(|i| event(&f, T0 + i, &["a"])).collect();
    let other = event(&g, T0, &["b"]);
    let done = event(&f, T0, &["c"]);
    let mut all = evs.clone();
    all.extend([other.clone(), done.clone()]);
    append_ok(store, all).await;
    assert_eq!(claim_ids(store, &lane(&f, "a"), T0 + 10, 10).await.len(), 3);
    claim_one(store, &lane(&g, "b"), T0 + 10, other.deliveries[0].id).await;
    claim_one(store, &lane(&f, "c"), T0 + 10, done.deliveries[0].id).await;
    complete_ok(
        store,
        vec![outcome(done.deliveries[0].id, None, Next::Delivered)],
        T0 + 11,
    )
    .await;

    assert_eq!(
        store.release_all_claims(T0 + 500).await.expect("release"),
        4
    );
    for id in evs.iter().chain([&other]).map(|e| e.deliveries[0].id) {
        let s = summary(store, id).await;
        assert_eq!(
            (s.state, s.next_attempt_at, s.attempts),
            (DeliveryState::Pending, Some(T0 + 500), 0)
        );
    }
    assert_eq!(
        state(store, done.deliveries[0].id).await,
        DeliveryState::Delivered
    );
    assert_eq!(
        store.release_all_claims(T0 + 600).await.expect("release"),
        0
    );
    let again = store
        .claim(&lane(&f, "a"), T0 + 500, 10, T0 + 9000)
        .await
        .expect("claim");
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|c| c.round_attempts == 0));
}

/// `next_due` is the earliest due time or lease end among waiting deliveries of the lane.
pub async fn next_due_is_earliest_waiting(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("next");
    let la = lane(&f, "a");
    assert_eq!(store.next_due(&la).await.expect("next_due"), None);
    let mut late = event(&f, T0, &["a"]);
    late.deliveries[0].due_at = T0 + 300;
    let mut early = event(&f, T0, &["a"]);
    early.deliveries[0].due_at = T0 + 100;
    let other = event(&f, T0 - 1000, &["b"]);
    append_ok(store, vec![late.clone(), early.clone(), other]).await;
    assert_eq!(store.next_due(&la).await.expect("next_due"), Some(T0 + 100));
    let c = store
        .claim(&la, T0 + 100, 1, T0 + 5000)
        .await
        .expect("claim");
    assert_eq!(c[0].id, early.deliveries[0].id);
    assert_eq!(store.next_due(&la).await.expect("next_due"), Some(T0 + 300));
    let c = store
        .claim(&la, T0 + 300, 1, T0 + 4000)
        .await
        .expect("claim");
    assert_eq!(c[0].id, late.deliveries[0].id);
    assert_eq!(
        store.next_due(&la).await.expect("next_due"),
        Some(T0 + 4000),
        "lease end"
    );
    complete_ok(
        store,
        vec![
            outcome(early.deliveries[0].id, None, Next::Delivered),
            outcome(
                late.deliveries[0].id,
                None,
                Next::Dead { reason: "x".into() },
            ),
        ],
        T0 + 301,
    )
    .await;
    assert_eq!(store.next_due(&la).await.expect("next_due"), None);
}

/// Payloads come back byte for byte: empty, non-UTF-8, 1 MiB; headers too.
pub async fn payload_bytes_round_trip(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("bytes");
    let mut big = vec![0_u8; 1024 * 1024];
    let mut x: u32 = 0x9e37_79b9;
    for b in &mut big {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x >> 24) as u8;
    }
    let payloads = [
        Bytes::new(),
        Bytes::from((0..=255_u8).rev().collect::<Vec<_>>()),
        Bytes::from_static(b"\xff\xfe\x00\x80not utf-8\xc3\x28"),
        Bytes::from(big),
    ];
    let la = lane(&f, "a");
    let mut evs = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let mut e = event(&f, T0 + i as Millis, &["a"]);
        e.payload = p.clone();
        e.headers = vec![
            ("content-type".into(), "application/octet-stream".into()),
            ("x-unicode".into(), "żółw — 🐢 \"quoted\" \\ back".into()),
            ("x-empty".into(), String::new()),
        ];
        evs.push(e);
    }
    append_ok(store, evs.clone()).await;
    for e in &evs {
        let got = store.event(e.id).await.expect("event").expect("stored");
        assert_eq!(got.payload.len(), e.payload.len());
        assert!(got.payload == e.payload, "payload of {} changed", e.id);
        assert_eq!(got.headers, e.headers);
    }
    let claimed = store
        .claim(&la, T0 + 10, 10, T0 + 9999)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), evs.len());
    for (c, e) in claimed.iter().zip(&evs) {
        assert_eq!(c.event_id, e.id);
        assert!(
            c.payload == e.payload,
            "claimed payload of {} changed",
            e.id
        );
        assert_eq!(c.headers, e.headers);
    }
}

/// `ping` answers on a healthy store.
pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    store.ping().await.expect("ping twice");
}

/// Counts stay exact through a release, a replay, and outcomes for deliveries that are no
/// longer in flight.
pub async fn lane_counts_follow_release_replay_and_stale_outcomes(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("counts-moves");
    let la = lane(&f, "a");
    let evs: Vec<NewEvent> = (0..4).map(|i| event(&f, T0 + i, &["a"])).collect();
    append_ok(store, evs.clone()).await;
    let id = |i: usize| evs[i].deliveries[0].id;
    let counts = |c: LaneCounts| (c.pending, c.in_flight, c.delivered, c.retrying, c.dead);

    assert_eq!(claim_ids(store, &la, T0 + 100, 4).await.len(), 4);
    complete_ok(
        store,
        vec![
            outcome(
                id(0),
                Some(attempt(T0, Some(200), "ok", None)),
                Next::Delivered,
            ),
            outcome(
                id(1),
                None,
                Next::Dead {
                    reason: "no".into(),
                },
            ),
        ],
        T0 + 101,
    )
    .await;
    assert_eq!(counts(lane_of(store, &la).await), (0, 2, 1, 0, 1));

    assert_eq!(
        store.release_all_claims(T0 + 102).await.expect("release"),
        2
    );
    assert_eq!(counts(lane_of(store, &la).await), (2, 0, 1, 0, 1));

    // Outcomes for deliveries that are not in flight change no state, so no count.
    complete_ok(
        store,
        vec![
            outcome(
                id(2),
                Some(attempt(T0, Some(503), "http_5xx", None)),
                Next::Dead {
                    reason: "late".into(),
                },
            ),
            outcome(
                id(0),
                Some(attempt(T0, Some(200), "ok", None)),
                Next::Delivered,
            ),
        ],
        T0 + 103,
    )
    .await;
    assert_eq!(counts(lane_of(store, &la).await), (2, 0, 1, 0, 1));

    let filter = DeliveryFilter {
        flow: Some(f.clone()),
        ..Default::default()
    };
    assert_eq!(
        store
            .replay(&filter, T0 + 104, "test")
            .await
            .expect("replay"),
        2
    );
    assert_eq!(counts(lane_of(store, &la).await), (4, 0, 0, 0, 0));
}

/// `flows` keeps the deliveries and events of any of the listed flows (an empty list: none),
/// together with every other field (`flow` too); listings page across the flows, and a
/// replay takes only the listed flows' deliveries.
pub async fn list_and_replay_by_any_of_flows(store: Arc<dyn Store>) {
    let store = &*store;
    let (a, b, c) = (flow("any-of-a"), flow("any-of-b"), flow("any-of-c"));
    // Interleaved in receive time, so a listing of a and c alternates between them; each
    // flow also has one event on a lane of its own, whose delivery dies.
    let mut evs: Vec<NewEvent> = Vec::new();
    for i in 0..4 {
        evs.push(event(&a, T0 + 10 * i, &["x", "y"]));
        evs.push(event(&b, T0 + 10 * i + 1, &["x"]));
        evs.push(event(&c, T0 + 10 * i + 2, &["x"]));
    }
    let dead: Vec<NewEvent> = [&a, &b, &c]
        .iter()
        .enumerate()
        .map(|(i, f)| event(f, T0 + 100 + i as Millis, &["dead"]))
        .collect();
    evs.extend(dead.iter().cloned());
    append_ok(store, evs.clone()).await;
    for e in &dead {
        kill(store, &lane(&e.flow, "dead"), T0 + 200, e.deliveries[0].id).await;
    }
    let any_of = |flows: &[&String]| DeliveryFilter {
        flows: Some(flows.iter().map(|f| (*f).clone()).collect()),
        ..Default::default()
    };

    // Deliveries of a and c: every one of them, oldest event first.
    let (of_a, of_c) = (
        list_all(store, &by_flow(&a)).await,
        list_all(store, &by_flow(&c)).await,
    );
    assert_eq!((of_a.len(), of_c.len()), (9, 5));
    let mut want = of_a.clone();
    want.extend(of_c.iter().cloned());
    // Stable: an event's deliveries keep their order; receive times are distinct per event.
    want.sort_by_key(|s| s.received_at);
    let a_or_c = any_of(&[&a, &c]);
    let got = list_all(store, &a_or_c).await;
    assert_eq!(ids(&got), ids(&want), "a's and c's, oldest event first");
    assert!(got.iter().all(|s| s.lane.flow == a || s.lane.flow == c));
    // The same list names a flow twice, or one that has nothing: no change.
    assert_eq!(
        ids(&list_all(store, &any_of(&[&c, &a, &c, &flow("any-of-none")])).await),
        ids(&want)
    );

    // Paging walks it once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    for round in 0.. {
        assert!(round <= want.len() / 3 + 1, "paging does not end");
        let page = store
            .list_deliveries(&a_or_c, after, 3)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|s| s.id);
        paged.extend(page);
    }
    assert_eq!(ids(&paged), ids(&want), "pages concatenate to the listing");

    // With `flow`: both hold.
    let only_a = DeliveryFilter {
        flow: Some(a.clone()),
        ..a_or_c.clone()
    };
    assert_eq!(ids(&list_all(store, &only_a).await), ids(&of_a));
    let b_not_listed = DeliveryFilter {
        flow: Some(b.clone()),
        ..a_or_c.clone()
    };
    assert!(list_all(store, &b_not_listed).await.is_empty());
    // With the other fields.
    let dead_a_or_c = DeliveryFilter {
        state: Some(DeliveryState::Dead),
        ..a_or_c.clone()
    };
    assert_eq!(
        id_set(ids(&list_all(store, &dead_a_or_c).await)),
        id_set([dead[0].deliveries[0].id, dead[2].deliveries[0].id])
    );

    // An empty list matches nothing, alone or with `flow`.
    let none = any_of(&[]);
    assert!(list_all(store, &none).await.is_empty());
    let none_of_a = DeliveryFilter {
        flow: Some(a.clone()),
        ..none.clone()
    };
    assert!(list_all(store, &none_of_a).await.is_empty());

    // Events likewise, in id order.
    let events = |flows: Option<Vec<String>>, flow: Option<String>| crate::EventFilter {
        flows,
        flow,
        ..Default::default()
    };
    let mut want_events: Vec<EventId> = evs
        .iter()
        .filter(|e| e.flow == a || e.flow == c)
        .map(|e| e.id)
        .collect();
    want_events.sort();
    let ev_a_or_c = events(Some(vec![a.clone(), c.clone()]), None);
    let listed = store
        .list_events(&ev_a_or_c, None, 1000)
        .await
        .expect("list events");
    assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), want_events);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_events(&ev_a_or_c, after, 4).await.expect("page");
        paged.extend(page.iter().map(|e| e.id));
        match page.last() {
            Some(last) if page.len() == 4 => after = Some(last.id),
            _ => break,
        }
    }
    assert_eq!(paged, want_events, "event pages concatenate to the listing");
    let mut want_a: Vec<EventId> = evs.iter().filter(|e| e.flow == a).map(|e| e.id).collect();
    want_a.sort();
    let ev_only_a = events(Some(vec![a.clone(), c.clone()]), Some(a.clone()));
    let listed_a: Vec<EventId> = store
        .list_events(&ev_only_a, None, 1000)
        .await
        .expect("list events")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed_a, want_a);
    for filter in [
        events(Some(vec![a.clone(), c.clone()]), Some(b.clone())),
        events(Some(Vec::new()), None),
        events(Some(Vec::new()), Some(a.clone())),
    ] {
        assert!(
            store
                .list_events(&filter, None, 1000)
                .await
                .expect("list events")
                .is_empty(),
            "{filter:?}"
        );
    }

    // A replay of nothing replays nothing; a replay of b's replays b's dead delivery only.
    assert_eq!(
        store.replay(&none, T0 + 300, "test").await.expect("replay"),
        0
    );
    assert_eq!(
        store
            .replay(&any_of(&[&b]), T0 + 300, "test")
            .await
            .expect("replay"),
        1
    );
    assert_eq!(
        state(store, dead[1].deliveries[0].id).await,
        DeliveryState::Pending
    );
    assert_eq!(summary(store, dead[1].deliveries[0].id).await.replays, 1);
    for e in [&dead[0], &dead[2]] {
        let s = summary(store, e.deliveries[0].id).await;
        assert_eq!((s.state, s.replays), (DeliveryState::Dead, 0), "{}", e.flow);
    }
}
