//! Cases: finding events and deliveries by the sender's id, deliveries by their attempts
//! (how many, which error class, which HTTP status), and replays kept in a delivery's
//! history.

use super::*;
use crate::{EventFilter, HistoryEntry, StatusRange};

/// A sender id no other case uses (the suite may share one database).
fn sender(name: &str) -> String {
    format!("{name}_{}", uuid::Uuid::now_v7().simple())
}

async fn events_of(store: &dyn Store, filter: &EventFilter) -> Vec<EventId> {
    store
        .list_events(filter, None, 1000)
        .await
        .expect("list events")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

pub async fn list_events_by_sender_id(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, g) = (flow("senders"), flow("senders-other"));
    let id = sender("evt_1Q0");
    // The id itself in two flows, a split's elements, a pulled record's version; and keys
    // that only look alike (a longer id, an id with a prefix, a bare `#`).
    let matching = [
        keyed(event(&f, T0 + 1, &["a"]), &id),
        keyed(event(&g, T0 + 2, &["a"]), &id),
        keyed(event(&f, T0 + 3, &["a"]), &format!("{id}#0")),
        keyed(event(&f, T0 + 4, &["a"]), &format!("{id}#1")),
        keyed(
            event(&f, T0 + 5, &["a"]),
            &format!("{id}@2026-01-01T00:00:00Z"),
        ),
    ];
    let others = [
        keyed(event(&f, T0 + 6, &["a"]), &format!("{id}X")),
        keyed(event(&f, T0 + 7, &["a"]), &format!("x{id}")),
        keyed(event(&f, T0 + 8, &["a"]), &format!("{id}#")),
        event(&f, T0 + 9, &["a"]),
    ];
    append_ok(store, matching.iter().chain(&others).cloned().collect()).await;

    let by_id = EventFilter {
        sender_id: Some(id.clone()),
        ..Default::default()
    };
    let want: Vec<EventId> = matching.iter().map(|e| e.id).collect();
    assert_eq!(events_of(store, &by_id).await, want, "in id order");
    let listed = store.list_events(&by_id, None, 10).await.expect("list");
    assert_eq!(listed[0].sender_id.as_deref(), Some(id.as_str()));
    assert_eq!(listed[0].flow, f);
    assert_eq!(listed[0].source, "shop");
    assert_eq!(listed[0].event_type.as_deref(), Some("order.created"));
    assert_eq!(listed[0].received_at, T0 + 1);
    for e in &listed {
        let key = e.sender_id.as_deref().expect("a key");
        assert!(crate::sender_id_matches(&id, key), "{key}");
    }

    // With the flow, and with a time range.
    let in_g = EventFilter {
        flow: Some(g.clone()),
        ..by_id.clone()
    };
    assert_eq!(events_of(store, &in_g).await, vec![matching[1].id]);
    let later = EventFilter {
        since: Some(T0 + 3),
        until: Some(T0 + 5),
        ..by_id.clone()
    };
    assert_eq!(
        events_of(store, &later).await,
        vec![matching[2].id, matching[3].id]
    );
    // A split element's own key finds only it.
    let element = EventFilter {
        sender_id: Some(format!("{id}#1")),
        ..Default::default()
    };
    assert_eq!(events_of(store, &element).await, vec![matching[3].id]);
    // Nothing for an unknown id.
    let unknown = EventFilter {
        sender_id: Some(sender("evt_none")),
        ..Default::default()
    };
    assert!(events_of(store, &unknown).await.is_empty());

    // Paging: two at a time, after the last of the previous page.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_events(&by_id, after, 2).await.expect("page");
        paged.extend(page.iter().map(|e| e.id));
        match page.last() {
            Some(last) if page.len() == 2 => after = Some(last.id),
            _ => break,
        }
    }
    assert_eq!(paged, want);
    assert!(
        store
            .list_events(&by_id, None, 0)
            .await
            .expect("limit 0")
            .is_empty()
    );

    // Every event of a flow, in id order.
    let all_f = events_of(
        store,
        &EventFilter {
            flow: Some(f.clone()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all_f.len(), 8);
    assert!(all_f.windows(2).all(|w| w[0] < w[1]));
}

pub async fn list_deliveries_by_sender_id(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("sender-deliveries");
    let id = sender("evt_2");
    let e1 = keyed(event(&f, T0 + 1, &["a", "b"]), &id);
    let e2 = keyed(event(&f, T0 + 2, &["a"]), &format!("{id}#0"));
    let e3 = keyed(event(&f, T0 + 3, &["a"]), &sender("evt_3"));
    append_ok(store, vec![e1.clone(), e2.clone(), e3.clone()]).await;
    kill(store, &lane(&f, "b"), T0 + 10, e1.deliveries[1].id).await;

    let by_sender = DeliveryFilter {
        sender_id: Some(id.clone()),
        ..Default::default()
    };
    let got = list_all(store, &by_sender).await;
    assert_eq!(
        id_set(ids(&got)),
        id_set([
            e1.deliveries[0].id,
            e1.deliveries[1].id,
            e2.deliveries[0].id
        ])
    );
    let dead = DeliveryFilter {
        state: Some(DeliveryState::Dead),
        ..by_sender.clone()
    };
    assert_eq!(
        ids(&list_all(store, &dead).await),
        vec![e1.deliveries[1].id]
    );
    // Replay selects the same way.
    assert_eq!(
        store.replay(&dead, T0 + 20, "test").await.expect("replay"),
        1
    );
    assert_eq!(
        state(store, e1.deliveries[1].id).await,
        DeliveryState::Pending
    );
}

pub async fn list_deliveries_by_attempts_class_and_status(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("attempt-filters");
    let la = lane(&f, "a");
    // `ok`: one attempt, delivered. `flaky`: a 503, then delivered. `slow`: a time-out, then
    // a 422 (dead). `fresh`: never tried.
    let evs: Vec<NewEvent> = (0..4).map(|i| event(&f, T0 + i, &["a"])).collect();
    append_ok(store, evs.clone()).await;
    let [ok, flaky, slow, fresh] = [0, 1, 2, 3].map(|i| evs[i].deliveries[0].id);
    let now = T0 + 100;
    let claimed = claim_ids(store, &la, now, 4).await;
    assert_eq!(claimed.len(), 4);
    let mut timeout = attempt(now, None, "timeout", Some("timed out after 30s"));
    timeout.response_excerpt = None;
    complete_ok(
        store,
        vec![
            outcome(
                ok,
                Some(attempt(now, Some(200), "ok", None)),
                Next::Delivered,
            ),
            outcome(
                flaky,
                Some(attempt(now, Some(503), "http_5xx", Some("HTTP 503"))),
                Next::Retry { at: now + 10 },
            ),
            outcome(slow, Some(timeout), Next::Retry { at: now + 10 }),
            outcome(
                fresh,
                None,
                Next::Release {
                    at: now + 1_000_000,
                },
            ),
        ],
        now,
    )
    .await;
    assert_eq!(claim_ids(store, &la, now + 10, 10).await.len(), 2);
    complete_ok(
        store,
        vec![
            outcome(
                flaky,
                Some(attempt(now + 10, Some(200), "ok", None)),
                Next::Delivered,
            ),
            outcome(
                slow,
                Some(attempt(now + 10, Some(422), "http_4xx", Some("HTTP 422"))),
                Next::Dead {
                    reason: "HTTP 422".into(),
                },
            ),
        ],
        now + 11,
    )
    .await;

    let check = |filter: DeliveryFilter, want: Vec<DeliveryId>| async move {
        let got = list_all(store, &filter).await;
        assert_eq!(id_set(ids(&got)), id_set(want), "filter {filter:?}");
    };
    let base = by_flow(&f);
    check(
        DeliveryFilter {
            min_attempts: Some(2),
            ..base.clone()
        },
        vec![flaky, slow],
    )
    .await;
    check(
        DeliveryFilter {
            min_attempts: Some(1),
            ..base.clone()
        },
        vec![ok, flaky, slow],
    )
    .await;
    check(
        DeliveryFilter {
            min_attempts: Some(0),
            ..base.clone()
        },
        vec![ok, flaky, slow, fresh],
    )
    .await;
    check(
        DeliveryFilter {
            error_class: Some("http_5xx".into()),
            ..base.clone()
        },
        vec![flaky],
    )
    .await;
    check(
        DeliveryFilter {
            error_class: Some("timeout".into()),
            ..base.clone()
        },
        vec![slow],
    )
    .await;
    for (range, want) in [
        ("503", vec![flaky]),
        ("5xx", vec![flaky]),
        ("4xx", vec![slow]),
        ("200", vec![ok, flaky]),
        ("2xx", vec![ok, flaky]),
        ("404", vec![]),
    ] {
        let status: StatusRange = range.parse().expect("status");
        check(
            DeliveryFilter {
                status: Some(status),
                ..base.clone()
            },
            want,
        )
        .await;
    }
    // Combined with each other and with the state.
    check(
        DeliveryFilter {
            min_attempts: Some(2),
            state: Some(DeliveryState::Delivered),
            ..base.clone()
        },
        vec![flaky],
    )
    .await;
    check(
        DeliveryFilter {
            error_class: Some("timeout".into()),
            status: Some("4xx".parse().expect("status")),
            ..base.clone()
        },
        vec![slow],
    )
    .await;
}

pub async fn replay_is_kept_in_the_history(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("replay-history");
    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let (la, id) = (lane(&f, "a"), ev.deliveries[0].id);
    kill(store, &la, T0 + 1, id).await;
    let only = DeliveryFilter {
        delivery_id: Some(id),
        ..Default::default()
    };
    let d = store.delivery(id).await.expect("read").expect("exists");
    assert!(d.replay_history.is_empty(), "no replay yet");

    assert_eq!(
        store
            .replay(&only, T0 + 100, "admin API: ferry dlq replay (ops)")
            .await
            .expect("replay"),
        1
    );
    // The second round: delivered on its first attempt, then replayed again.
    claim_one(store, &la, T0 + 100, id).await;
    let ok = attempt(T0 + 100, Some(200), "ok", None);
    complete_ok(
        store,
        vec![outcome(id, Some(ok.clone()), Next::Delivered)],
        T0 + 101,
    )
    .await;
    assert_eq!(
        store
            .replay(&only, T0 + 200, "admin API: ferry replay")
            .await
            .expect("replay"),
        1
    );
    // Not replayable (pending): no record.
    assert_eq!(
        store
            .replay(&only, T0 + 201, "again")
            .await
            .expect("replay"),
        0
    );

    let d = store.delivery(id).await.expect("read").expect("exists");
    assert_eq!(d.summary.replays, 2);
    assert_eq!(d.attempts.len(), 2, "every attempt kept");
    assert_eq!(
        d.replay_history,
        vec![
            crate::ReplayRecord {
                at: T0 + 100,
                by: "admin API: ferry dlq replay (ops)".into(),
                from_state: DeliveryState::Dead,
                attempts_before: 1,
                last_error: Some("HTTP 400".into()),
            },
            crate::ReplayRecord {
                at: T0 + 200,
                by: "admin API: ferry replay".into(),
                from_state: DeliveryState::Delivered,
                attempts_before: 2,
                last_error: None,
            },
        ]
    );
    let order: Vec<String> = d
        .history()
        .iter()
        .map(|h| match h {
            HistoryEntry::Attempt { number, .. } => format!("attempt {number}"),
            HistoryEntry::Replay(r) => format!("replay at {}", r.at - T0),
        })
        .collect();
    assert_eq!(
        order,
        ["attempt 1", "replay at 100", "attempt 2", "replay at 200"]
    );
}

/// For a backend's upgrade test: `old`, stored before the upgrade in `flow` with sender id
/// `key`, is what a re-send of it names; the same key in another flow is another event; and
/// a search by `key` finds `old`, that other event and a split's element stored after it.
/// Nothing else in the store may have that key.
pub async fn keys_stored_before_an_upgrade_still_work(
    store: &dyn Store,
    old: EventId,
    flow: &str,
    key: &str,
) {
    let other_flow = keyed(event(&format!("{flow}-other"), T0 + 1, &[]), key);
    let split = keyed(event(flow, T0 + 2, &[]), &format!("{key}#2"));
    let outcomes = store
        .append(vec![
            keyed(event(flow, T0 + 3, &[]), key),
            other_flow.clone(),
            split.clone(),
        ])
        .await
        .expect("append after the upgrade");
    assert_eq!(
        outcomes,
        vec![
            AppendOutcome::Duplicate(old),
            AppendOutcome::Stored(other_flow.id),
            AppendOutcome::Stored(split.id),
        ]
    );
    let filter = EventFilter {
        sender_id: Some(key.to_owned()),
        ..Default::default()
    };
    let mut found = events_of(store, &filter).await;
    found.sort_by_key(|id| id.0);
    let mut want = vec![old, other_flow.id, split.id];
    want.sort_by_key(|id| id.0);
    assert_eq!(found, want);
}
