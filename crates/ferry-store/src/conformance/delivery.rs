//! Cases: claims, leases, outcomes, retries and the delivered state.

use super::*;

/// Claims take only due deliveries of the lane, oldest due first, up to the limit, and mark
/// them in flight with the lease; they carry everything a connector needs.
pub async fn claim_returns_due_oldest_first_within_limit(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("claims"), flow("other"));
    let mut evs: Vec<NewEvent> = [30, 10, 20, 1000]
        .iter()
        .map(|&due| {
            let mut e = event(&f, T0, &["a"]);
            e.deliveries[0].due_at = T0 + due;
            e
        })
        .collect();
    evs[1].headers.push(("x-trace".into(), "t1".into()));
    evs.push(event(&f, T0, &["b"]));
    evs.push(event(&g, T0, &["a"]));
    append_ok(store, evs.clone()).await;
    let la = lane(&f, "a");
    let now = T0 + 100;

    assert!(
        store
            .claim(&la, now, 0, now + LEASE)
            .await
            .expect("claim")
            .is_empty()
    );
    let first = store.claim(&la, now, 2, now + LEASE).await.expect("claim");
    assert_eq!(
        first.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![evs[1].deliveries[0].id, evs[2].deliveries[0].id],
        "oldest due first, limited"
    );
    let c = &first[0];
    assert_eq!(c.event_id, evs[1].id);
    assert_eq!(c.lane, la);
    assert_eq!(c.event_type, evs[1].event_type);
    assert_eq!(c.received_at, T0);
    assert_eq!(c.headers, evs[1].headers);
    assert_eq!(c.payload, evs[1].payload);
    assert_eq!(
        (c.attempts, c.round_attempts, c.round_started_at),
        (0, 0, T0)
    );
    for c in &first {
        let s = summary(store, c.id).await;
        assert_eq!(s.state, DeliveryState::InFlight);
        assert_eq!(s.next_attempt_at, Some(now + LEASE));
    }

    assert_eq!(
        claim_ids(store, &la, now, 10).await,
        vec![evs[0].deliveries[0].id]
    );
    assert!(
        claim_ids(store, &la, now, 10).await.is_empty(),
        "future delivery is not due"
    );
    assert_eq!(
        state(store, evs[3].deliveries[0].id).await,
        DeliveryState::Pending
    );
    assert_eq!(
        state(store, evs[4].deliveries[0].id).await,
        DeliveryState::Pending,
        "other lane"
    );
    assert_eq!(
        state(store, evs[5].deliveries[0].id).await,
        DeliveryState::Pending,
        "other flow"
    );
    assert_eq!(
        claim_ids(store, &la, T0 + 1000, 10).await,
        vec![evs[3].deliveries[0].id]
    );
}

