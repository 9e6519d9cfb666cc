//! Cases: rejected records of queue sources (`append_with_rejected`, `list_rejected`,
//! `rejected`, `replay_rejected`).

use super::*;
use crate::{NewRejected, RejectedId};

fn refused(flow: &str, message_id: Option<&str>, at: Millis) -> NewRejected {
    NewRejected {
        id: RejectedId::new(),
        flow: flow.to_owned(),
        source_kind: "nats".to_owned(),
        message_id: message_id.map(str::to_owned),
        received_at: at,
        reason: "malformed_json".to_owned(),
        detail: "the body is not JSON: expected value at line 1 column 1".to_owned(),
        headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
        payload: Bytes::from_static(b"not json \x00\xff"),
    }
}

/// A batch's events and rejected records are stored together; a rejected record comes back
/// as it went in, and one redelivered (same flow, same message id) is kept once.
pub async fn rejected_are_stored_with_their_batch(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("queue");
    let ev = keyed(event(&f, T0, &["crm"]), "m1");
    let bad = refused(&f, Some("m2"), T0);
    let out = store
        .append_with_rejected(vec![ev.clone()], vec![bad.clone()])
        .await
        .expect("batch");
    assert_eq!(out, vec![AppendOutcome::Stored(ev.id)]);
    let got = store.rejected(bad.id).await.expect("read").expect("stored");
    assert_eq!(got.id, bad.id);
    assert_eq!(got.flow, f);
    assert_eq!(got.source_kind, "nats");
    assert_eq!(got.message_id.as_deref(), Some("m2"));
    assert_eq!(got.received_at, T0);
    assert_eq!(got.reason, bad.reason);
    assert_eq!(got.detail, bad.detail);
    assert_eq!(got.headers, bad.headers);
    assert_eq!(
        got.payload, bad.payload,
        "bytes kept exactly, even not UTF-8"
    );
    assert_eq!((got.replayed_at, got.replayed_event), (None, None));
    assert_eq!(list_all(store, &by_flow(&f)).await.len(), 1);

    // The same batch redelivered: the event is a duplicate, the record is not stored again.
    let again = refused(&f, Some("m2"), T0 + 5);
    let out = store
        .append_with_rejected(
            vec![keyed(event(&f, T0 + 5, &["crm"]), "m1")],
            vec![again.clone()],
        )
        .await
        .expect("redelivery");
    assert_eq!(out, vec![AppendOutcome::Duplicate(ev.id)]);
    assert_eq!(store.rejected(again.id).await.expect("read"), None);
    let listed = store.list_rejected(Some(&f), None, 10).await.expect("list");
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![bad.id]
    );

    // Without a message id nothing is deduplicated; another flow has its own ids.
    let anon = [refused(&f, None, T0 + 6), refused(&f, None, T0 + 6)];
    let other = refused(&flow("other"), Some("m2"), T0 + 6);
    store
        .append_with_rejected(
            Vec::new(),
            vec![anon[0].clone(), anon[1].clone(), other.clone()],
        )
        .await
        .expect("rejected only");
    assert_eq!(
        store
            .list_rejected(Some(&f), None, 10)
            .await
            .expect("list")
            .len(),
        3
    );
    assert!(store.rejected(other.id).await.expect("read").is_some());
}

/// A batch whose events cannot be stored stores none of its rejected records either.
pub async fn rejected_roll_back_with_their_batch(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("queue");
    let first = event(&f, T0, &["crm"]);
    store.append(vec![first.clone()]).await.expect("first");
    // An event reusing a stored delivery's id is refused, and the whole call with it.
    let mut reused = event(&f, T0 + 1, &["crm"]);
    reused.deliveries[0].id = first.deliveries[0].id;
    let bad = refused(&f, Some("m9"), T0 + 1);
    let res = store
        .append_with_rejected(vec![reused], vec![bad.clone()])
        .await;
    assert!(res.is_err(), "{res:?}");
    assert_eq!(store.rejected(bad.id).await.expect("read"), None);
}

/// Listing is newest first, per flow or over all, paged by the last id of a page.
pub async fn rejected_list_newest_first_paged(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("queue");
    let g = flow("queue");
    let mut made = Vec::new();
    for i in 0..5 {
        let r = refused(
            if i % 2 == 0 { &f } else { &g },
            Some(&format!("m{i}")),
            T0 + i,
        );
        store
            .append_with_rejected(Vec::new(), vec![r.clone()])
            .await
            .expect("store");
        made.push(r.id);
    }
    let of_f: Vec<_> = store
        .list_rejected(Some(&f), None, 10)
        .await
        .expect("list")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(of_f, vec![made[4], made[2], made[0]]);
    let page1 = store
        .list_rejected(Some(&f), None, 2)
        .await
        .expect("page 1");
    assert_eq!(
        page1.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![made[4], made[2]]
    );
    let page2 = store
        .list_rejected(Some(&f), Some(page1[1].id), 2)
        .await
        .expect("page 2");
    assert_eq!(
        page2.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![made[0]]
    );
    // Over all flows: these cases' records are the newest of the flows they made.
    let all: Vec<_> = store
        .list_rejected(None, None, 1000)
        .await
        .expect("all")
        .into_iter()
        .filter(|r| r.flow == f || r.flow == g)
        .map(|r| r.id)
        .collect();
    assert_eq!(all, made.iter().rev().copied().collect::<Vec<_>>());
}

/// A replay stores the events and marks the record, once; a second replay is refused and
/// writes nothing.
pub async fn rejected_replay_marks_once(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("queue");
    let bad = refused(&f, Some("m1"), T0);
    store
        .append_with_rejected(Vec::new(), vec![bad.clone()])
        .await
        .expect("store");
    let fixed = keyed(event(&f, T0 + 10, &["crm"]), "m1");
    let out = store
        .replay_rejected(bad.id, vec![fixed.clone()], T0 + 10, "ops")
        .await
        .expect("replay");
    assert_eq!(out, vec![AppendOutcome::Stored(fixed.id)]);
    let got = store.rejected(bad.id).await.expect("read").expect("kept");
    assert_eq!(got.replayed_at, Some(T0 + 10));
    assert_eq!(got.replayed_event, Some(fixed.id));
    assert_eq!(list_all(store, &by_flow(&f)).await.len(), 1);

    let again = keyed(event(&f, T0 + 20, &["crm"]), "m1-again");
    let res = store
        .replay_rejected(bad.id, vec![again.clone()], T0 + 20, "ops")
        .await;
    assert!(matches!(res, Err(StoreError::Invalid(_))), "{res:?}");
    assert!(store.event(again.id).await.expect("read").is_none());
    let res = store
        .replay_rejected(RejectedId::new(), vec![again], T0 + 20, "ops")
        .await;
    assert!(matches!(res, Err(StoreError::Invalid(_))), "{res:?}");
    let res = store
        .replay_rejected(bad.id, Vec::new(), T0 + 20, "ops")
        .await;
    assert!(matches!(res, Err(StoreError::Invalid(_))), "{res:?}");
}
