//! Cases: data keys (`create_data_keys`, `data_keys_of`, `data_key`,
//! `data_keys_not_wrapped_by`, `rewrap_data_keys`, `shred_data_keys`, `data_key_stats`).
//! Subjects are unique per case and stats are compared before and after, so the cases may
//! share one database.

use super::*;
use crate::{DataKeyRecord, NewDataKey, RewrappedKey};

fn subject(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7().simple())
}

fn new_key(subject_ref: &str, kek: &str, bytes: &[u8]) -> NewDataKey {
    NewDataKey {
        subject_ref: subject_ref.to_owned(),
        kek_id: kek.to_owned(),
        wrapped: bytes.to_vec(),
        created_at: T0,
    }
}

async fn create_one(store: &dyn Store, key: NewDataKey) -> DataKeyRecord {
    let mut got = store.create_data_keys(vec![key]).await.expect("create");
    assert_eq!(got.len(), 1);
    got.remove(0)
}

fn live(store_stats: &crate::DataKeyStats, kek: &str) -> u64 {
    store_stats
        .live_by_kek
        .iter()
        .find(|(k, _)| k == kek)
        .map_or(0, |(_, n)| *n)
}

/// A key is stored for a subject without one; a second candidate for the same subject is
/// not, and the caller gets the stored key back. Keys read back by subject and by id.
pub async fn data_keys_create_or_get(store: Arc<dyn Store>) {
    let store = &*store;
    let (a, b, c) = (subject("a"), subject("b"), subject("c"));
    let out = store
        .create_data_keys(vec![
            new_key(&a, "k1", b"wrapped-a"),
            new_key(&b, "k1", b"wrapped-b"),
        ])
        .await
        .expect("create");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].subject_ref, a);
    assert_eq!(out[0].wrapped.as_deref(), Some(&b"wrapped-a"[..]));
    assert_eq!(out[1].wrapped.as_deref(), Some(&b"wrapped-b"[..]));
    assert_ne!(out[0].id, out[1].id);
    assert!(
        out.iter()
            .all(|k| k.kek_id == "k1" && k.shredded_at.is_none())
    );

    let again = create_one(store, new_key(&a, "k1", b"another")).await;
    assert_eq!(again, out[0], "the stored key wins");

    // The same subject twice in one call: one key.
    let twice = store
        .create_data_keys(vec![new_key(&c, "k1", b"c1"), new_key(&c, "k1", b"c2")])
        .await
        .expect("create");
    assert_eq!(twice[0], twice[1]);
    assert_eq!(twice[0].wrapped.as_deref(), Some(&b"c1"[..]));

    let mut found = store
        .data_keys_of(&[a.clone(), b.clone(), subject("none")])
        .await
        .expect("by subject");
    found.sort_by_key(|k| k.id);
    assert_eq!(found, out);
    assert_eq!(
        store.data_key(out[1].id).await.expect("by id"),
        Some(out[1].clone())
    );
    assert_eq!(
        store.data_key(out[1].id + 1_000_000).await.expect("by id"),
        None
    );
}

/// Many callers creating the key of one new subject at once all get the same stored key:
/// none of them can encrypt under a key that is not the one stored.
pub async fn data_keys_concurrent_creation_agree(store: Arc<dyn Store>) {
    let s = subject("race");
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let store = Arc::clone(&store);
            let s = s.clone();
            tokio::spawn(async move { create_one(&*store, new_key(&s, "k1", &[i; 40])).await })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("task"));
    }
    assert!(got.iter().all(|k| *k == got[0]), "{got:?}");
    let stored = store.data_keys_of(&[s]).await.expect("read");
    assert_eq!(stored, vec![got[0].clone()]);
}

