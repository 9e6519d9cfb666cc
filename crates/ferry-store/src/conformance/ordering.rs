//! Cases: per-key ordering of deliveries (`NewDelivery::order_key`).

use super::*;

/// Deliveries of one key go out one at a time, in append order (not due order, not receive
/// time: all share one millisecond here), even with a large limit; a lease expiry, a release
/// or a restart gives the turn back to the same delivery. Held-back deliveries stay pending
/// and do not count for `next_due`.
pub async fn order_key_claims_one_at_a_time_in_append_order(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("order");
    let la = lane(&f, "a");
    // Received in the same millisecond; the first appended is due last.
    let evs: Vec<NewEvent> = (0..3)
        .map(|i| {
            let mut e = ordered(event(&f, T0, &["a"]), "customer-1");
            e.deliveries[0].due_at = T0 + 30 - 10 * i;
            e
        })
        .collect();
    append_ok(store, evs[..2].to_vec()).await;
    append_ok(store, evs[2..].to_vec()).await;
    let id = |i: usize| evs[i].deliveries[0].id;

    assert!(
        claim_ids(store, &la, T0 + 20, 10).await.is_empty(),
        "later deliveries wait for the head, due or not"
    );
    assert_eq!(store.next_due(&la).await.expect("next_due"), Some(T0 + 30));
    assert_eq!(claim_ids(store, &la, T0 + 30, 10).await, vec![id(0)]);
    assert!(
        claim_ids(store, &la, T0 + 31, 10).await.is_empty(),
        "one in flight per key"
    );
    assert_eq!(state(store, id(1)).await, DeliveryState::Pending);
    assert_eq!(
        store.next_due(&la).await.expect("next_due"),
        Some(T0 + 30 + LEASE),
        "the head's lease end, not the held-back deliveries' due times"
    );
    // An expired lease gives the head back, not the next one.
    let now = T0 + 30 + LEASE;
    assert_eq!(claim_ids(store, &la, now, 10).await, vec![id(0)]);
    complete_ok(store, vec![outcome(id(0), None, Next::Delivered)], now).await;

    assert_eq!(claim_ids(store, &la, now, 10).await, vec![id(1)]);
    complete_ok(
        store,
        vec![outcome(id(1), None, Next::Release { at: now })],
        now,
    )
    .await;
    assert_eq!(claim_ids(store, &la, now, 10).await, vec![id(1)]);
    assert_eq!(store.release_all_claims(now).await.expect("release"), 1);
    assert_eq!(claim_ids(store, &la, now, 10).await, vec![id(1)]);
    complete_ok(store, vec![outcome(id(1), None, Next::Delivered)], now).await;

    assert_eq!(claim_ids(store, &la, now, 10).await, vec![id(2)]);
    complete_ok(store, vec![outcome(id(2), None, Next::Delivered)], now).await;
    assert!(claim_ids(store, &la, now, 10).await.is_empty());
    assert_eq!(store.next_due(&la).await.expect("next_due"), None);
}

