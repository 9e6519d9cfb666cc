//! Cases: pull flows (`append_page`, `pull_state`, `set_pull_run`).

use super::*;

fn checkpoint(from: Option<&str>, to: Option<&str>, at: Millis) -> PullCheckpoint {
    PullCheckpoint {
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
        at,
    }
}

async fn state_of(store: &dyn Store, flow: &str) -> PullState {
    store
        .pull_state(flow)
        .await
        .expect("pull state")
        .unwrap_or_else(|| panic!("no pull state for {flow}"))
}

/// A flow has no state before its first run or page; pages commit events and cursor
/// together, dedupe records by key across pages and count what they stored.
pub async fn append_page_commits_events_with_cursor(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("pull");
    assert_eq!(store.pull_state(&f).await.expect("state"), None);

    let page1 = vec![
        keyed(event(&f, T0, &["crm"]), "r1"),
        keyed(event(&f, T0, &["crm"]), "r2"),
    ];
    let out = store
        .append_page(&f, page1.clone(), checkpoint(None, Some("p2"), T0))
        .await
        .expect("page 1");
    assert_eq!(
        out,
        vec![
            AppendOutcome::Stored(page1[0].id),
            AppendOutcome::Stored(page1[1].id)
        ]
    );
    let st = state_of(store, &f).await;
    assert_eq!(st.flow, f);
    assert_eq!(st.cursor.as_deref(), Some("p2"));
    assert_eq!(st.last_page_at, Some(T0));
    assert_eq!((st.pages, st.records), (1, 2));
    assert_eq!(st.last_started_at, None);
    assert!(!st.run_unfinished);

    // Page 2 repeats r2 (seen twice by the source): a duplicate, not counted.
    let page2 = vec![
        keyed(event(&f, T0 + 1, &["crm"]), "r2"),
        keyed(event(&f, T0 + 1, &["crm"]), "r3"),
    ];
    let out = store
        .append_page(&f, page2.clone(), checkpoint(Some("p2"), None, T0 + 1))
        .await
        .expect("page 2");
    assert_eq!(
        out,
        vec![
            AppendOutcome::Duplicate(page1[1].id),
            AppendOutcome::Stored(page2[1].id)
        ]
    );
    let st = state_of(store, &f).await;
    assert_eq!(st.cursor, None, "a cursor may move back to the start");
    assert_eq!((st.pages, st.records), (2, 3));
    assert_eq!(list_all(store, &by_flow(&f)).await.len(), 3);

    // An empty page still moves the cursor.
    store
        .append_page(&f, Vec::new(), checkpoint(None, Some("p9"), T0 + 2))
        .await
        .expect("empty page");
    let st = state_of(store, &f).await;
    assert_eq!(st.cursor.as_deref(), Some("p9"));
    assert_eq!((st.pages, st.records), (3, 3));
    assert_eq!(st.last_page_at, Some(T0 + 2));
}

/// A page that cannot be stored moves no cursor, and a page fetched from a cursor that is
/// no longer the stored one (another puller moved it) stores nothing; a page holding
/// another flow's event is refused.
pub async fn append_page_is_atomic_and_checks_its_cursor(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("pull-atomic");
    let taken = event(&f, T0, &["crm"]);
    store
        .append_page(&f, vec![taken.clone()], checkpoint(None, Some("c1"), T0))
        .await
        .expect("page 1");

    let innocent = event(&f, T0 + 1, &["crm"]);
    let mut broken = event(&f, T0 + 1, &["crm"]);
    broken.deliveries[0].id = taken.deliveries[0].id;
    let err = store
        .append_page(
            &f,
            vec![innocent.clone(), broken],
            checkpoint(Some("c1"), Some("c2"), T0 + 1),
        )
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    assert!(store.event(innocent.id).await.expect("event").is_none());
    let st = state_of(store, &f).await;
    assert_eq!(
        st.cursor.as_deref(),
        Some("c1"),
        "cursor moved without its page"
    );
    assert_eq!((st.pages, st.records), (1, 1));

    let stale = event(&f, T0 + 2, &["crm"]);
    let err = store
        .append_page(
            &f,
            vec![stale.clone()],
            checkpoint(None, Some("c2"), T0 + 2),
        )
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    assert!(store.event(stale.id).await.expect("event").is_none());

    let foreign = event(&flow("other"), T0 + 3, &["crm"]);
    let err = store
        .append_page(
            &f,
            vec![foreign.clone()],
            checkpoint(Some("c1"), Some("c2"), T0 + 3),
        )
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    assert!(store.event(foreign.id).await.expect("event").is_none());
    assert_eq!(state_of(store, &f).await.cursor.as_deref(), Some("c1"));

    // A fresh flow starts at `None`: a page claiming another start is refused.
    let g = flow("pull-fresh");
    let err = store
        .append_page(&g, Vec::new(), checkpoint(Some("x"), Some("y"), T0))
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    assert_eq!(store.pull_state(&g).await.expect("state"), None);
}

