//! The `encrypt` protection action: a classified value leaves Ferry encrypted under the
//! destination system's own key, so only that system can read it.
//!
//! Format (docs/governance.md, "The encrypt envelope"): the field's value becomes the
//! string `ferry-enc:v1:<base64(nonce || ciphertext)>`: standard base64 with padding, a
//! random 96-bit nonce, then AES-256-GCM's ciphertext with its 16-byte tag, over the
//! value's JSON text (a string keeps its quotes: `"ada@example.com"`), with the destination
//! system's name as additional authenticated data.
//!
//! This is the envelope of deliveries only; classified fields at rest in the store have
//! their own (keyed per subject, wrapped by a key-encryption key).

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// What every encrypted value starts with.
pub const PREFIX: &str = "ferry-enc:v1:";
/// The nonce's length in bytes (96 bits).
const NONCE_BYTES: usize = 12;
/// AES-256's key length in bytes.
pub const KEY_BYTES: usize = 32;

/// AES-256-GCM under one destination system's key.
#[derive(Clone)]
pub struct FieldCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldCipher(..)")
    }
}

impl FieldCipher {
    /// A cipher under `key`, which must be exactly [`KEY_BYTES`] long.
    pub fn new(key: &[u8]) -> Result<FieldCipher, String> {
        if key.len() != KEY_BYTES {
            return Err(format!(
                "the key has {} bytes; AES-256 needs exactly {KEY_BYTES}",
                key.len()
            ));
        }
        let cipher = Aes256Gcm::new_from_slice(key)
            .map_err(|_| format!("the key is not {KEY_BYTES} bytes"))?;
        Ok(FieldCipher { cipher })
    }

    /// `value` encrypted for `system` (the additional authenticated data): a
    /// `ferry-enc:v1:` string.
    pub fn encrypt(&self, system: &str, value: &Value) -> Result<String, String> {
        let plaintext = zeroize::Zeroizing::new(value.to_string().into_bytes());
        let nonce = Nonce::generate();
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: system.as_bytes(),
                },
            )
            .map_err(|_| "the value cannot be encrypted (too long)".to_string())?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    /// The value `text` (a `ferry-enc:v1:` string) holds, encrypted for `system`: what the
    /// receiving system does to read it.
    pub fn decrypt(&self, system: &str, text: &str) -> Result<Value, String> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("not a `{PREFIX}` value"))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| "the value is not base64".to_string())?;
        if bytes.len() < NONCE_BYTES {
            return Err("the value is too short".to_string());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce = Nonce::try_from(nonce).map_err(|_| "the nonce is malformed".to_string())?;
        let plaintext = zeroize::Zeroizing::new(
            self.cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: sealed,
                        aad: system.as_bytes(),
                    },
                )
                .map_err(|_| {
                    "the value does not decrypt (another key, another system, or altered)"
                        .to_string()
                })?,
        );
        serde_json::from_slice(&plaintext).map_err(|_| "the plaintext is not JSON".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_binds_the_system() {
        let c = FieldCipher::new(&[7; 32]).unwrap();
        let v = json!("ada@example.com");
        let a = c.encrypt("crm", &v).unwrap();
        let b = c.encrypt("crm", &v).unwrap();
        assert!(a.starts_with(PREFIX));
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(!a.contains("ada"));
        assert_eq!(c.decrypt("crm", &a).unwrap(), v);
        assert!(c.decrypt("ads", &a).is_err(), "the system is authenticated");
        let other = FieldCipher::new(&[8; 32]).unwrap();
        assert!(other.decrypt("crm", &a).is_err());
        let obj = json!({"street": "1 Main St", "n": 3});
        assert_eq!(
            c.decrypt("crm", &c.encrypt("crm", &obj).unwrap()).unwrap(),
            obj
        );
        assert!(FieldCipher::new(&[7; 31]).is_err());
        assert!(c.decrypt("crm", "ferry-enc:v1:AAAA").is_err());
    }
}
