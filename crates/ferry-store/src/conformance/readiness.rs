//! Cases: `ping` as readiness — the store is ready only while it can commit.

use super::*;

/// A backend whose commits can be made to fail on purpose, as when its disk is full, for
/// the cases of [`conformance_fault_suite!`](crate::conformance_fault_suite).
#[async_trait::async_trait]
pub trait CommitFaults: Send {
    /// From now on every commit fails (`true`), or commits work again (`false`).
    async fn fail_commits(&mut self, fail: bool);
}

/// While commits fail, writes are refused with nothing stored and `ping` answers `Err`, also
/// when asked again (a check must not hide the fault); reads keep working. Once commits
/// work again, `ping` answers `Ok` by itself — no other write is needed to find out — and
/// writes are accepted again.
pub async fn ping_reports_failed_commits_until_one_succeeds(
    store: Arc<dyn Store>,
    faults: &mut dyn CommitFaults,
) {
    let store = &*store;
    let f = flow("readiness");
    store.ping().await.expect("ready at first");
    let before = event(&f, T0, &["a"]);
    append_ok(store, vec![before.clone()]).await;
    store.ping().await.expect("ready after a write");

    faults.fail_commits(true).await;
    let refused = event(&f, T0 + 1, &["a"]);
    let res = store.append(vec![refused.clone()]).await;
    assert!(
        res.is_err(),
        "an append must fail while commits fail: {res:?}"
    );
    for attempt in ["first", "second"] {
        let res = store.ping().await;
        assert!(
            res.is_err(),
            "{attempt} ping while commits fail must be Err, got {res:?}"
        );
    }
    assert!(
        store.event(before.id).await.expect("read").is_some(),
        "reads work while commits fail"
    );

    faults.fail_commits(false).await;
    store.ping().await.expect("ready again once commits work");
    let after = event(&f, T0 + 2, &["a"]);
    append_ok(store, vec![after.clone()]).await;
    store.ping().await.expect("still ready");
    assert!(store.event(after.id).await.expect("read").is_some());
    assert!(
        store.event(refused.id).await.expect("read").is_none(),
        "a refused append stored nothing"
    );
    assert_eq!(
        ids(&list_all(store, &by_flow(&f)).await),
        vec![before.deliveries[0].id, after.deliveries[0].id]
    );
}
