//! Cases: the audit trail — every data movement and admin action in a hash-chained record
//! written with the change, nothing for what was not committed; and the observed data map.

use super::*;
use crate::audit::ChainVerifier;
use crate::{AuditEntry, CategorySent, EventAudit, ObservedFilter, ObservedFlow};

/// Every record (the chain checked on the way), and every entry with its record's position.
pub(crate) async fn audit_trail(store: &dyn Store) -> Vec<(u64, AuditEntry)> {
    let mut verifier = ChainVerifier::default();
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .audit_records(after, 100)
            .await
            .expect("audit records");
        for r in &page {
            verifier
                .push(r)
                .unwrap_or_else(|fault| panic!("the audit chain is broken: {fault}"));
            let entries = r.parse_entries().expect("audit entries parse");
            assert!(!entries.is_empty(), "record {} holds no entry", r.seq);
            for e in entries {
                assert_eq!(
                    e.kind(),
                    r.kind,
                    "an entry of another kind in record {}",
                    r.seq
                );
                out.push((r.seq, e));
            }
        }
        match page.last() {
            Some(last) if page.len() == 100 => after = Some(last.seq),
            _ => break,
        }
    }
    verifier.finish().expect("the audit chain ends well");
    out
}

/// The entries about `flow` (by its name or an event/delivery of it).
fn of_flow(trail: &[(u64, AuditEntry)], flow: &str) -> Vec<AuditEntry> {
    trail
        .iter()
        .map(|(_, e)| e.clone())
        .filter(|e| match e {
            AuditEntry::Accepted { flow: f, .. }
            | AuditEntry::Delivered { flow: f, .. }
            | AuditEntry::RejectedReplayed { flow: f, .. } => f == flow,
            AuditEntry::Replayed { filter, .. } => filter.flow.as_deref() == Some(flow),
            AuditEntry::Admin { target, .. } => target.as_deref() == Some(flow),
            _ => false,
        })
        .collect()
}

fn sent(category: &str, how: &str) -> CategorySent {
    CategorySent {
        category: category.to_owned(),
        how: how.to_owned(),
    }
}

