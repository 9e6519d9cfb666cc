//! Classified fields of an event, encrypted in place for the store and decrypted for a
//! delivery or a display.
//!
//! [`seal_fields`] replaces each classified value (per the schema's [`FieldClasses`]) by
//! the envelope of its JSON text, the associated data being the event id and the value's
//! own JSON pointer. [`open_fields`] does not need the schema: it finds every envelope in
//! the stored event, so an event stays readable whatever later config changes do to the
//! annotations. A value whose data key was shredded becomes `null`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferry_store::DataKeyId;
use serde_json::Value;

use crate::classify::{FieldClasses, push_segment};
use crate::envelope::{self, Aad, DataKey};

/// Encrypt every classified value of `value` (the event `event_id`) under `key`; answers how
/// many values were encrypted.
pub fn seal_fields(
    classes: &FieldClasses,
    value: &mut Value,
    key: &DataKey,
    event_id: &str,
) -> usize {
    let mut sealed = 0;
    classes.visit_at_mut(value, &mut |_, pointer, v| {
        let text = serde_json::to_vec(v).expect("a JSON value writes as JSON");
        let aad = Aad::Field {
            event: event_id,
            pointer,
        };
        *v = Value::String(key.seal(aad, &text));
        sealed += 1;
    });
    sealed
}

/// The ids of the data keys whose envelopes `value` holds (at any depth).
pub fn key_ids(value: &Value) -> BTreeSet<DataKeyId> {
    let mut out = BTreeSet::new();
    collect(value, &mut out);
    out
}

fn collect(value: &Value, out: &mut BTreeSet<DataKeyId>) {
    match value {
        Value::String(s) => {
            if let Some((id, _)) = envelope::parse(s) {
                out.insert(id);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// A data key as found for decryption.
#[derive(Debug, Clone)]
pub enum Found {
    /// The key: its envelopes open.
    Key(Arc<DataKey>),
    /// Shredded: its envelopes become `null`.
    Shredded,
}

/// What [`open_fields`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Values decrypted.
    pub opened: usize,
    /// Values whose key was shredded, now `null`.
    pub shredded: usize,
}

/// Why an event's fields could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenFailure {
    /// An envelope names a key not among `keys`.
    MissingKey(DataKeyId),
    /// An envelope at this pointer does not open (altered, moved, or the wrong key).
    Broken { pointer: String },
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenFailure::MissingKey(id) => write!(f, "data key {id} is not in the store"),
            OpenFailure::Broken { pointer } => write!(
                f,
                "the encrypted value at `{pointer}` does not decrypt (altered or moved)"
            ),
        }
    }
}

/// Decrypt every envelope of `value` (the event `event_id`) with `keys` (by id, as
/// [`key_ids`] listed them): each becomes the value it encrypted, or `null` when its key
/// was shredded.
pub fn open_fields(
    value: &mut Value,
    event_id: &str,
    keys: &BTreeMap<DataKeyId, Found>,
) -> Result<Opened, OpenFailure> {
    let mut opened = Opened::default();
    let mut pointer = String::new();
    open_at(value, event_id, keys, &mut pointer, &mut opened)?;
    Ok(opened)
}

fn open_at(
    value: &mut Value,
    event_id: &str,
    keys: &BTreeMap<DataKeyId, Found>,
    pointer: &mut String,
    opened: &mut Opened,
) -> Result<(), OpenFailure> {
    let len = pointer.len();
    match value {
        Value::String(s) => {
            let Some((id, _)) = envelope::parse(s) else {
                return Ok(());
            };
            match keys.get(&id) {
                None => return Err(OpenFailure::MissingKey(id)),
                Some(Found::Shredded) => {
                    *value = Value::Null;
                    opened.shredded += 1;
                }
                Some(Found::Key(key)) => {
                    let aad = Aad::Field {
                        event: event_id,
                        pointer,
                    };
                    let broken = || OpenFailure::Broken {
                        pointer: pointer.clone(),
                    };
                    let plain = key.open(aad, s).map_err(|_| broken())?;
                    let mut inner: Value = serde_json::from_slice(&plain).map_err(|_| broken())?;
                    // A classified object may hold classified fields encrypted before it.
                    open_at(&mut inner, event_id, keys, pointer, opened)?;
                    *value = inner;
                    opened.opened += 1;
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                push_segment(pointer, &i.to_string());
                open_at(item, event_id, keys, pointer, opened)?;
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                push_segment(pointer, k);
                open_at(item, event_id, keys, pointer, opened)?;
                pointer.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classes() -> FieldClasses {
        FieldClasses::new(
            &[
                ("/customer".into(), "user.contact".into()),
                ("/customer/email".into(), "user.contact.email".into()),
                ("/lines/*/iban".into(), "user.financial.bank_account".into()),
            ],
            &["/customer/email".into()],
        )
    }

    #[test]
    fn seals_classified_values_and_opens_them_back() {
        let key = Arc::new(DataKey::new(3, "s", &[5; 32]));
        let original = json!({
            "customer": {"email": "ada@example.com", "age": 36},
            "lines": [{"iban": "DE89370400440532013000", "qty": 2}, {"qty": 1}],
            "total": 10
        });
        let mut v = original.clone();
        let n = seal_fields(&classes(), &mut v, &key, "fev_1");
        assert_eq!(n, 3, "email, the customer object, one iban");
        // Each classified value is now an envelope (the customer object whole, its age
        // with it); the clear texts are nowhere. (A short number is not searched for in the
        // text: the base64 of a ciphertext may hold any two digits.)
        for sealed in [&v["customer"], &v["lines"][0]["iban"]] {
            let s = sealed.as_str().expect("an envelope is a string");
            assert!(s.starts_with(envelope::PREFIX), "{s}");
        }
        let text = v.to_string();
        for clear in ["ada@example.com", "DE89370400440532013000", "\"age\""] {
            assert!(!text.contains(clear), "{clear} in {text}");
        }
        assert_eq!(v["total"], 10);
        assert_eq!(v["lines"][0]["qty"], 2);
        assert_eq!(key_ids(&v).into_iter().collect::<Vec<_>>(), [3]);
        let keys = BTreeMap::from([(3, Found::Key(key.clone()))]);
        let opened = open_fields(&mut v, "fev_1", &keys).unwrap();
        assert_eq!(v, original);
        assert_eq!(
            opened,
            Opened {
                opened: 3,
                shredded: 0
            }
        );

        // Another event id: refused, naming the pointer.
        let mut again = original.clone();
        seal_fields(&classes(), &mut again, &key, "fev_1");
        assert!(matches!(
            open_fields(&mut again.clone(), "fev_2", &keys),
            Err(OpenFailure::Broken { .. })
        ));
        // A shredded key: the values are null, the rest stays.
        let shredded = BTreeMap::from([(3, Found::Shredded)]);
        let opened = open_fields(&mut again, "fev_1", &shredded).unwrap();
        assert_eq!(opened.shredded, 2);
        assert_eq!(again["customer"], Value::Null);
        assert_eq!(again["lines"][0]["iban"], Value::Null);
        assert_eq!(again["total"], 10);
        // A key not given.
        let mut third = original.clone();
        seal_fields(&classes(), &mut third, &key, "fev_1");
        assert_eq!(
            open_fields(&mut third, "fev_1", &BTreeMap::new()),
            Err(OpenFailure::MissingKey(3))
        );
    }
}
