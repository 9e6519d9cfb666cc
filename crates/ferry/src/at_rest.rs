//! Encryption at rest in the hub (`settings.protection.keys`): what ingress encrypts before
//! the store sees an event, and what delivery, the admin API and rejected-record replays
//! decrypt. The crypto and the data keys are `ferry_protect`'s ([`Keyring`]); this module
//! applies them to the hub's data.
//!
//! - An event whose schema classifies fields (see `ferry_protect::Classifier`) is stored
//!   with each classified value replaced by an envelope, under the data key of its subject
//!   (the schema's `x-ferry-subject` field), or the hub-wide "no subject" key.
//! - Keys the hub derives from events for its own use are stored as keyed hashes
//!   ([`AtRest::stored_key`]): ordering keys, `dedupe` window keys, and a sender id that
//!   carries a classified value.
//! - A queue source's rejected record keeps its body encrypted under the "no subject" key.
//! - An attempt's response excerpt is encrypted under the key of the event it answered.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use ferry_config::Config;
use ferry_protect::at_rest::{Found, OpenFailure, Opened, key_ids, open_fields, seal_fields};
use ferry_protect::envelope::{self, Aad};
use ferry_protect::{Classifier, FieldClasses, Kek, KeyError, KeyedHasher, Keyring};
use ferry_schema::SchemaRegistry;
use ferry_store::{NO_SUBJECT, NewEvent, NewRejected, Store};
use secrecy::ExposeSecret;
use serde_json::Value;

/// Data keys of subjects kept unwrapped in memory come from here; see the module docs.
pub struct AtRest {
    keyring: Arc<Keyring>,
    classifier: Classifier,
}

impl std::fmt::Debug for AtRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtRest")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

/// Why a stored value could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// A data key could not be had (the store failed, or a KEK is missing).
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The stored value is broken (altered, moved, not JSON).
    #[error("{0}")]
    Broken(String),
}

impl Unreadable {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Unreadable::Key(k) if k.is_transient())
    }
}

