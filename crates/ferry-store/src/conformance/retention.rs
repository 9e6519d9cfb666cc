//! Cases: retention — the purge deletes events past their retention whose deliveries are
//! finished (with their deliveries and attempts), keeps younger ones and ones a waiting
//! delivery holds, records what it deleted in the audit trail; and what the store keeps per
//! source system.

use super::audit::audit_trail;
use super::*;
use crate::{AuditEntry, EventAudit, PurgeReport, RetentionRules};

const SECOND: Millis = 1000;

/// A source system (and category root) no other case uses.
fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7().simple())
}

/// An event of `flow` from `source` at `at`, carrying `categories`.
fn from(flow: &str, source: &str, at: Millis, categories: &[&str]) -> NewEvent {
    let mut ev = event(flow, at, &["crm"]);
    ev.source = source.to_owned();
    ev.audit = EventAudit {
        flow_version: 1,
        subject: None,
        categories: categories.iter().map(|c| (*c).to_owned()).collect(),
    };
    ev
}

/// Deliver every delivery of `l` due at `now`.
async fn deliver_due(store: &dyn Store, l: &LaneKey, now: Millis) {
    let claimed = claim_ids(store, l, now, 1000).await;
    assert!(!claimed.is_empty(), "nothing due in {l:?}");
    let outcomes = claimed
        .into_iter()
        .map(|id| {
            outcome(
                id,
                Some(attempt(now, Some(200), "ok", None)),
                Next::Delivered,
            )
        })
        .collect();
    complete_ok(store, outcomes, now).await;
}

async fn exists(store: &dyn Store, ev: &NewEvent) -> bool {
    store.event(ev.id).await.expect("read").is_some()
}