/// A retrying head holds back its own key only: other keys and deliveries without a key
/// keep flowing, and the key resumes when its head is delivered.
pub async fn order_key_retrying_head_holds_only_its_key(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("order-retry");
    let la = lane(&f, "a");
    let a1 = ordered(event(&f, T0, &["a"]), "A");
    let b1 = ordered(event(&f, T0, &["a"]), "B");
    let a2 = ordered(event(&f, T0, &["a"]), "A");
    let b2 = ordered(event(&f, T0, &["a"]), "B");
    let n1 = event(&f, T0, &["a"]);
    append_ok(
        store,
        vec![a1.clone(), b1.clone(), a2.clone(), b2.clone(), n1.clone()],
    )
    .await;
    let id = |e: &NewEvent| e.deliveries[0].id;

    assert_eq!(
        claim_ids(store, &la, T0, 10).await,
        vec![id(&a1), id(&b1), id(&n1)],
        "the head of each key, and the unordered one"
    );
    let busy = attempt(T0, Some(503), "http_5xx", Some("busy"));
    complete_ok(
        store,
        vec![
            outcome(id(&a1), Some(busy), Next::Retry { at: T0 + 5000 }),
            outcome(id(&b1), None, Next::Delivered),
            outcome(id(&n1), None, Next::Delivered),
        ],
        T0 + 1,
    )
    .await;
    assert_eq!(claim_ids(store, &la, T0 + 2, 10).await, vec![id(&b2)]);
    complete_ok(store, vec![outcome(id(&b2), None, Next::Delivered)], T0 + 3).await;
    assert!(claim_ids(store, &la, T0 + 4, 10).await.is_empty());
    assert_eq!(state(store, id(&a2)).await, DeliveryState::Pending);
    assert_eq!(
        store.next_due(&la).await.expect("next_due"),
        Some(T0 + 5000)
    );

    assert_eq!(claim_ids(store, &la, T0 + 5000, 10).await, vec![id(&a1)]);
    complete_ok(
        store,
        vec![outcome(id(&a1), None, Next::Delivered)],
        T0 + 5001,
    )
    .await;
    assert_eq!(claim_ids(store, &la, T0 + 5001, 10).await, vec![id(&a2)]);
}

/// A dead head lets the next delivery of its key go; settled (delivered or dead) deliveries
/// hold nothing back, including deliveries appended later.
pub async fn order_key_dead_head_releases_the_next(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("order-dead");
    let la = lane(&f, "a");
    let evs: Vec<NewEvent> = (0..3)
        .map(|i| ordered(event(&f, T0 + i, &["a"]), "K"))
        .collect();
    append_ok(store, evs.clone()).await;
    let id = |i: usize| evs[i].deliveries[0].id;

    kill(store, &la, T0 + 10, id(0)).await;
    assert_eq!(claim_ids(store, &la, T0 + 11, 10).await, vec![id(1)]);
    complete_ok(
        store,
        vec![outcome(
            id(1),
            None,
            Next::Dead {
                reason: "gone".into(),
            },
        )],
        T0 + 12,
    )
    .await;
    assert_eq!(claim_ids(store, &la, T0 + 13, 10).await, vec![id(2)]);
    complete_ok(store, vec![outcome(id(2), None, Next::Delivered)], T0 + 14).await;

    let late = ordered(event(&f, T0 + 20, &["a"]), "K");
    append_ok(store, vec![late.clone()]).await;
    assert_eq!(
        claim_ids(store, &la, T0 + 20, 10).await,
        vec![late.deliveries[0].id]
    );
}

/// Deliveries without a key are claimed as before, beside keyed ones, up to the limit.
pub async fn order_key_leaves_unordered_deliveries_alone(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("order-mixed");
    let la = lane(&f, "a");
    let k1 = ordered(event(&f, T0, &["a"]), "K");
    let n1 = event(&f, T0, &["a"]);
    let k2 = ordered(event(&f, T0, &["a"]), "K");
    let n2 = event(&f, T0, &["a"]);
    let n3 = event(&f, T0, &["a"]);
    append_ok(
        store,
        vec![k1.clone(), n1.clone(), k2.clone(), n2.clone(), n3.clone()],
    )
    .await;
    let id = |e: &NewEvent| e.deliveries[0].id;
    assert_eq!(
        claim_ids(store, &la, T0, 3).await,
        vec![id(&k1), id(&n1), id(&n2)],
        "the held-back one takes no place in the limit"
    );
    assert_eq!(claim_ids(store, &la, T0, 10).await, vec![id(&n3)]);
    // Unordered deliveries are never held back, even behind each other.
    let unordered: Vec<NewEvent> = (0..4).map(|i| event(&f, T0 + i, &["b"])).collect();
    append_ok(store, unordered.clone()).await;
    assert_eq!(
        claim_ids(store, &lane(&f, "b"), T0 + 10, 10).await,
        unordered.iter().map(id).collect::<Vec<_>>()
    );
}

