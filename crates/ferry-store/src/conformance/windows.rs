//! Cases: `dedupe` step windows (`NewEvent::dedupe_window`).

use super::*;

/// `ev` with window key `key` remembered for `window` ms from its receive time.
fn windowed(mut ev: NewEvent, key: &str, window: Millis) -> NewEvent {
    ev.dedupe_window = Some(DedupeWindow {
        key: key.to_owned(),
        expires_at: ev.received_at + window,
    });
    ev
}

/// A key seen within its window is `Deduplicated` (carrying the first event), nothing of the
/// duplicate is written, and the window does not grow with duplicates; other keys and other
/// flows are independent.
pub async fn dedupe_window_within_window_deduplicated(store: Arc<dyn Store>) {
    let store = &*store;
    let (f, other) = (flow("win"), flow("win-other"));
    let first = windowed(event(&f, T0, &["crm"]), "order-1", 1000);
    let again = windowed(event(&f, T0 + 999, &["crm"]), "order-1", 1000);
    let other_key = windowed(event(&f, T0 + 10, &["crm"]), "order-2", 1000);
    let other_flow = windowed(event(&other, T0 + 10, &["crm"]), "order-1", 1000);
    let out = append_ok(
        store,
        vec![
            first.clone(),
            again.clone(),
            other_key.clone(),
            other_flow.clone(),
        ],
    )
    .await;
    assert_eq!(
        out,
        vec![
            AppendOutcome::Stored(first.id),
            AppendOutcome::Deduplicated(first.id),
            AppendOutcome::Stored(other_key.id),
            AppendOutcome::Stored(other_flow.id),
        ]
    );
    assert!(store.event(again.id).await.expect("event").is_none());
    assert!(
        store
            .delivery(again.deliveries[0].id)
            .await
            .expect("delivery")
            .is_none()
    );
    // The window runs from the first stored event, not from the duplicate (T0 + 999).
    let late = windowed(event(&f, T0 + 1000, &["crm"]), "order-1", 1000);
    assert_eq!(
        append_ok(store, vec![late.clone()]).await,
        vec![AppendOutcome::Stored(late.id)]
    );
    assert_eq!(list_all(store, &by_flow(&f)).await.len(), 3);
}

/// After the window, the key is forgotten: the event is stored again and starts a new
/// window. Events without a window ignore remembered keys.
pub async fn dedupe_window_after_window_stored_again(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("win-expiry");
    let first = windowed(event(&f, T0, &["crm"]), "k", 500);
    append_ok(store, vec![first.clone()]).await;
    let unwindowed = event(&f, T0 + 1, &["crm"]);
    assert_eq!(
        append_ok(store, vec![unwindowed.clone()]).await,
        vec![AppendOutcome::Stored(unwindowed.id)]
    );
    let second = windowed(event(&f, T0 + 500, &["crm"]), "k", 500);
    assert_eq!(
        append_ok(store, vec![second.clone()]).await,
        vec![AppendOutcome::Stored(second.id)]
    );
    let dup = windowed(event(&f, T0 + 700, &["crm"]), "k", 500);
    assert_eq!(
        append_ok(store, vec![dup]).await,
        vec![AppendOutcome::Deduplicated(second.id)]
    );
    // Purging expired keys (of any flow) never forgets a live one.
    let purging = windowed(event(&flow("win-purge"), T0 + 800, &[]), "x", 1);
    append_ok(store, vec![purging]).await;
    let dup = windowed(event(&f, T0 + 999, &["crm"]), "k", 500);
    assert_eq!(
        append_ok(store, vec![dup]).await,
        vec![AppendOutcome::Deduplicated(second.id)]
    );
}

/// A re-send with the same `dedupe_key` is a `Duplicate` whatever its window key; a
/// `Duplicate` or `Deduplicated` event records no key.
pub async fn dedupe_window_and_dedupe_key_together(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("win-key");
    let first = windowed(keyed(event(&f, T0, &["crm"]), "evt-1"), "w", 1000);
    let resend = windowed(keyed(event(&f, T0 + 1, &["crm"]), "evt-1"), "w", 1000);
    let same_window = windowed(keyed(event(&f, T0 + 2, &["crm"]), "evt-2"), "w", 1000);
    let resend_other_window = windowed(keyed(event(&f, T0 + 3, &["crm"]), "evt-1"), "z", 1000);
    let out = append_ok(
        store,
        vec![
            first.clone(),
            resend,
            same_window,
            resend_other_window.clone(),
        ],
    )
    .await;
    assert_eq!(
        out,
        vec![
            AppendOutcome::Stored(first.id),
            AppendOutcome::Duplicate(first.id),
            AppendOutcome::Deduplicated(first.id),
            AppendOutcome::Duplicate(first.id),
        ]
    );
    // `z` was not recorded by the duplicate.
    let z = windowed(event(&f, T0 + 4, &["crm"]), "z", 1000);
    assert_eq!(
        append_ok(store, vec![z.clone()]).await,
        vec![AppendOutcome::Stored(z.id)]
    );
}

/// A call that fails (reused delivery id) records none of its keys.
pub async fn dedupe_window_rolled_back_with_its_call(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("win-atomic");
    let taken = event(&f, T0, &["crm"]);
    append_ok(store, vec![taken.clone()]).await;
    let innocent = windowed(event(&f, T0 + 1, &["crm"]), "k", 1000);
    let mut broken = windowed(event(&f, T0 + 2, &["crm"]), "k2", 1000);
    broken.deliveries[0].id = taken.deliveries[0].id;
    let err = store.append(vec![innocent, broken]).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    let retry = windowed(event(&f, T0 + 3, &["crm"]), "k", 1000);
    assert_eq!(
        append_ok(store, vec![retry.clone()]).await,
        vec![AppendOutcome::Stored(retry.id)],
        "the failed call must not have recorded its key"
    );
}

/// Remembered keys are durable: after the store is closed and opened again, a key within
/// its window still deduplicates and an expired one does not.
pub async fn dedupe_window_survives_reopen(store: Arc<dyn Store>, reopen: &mut dyn Reopen) {
    let f = flow("win-reopen");
    let live = windowed(event(&f, T0, &["crm"]), "live", 10_000);
    let short = windowed(event(&f, T0, &["crm"]), "short", 10);
    append_ok(&*store, vec![live.clone(), short]).await;
    let store = reopen.reopen(store).await;
    let out = append_ok(
        &*store,
        vec![
            windowed(event(&f, T0 + 100, &["crm"]), "live", 10_000),
            windowed(event(&f, T0 + 100, &["crm"]), "short", 10),
        ],
    )
    .await;
    assert!(matches!(out[0], AppendOutcome::Deduplicated(id) if id == live.id));
    assert!(out[1].is_stored(), "{:?}", out[1]);
}
