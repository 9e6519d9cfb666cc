//! The data keys of the hub: one per data subject, created on first use, kept in the store
//! wrapped by the current key-encryption key, and held unwrapped in a bounded memory cache.
//!
//! **One creation path.** A data key is only ever created through
//! [`Store::create_data_keys`], a create-or-get in the store's writer: the candidate is
//! stored unless the subject already has a live key, and every caller gets back (and
//! encrypts under) the key that is stored — durable before the call returns. So two events
//! of a new subject arriving at once can never be encrypted under two keys of which only
//! one is kept, and no event is acknowledged under a key the store could lose. The price is
//! one more (group-committed) write the first time a subject is seen.
//!
//! **Erasure** shreds the subject's keys in the store first, then drops them from memory.
//! Keys read from the store while an erasure ran are not cached (an erasure counter is
//! checked under the cache lock), so a shredded key never comes back from the cache. An
//! event accepted while its subject is being erased may be encrypted under the key being
//! shredded: it is erased with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_store::{
    DataKeyId, DataKeyRecord, DataKeyStats, NO_SUBJECT, NewDataKey, RewrappedKey, Store,
    StoreError, now_millis,
};

use crate::at_rest::Found;
use crate::cache::Recent;
use crate::envelope::{DataKey, Kek};
use crate::hasher::KeyedHasher;

/// Unwrapped data keys kept in memory, at most.
pub const CACHED_KEYS: usize = 16_384;

/// Why a data key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed (may pass: try again).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// An envelope names a key the store never had (the data is broken).
    #[error("data key {0} is not in the store")]
    Unknown(DataKeyId),
    /// A stored key is wrapped by a key-encryption key that is not configured.
    #[error(
        "data key {id} is wrapped by key-encryption key `{kek}`, which settings.protection.keys does not list"
    )]
    KekMissing { id: DataKeyId, kek: String },
    /// A wrapped key does not unwrap (altered, or a different key under the same KEK id).
    #[error(
        "data key {id} does not unwrap with key-encryption key `{kek}` (altered, or another key under that id)"
    )]
    Unwrap { id: DataKeyId, kek: String },
}

impl KeyError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KeyError::Store(
                StoreError::Unavailable(_) | StoreError::Closed | StoreError::Backend(_)
            )
        )
    }
}

/// What a key rotation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Keys re-wrapped under the current KEK.
    pub rewrapped: u64,
    /// Keys that changed meanwhile (shredded, or re-wrapped by another rotation).
    pub skipped: u64,
}

struct Caches {
    by_subject: Recent<String, Arc<DataKey>>,
    by_id: Recent<DataKeyId, Found>,
    /// Erasures so far: a key read from the store before an erasure is not cached after it.
    erasures: u64,
}

/// See the [module docs](self).
pub struct Keyring {
    /// The current KEK first.
    keks: Vec<Kek>,
    hasher: Arc<KeyedHasher>,
    store: Arc<dyn Store>,
    caches: Mutex<Caches>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("keks", &self.keks)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring over `store` with `keks` (the current one first, at least one) and the
    /// hasher of subject references.
    pub fn new(keks: Vec<Kek>, hasher: Arc<KeyedHasher>, store: Arc<dyn Store>) -> Keyring {
        assert!(!keks.is_empty(), "a keyring needs a key-encryption key");
        Keyring {
            keks,
            hasher,
            store,
            caches: Mutex::new(Caches {
                by_subject: Recent::new(CACHED_KEYS),
                by_id: Recent::new(CACHED_KEYS),
                erasures: 0,
            }),
        }
    }

    /// The current key-encryption key's id.
    pub fn current_kek(&self) -> &str {
        self.keks[0].id()
    }

    /// The ids of the configured key-encryption keys, the current one first.
    pub fn kek_ids(&self) -> impl Iterator<Item = &str> {
        self.keks.iter().map(Kek::id)
    }

    /// The keyed hasher of subject references.
    pub fn hasher(&self) -> &Arc<KeyedHasher> {
        &self.hasher
    }

    /// The reference of the subject identified by `identifier` (`None`: the "no subject"
    /// reference).
    pub fn subject_ref(&self, identifier: Option<&str>) -> String {
        identifier.map_or_else(|| NO_SUBJECT.to_owned(), |s| self.hasher.subject_ref(s))
    }

