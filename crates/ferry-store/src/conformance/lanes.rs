//! Cases: per-lane backlog and lane pauses.

use super::*;

/// `waiting` counts pending, in-flight and retrying deliveries; the oldest is by receive
/// time among those; `dead` counts the dead-lettered ones (until a replay takes them back).
/// Lanes whose deliveries all settled stay listed with nothing waiting; lanes that never
/// had a delivery are not listed.
pub async fn lane_backlog_counts_waiting_and_oldest(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("backlog");
    let (la, lb, lc) = (lane(&f, "a"), lane(&f, "b"), lane(&f, "c"));
    let evs: Vec<NewEvent> = (0..5).map(|i| event(&f, T0 + 10 * i, &["a"])).collect();
    let b = event(&f, T0 + 5, &["b"]);
    let c = ordered(event(&f, T0 + 1, &["c"]), "K");
    let c_next = ordered(event(&f, T0 + 2, &["c"]), "K");
    let mut all = evs.clone();
    all.extend([b, c.clone(), c_next.clone()]);
    append_ok(store, all).await;
    let id = |i: usize| evs[i].deliveries[0].id;

    // Held-back deliveries (c_next) wait like any other.
    assert_eq!(
        backlog_of(store, &f).await,
        vec![
            backlog(la.clone(), 5, Some(T0), 0),
            backlog(lb.clone(), 1, Some(T0 + 5), 0),
            backlog(lc.clone(), 2, Some(T0 + 1), 0)
        ]
    );

    // In flight still waits.
    assert_eq!(
        claim_ids(store, &la, T0 + 100, 3).await,
        vec![id(0), id(1), id(2)]
    );
    assert_eq!(
        backlog_of(store, &f).await,
        vec![
            backlog(la.clone(), 5, Some(T0), 0),
            backlog(lb.clone(), 1, Some(T0 + 5), 0),
            backlog(lc.clone(), 2, Some(T0 + 1), 0)
        ]
    );

    // Delivered and dead leave the backlog; retrying stays in it; dead is counted apart.
    complete_ok(
        store,
        vec![
            outcome(id(0), None, Next::Delivered),
            outcome(
                id(1),
                Some(attempt(T0, Some(503), "http_5xx", None)),
                Next::Retry { at: T0 + 999 },
            ),
            outcome(
                id(2),
                None,
                Next::Dead {
                    reason: "no".into(),
                },
            ),
        ],
        T0 + 101,
    )
    .await;
    claim_one(store, &lc, T0 + 100, c.deliveries[0].id).await;
    complete_ok(
        store,
        vec![outcome(c.deliveries[0].id, None, Next::Delivered)],
        T0 + 101,
    )
    .await;
    assert_eq!(
        backlog_of(store, &f).await,
        vec![
            backlog(la.clone(), 3, Some(T0 + 10), 1),
            backlog(lb.clone(), 1, Some(T0 + 5), 0),
            backlog(lc.clone(), 1, Some(T0 + 2), 0)
        ]
    );

    // A replay brings the dead one back; settling everything empties the lane's backlog.
    let dead = DeliveryFilter {
        flow: Some(f.clone()),
        state: Some(DeliveryState::Dead),
        ..Default::default()
    };
    assert_eq!(
        store.replay(&dead, T0 + 200, "test").await.expect("replay"),
        1
    );
    assert_eq!(
        backlog_of(store, &f).await,
        vec![
            backlog(la.clone(), 4, Some(T0 + 10), 0),
            backlog(lb.clone(), 1, Some(T0 + 5), 0),
            backlog(lc.clone(), 1, Some(T0 + 2), 0)
        ]
    );
    let rest = claim_ids(store, &la, T0 + 1000, 10).await;
    assert_eq!(rest.len(), 4);
    complete_ok(
        store,
        rest.into_iter()
            .map(|id| outcome(id, None, Next::Delivered))
            .collect(),
        T0 + 1001,
    )
    .await;
    claim_one(store, &lc, T0 + 1000, c_next.deliveries[0].id).await;
    complete_ok(
        store,
        vec![outcome(c_next.deliveries[0].id, None, Next::Delivered)],
        T0 + 1001,
    )
    .await;
    assert_eq!(
        backlog_of(store, &f).await,
        vec![
            backlog(la.clone(), 0, None, 0),
            backlog(lb.clone(), 1, Some(T0 + 5), 0),
            backlog(lc.clone(), 0, None, 0)
        ]
    );
}

/// The backlog entries of `flow`'s lanes, by lane.
async fn backlog_of(store: &dyn Store, flow: &str) -> Vec<LaneBacklog> {
    let mut got: Vec<LaneBacklog> = store
        .lane_backlog()
        .await
        .expect("lane backlog")
        .into_iter()
        .filter(|b| b.lane.flow == flow)
        .collect();
    got.sort_by(|x, y| x.lane.cmp(&y.lane));
    got
}

fn backlog(lane: LaneKey, waiting: u64, oldest: Option<Millis>, dead: u64) -> LaneBacklog {
    LaneBacklog {
        lane,
        waiting,
        oldest_waiting_received_at: oldest,
        dead,
    }
}

/// Pauses are set, listed, overwritten and lifted per lane; resuming an unpaused lane is a
/// no-op. A pause changes no delivery and does not stop claims (the hub stops claiming).
pub async fn lane_pauses_set_overwrite_resume(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("pause");
    let (la, lb) = (lane(&f, "a"), lane(&f, "b"));
    let pauses = || async {
        let mut got: Vec<(LaneKey, LanePause)> = store
            .lane_pauses()
            .await
            .expect("lane pauses")
            .into_iter()
            .filter(|(l, _)| l.flow == f)
            .collect();
        got.sort_by(|x, y| x.0.cmp(&y.0));
        got
    };
    let pause = |since: Millis, reason: &str| LanePause {
        since,
        reason: reason.to_owned(),
    };
    assert!(pauses().await.is_empty());

    let ev = event(&f, T0, &["a"]);
    append_ok(store, vec![ev.clone()]).await;
    let p1 = pause(T0 + 1, "circuit breaker open: 5 failures in a row");
    store
        .set_lane_pause(&la, Some(p1.clone()))
        .await
        .expect("pause a");
    assert_eq!(pauses().await, vec![(la.clone(), p1)]);
    assert_eq!(
        state(store, ev.deliveries[0].id).await,
        DeliveryState::Pending
    );

    let p2 = pause(T0 + 2, "paused by an operator");
    store
        .set_lane_pause(&lb, Some(p2.clone()))
        .await
        .expect("pause b");
    let p3 = pause(T0 + 3, "backlog over its limit");
    store
        .set_lane_pause(&la, Some(p3.clone()))
        .await
        .expect("overwrite a");
    assert_eq!(
        pauses().await,
        vec![(la.clone(), p3.clone()), (lb.clone(), p2.clone())]
    );

    store.set_lane_pause(&la, None).await.expect("resume a");
    assert_eq!(pauses().await, vec![(lb.clone(), p2.clone())]);
    store
        .set_lane_pause(&la, None)
        .await
        .expect("resume a again");
    assert_eq!(pauses().await, vec![(lb.clone(), p2)]);
    store.set_lane_pause(&lb, None).await.expect("resume b");
    assert!(pauses().await.is_empty());

    store
        .set_lane_pause(&la, Some(pause(T0 + 4, "again")))
        .await
        .expect("pause a");
    claim_one(store, &la, T0 + 5, ev.deliveries[0].id).await;
}