/// A claimed delivery is not claimed again before its lease ends, but is afterwards.
pub async fn claim_respects_lease(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("lease");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let la = lane(&f, "a");
    let id = ev.deliveries[0].id;
    let got = store.claim(&la, T0, 10, T0 + 1000).await.expect("claim");
    assert_eq!(got.len(), 1);
    assert!(
        store
            .claim(&la, T0, 10, T0 + 1000)
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(
        store
            .claim(&la, T0 + 999, 10, T0 + 5000)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store
        .claim(&la, T0 + 1000, 10, T0 + 9000)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![id],
        "expired lease"
    );
    let s = summary(store, id).await;
    assert_eq!(
        (s.state, s.next_attempt_at),
        (DeliveryState::InFlight, Some(T0 + 9000))
    );
}

/// An outcome of a claim whose lease ended and was taken over does not undo the newer
/// claim: the old claim's release, retry or dead-lettering leaves the delivery in flight
/// under the new lease (its attempt is still recorded); the new claim's outcome settles it.
pub async fn stale_claim_outcome_does_not_undo_a_newer_claim(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("stale-claim");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let la = lane(&f, "a");
    let id = ev.deliveries[0].id;
    let first = T0 + 1000;
    assert_eq!(
        store.claim(&la, T0, 10, first).await.expect("claim").len(),
        1
    );
    let second = T0 + 9000;
    assert_eq!(
        store
            .claim(&la, first, 10, second)
            .await
            .expect("claim")
            .len(),
        1,
        "claimed again once the first lease ended"
    );
    let stale = |next: Next, attempt: Option<Attempt>| DeliveryOutcome {
        claim: Some(first),
        ..outcome(id, attempt, next)
    };
    let failed = Attempt {
        started_at: first - 10,
        latency_ms: 5,
        status: Some(500),
        error_class: Some("http_5xx".into()),
        error: None,
        response_excerpt: None,
    };
    store
        .complete(
            vec![
                stale(Next::Release { at: first + 1 }, None),
                stale(Next::Retry { at: first + 2 }, Some(failed)),
                stale(
                    Next::Dead {
                        reason: "old".into(),
                    },
                    None,
                ),
            ],
            first + 3,
        )
        .await
        .expect("complete");
    let s = summary(store, id).await;
    assert_eq!(
        (s.state, s.next_attempt_at),
        (DeliveryState::InFlight, Some(second)),
        "the newer claim still holds the delivery"
    );
    assert_eq!(s.attempts, 1, "the old claim's attempt is recorded");
    let current = DeliveryOutcome {
        claim: Some(second),
        ..outcome(id, None, Next::Release { at: first + 10 })
    };
    store
        .complete(vec![current], first + 10)
        .await
        .expect("complete");
    assert_eq!(summary(store, id).await.state, DeliveryState::Pending);
}

/// A delivery claimed in its append is stored in flight with its lease, counted in flight,
/// not claimable until the lease ends, and its outcome completes it like a claimed one. An
/// ordered delivery cannot be claimed in its append, and the refusal stores nothing.
pub async fn append_can_claim_for_the_lane(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("fresh");
    let mut ev = event(&f, T0, &["a", "b"]);
    ev.deliveries[0].claimed_until = Some(T0 + 1000);
    append_ok(store, vec![ev.clone()]).await;
    let (la, lb) = (lane(&f, "a"), lane(&f, "b"));
    let fresh = ev.deliveries[0].id;
    let s = summary(store, fresh).await;
    assert_eq!(
        (s.state, s.next_attempt_at, s.attempts),
        (DeliveryState::InFlight, Some(T0 + 1000), 0)
    );
    assert_eq!(
        state(store, ev.deliveries[1].id).await,
        DeliveryState::Pending
    );
    let counts = lane_of(store, &la).await;
    assert_eq!((counts.pending, counts.in_flight), (0, 1));
    assert!(
        claim_ids(store, &la, T0 + 999, 10).await.is_empty(),
        "claimed in the append: not claimable while its lease lasts"
    );
    assert_eq!(
        claim_ids(store, &lb, T0, 10).await,
        vec![ev.deliveries[1].id],
        "the other lane's delivery is pending as usual"
    );
    store
        .complete(
            vec![outcome(
                fresh,
                Some(attempt(T0 + 5, Some(200), "delivered", None)),
                Next::Delivered,
            )],
            T0 + 10,
        )
        .await
        .expect("complete");
    let s = summary(store, fresh).await;
    assert_eq!((s.state, s.attempts), (DeliveryState::Delivered, 1));
    let counts = lane_of(store, &la).await;
    assert_eq!((counts.in_flight, counts.delivered), (0, 1));

    // Not for ordered deliveries: refused, nothing stored.
    let mut bad = ordered(event(&f, T0, &["a"]), "k");
    bad.deliveries[0].claimed_until = Some(T0 + 1000);
    let err = store.append(vec![bad.clone()]).await.expect_err("refused");
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(
        store
            .delivery(bad.deliveries[0].id)
            .await
            .expect("read")
            .is_none()
    );
}

/// Delivered, Retry, Dead and Release move in-flight deliveries and record attempts with
/// every field; counters follow.
pub async fn complete_records_outcomes(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("outcomes");
    let ev = event(&f, T0, &["a", "b", "c", "d", "e"]);
    append_ok(store, vec![ev.clone()]).await;
    let d: Vec<DeliveryId> = ev.deliveries.iter().map(|x| x.id).collect();
    for (i, dest) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        claim_one(store, &lane(&f, dest), T0 + 10, d[i]).await;
    }
    let ok = Attempt {
        started_at: T0 + 11,
        latency_ms: 12,
        status: Some(200),
        error_class: Some("ok".into()),
        error: None,
        response_excerpt: Some("{\"ok\":true}".into()),
    };
    let busy = attempt(
        T0 + 12,
        Some(503),
        "http_5xx",
        Some("HTTP 503 Service Unavailable"),
    );
    let bad = attempt(T0 + 13, Some(400), "http_4xx", Some("HTTP 400 Bad Request"));
    let timeout = Attempt {
        started_at: T0 + 14,
        latency_ms: 30_000,
        status: None,
        error_class: Some("timeout".into()),
        error: Some("timed out after 30s".into()),
        response_excerpt: None,
    };
    let now = T0 + 200;
    complete_ok(
        store,
        vec![
            outcome(d[0], Some(ok.clone()), Next::Delivered),
            outcome(d[1], Some(busy.clone()), Next::Retry { at: T0 + 5000 }),
            outcome(
                d[2],
                Some(bad.clone()),
                Next::Dead {
                    reason: "permanent: HTTP 400".into(),
                },
            ),
            outcome(d[3], None, Next::Release { at: T0 + 7000 }),
            outcome(d[4], Some(timeout.clone()), Next::Retry { at: T0 + 6000 }),
        ],
        now,
    )
    .await;

    let detail = |id| async move { store.delivery(id).await.expect("delivery").expect("exists") };
    let a = detail(d[0]).await;
    assert_eq!(a.summary.state, DeliveryState::Delivered);
    assert_eq!((a.summary.attempts, a.summary.next_attempt_at), (1, None));
    assert_eq!(a.summary.updated_at, now);
    assert_eq!(a.attempts, vec![ok]);

    let b = detail(d[1]).await;
    assert_eq!(b.summary.state, DeliveryState::Retrying);
    assert_eq!(b.summary.next_attempt_at, Some(T0 + 5000));
    assert_eq!(
        b.summary.last_error.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
    assert_eq!((b.summary.attempts, b.attempts.clone()), (1, vec![busy]));

    let c = detail(d[2]).await;
    assert_eq!(c.summary.state, DeliveryState::Dead);
    assert_eq!(c.summary.next_attempt_at, None);
    assert_eq!(c.summary.last_error.as_deref(), Some("permanent: HTTP 400"));
    assert_eq!(c.attempts, vec![bad]);

    let r = detail(d[3]).await;
    assert_eq!(r.summary.state, DeliveryState::Pending);
    assert_eq!(
        (r.summary.next_attempt_at, r.summary.attempts),
        (Some(T0 + 7000), 0)
    );
    assert!(r.attempts.is_empty());

    let t = detail(d[4]).await;
    assert_eq!(t.attempts, vec![timeout]);
    assert_eq!(t.summary.last_error.as_deref(), Some("timed out after 30s"));

    let retried = claim_one(store, &lane(&f, "b"), T0 + 5000, d[1]).await;
    assert_eq!(
        (
            retried.attempts,
            retried.round_attempts,
            retried.round_started_at
        ),
        (1, 1, T0)
    );
    let released = claim_one(store, &lane(&f, "d"), T0 + 7000, d[3]).await;
    assert_eq!(
        (released.attempts, released.round_attempts),
        (0, 0),
        "release counts no attempt"
    );

    // A second attempt is appended after the first, oldest first.
    let again = attempt(T0 + 5001, Some(200), "ok", None);
    complete_ok(
        store,
        vec![outcome(d[1], Some(again.clone()), Next::Delivered)],
        T0 + 5002,
    )
    .await;
    let b = detail(d[1]).await;
    assert_eq!(b.summary.state, DeliveryState::Delivered);
    assert_eq!(b.summary.attempts, 2);
    assert_eq!(b.attempts[1], again);
}

/// A retrying delivery is claimable exactly from its retry time.
pub async fn retry_claimable_only_at_its_time(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("retry");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let (la, id) = (lane(&f, "a"), ev.deliveries[0].id);
    claim_one(store, &la, T0, id).await;
    let a = attempt(T0, Some(500), "http_5xx", Some("boom"));
    complete_ok(
        store,
        vec![outcome(id, Some(a), Next::Retry { at: T0 + 5000 })],
        T0 + 1,
    )
    .await;
    assert!(claim_ids(store, &la, T0 + 1, 10).await.is_empty());
    assert!(claim_ids(store, &la, T0 + 4999, 10).await.is_empty());
    assert_eq!(
        store.next_due(&la).await.expect("next_due"),
        Some(T0 + 5000)
    );
    let c = claim_one(store, &la, T0 + 5000, id).await;
    assert_eq!((c.attempts, c.round_attempts), (1, 1));
}

/// A release for later puts a delivery back without spending an attempt (how the hub
/// reschedules a call that failed on its own host, e.g. out of file descriptors): its round
/// (attempt counts, start) is kept, it is not claimable before the given time, and
/// `next_due` reports that time.
pub async fn release_for_later_keeps_the_round(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("release-later");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let (la, id) = (lane(&f, "a"), ev.deliveries[0].id);
    // One attempt spent: retrying.
    claim_one(store, &la, T0, id).await;
    let busy = attempt(T0, Some(503), "http_5xx", Some("busy"));
    complete_ok(
        store,
        vec![outcome(
            id,
            Some(busy.clone()),
            Next::Retry { at: T0 + 100 },
        )],
        T0 + 1,
    )
    .await;
    // Claimed again and put back for later without an attempt, twice over.
    for (claim_at, back_at) in [(T0 + 100, T0 + 2_000), (T0 + 2_000, T0 + 3_500)] {
        let c = claim_one(store, &la, claim_at, id).await;
        assert_eq!(
            (c.attempts, c.round_attempts, c.round_started_at),
            (1, 1, T0)
        );
        complete_ok(
            store,
            vec![outcome(id, None, Next::Release { at: back_at })],
            claim_at + 1,
        )
        .await;
        assert!(
            claim_ids(store, &la, back_at - 1, 10).await.is_empty(),
            "claimable before its time"
        );
        assert_eq!(store.next_due(&la).await.expect("next_due"), Some(back_at));
        let s = summary(store, id).await;
        assert_eq!(
            (s.state, s.attempts, s.next_attempt_at),
            (DeliveryState::Pending, 1, Some(back_at))
        );
    }
    let c = claim_one(store, &la, T0 + 3_500, id).await;
    assert_eq!(
        (c.attempts, c.round_attempts, c.round_started_at),
        (1, 1, T0),
        "releases spend nothing of the round"
    );
    let detail = store.delivery(id).await.expect("read").expect("exists");
    assert_eq!(detail.attempts, vec![busy], "a release records no attempt");
}

/// Outcomes for deliveries that are not in flight keep their attempt but change no state;
/// outcomes for unknown deliveries are ignored.
pub async fn complete_on_non_in_flight_keeps_state(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("stale");
    let ev = event(&f, T0, &["a", "b"]);
    append_ok(store, vec![ev.clone()]).await;
    let (pending, dead) = (ev.deliveries[0].id, ev.deliveries[1].id);
    kill(store, &lane(&f, "b"), T0, dead).await;

    let a = attempt(T0 + 1, Some(200), "ok", None);
    complete_ok(
        store,
        vec![
            outcome(pending, Some(a.clone()), Next::Delivered),
            outcome(dead, Some(a.clone()), Next::Retry { at: T0 + 10 }),
            outcome(dead, None, Next::Release { at: T0 + 10 }),
            outcome(DeliveryId::new(), Some(a.clone()), Next::Delivered),
        ],
        T0 + 2,
    )
    .await;
    let p = store
        .delivery(pending)
        .await
        .expect("delivery")
        .expect("exists");
    assert_eq!(p.summary.state, DeliveryState::Pending);
    assert_eq!(p.summary.next_attempt_at, Some(T0));
    assert_eq!(p.attempts, vec![a.clone()], "the attempt is kept");
    assert_eq!(p.summary.attempts, 1);
    let d = store
        .delivery(dead)
        .await
        .expect("delivery")
        .expect("exists");
    assert_eq!(d.summary.state, DeliveryState::Dead);
    assert_eq!(d.summary.last_error.as_deref(), Some("HTTP 400"));
    assert_eq!(d.attempts.len(), 2);
    let c = claim_one(store, &lane(&f, "a"), T0 + 3, pending).await;
    assert_eq!(
        c.round_attempts, 0,
        "a stale attempt does not count in the round"
    );
}

/// Nothing but a replay moves a delivery out of `delivered`.
pub async fn delivered_leaves_only_by_replay(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("done");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let (la, id) = (lane(&f, "a"), ev.deliveries[0].id);
    claim_one(store, &la, T0, id).await;
    complete_ok(
        store,
        vec![outcome(
            id,
            Some(attempt(T0, Some(200), "ok", None)),
            Next::Delivered,
        )],
        T0 + 1,
    )
    .await;

    let a = attempt(T0 + 2, Some(500), "http_5xx", Some("late"));
    for next in [
        Next::Retry { at: T0 + 3 },
        Next::Dead {
            reason: "late".into(),
        },
        Next::Release { at: T0 + 3 },
        Next::Delivered,
    ] {
        complete_ok(store, vec![outcome(id, Some(a.clone()), next)], T0 + 2).await;
        assert_eq!(state(store, id).await, DeliveryState::Delivered);
    }
    store.release_all_claims(T0 + 4).await.expect("release");
    assert_eq!(state(store, id).await, DeliveryState::Delivered);
    assert!(
        claim_ids(store, &la, T0 + 1_000_000_000, 10)
            .await
            .is_empty()
    );
    assert_eq!(store.next_due(&la).await.expect("next_due"), None);
    let n = store
        .replay(
            &DeliveryFilter {
                delivery_id: Some(id),
                ..Default::default()
            },
            T0 + 10,
            "test",
        )
        .await
        .expect("replay");
    assert_eq!(n, 1);
    let s = summary(store, id).await;
    assert_eq!(
        (s.state, s.next_attempt_at, s.replays),
        (DeliveryState::Pending, Some(T0 + 10), 1)
    );
}