    fn caches(&self) -> MutexGuard<'_, Caches> {
        self.caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The data key of each subject reference (as [`Keyring::subject_ref`] makes them), in
    /// order: from memory, else from the store, else created (durably) in one store call for
    /// all that lack one.
    pub async fn for_subjects(&self, refs: &[String]) -> Result<Vec<Arc<DataKey>>, KeyError> {
        let mut found: HashMap<&str, Arc<DataKey>> = HashMap::new();
        let mut missing: Vec<String> = Vec::new();
        let epoch = {
            let mut c = self.caches();
            for r in refs {
                if found.contains_key(r.as_str()) || missing.contains(r) {
                    continue;
                }
                match c.by_subject.get(r) {
                    Some(k) => {
                        found.insert(r, k);
                    }
                    None => missing.push(r.clone()),
                }
            }
            c.erasures
        };
        if !missing.is_empty() {
            let mut loaded = Vec::new();
            for record in self.store.data_keys_of(&missing).await? {
                loaded.push(self.unwrap(&record)?);
            }
            let absent: Vec<&String> = missing
                .iter()
                .filter(|r| !loaded.iter().any(|k| k.subject_ref() == r.as_str()))
                .collect();
            if !absent.is_empty() {
                let kek = &self.keks[0];
                let now = now_millis();
                let candidates = absent
                    .iter()
                    .map(|r| NewDataKey {
                        subject_ref: (*r).clone(),
                        kek_id: kek.id().to_owned(),
                        wrapped: kek.new_data_key(r).1,
                        created_at: now,
                    })
                    .collect();
                for record in self.store.create_data_keys(candidates).await? {
                    loaded.push(self.unwrap(&record)?);
                }
            }
            let mut c = self.caches();
            for key in loaded {
                if c.erasures == epoch {
                    c.by_subject
                        .insert(key.subject_ref().to_owned(), key.clone());
                    c.by_id.insert(key.id(), Found::Key(key.clone()));
                }
                let r = refs
                    .iter()
                    .find(|r| r.as_str() == key.subject_ref())
                    .map(String::as_str);
                if let Some(r) = r {
                    found.insert(r, key);
                }
            }
        }
        refs.iter()
            .map(|r| {
                found.get(r.as_str()).cloned().ok_or_else(|| {
                    KeyError::Store(StoreError::Backend(
                        "the store answered no data key for a subject".to_owned(),
                    ))
                })
            })
            .collect()
    }

    /// The data keys `ids` (as envelopes name them): each the key, or shredded.
    pub async fn by_ids(
        &self,
        ids: impl IntoIterator<Item = DataKeyId>,
    ) -> Result<BTreeMap<DataKeyId, Found>, KeyError> {
        let mut out = BTreeMap::new();
        let mut missing = Vec::new();
        let epoch = {
            let mut c = self.caches();
            for id in ids {
                match c.by_id.get(&id) {
                    Some(found) => {
                        out.insert(id, found);
                    }
                    None => missing.push(id),
                }
            }
            c.erasures
        };
        for id in missing {
            let record = self
                .store
                .data_key(id)
                .await?
                .ok_or(KeyError::Unknown(id))?;
            let found = match &record.wrapped {
                None => Found::Shredded,
                Some(_) => Found::Key(self.unwrap(&record)?),
            };
            let mut c = self.caches();
            if c.erasures == epoch || matches!(found, Found::Shredded) {
                c.by_id.insert(id, found.clone());
            }
            out.insert(id, found);
        }
        Ok(out)
    }

    fn unwrap(&self, record: &DataKeyRecord) -> Result<Arc<DataKey>, KeyError> {
        let wrapped = record.wrapped.as_deref().ok_or_else(|| {
            KeyError::Store(StoreError::Backend(format!(
                "data key {} is shredded",
                record.id
            )))
        })?;
        let kek = self
            .keks
            .iter()
            .find(|k| k.id() == record.kek_id)
            .ok_or_else(|| KeyError::KekMissing {
                id: record.id,
                kek: record.kek_id.clone(),
            })?;
        let key = kek
            .unwrap(&record.subject_ref, wrapped)
            .map_err(|_| KeyError::Unwrap {
                id: record.id,
                kek: record.kek_id.clone(),
            })?;
        Ok(Arc::new(DataKey::new(record.id, &record.subject_ref, &key)))
    }

    /// Crypto-shred the data keys of the subject identified by `identifier`: in the store,
    /// then in memory. Answers how many keys were shredded (0: the subject had none).
    pub async fn erase(&self, identifier: &str) -> Result<u64, KeyError> {
        let subject_ref = self.hasher.subject_ref(identifier);
        let n = self
            .store
            .shred_data_keys(&subject_ref, now_millis())
            .await?;
        let mut c = self.caches();
        c.erasures += 1;
        c.by_subject.remove_where(|r, _| *r == subject_ref);
        c.by_id.remove_where(|_, found| match found {
            Found::Key(k) => k.subject_ref() == subject_ref,
            Found::Shredded => false,
        });
        Ok(n)
    }

    /// Re-wrap every live data key wrapped by an older KEK under the current one, `page`
    /// keys at a time. Events are untouched; the hub keeps serving (keys in memory are
    /// unchanged). Running it again finds nothing to do.
    pub async fn rotate(&self, page: usize) -> Result<Rotation, KeyError> {
        let current = &self.keks[0];
        let mut done = Rotation::default();
        let mut after = None;
        loop {
            let records = self
                .store
                .data_keys_not_wrapped_by(current.id(), after, page.max(1))
                .await?;
            let Some(last) = records.last() else {
                return Ok(done);
            };
            after = Some(last.id);
            let mut rewrapped = Vec::with_capacity(records.len());
            for record in &records {
                let key = self.unwrap_bytes(record)?;
                rewrapped.push(RewrappedKey {
                    id: record.id,
                    from_kek: record.kek_id.clone(),
                    kek_id: current.id().to_owned(),
                    wrapped: current.wrap(&record.subject_ref, &key),
                });
            }
            let n = self.store.rewrap_data_keys(rewrapped).await?;
            done.rewrapped += n;
            done.skipped += records.len() as u64 - n;
        }
    }