/// Runs are recorded: start marks the run unfinished, success clears the error and sets the
/// success time, failure keeps the last success; none of it touches the cursor.
pub async fn pull_runs_are_recorded(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("pull-runs");
    let started = |at| PullRunUpdate::Started { at };
    store.set_pull_run(&f, started(T0)).await.expect("start");
    let st = state_of(store, &f).await;
    assert_eq!(st.last_started_at, Some(T0));
    assert!(st.run_unfinished);
    assert_eq!(st.cursor, None);
    assert_eq!((st.pages, st.records), (0, 0));

    store
        .append_page(&f, Vec::new(), checkpoint(None, Some("c"), T0 + 1))
        .await
        .expect("page");
    store
        .set_pull_run(&f, PullRunUpdate::Succeeded { at: T0 + 2 })
        .await
        .expect("success");
    let st = state_of(store, &f).await;
    assert!(!st.run_unfinished);
    assert_eq!(st.last_finished_at, Some(T0 + 2));
    assert_eq!(st.last_success_at, Some(T0 + 2));
    assert_eq!(st.last_error, None);
    assert_eq!(st.cursor.as_deref(), Some("c"));

    store
        .set_pull_run(&f, started(T0 + 10))
        .await
        .expect("start");
    store
        .set_pull_run(
            &f,
            PullRunUpdate::Failed {
                at: T0 + 11,
                error: "HTTP 503".into(),
            },
        )
        .await
        .expect("failure");
    let st = state_of(store, &f).await;
    assert!(!st.run_unfinished);
    assert_eq!(st.last_started_at, Some(T0 + 10));
    assert_eq!(st.last_finished_at, Some(T0 + 11));
    assert_eq!(
        st.last_success_at,
        Some(T0 + 2),
        "a failure keeps the last success"
    );
    assert_eq!(st.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(st.cursor.as_deref(), Some("c"));

    store
        .set_pull_run(&f, started(T0 + 20))
        .await
        .expect("start");
    store
        .set_pull_run(&f, PullRunUpdate::Succeeded { at: T0 + 21 })
        .await
        .expect("success");
    let st = state_of(store, &f).await;
    assert_eq!(st.last_error, None, "a success clears the error");
    assert_eq!(st.last_success_at, Some(T0 + 21));
}

/// Cursor and run record are durable: a run interrupted by a restart reads as unfinished,
/// at the cursor of its last committed page.
pub async fn pull_state_survives_reopen(store: Arc<dyn Store>, reopen: &mut dyn Reopen) {
    let f = flow("pull-reopen");
    store
        .set_pull_run(&f, PullRunUpdate::Started { at: T0 })
        .await
        .expect("start");
    let page = vec![keyed(event(&f, T0, &["crm"]), "r1")];
    store
        .append_page(&f, page.clone(), checkpoint(None, Some("c1"), T0 + 1))
        .await
        .expect("page");
    let store = reopen.reopen(store).await;
    let st = state_of(&*store, &f).await;
    assert!(st.run_unfinished);
    assert_eq!(st.cursor.as_deref(), Some("c1"));
    assert_eq!((st.pages, st.records), (1, 1));
    assert!(store.event(page[0].id).await.expect("event").is_some());
    let out = store
        .append_page(
            &f,
            vec![keyed(event(&f, T0 + 2, &["crm"]), "r1")],
            checkpoint(Some("c1"), Some("c2"), T0 + 2),
        )
        .await
        .expect("page after reopen");
    assert_eq!(out, vec![AppendOutcome::Duplicate(page[0].id)]);
}