/// Rotation: keys of other KEKs page out in id order; a re-wrap applies only while the key
/// is still wrapped by the KEK it was read with; stats follow.
pub async fn data_keys_rewrap_in_pages(store: Arc<dyn Store>) {
    let store = &*store;
    let old = format!("old-{}", uuid::Uuid::now_v7().simple());
    let new = format!("new-{}", uuid::Uuid::now_v7().simple());
    let before = store.data_key_stats().await.expect("stats");
    let mut olds = Vec::new();
    for i in 0..5u8 {
        olds.push(create_one(store, new_key(&subject("r"), &old, &[i; 8])).await);
    }
    let current = create_one(store, new_key(&subject("r"), &new, b"fresh")).await;
    let stats = store.data_key_stats().await.expect("stats");
    assert_eq!(live(&stats, &old), 5);
    assert_eq!(live(&stats, &new), 1);
    assert_eq!(stats.shredded, before.shredded);

    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = store
            .data_keys_not_wrapped_by(&new, after, 2)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        assert!(page.iter().all(|k| k.kek_id != new));
        after = page.last().map(|k| k.id);
        let mine: Vec<RewrappedKey> = page
            .iter()
            .filter(|k| k.kek_id == old)
            .map(|k| RewrappedKey {
                id: k.id,
                from_kek: old.clone(),
                kek_id: new.clone(),
                wrapped: b"rewrapped".to_vec(),
            })
            .collect();
        seen.extend(mine.iter().map(|k| k.id));
        let n = store.rewrap_data_keys(mine.clone()).await.expect("rewrap");
        assert_eq!(n, mine.len() as u64);
        // Again: they are no longer wrapped by the old KEK.
        assert_eq!(store.rewrap_data_keys(mine).await.expect("again"), 0);
    }
    assert_eq!(
        seen,
        olds.iter().map(|k| k.id).collect::<Vec<_>>(),
        "id order"
    );
    assert!(!seen.contains(&current.id));
    let stats = store.data_key_stats().await.expect("stats");
    assert_eq!(live(&stats, &old), 0);
    assert_eq!(live(&stats, &new), 6);
    let k = store
        .data_key(olds[0].id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        (k.kek_id.as_str(), k.wrapped.as_deref()),
        (new.as_str(), Some(&b"rewrapped"[..]))
    );
}

/// Shredding destroys a subject's wrapped key and keeps a tombstone; other subjects keep
/// theirs; a re-wrap never brings a shredded key back; the subject seen again gets a new
/// key.
pub async fn data_keys_shred_one_subject(store: Arc<dyn Store>) {
    let store = &*store;
    let (a, b) = (subject("erase"), subject("keep"));
    let k1 = subject("kek");
    let ka = create_one(store, new_key(&a, &k1, b"key-of-a")).await;
    let kb = create_one(store, new_key(&b, &k1, b"key-of-b")).await;
    let before = store.data_key_stats().await.expect("stats");

    assert_eq!(store.shred_data_keys(&a, T0 + 10).await.expect("shred"), 1);
    let gone = store
        .data_key(ka.id)
        .await
        .expect("read")
        .expect("tombstone");
    assert_eq!(gone.wrapped, None);
    assert_eq!(gone.shredded_at, Some(T0 + 10));
    assert_eq!(gone.subject_ref, a);
    assert_eq!(
        store
            .data_keys_of(std::slice::from_ref(&a))
            .await
            .expect("read"),
        vec![]
    );
    assert_eq!(store.data_key(kb.id).await.expect("read"), Some(kb.clone()));
    let stats = store.data_key_stats().await.expect("stats");
    assert_eq!(stats.shredded, before.shredded + 1);
    assert_eq!(live(&stats, &k1), live(&before, &k1) - 1);

    assert_eq!(store.shred_data_keys(&a, T0 + 20).await.expect("again"), 0);
    let rewrapped = store
        .rewrap_data_keys(vec![RewrappedKey {
            id: ka.id,
            from_kek: k1.clone(),
            kek_id: "k2".into(),
            wrapped: b"resurrected".to_vec(),
        }])
        .await
        .expect("rewrap");
    assert_eq!(rewrapped, 0, "a tombstone stays one");
    assert_eq!(
        store
            .data_key(ka.id)
            .await
            .expect("read")
            .expect("kept")
            .wrapped,
        None
    );

    let fresh = create_one(store, new_key(&a, &k1, b"new-key-of-a")).await;
    assert_ne!(fresh.id, ka.id);
    assert_eq!(fresh.wrapped.as_deref(), Some(&b"new-key-of-a"[..]));
}