/// Accepting, delivering and replaying each leave their entry with what they moved: the
/// event's flow version, subject reference and categories; the delivery's destination
/// system and the categories it carried; the replay's filter, count and requester. An
/// admin action is recorded as given. The chain verifies throughout.
pub async fn audit_records_every_movement(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("audit");
    let l = lane(&f, "crm");
    let mut ev = event(&f, T0, &["crm"]);
    ev.audit = EventAudit {
        flow_version: 3,
        subject: Some("5f2b9c".into()),
        categories: vec!["user.contact.email".into(), "user.name".into()],
    };
    append_ok(store, vec![ev.clone()]).await;
    let d = ev.deliveries[0].id;
    claim_one(store, &l, T0 + 1, d).await;
    let mut delivered = outcome(
        d,
        Some(attempt(T0 + 1, Some(200), "ok", None)),
        Next::Delivered,
    );
    delivered.audit = DeliveryAudit {
        destination_system: Some("hubspot".into()),
        categories_sent: vec![
            sent("user.contact.email", "hash"),
            sent("user.name", "pass"),
        ],
    };
    complete_ok(store, vec![delivered], T0 + 2).await;
    assert_eq!(
        store
            .replay(&by_flow(&f), T0 + 3, "ops (alice)")
            .await
            .expect("replay"),
        1
    );
    store
        .audit_admin_action(AuditEntry::Admin {
            at: T0 + 4,
            by: "admin-token:1a2b3c".into(),
            action: "pause".into(),
            target: Some(f.clone()),
            detail: Some(serde_json::json!({"reason": "maintenance"})),
        })
        .await
        .expect("audit an admin action");

    let trail = audit_trail(store).await;
    let entries = of_flow(&trail, &f);
    assert_eq!(
        entries,
        vec![
            AuditEntry::Accepted {
                at: T0,
                event: ev.id,
                flow: f.clone(),
                flow_version: 3,
                source_system: "shop".into(),
                subject: Some("5f2b9c".into()),
                categories: vec!["user.contact.email".into(), "user.name".into()],
            },
            AuditEntry::Delivered {
                at: T0 + 2,
                delivery: d,
                event: ev.id,
                flow: f.clone(),
                destination: "crm".into(),
                destination_system: Some("hubspot".into()),
                categories_sent: vec![
                    sent("user.contact.email", "hash"),
                    sent("user.name", "pass")
                ],
            },
            AuditEntry::Replayed {
                at: T0 + 3,
                by: "ops (alice)".into(),
                filter: by_flow(&f),
                count: 1,
            },
            AuditEntry::Admin {
                at: T0 + 4,
                by: "admin-token:1a2b3c".into(),
                action: "pause".into(),
                target: Some(f.clone()),
                detail: Some(serde_json::json!({"reason": "maintenance"})),
            },
        ]
    );
    // Each change committed on its own, so each entry is in a later record.
    let seqs: Vec<u64> = trail
        .iter()
        .filter(|(_, e)| entries.contains(e))
        .map(|(s, _)| *s)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

/// Nothing is recorded for what was not stored: a duplicate, a deduplicated event, a
/// failed append (its whole call rolled back), a failed outcome of another delivery; a
/// retry or a dead letter is not a delivery.
pub async fn audit_records_only_what_was_committed(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("audit-nothing");
    let l = lane(&f, "crm");
    let first = keyed(event(&f, T0, &["crm"]), "k1");
    append_ok(store, vec![first.clone()]).await;
    let dup = keyed(event(&f, T0 + 1, &["crm"]), "k1");
    assert!(matches!(
        append_ok(store, vec![dup.clone()]).await[0],
        AppendOutcome::Duplicate(_)
    ));
    // A call reusing a delivery id fails as a whole: its other event is not stored either.
    let ok = event(&f, T0 + 2, &["crm"]);
    let mut clash = event(&f, T0 + 2, &["crm"]);
    clash.deliveries[0].id = first.deliveries[0].id;
    assert!(store.append(vec![ok.clone(), clash.clone()]).await.is_err());

    claim_one(store, &l, T0 + 3, first.deliveries[0].id).await;
    let retry = outcome(
        first.deliveries[0].id,
        Some(attempt(T0 + 3, Some(503), "http_5xx", None)),
        Next::Retry { at: T0 + 10 },
    );
    complete_ok(store, vec![retry], T0 + 3).await;
    kill(store, &l, T0 + 10, first.deliveries[0].id).await;

    let entries = of_flow(&audit_trail(store).await, &f);
    let accepted: Vec<EventId> = entries
        .iter()
        .filter_map(|e| match e {
            AuditEntry::Accepted { event, .. } => Some(*event),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, vec![first.id], "{entries:?}");
    assert!(
        !entries
            .iter()
            .any(|e| matches!(e, AuditEntry::Delivered { .. })),
        "{entries:?}"
    );
}

/// Only admin actions and shreddings may be recorded by a caller; the kinds the store
/// writes with their change are refused, and nothing is written for them.
pub async fn audit_admin_action_refuses_store_kinds(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("audit-forged");
    let forged = AuditEntry::Accepted {
        at: T0,
        event: EventId::new(),
        flow: f.clone(),
        flow_version: 1,
        source_system: "shop".into(),
        subject: None,
        categories: Vec::new(),
    };
    let res = store.audit_admin_action(forged).await;
    assert!(matches!(res, Err(StoreError::Invalid(_))), "{res:?}");
    store
        .audit_admin_action(AuditEntry::Shredded {
            at: T0,
            by: "admin-token:1a2b3c".into(),
            subject: format!("subject-of-{f}"),
            detail: None,
        })
        .await
        .expect("a shredding is recorded");
    let trail = audit_trail(store).await;
    assert!(of_flow(&trail, &f).is_empty());
    assert!(trail.iter().any(|(_, e)| matches!(
        e,
        AuditEntry::Shredded { subject, .. } if *subject == format!("subject-of-{f}")
    )));
}

/// Each delivered delivery counts once per category it carried, per (flow, destination,
/// system, protection), with the time of the last; a category filter covers its
/// sub-categories, a system filter matches the destination's system.
pub async fn observed_datamap_counts_deliveries(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("datamap");
    let category = format!("custom.{}", uuid::Uuid::now_v7().simple());
    let email = format!("{category}.email");
    let l = lane(&f, "crm");
    let events: Vec<NewEvent> = (0..5).map(|i| event(&f, T0 + i, &["crm"])).collect();
    append_ok(store, events.clone()).await;
    for (i, ev) in events[..3].iter().enumerate() {
        let at = T0 + 10 + i as i64;
        // Oldest first: one at a time.
        assert_eq!(claim_ids(store, &l, at, 1).await, vec![ev.deliveries[0].id]);
        let mut o = outcome(
            ev.deliveries[0].id,
            Some(attempt(at, Some(200), "ok", None)),
            Next::Delivered,
        );
        o.audit = DeliveryAudit {
            destination_system: Some("hubspot".into()),
            categories_sent: if i < 2 {
                vec![sent(&email, "hash")]
            } else {
                vec![sent(&email, "redact"), sent(&category, "pass")]
            },
        };
        complete_ok(store, vec![o], at).await;
    }
    let rows = store
        .observed_datamap(&ObservedFilter {
            category: Some(category.clone()),
            system: None,
        })
        .await
        .expect("datamap");
    let row = |c: &str, how: &str, delivered: u64, last_delivered_at: Millis| ObservedFlow {
        category: c.to_owned(),
        flow: f.clone(),
        destination: "crm".to_owned(),
        system: Some("hubspot".to_owned()),
        how: how.to_owned(),
        delivered,
        last_delivered_at,
    };
    assert_eq!(
        rows,
        vec![
            row(&category, "pass", 1, T0 + 12),
            row(&email, "hash", 2, T0 + 11),
            row(&email, "redact", 1, T0 + 12),
        ]
    );
    // Two deliveries completed in one call count twice.
    let at = T0 + 20;
    let both = claim_ids(store, &l, at, 2).await;
    assert_eq!(both.len(), 2);
    let outcomes = both
        .into_iter()
        .map(|id| {
            let mut o = outcome(
                id,
                Some(attempt(at, Some(200), "ok", None)),
                Next::Delivered,
            );
            o.audit = DeliveryAudit {
                destination_system: Some("hubspot".into()),
                categories_sent: vec![sent(&email, "hash")],
            };
            o
        })
        .collect();
    complete_ok(store, outcomes, at).await;
    let hashed = store
        .observed_datamap(&ObservedFilter {
            category: Some(email.clone()),
            system: None,
        })
        .await
        .expect("datamap");
    assert_eq!(hashed[0], row(&email, "hash", 4, T0 + 20), "{hashed:?}");
    let by_system = store
        .observed_datamap(&ObservedFilter {
            category: Some(email.clone()),
            system: Some("other".into()),
        })
        .await
        .expect("datamap");
    assert!(by_system.is_empty(), "{by_system:?}");
    let sibling = store
        .observed_datamap(&ObservedFilter {
            category: Some(format!("{category}.emai")),
            system: None,
        })
        .await
        .expect("datamap");
    assert!(
        sibling.is_empty(),
        "a prefix that is not a parent: {sibling:?}"
    );
}

/// A rejected record's replay is recorded with who asked and the events it made (which
/// are themselves recorded as accepted).
pub async fn rejected_replay_is_audited(store: Arc<dyn Store>) {
    let store = &*store;
    let f = flow("audit-rejected");
    let bad = crate::NewRejected {
        id: crate::RejectedId::new(),
        flow: f.clone(),
        source_kind: "nats".into(),
        message_id: Some("m1".into()),
        received_at: T0,
        reason: "malformed_json".into(),
        detail: "not JSON".into(),
        headers: Vec::new(),
        payload: Bytes::from_static(b"{"),
    };
    store
        .append_with_rejected(Vec::new(), vec![bad.clone()])
        .await
        .expect("store the rejected record");
    let fixed = event(&f, T0 + 5, &["crm"]);
    store
        .replay_rejected(bad.id, vec![fixed.clone()], T0 + 6, "admin-token:1a2b3c")
        .await
        .expect("replay");
    let entries = of_flow(&audit_trail(store).await, &f);
    assert!(
        entries
            .iter()
            .any(|e| matches!(e, AuditEntry::Accepted { event, .. } if *event == fixed.id)),
        "{entries:?}"
    );
    assert!(
        entries.contains(&AuditEntry::RejectedReplayed {
            at: T0 + 6,
            by: "admin-token:1a2b3c".into(),
            rejected: bad.id,
            flow: f.clone(),
            events: vec![fixed.id],
        }),
        "{entries:?}"
    );
}

/// The chain goes on across a restart: records written after it link to the last one
/// written before.
pub async fn audit_chain_survives_reopen(store: Arc<dyn Store>, reopen: &mut dyn Reopen) {
    let f = flow("audit-reopen");
    let before = event(&f, T0, &["crm"]);
    append_ok(&*store, vec![before.clone()]).await;
    let store = reopen.reopen(store).await;
    let after = event(&f, T0 + 1, &["crm"]);
    append_ok(&*store, vec![after.clone()]).await;
    let accepted: Vec<EventId> = of_flow(&audit_trail(&*store).await, &f)
        .into_iter()
        .filter_map(|e| match e {
            AuditEntry::Accepted { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, vec![before.id, after.id]);
}

/// A commit that fails leaves no audit record, and the chain goes on from the last one
/// committed once commits work again.
pub async fn audit_chain_skips_failed_commits(
    store: Arc<dyn Store>,
    faults: &mut dyn CommitFaults,
) {
    let store = &*store;
    let f = flow("audit-fault");
    let before = event(&f, T0, &["crm"]);
    append_ok(store, vec![before.clone()]).await;
    faults.fail_commits(true).await;
    let refused = event(&f, T0 + 1, &["crm"]);
    assert!(store.append(vec![refused.clone()]).await.is_err());
    faults.fail_commits(false).await;
    store.ping().await.expect("ready again");
    let after = event(&f, T0 + 2, &["crm"]);
    append_ok(store, vec![after.clone()]).await;
    let accepted: Vec<EventId> = of_flow(&audit_trail(store).await, &f)
        .into_iter()
        .filter_map(|e| match e {
            AuditEntry::Accepted { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, vec![before.id, after.id]);
}