/// The same key value in different lanes (other destination, other flow) is independent,
/// including the deliveries of one event fanning out to several destinations.
pub async fn order_keys_are_per_lane(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("order-lanes"), flow("order-lanes-other"));
    let e1 = ordered(event(&f, T0, &["a", "b"]), "same");
    let e2 = ordered(event(&f, T0 + 1, &["a", "b"]), "same");
    let e3 = ordered(event(&g, T0, &["a"]), "same");
    append_ok(store, vec![e1.clone(), e2.clone(), e3.clone()]).await;
    let now = T0 + 10;
    assert_eq!(
        claim_ids(store, &lane(&f, "a"), now, 10).await,
        vec![e1.deliveries[0].id]
    );
    assert_eq!(
        claim_ids(store, &lane(&f, "b"), now, 10).await,
        vec![e1.deliveries[1].id]
    );
    assert_eq!(
        claim_ids(store, &lane(&g, "a"), now, 10).await,
        vec![e3.deliveries[0].id]
    );
    complete_ok(
        store,
        vec![outcome(e1.deliveries[0].id, None, Next::Delivered)],
        now,
    )
    .await;
    assert_eq!(
        claim_ids(store, &lane(&f, "a"), now, 10).await,
        vec![e2.deliveries[0].id]
    );
    assert!(
        claim_ids(store, &lane(&f, "b"), now, 10).await.is_empty(),
        "lane b's head is still in flight"
    );
}

/// A replayed delivery rejoins its key in append order: it holds back the later waiting
/// deliveries of its key again (also one that was already the head), not the earlier ones.
pub async fn order_key_replay_holds_later_deliveries_again(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("order-replay");
    let la = lane(&f, "a");
    let evs: Vec<NewEvent> = (0..3)
        .map(|i| ordered(event(&f, T0 + i, &["a"]), "K"))
        .collect();
    append_ok(store, evs.clone()).await;
    let id = |i: usize| evs[i].deliveries[0].id;
    let by_id = |id| DeliveryFilter {
        delivery_id: Some(id),
        ..Default::default()
    };

    assert_eq!(claim_ids(store, &la, T0 + 10, 10).await, vec![id(0)]);
    complete_ok(store, vec![outcome(id(0), None, Next::Delivered)], T0 + 11).await;
    assert_eq!(claim_ids(store, &la, T0 + 12, 10).await, vec![id(1)]);
    // 0 comes back while 1 is in flight: 0 goes first again, 2 waits for both.
    assert_eq!(
        store
            .replay(&by_id(id(0)), T0 + 13, "test")
            .await
            .expect("replay"),
        1
    );
    assert_eq!(claim_ids(store, &la, T0 + 14, 10).await, vec![id(0)]);
    complete_ok(store, vec![outcome(id(1), None, Next::Delivered)], T0 + 15).await;
    assert!(claim_ids(store, &la, T0 + 16, 10).await.is_empty());
    complete_ok(store, vec![outcome(id(0), None, Next::Delivered)], T0 + 17).await;
    assert_eq!(claim_ids(store, &la, T0 + 18, 10).await, vec![id(2)]);
    complete_ok(
        store,
        vec![outcome(
            id(2),
            None,
            Next::Dead {
                reason: "gone".into(),
            },
        )],
        T0 + 19,
    )
    .await;

    // A newer delivery is the head; replaying the older dead one puts it back in front.
    let late = ordered(event(&f, T0 + 20, &["a"]), "K");
    append_ok(store, vec![late.clone()]).await;
    let dead = DeliveryFilter {
        flow: Some(f.clone()),
        state: Some(DeliveryState::Dead),
        ..Default::default()
    };
    assert_eq!(
        store.replay(&dead, T0 + 21, "test").await.expect("replay"),
        1
    );
    assert_eq!(claim_ids(store, &la, T0 + 22, 10).await, vec![id(2)]);
    complete_ok(store, vec![outcome(id(2), None, Next::Delivered)], T0 + 23).await;
    assert_eq!(
        claim_ids(store, &la, T0 + 24, 10).await,
        vec![late.deliveries[0].id]
    );
}