impl AtRest {
    /// Encryption at rest per `config`, over `store`: `None` when `settings.protection.keys`
    /// is empty (and the store holds no data key: a store whose events are encrypted cannot
    /// be served without its keys). Refused, naming the setting: a KEK that cannot be read
    /// or is not 32 bytes of base64, two KEKs with one id, no `hash_key`, a `hash_key`
    /// shorter than 32 bytes, or a store holding data keys wrapped by a KEK not listed.
    pub async fn open(config: &Config, store: Arc<dyn Store>) -> Result<Option<Arc<AtRest>>> {
        let protection = &config.settings.protection;
        if protection.keys.is_empty() {
            let stats = store.data_key_stats().await?;
            let live: u64 = stats.live_by_kek.iter().map(|(_, n)| n).sum();
            if live > 0 {
                let keks: Vec<&str> = stats.live_by_kek.iter().map(|(k, _)| k.as_str()).collect();
                bail!(
                    "settings.protection.keys is empty, but the store holds {live} data keys \
                     (wrapped by key-encryption keys {}): its encrypted fields could not be read. \
                     Configure those keys again",
                    keks.join(", ")
                );
            }
            return Ok(None);
        }
        let root = &config.root;
        let mut keks = Vec::with_capacity(protection.keys.len());
        for (i, k) in protection.keys.iter().enumerate() {
            let at = format!("settings.protection.keys[{i}] (id `{}`)", k.id);
            if k.id.is_empty()
                || !k
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                bail!("{at}: a key id is letters, digits, `-`, `_` and `.`");
            }
            if protection.keys[..i].iter().any(|o| o.id == k.id) {
                bail!("{at}: another key already has this id");
            }
            let text = k.key.resolve(root).map_err(|e| anyhow!("{at}: key: {e}"))?;
            let kek = Kek::from_base64(&k.id, text.expose_secret())
                .map_err(|e| anyhow!("{at}: key {e}"))?;
            keks.push(kek);
        }
        let hash_key = protection.hash_key.as_ref().ok_or_else(|| {
            anyhow!(
                "settings.protection.hash_key is required when settings.protection.keys is set: \
                 data keys are per data subject, found by a keyed hash of the subject's identifier"
            )
        })?;
        let hash_key = hash_key
            .resolve(root)
            .map_err(|e| anyhow!("settings.protection.hash_key: {e}"))?;
        let hasher = KeyedHasher::new(hash_key.expose_secret().as_bytes())
            .map_err(|e| anyhow!("settings.protection.hash_key: {e}"))?;
        let keyring = Arc::new(Keyring::new(keks, Arc::new(hasher), store));
        keyring
            .check_store()
            .await
            .map_err(|e| anyhow!("{e}"))
            .context("settings.protection.keys")?;
        let schemas = SchemaRegistry::load(config).map_err(|problems| {
            let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow!("invalid schemas:\n{}", all.join("\n"))
        })?;
        Ok(Some(Arc::new(AtRest {
            keyring,
            classifier: Classifier::new(config, &schemas),
        })))
    }

    /// The data keys.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The classified fields of an event of `flow` with type `event_type`, if its schema
    /// classifies any.
    pub fn classes(&self, flow: &str, event_type: Option<&str>) -> Option<&Arc<FieldClasses>> {
        self.classifier.classes(flow, event_type)
    }

    /// What the store keeps in place of `text`, a key derived from an event (`kind`:
    /// `order`, `dedupe`, `sender`).
    pub fn stored_key(&self, kind: &str, text: &str) -> String {
        self.keyring.hasher().stored_key(kind, text)
    }

    /// Encrypt the classified fields of `unsealed` events (each its index in `events` and
    /// its parsed value) and write their payloads; a sender id that carries a classified
    /// value is stored hashed. One key look-up for them all.
    pub async fn seal(
        &self,
        events: &mut [NewEvent],
        unsealed: Vec<Unsealed>,
    ) -> Result<(), KeyError> {
        let mut work = Vec::with_capacity(unsealed.len());
        let mut refs = Vec::with_capacity(unsealed.len());
        for mut u in unsealed {
            if !u.classified && u.classes.categories_present(&u.value).is_empty() {
                continue;
            }
            refs.push(u.subject_ref.take().unwrap_or_else(|| {
                self.keyring
                    .subject_ref(u.classes.subject(&u.value).as_deref())
            }));
            work.push(u);
        }
        if work.is_empty() {
            return Ok(());
        }
        let keys = self.keyring.for_subjects(&refs).await?;
        for (mut u, key) in work.into_iter().zip(keys) {
            let event = &mut events[u.index];
            if let Some(sender) = event.dedupe_key.as_deref()
                && carries_classified(&u.classes, &mut u.value, sender)
            {
                event.dedupe_key = Some(self.stored_key("sender", sender));
            }
            seal_fields(&u.classes, &mut u.value, &key, &event.id.to_string());
            event.payload =
                Bytes::from(serde_json::to_vec(&u.value).expect("a JSON value writes as JSON"));
        }
        Ok(())
    }

    /// Encrypt each rejected record's body under the "no subject" key.
    pub async fn seal_rejected(&self, records: &mut [NewRejected]) -> Result<(), KeyError> {
        if records.is_empty() {
            return Ok(());
        }
        let key = self.no_subject_key().await?;
        for r in records {
            let aad = Aad::Rejected {
                record: &r.id.to_string(),
            };
            r.payload = Bytes::from(key.seal(aad, &r.payload));
        }
        Ok(())
    }

    async fn no_subject_key(&self) -> Result<Arc<ferry_protect::DataKey>, KeyError> {
        let mut keys = self.keyring.for_subjects(&[NO_SUBJECT.to_owned()]).await?;
        Ok(keys.remove(0))
    }

    /// A rejected record's body as received, if it was stored encrypted (else as it is).
    pub async fn open_rejected(&self, record: &str, payload: &Bytes) -> Result<Bytes, Unreadable> {
        let Some(text) = std::str::from_utf8(payload)
            .ok()
            .filter(|t| t.starts_with(envelope::PREFIX))
        else {
            return Ok(payload.clone());
        };
        let (id, _) = envelope::parse(text)
            .ok_or_else(|| Unreadable::Broken("a malformed envelope".into()))?;
        match self.keyring.by_ids([id]).await?.remove(&id) {
            Some(Found::Key(key)) => key
                .open(Aad::Rejected { record }, text)
                .map(|plain| Bytes::from(plain.to_vec()))
                .map_err(|e| Unreadable::Broken(format!("the rejected record's body: {e}"))),
            _ => Err(Unreadable::Broken(format!(
                "data key {id} of the rejected record is shredded"
            ))),
        }
    }

    /// The stored event `event_id`'s payload with every encrypted field decrypted (`null`
    /// where its key was shredded), or `None` when it holds no envelope (nothing to do: not
    /// even parsed).
    pub async fn open_payload(
        &self,
        event_id: &str,
        payload: &[u8],
    ) -> Result<Option<(Value, Opened)>, Unreadable> {
        if !envelope::mentions_envelope(payload) {
            return Ok(None);
        }
        let mut value: Value = serde_json::from_slice(payload)
            .map_err(|e| Unreadable::Broken(format!("the stored event is not JSON: {e}")))?;
        let opened = self.open_value(event_id, &mut value).await?;
        Ok(Some((value, opened)))
    }

    /// Decrypt every encrypted field of `value`, the stored event `event_id`.
    pub async fn open_value(
        &self,
        event_id: &str,
        value: &mut Value,
    ) -> Result<Opened, Unreadable> {
        let ids = key_ids(value);
        if ids.is_empty() {
            return Ok(Opened::default());
        }
        let keys = self.keyring.by_ids(ids).await?;
        open_fields(value, event_id, &keys).map_err(|e| match e {
            OpenFailure::MissingKey(id) => Unreadable::Key(KeyError::Unknown(id)),
            broken => Unreadable::Broken(broken.to_string()),
        })
    }

    /// What to store of `excerpt`, an attempt's response to delivery `delivery_id`: encrypted
    /// under the data key of its event (which its stored `payload` names), as it is when the
    /// event has no encrypted field, or nothing when that key was shredded meanwhile.
    pub async fn seal_excerpt(
        &self,
        delivery_id: &str,
        payload: &[u8],
        excerpt: &str,
    ) -> Result<Excerpt, KeyError> {
        let Some(id) = envelope::first_key_id(payload) else {
            return Ok(Excerpt::Clear);
        };
        Ok(match self.keyring.by_ids([id]).await?.remove(&id) {
            Some(Found::Key(key)) => Excerpt::Sealed(key.seal(
                Aad::Excerpt {
                    delivery: delivery_id,
                },
                excerpt.as_bytes(),
            )),
            _ => Excerpt::Dropped,
        })
    }

    /// A stored excerpt as the destination sent it: decrypted if encrypted (`None` when its
    /// key was shredded), as it is otherwise.
    pub async fn open_excerpt(
        &self,
        delivery_id: &str,
        stored: &str,
    ) -> Result<Option<String>, Unreadable> {
        let Some((id, _)) = envelope::parse(stored) else {
            return Ok(Some(stored.to_owned()));
        };
        match self.keyring.by_ids([id]).await?.remove(&id) {
            Some(Found::Key(key)) => key
                .open(
                    Aad::Excerpt {
                        delivery: delivery_id,
                    },
                    stored,
                )
                .map(|plain| Some(String::from_utf8_lossy(&plain).into_owned()))
                .map_err(|e| Unreadable::Broken(format!("the response excerpt: {e}"))),
            _ => Ok(None),
        }
    }
}

