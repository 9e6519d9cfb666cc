//! Cases: appending, dedupe, id reuse, concurrency.

use super::*;

/// An appended event is readable with every field, and so are its pending deliveries.
pub async fn append_stores_event_and_deliveries(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("orders");
    let mut ev = keyed(event(&f, T0, &["crm", "erp"]), "evt-1");
    ev.headers
        .push(("traceparent".into(), "00-abc-def-01".into()));
    ev.deliveries[1].due_at = T0 + 5;
    let bare = event(&f, T0 + 1, &[]);
    let out = append_ok(store, vec![ev.clone(), bare.clone()]).await;
    assert_eq!(
        out,
        vec![AppendOutcome::Stored(ev.id), AppendOutcome::Stored(bare.id)]
    );

    let got = store
        .event(ev.id)
        .await
        .expect("event")
        .expect("event stored");
    assert_eq!(got.id, ev.id);
    assert_eq!(got.flow, ev.flow);
    assert_eq!(got.source, ev.source);
    assert_eq!(got.dedupe_key, ev.dedupe_key);
    assert_eq!(got.event_type, ev.event_type);
    assert_eq!(got.received_at, ev.received_at);
    assert_eq!(got.headers, ev.headers);
    assert_eq!(got.payload, ev.payload);
    assert!(store.event(bare.id).await.expect("event").is_some());

    for (d, due) in ev.deliveries.iter().zip([T0, T0 + 5]) {
        let detail = store
            .delivery(d.id)
            .await
            .expect("delivery")
            .expect("delivery stored");
        let s = &detail.summary;
        assert_eq!(s.id, d.id);
        assert_eq!(s.event_id, ev.id);
        assert_eq!(s.lane, lane(&f, &d.destination));
        assert_eq!(s.state, DeliveryState::Pending);
        assert_eq!(s.received_at, T0);
        assert_eq!(s.attempts, 0);
        assert_eq!(s.next_attempt_at, Some(due));
        assert_eq!(s.last_error, None);
        assert_eq!(s.replays, 0);
        assert!(detail.attempts.is_empty());
    }
    let listed = list_all(
        store,
        &DeliveryFilter {
            event_id: Some(ev.id),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        id_set(ids(&listed)),
        id_set(ev.deliveries.iter().map(|d| d.id))
    );
    assert_eq!(
        list_all(store, &by_flow(&f)).await.len(),
        2,
        "the bare event has no deliveries"
    );

    assert!(store.event(EventId::new()).await.expect("event").is_none());
    assert!(
        store
            .delivery(DeliveryId::new())
            .await
            .expect("delivery")
            .is_none()
    );
}

/// Same dedupe key in the same flow is a duplicate of the first event; other flows and
/// events without a key are never duplicates.
pub async fn dedupe_within_flow_not_across_flows(store: Arc<dyn Store>) {
    let store = &*store;
    let (fa, fb) = (flow("a"), flow("b"));
    let first = keyed(event(&fa, T0, &["crm"]), "k");
    let again = keyed(event(&fa, T0 + 1, &["crm", "erp"]), "k");
    let other_flow = keyed(event(&fb, T0 + 2, &["crm"]), "k");
    assert_eq!(
        append_ok(store, vec![first.clone()]).await,
        vec![AppendOutcome::Stored(first.id)]
    );
    assert_eq!(
        append_ok(store, vec![again.clone()]).await,
        vec![AppendOutcome::Duplicate(first.id)]
    );
    assert_eq!(
        append_ok(store, vec![other_flow.clone()]).await,
        vec![AppendOutcome::Stored(other_flow.id)]
    );
    assert!(
        store.event(again.id).await.expect("event").is_none(),
        "duplicate must not be stored"
    );
    for d in &again.deliveries {
        assert!(
            store.delivery(d.id).await.expect("delivery").is_none(),
            "duplicate's delivery stored"
        );
    }
    assert_eq!(
        ids(&list_all(store, &by_flow(&fa)).await),
        vec![first.deliveries[0].id]
    );
    assert_eq!(list_all(store, &by_flow(&fb)).await.len(), 1);

    let (n1, n2) = (event(&fa, T0 + 3, &["crm"]), event(&fa, T0 + 4, &["crm"]));
    assert_eq!(
        append_ok(store, vec![n1.clone(), n2.clone()]).await,
        vec![AppendOutcome::Stored(n1.id), AppendOutcome::Stored(n2.id)]
    );
    assert_eq!(list_all(store, &by_flow(&fa)).await.len(), 3);
}

/// Duplicates within one `append` call dedupe against the earlier event of the same call.
pub async fn dedupe_inside_one_append_call(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("batch");
    let e1 = keyed(event(&f, T0, &["crm"]), "k1");
    let e2 = keyed(event(&f, T0 + 1, &["crm"]), "k1");
    let e3 = keyed(event(&f, T0 + 2, &["crm"]), "k2");
    let out = append_ok(store, vec![e1.clone(), e2.clone(), e3.clone()]).await;
    assert_eq!(
        out,
        vec![
            AppendOutcome::Stored(e1.id),
            AppendOutcome::Duplicate(e1.id),
            AppendOutcome::Stored(e3.id)
        ]
    );
    assert!(store.event(e2.id).await.expect("event").is_none());
    let listed = list_all(store, &by_flow(&f)).await;
    assert_eq!(ids(&listed), vec![e1.deliveries[0].id, e3.deliveries[0].id]);
}

/// Reusing a delivery or event id is `Invalid`, and nothing of that call is stored.
pub async fn append_rejects_reused_ids_atomically(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("ids");
    let first = event(&f, T0, &["crm"]);
    append_ok(store, vec![first.clone()]).await;

    let innocent = event(&f, T0 + 1, &["crm"]);
    let mut reuse = event(&f, T0 + 2, &["erp"]);
    reuse.deliveries[0].id = first.deliveries[0].id;
    let err = store.append(vec![innocent.clone(), reuse.clone()]).await;
    assert!(
        matches!(err, Err(StoreError::Invalid(_))),
        "reused delivery id: {err:?}"
    );
    assert!(
        store.event(innocent.id).await.expect("event").is_none(),
        "call must be atomic"
    );
    assert!(store.event(reuse.id).await.expect("event").is_none());

    let mut twice = event(&f, T0 + 3, &["crm", "erp"]);
    twice.deliveries[1].id = twice.deliveries[0].id;
    let err = store.append(vec![twice.clone()]).await;
    assert!(
        matches!(err, Err(StoreError::Invalid(_))),
        "delivery id twice in one event: {err:?}"
    );
    assert!(store.event(twice.id).await.expect("event").is_none());

    let mut same_event = event(&f, T0 + 4, &["erp"]);
    same_event.id = first.id;
    let err = store.append(vec![same_event.clone()]).await;
    assert!(
        matches!(err, Err(StoreError::Invalid(_))),
        "reused event id: {err:?}"
    );
    assert!(
        store
            .delivery(same_event.deliveries[0].id)
            .await
            .expect("delivery")
            .is_none()
    );

    assert_eq!(
        ids(&list_all(store, &by_flow(&f)).await),
        vec![first.deliveries[0].id]
    );
    assert_eq!(
        summary(store, first.deliveries[0].id)
            .await
            .lane
            .destination,
        "crm"
    );
}

/// 200 tasks appending at once: every event and delivery is stored.
pub async fn concurrent_appends_all_stored(store: Arc<dyn Store>) {
    let f = flow("burst");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200_i64 {
        let store = Arc::clone(&store);
        let f = f.clone();
        tasks.spawn(async move {
            let a = keyed(event(&f, T0 + i, &["crm"]), &format!("k{i}"));
            let b = event(&f, T0 + i, &["crm"]);
            let out = store
                .append(vec![a.clone(), b.clone()])
                .await
                .expect("append");
            assert_eq!(
                out,
                vec![AppendOutcome::Stored(a.id), AppendOutcome::Stored(b.id)]
            );
            vec![a.id, b.id]
        });
    }
    let mut events = Vec::new();
    while let Some(res) = tasks.join_next().await {
        events.extend(res.expect("append task"));
    }
    assert_eq!(events.len(), 400);
    for id in &events {
        assert!(
            store.event(*id).await.expect("event").is_some(),
            "event {id} lost"
        );
    }
    let listed = list_all(&*store, &by_flow(&f)).await;
    assert_eq!(listed.len(), 400);
    assert_eq!(id_set(ids(&listed)).len(), 400);
    let counts = lane_of(&*store, &lane(&f, "crm")).await;
    assert_eq!(counts.pending, 400);
}

/// `append_then` runs its work once the append is committed, with the outcomes, even when
/// the caller stopped waiting right after asking; a failed append never runs it.
pub async fn append_then_runs_at_commit_even_if_abandoned(store: Arc<dyn Store>) {
    let f = flow("then");
    let ev = keyed(event(&f, T0, &["crm"]), "then-1");
    let (tx, rx) = std::sync::mpsc::channel();
    let on_commit: crate::OnCommit = Box::new(move |outcome| {
        let _ = tx.send(outcome.to_vec());
    });
    // Polled once (the append is asked for), then dropped: the caller is gone.
    let mut asked = Arc::clone(&store).append_then(vec![ev.clone()], on_commit);
    std::future::poll_fn(|cx| {
        let _ = asked.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
    drop(asked);
    let ran =
        tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(30)))
            .await
            .expect("join");
    assert_eq!(ran, Ok(vec![AppendOutcome::Stored(ev.id)]));
    assert!(store.event(ev.id).await.expect("event").is_some());

    // Run with the outcomes, and before the answer: a re-send is a duplicate.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = Arc::clone(&store)
        .append_then(
            vec![ev.clone()],
            Box::new(move |outcome| {
                let _ = tx.send(outcome.to_vec());
            }),
        )
        .await
        .expect("append");
    assert_eq!(out, vec![AppendOutcome::Duplicate(ev.id)]);
    assert_eq!(rx.try_recv(), Ok(out));

    // A failed append: nothing runs, and the work is dropped by the time it answers.
    let mut reuse = event(&f, T0 + 1, &["erp"]);
    reuse.deliveries[0].id = ev.deliveries[0].id;
    let (tx, rx) = std::sync::mpsc::channel::<Vec<AppendOutcome>>();
    let err = Arc::clone(&store)
        .append_then(
            vec![reuse],
            Box::new(move |outcome| {
                let _ = tx.send(outcome.to_vec());
            }),
        )
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    assert_eq!(
        rx.try_recv(),
        Err(std::sync::mpsc::TryRecvError::Disconnected)
    );
}