    fn unwrap_bytes(
        &self,
        record: &DataKeyRecord,
    ) -> Result<zeroize::Zeroizing<[u8; crate::envelope::KEY_BYTES]>, KeyError> {
        let kek = self
            .keks
            .iter()
            .find(|k| k.id() == record.kek_id)
            .ok_or_else(|| KeyError::KekMissing {
                id: record.id,
                kek: record.kek_id.clone(),
            })?;
        let wrapped = record.wrapped.as_deref().unwrap_or_default();
        kek.unwrap(&record.subject_ref, wrapped)
            .map_err(|_| KeyError::Unwrap {
                id: record.id,
                kek: record.kek_id.clone(),
            })
    }

    /// The store's data keys per KEK and the number shredded.
    pub async fn stats(&self) -> Result<DataKeyStats, KeyError> {
        Ok(self.store.data_key_stats().await?)
    }

    /// Refuse a store that holds live data keys wrapped by a KEK that is not configured:
    /// the events encrypted under them could not be read. The message names the KEK id.
    pub async fn check_store(&self) -> Result<(), String> {
        let stats = self
            .store
            .data_key_stats()
            .await
            .map_err(|e| e.to_string())?;
        let unknown: Vec<String> = stats
            .live_by_kek
            .iter()
            .filter(|(kek, n)| *n > 0 && !self.keks.iter().any(|k| k.id() == kek))
            .map(|(kek, n)| format!("`{kek}` ({n} data keys)"))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the store holds data keys wrapped by key-encryption keys that \
             settings.protection.keys does not list: {}. Add each back to `keys` (after the \
             current one) and run `ferry keys rotate` before removing it",
            unknown.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use ferry_store::sqlite::{SqliteOptions, SqliteStore};

    fn kek(id: &str, byte: u8) -> Kek {
        Kek::from_base64(id, &STANDARD.encode([byte; 32])).unwrap()
    }

    fn ring(keks: Vec<Kek>, store: &Arc<dyn Store>) -> Keyring {
        Keyring::new(
            keks,
            Arc::new(KeyedHasher::new(&[3; 32]).unwrap()),
            store.clone(),
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn keys_are_created_once_per_subject_rotated_and_erased() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let r = ring(vec![kek("k1", 1)], &store);
        let (a, b) = (
            r.subject_ref(Some("ada@x.io")),
            r.subject_ref(Some("bob@x.io")),
        );
        let keys = r
            .for_subjects(&[a.clone(), b.clone(), a.clone()])
            .await
            .unwrap();
        assert_eq!(keys[0].id(), keys[2].id());
        assert_ne!(keys[0].id(), keys[1].id());
        // A second keyring (a restart) finds the same keys in the store.
        let again = ring(vec![kek("k1", 1)], &store);
        let k = again.for_subjects(std::slice::from_ref(&a)).await.unwrap();
        assert_eq!(k[0].id(), keys[0].id());

        // Rotation to k2: every key re-wrapped once; a keyring with only k2 reads them.
        let rotating = ring(vec![kek("k2", 2), kek("k1", 1)], &store);
        assert_eq!(rotating.check_store().await, Ok(()));
        let only_new = ring(vec![kek("k2", 2)], &store);
        let refused = only_new.check_store().await.unwrap_err();
        assert!(refused.contains("`k1` (2 data keys)"), "{refused}");
        assert_eq!(
            rotating.rotate(1).await.unwrap(),
            Rotation {
                rewrapped: 2,
                skipped: 0
            }
        );
        assert_eq!(rotating.rotate(1).await.unwrap(), Rotation::default());
        assert_eq!(only_new.check_store().await, Ok(()));
        let read = only_new.by_ids([keys[0].id(), keys[1].id()]).await.unwrap();
        assert!(read.values().all(|f| matches!(f, Found::Key(_))));

        // Erasure: a's key is shredded, in the store and in memory; b's stays.
        assert_eq!(only_new.erase("ada@x.io").await.unwrap(), 1);
        let read = only_new.by_ids([keys[0].id(), keys[1].id()]).await.unwrap();
        assert!(matches!(read[&keys[0].id()], Found::Shredded));
        assert!(matches!(read[&keys[1].id()], Found::Key(_)));
        // The subject seen again gets a new key.
        let fresh = only_new.for_subjects(&[a]).await.unwrap();
        assert_ne!(fresh[0].id(), keys[0].id());
        assert_eq!(only_new.erase("nobody@x.io").await.unwrap(), 0);
    }
}