/// What to store of a response excerpt (see [`AtRest::seal_excerpt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Excerpt {
    /// The excerpt as it is: its event has no encrypted field.
    Clear,
    /// Encrypted, as this envelope.
    Sealed(String),
    /// Nothing: the event's data key was shredded.
    Dropped,
}

/// An event made by ingress whose classified fields wait to be encrypted.
#[derive(Debug)]
pub struct Unsealed {
    /// Its index among the events made.
    pub index: usize,
    /// Its payload, parsed.
    pub value: Value,
    /// Its schema's classified fields.
    pub classes: Arc<FieldClasses>,
    /// Whether the audit record already found a value of a category in it; when not, the
    /// fields are looked at again (an event without one is stored as it came).
    pub classified: bool,
    /// Its subject's reference, when the audit record already has it (the same keyed hash
    /// of the same identifier); else it is computed when sealing.
    pub subject_ref: Option<String>,
}

/// Whether `sender` (a sender id) is, or starts a derived id with (`<id>#…`, `<id>@…`), a
/// classified value of `value`.
fn carries_classified(classes: &FieldClasses, value: &mut Value, sender: &str) -> bool {
    let mut found = false;
    classes.visit_at_mut(value, &mut |_, _, v| {
        let number;
        let text = match v {
            Value::String(s) => s.as_str(),
            Value::Number(n) => {
                number = n.to_string();
                number.as_str()
            }
            _ => return,
        };
        if !text.is_empty()
            && (sender == text
                || sender
                    .strip_prefix(text)
                    .is_some_and(|rest| rest.starts_with('#') || rest.starts_with('@')))
        {
            found = true;
        }
    });
    found
}

/// For the admin API: `payload` with its encrypted fields decrypted for display, or the
/// problem as text.
pub async fn display_payload(at_rest: Option<&AtRest>, event_id: &str, payload: &Bytes) -> Value {
    let parsed = || {
        serde_json::from_slice(payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
    };
    let Some(at_rest) = at_rest else {
        return parsed();
    };
    match at_rest.open_payload(event_id, payload).await {
        Ok(Some((value, _))) => value,
        Ok(None) => parsed(),
        Err(e) => {
            tracing::warn!(event = %event_id, error = %e, "a stored event could not be decrypted for display");
            Value::String(format!("(encrypted; cannot be decrypted: {e})"))
        }
    }
}

/// Keys per KEK for display, every configured KEK listed (in `keyring` order).
pub fn keys_by_kek(keyring: &Keyring, stats: &ferry_store::DataKeyStats) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = keyring.kek_ids().map(|k| (k.to_owned(), 0)).collect();
    for (kek, n) in &stats.live_by_kek {
        out.insert(kek.clone(), *n);
    }
    out
}