/// Past its system's retention, an event whose deliveries are delivered or dead is deleted
/// with them and their attempts; a younger one is kept, and so is an old one whose delivery
/// still waits (counted as held). The purge is in the audit trail, naming what it deleted,
/// and the lane counts no longer count the deleted deliveries.
pub async fn purge_removes_expired_finished_events(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("purge");
    let sys = unique("shop");
    let l = lane(&f, "crm");
    let done = from(&f, &sys, T0, &[]);
    let dead = from(&f, &sys, T0 + 1, &[]);
    // Its delivery goes to another lane, which nothing works.
    let mut waiting = from(&f, &sys, T0 + 2, &[]);
    waiting.deliveries[0].destination = "erp".into();
    let young = from(&f, &sys, T0 + 5 * SECOND, &[]);
    append_ok(
        store,
        vec![done.clone(), dead.clone(), waiting.clone(), young.clone()],
    )
    .await;
    let (d_done, d_dead) = (done.deliveries[0].id, dead.deliveries[0].id);
    assert_eq!(
        claim_ids(store, &l, T0 + 10, 10).await,
        vec![d_done, d_dead]
    );
    let failed = attempt(T0 + 10, Some(400), "http_4xx", Some("bad request"));
    complete_ok(
        store,
        vec![
            outcome(
                d_done,
                Some(attempt(T0 + 10, Some(200), "ok", None)),
                Next::Delivered,
            ),
            outcome(
                d_dead,
                Some(failed),
                Next::Dead {
                    reason: "HTTP 400".into(),
                },
            ),
        ],
        T0 + 10,
    )
    .await;
    deliver_due(store, &l, T0 + 6 * SECOND).await;
    let counts = lane_of(store, &l).await;
    assert_eq!((counts.delivered, counts.dead), (2, 1));
    let erp = lane(&f, "erp");

    let rules = RetentionRules {
        systems: vec![(sys.clone(), 3 * SECOND)],
        categories: Vec::new(),
    };
    // At T0 + 7s the cut-off is T0 + 4s: the first three are older, the young one is not.
    let report = store
        .purge_expired(&rules, T0 + 7 * SECOND, 100)
        .await
        .expect("purge");
    assert_eq!(
        report,
        PurgeReport {
            events: 2,
            deliveries: 2,
            attempts: 2,
            held: 1,
        }
    );
    assert!(!exists(store, &done).await && !exists(store, &dead).await);
    assert!(exists(store, &waiting).await && exists(store, &young).await);
    for gone in [done.deliveries[0].id, dead.deliveries[0].id] {
        assert!(store.delivery(gone).await.expect("read").is_none());
    }
    let counts = lane_of(store, &l).await;
    assert_eq!((counts.delivered, counts.dead), (1, 0));
    assert_eq!(lane_of(store, &erp).await.pending, 1);

    let trail = audit_trail(store).await;
    let purged: Vec<_> = trail
        .iter()
        .filter_map(|(_, e)| match e {
            AuditEntry::Purged {
                at,
                events,
                deliveries,
                attempts,
                event_ids,
            } if event_ids.contains(&done.id) => {
                Some((*at, *events, *deliveries, *attempts, event_ids.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        purged,
        vec![(T0 + 7 * SECOND, 2, 2, 2, vec![done.id, dead.id])]
    );

    // Once its delivery is done, the held event goes too; purging again deletes nothing.
    deliver_due(store, &erp, T0 + 8 * SECOND).await;
    let report = store
        .purge_expired(&rules, T0 + 8 * SECOND, 100)
        .await
        .expect("purge");
    assert_eq!((report.events, report.held), (1, 0));
    assert!(!exists(store, &waiting).await && exists(store, &young).await);
    let again = store
        .purge_expired(&rules, T0 + 8 * SECOND, 100)
        .await
        .expect("purge");
    assert_eq!(again, PurgeReport::default());
}

/// A category's retention covers its sub-categories and not its siblings, and an event's
/// retention is the shortest that applies (its system's or a category's).
pub async fn purge_by_category_takes_the_shortest_retention(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("purge-cat");
    let sys = unique("crm");
    let root = unique("custom");
    let contact = format!("{root}.contact");
    let email = format!("{contact}.email");
    let sibling = format!("{root}.contacts");
    let l = lane(&f, "crm");
    let with_email = from(&f, &sys, T0, &[&email]);
    let with_contact = from(&f, &sys, T0, &[&contact]);
    let with_sibling = from(&f, &sys, T0, &[&sibling]);
    let plain = from(&f, &sys, T0, &[]);
    let all = vec![
        with_email.clone(),
        with_contact.clone(),
        with_sibling.clone(),
        plain.clone(),
    ];
    append_ok(store, all.clone()).await;
    deliver_due(store, &l, T0 + 1).await;
    let rules = RetentionRules {
        // The system keeps a day; the contact category a second.
        systems: vec![(sys.clone(), 86_400 * SECOND)],
        categories: vec![
            (contact.clone(), SECOND),
            (root.clone(), 7 * 86_400 * SECOND),
        ],
    };
    let report = store
        .purge_expired(&rules, T0 + 10 * SECOND, 100)
        .await
        .expect("purge");
    assert_eq!((report.events, report.held), (2, 0));
    assert!(!exists(store, &with_email).await);
    assert!(!exists(store, &with_contact).await);
    assert!(exists(store, &with_sibling).await);
    assert!(exists(store, &plain).await);
    // A day later the system's retention applies to the rest.
    let report = store
        .purge_expired(&rules, T0 + 86_401 * SECOND, 100)
        .await
        .expect("purge");
    assert_eq!(report.events, 2);
    assert!(!exists(store, &with_sibling).await && !exists(store, &plain).await);
}

/// One purge call deletes at most `limit` events; calling again goes on.
pub async fn purge_is_bounded(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("purge-bounded");
    let sys = unique("erp");
    let events: Vec<NewEvent> = (0..5).map(|i| from(&f, &sys, T0 + i, &[])).collect();
    append_ok(store, events.clone()).await;
    deliver_due(store, &lane(&f, "crm"), T0 + 10).await;
    let rules = RetentionRules {
        systems: vec![(sys.clone(), SECOND)],
        categories: Vec::new(),
    };
    let mut sizes = Vec::new();
    for _ in 0..4 {
        let r = store
            .purge_expired(&rules, T0 + 2 * SECOND, 2)
            .await
            .expect("purge");
        sizes.push(r.events);
    }
    assert_eq!(sizes, vec![2, 2, 1, 0]);
    for ev in &events {
        assert!(!exists(store, ev).await);
    }
}

/// Per source system: how many events the store keeps and when the oldest arrived; a
/// purge shows in it.
pub async fn holdings_per_source_system(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("holdings");
    let (a, b) = (unique("billing"), unique("support"));
    let events = vec![
        from(&f, &a, T0 + 5, &[]),
        from(&f, &a, T0 + 1, &[]),
        from(&f, &b, T0 + 3, &[]),
    ];
    append_ok(store, events.clone()).await;
    let of = |all: &[crate::SystemHoldings], s: &str| {
        all.iter()
            .find(|h| h.system == s)
            .map(|h| (h.events, h.oldest_received_at))
    };
    let all = store.holdings().await.expect("holdings");
    assert_eq!(of(&all, &a), Some((2, Some(T0 + 1))));
    assert_eq!(of(&all, &b), Some((1, Some(T0 + 3))));
    deliver_due(store, &lane(&f, "crm"), T0 + 10).await;
    store
        .purge_expired(
            &RetentionRules {
                systems: vec![(b.clone(), 1)],
                categories: Vec::new(),
            },
            T0 + SECOND,
            10,
        )
        .await
        .expect("purge");
    let all = store.holdings().await.expect("holdings");
    assert_eq!(of(&all, &b), None);
    assert_eq!(of(&all, &a), Some((2, Some(T0 + 1))));
}
