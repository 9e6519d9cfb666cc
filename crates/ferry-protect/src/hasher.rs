//! Keyed hashing (HMAC-SHA256): the `hash` protection action, stable per system so a
//! destination can still join on the hashed value, and subject references, so the audit
//! trail can name a data subject without holding the identifier.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The shortest hash key accepted, in bytes.
pub const MIN_HASH_KEY_BYTES: usize = 32;

/// An HMAC-SHA256 key for hashing classified values.
pub struct KeyedHasher {
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHasher(..)")
    }
}

impl KeyedHasher {
    /// A hasher keyed by `key`; refused when shorter than [`MIN_HASH_KEY_BYTES`] (a short key
    /// makes hashed identifiers easy to guess back).
    pub fn new(key: &[u8]) -> Result<KeyedHasher, String> {
        if key.len() < MIN_HASH_KEY_BYTES {
            return Err(format!(
                "the hash key has {} bytes; at least {MIN_HASH_KEY_BYTES} are needed",
                key.len()
            ));
        }
        Ok(KeyedHasher {
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// `value` hashed for `system`: lowercase hex of HMAC-SHA256 over
    /// `"ferry.hash.v1" 0 system 0 value` (a string's own bytes, anything else as JSON).
    /// The same value hashes the same for one system and differently for another.
    pub fn hash_for_system(&self, system: &str, value: &Value) -> String {
        self.digest(&["ferry.hash.v1", system], value)
    }

    /// The reference of a data subject (`value` of its identity field): lowercase hex of
    /// HMAC-SHA256 over `"ferry.subject.v1" 0 value`, the first 32 characters.
    pub fn subject_ref(&self, value: &str) -> String {
        let mut hex = self.digest(&["ferry.subject.v1"], &Value::String(value.to_owned()));
        hex.truncate(32);
        hex
    }

    /// A key Ferry stores to compare events by (an ordering key, a `dedupe` window key, a
    /// sender id that carries a classified value) in place of the text itself, when
    /// encryption at rest is on: `h:` and the lowercase hex of HMAC-SHA256 over
    /// `"ferry.key.v1" 0 kind 0 text`. Equal texts give equal keys; the text is not in it.
    pub fn stored_key(&self, kind: &str, text: &str) -> String {
        let mut out = String::from("h:");
        out.push_str(&self.digest(&["ferry.key.v1", kind], &Value::String(text.to_owned())));
        out
    }

    fn digest(&self, domain: &[&str], value: &Value) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        for part in domain {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        match value {
            Value::String(s) => mac.update(s.as_bytes()),
            other => mac.update(other.to_string().as_bytes()),
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_keys_are_refused() {
        assert!(KeyedHasher::new(&[7; 31]).is_err());
        assert!(KeyedHasher::new(&[7; 32]).is_ok());
    }

    #[test]
    fn hashes_are_stable_per_system_and_differ_between_systems() {
        let h = KeyedHasher::new(&[1; 32]).unwrap();
        let v = json!("ada@example.com");
        assert_eq!(h.hash_for_system("crm", &v), h.hash_for_system("crm", &v));
        assert_ne!(h.hash_for_system("crm", &v), h.hash_for_system("ads", &v));
        assert_eq!(h.hash_for_system("crm", &v).len(), 64);
        let other = KeyedHasher::new(&[2; 32]).unwrap();
        assert_ne!(
            h.hash_for_system("crm", &v),
            other.hash_for_system("crm", &v)
        );
        assert_ne!(
            h.hash_for_system("crm", &json!(1)),
            h.hash_for_system("crm", &json!("1x"))
        );
    }

    #[test]
    fn subject_refs_are_short_keyed_and_never_the_value() {
        let h = KeyedHasher::new(&[1; 32]).unwrap();
        let r = h.subject_ref("ada@example.com");
        assert_eq!(r.len(), 32);
        assert!(!r.contains("ada"));
        assert_eq!(r, h.subject_ref("ada@example.com"));
        assert_ne!(r, h.subject_ref("bob@example.com"));
    }
}
