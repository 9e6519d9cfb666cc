//! The envelope of an encrypted value, and the keys that make and open envelopes.
//!
//! A value encrypted at rest is stored as the text
//! `ferry:enc:v1:<data key id>:<base64(nonce || ciphertext || tag)>`: AES-256-GCM under the
//! data key named by the id, with a random 96-bit nonce from the thread's CSPRNG (ChaCha,
//! seeded by the OS), and associated data that binds the ciphertext to where it belongs
//! (an event id and a field pointer, a delivery id, a rejected record id: [`Aad`]). So a
//! ciphertext copied to another field or another event fails to open.
//!
//! Data keys are stored wrapped by a key-encryption key ([`Kek`]): AES-256-GCM too, the
//! associated data binding the wrapped key to its data subject's reference.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_store::DataKeyId;
use rand::RngCore;
use zeroize::Zeroizing;

/// What every envelope starts with.
pub const PREFIX: &str = "ferry:enc:v1:";
/// Bytes of a nonce.
const NONCE_BYTES: usize = 12;
/// Bytes of an AES-256 key (a data key or a key-encryption key).
pub const KEY_BYTES: usize = 32;

/// Why an envelope (or a wrapped key) did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Not an envelope of this version, or its base64 is broken, or too short.
    Malformed,
    /// The tag does not match: the ciphertext, its place (associated data) or the key is
    /// not the one it was made with.
    Forged,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpenError::Malformed => "not a well-formed envelope",
            OpenError::Forged => {
                "the envelope does not authenticate (altered, moved, or another key)"
            }
        })
    }
}

impl std::error::Error for OpenError {}

/// Where an encrypted value belongs: its associated data.
#[derive(Debug, Clone, Copy)]
pub enum Aad<'a> {
    /// A classified field of an event: the event id and the field's JSON pointer.
    Field { event: &'a str, pointer: &'a str },
    /// An attempt's response excerpt: the delivery id.
    Excerpt { delivery: &'a str },
    /// A rejected record's payload: the record id.
    Rejected { record: &'a str },
}

impl Aad<'_> {
    fn bytes(&self) -> Vec<u8> {
        let (domain, parts): (&str, &[&str]) = match self {
            Aad::Field { event, pointer } => ("ferry.field.v1", &[event, pointer]),
            Aad::Excerpt { delivery } => ("ferry.excerpt.v1", &[delivery]),
            Aad::Rejected { record } => ("ferry.rejected.v1", &[record]),
        };
        let mut out = domain.as_bytes().to_vec();
        for p in parts {
            out.push(0);
            out.extend_from_slice(p.as_bytes());
        }
        out
    }
}

/// A data key, unwrapped: the AES-256-GCM cipher of one data subject (its key schedule is
/// wiped when dropped).
pub struct DataKey {
    id: DataKeyId,
    subject_ref: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({})", self.id)
    }
}

impl DataKey {
    /// The key `id` of subject `subject_ref` from its 32 bytes.
    pub fn new(id: DataKeyId, subject_ref: &str, key: &[u8; KEY_BYTES]) -> DataKey {
        DataKey {
            id,
            subject_ref: subject_ref.to_owned(),
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// The key's id, as written in its envelopes.
    pub fn id(&self) -> DataKeyId {
        self.id
    }

    /// The reference of the data subject the key belongs to.
    pub fn subject_ref(&self) -> &str {
        &self.subject_ref
    }

    /// `plaintext` encrypted for `aad`, as an envelope.
    pub fn seal(&self, aad: Aad<'_>, plaintext: &[u8]) -> String {
        let sealed = seal_raw(&self.cipher, &aad.bytes(), plaintext);
        let mut out = String::with_capacity(PREFIX.len() + 21 + sealed.len() * 4 / 3 + 4);
        out.push_str(PREFIX);
        out.push_str(&self.id.to_string());
        out.push(':');
        STANDARD.encode_string(&sealed, &mut out);
        out
    }

    /// The plaintext of `envelope` (made by this key for `aad`).
    pub fn open(&self, aad: Aad<'_>, envelope: &str) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let (id, body) = parse(envelope).ok_or(OpenError::Malformed)?;
        if id != self.id {
            return Err(OpenError::Forged);
        }
        let sealed = STANDARD.decode(body).map_err(|_| OpenError::Malformed)?;
        open_raw(&self.cipher, &aad.bytes(), &sealed)
    }
}

/// The data key id and base64 body of `text`, if it is an envelope.
pub fn parse(text: &str) -> Option<(DataKeyId, &str)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, body) = rest.split_once(':')?;
    let id: DataKeyId = id.parse().ok().filter(|n| *n > 0)?;
    Some((id, body))
}

/// The data key id of the first envelope in `bytes` (a stored payload, as JSON text),
/// found without parsing it; `None` when it holds no envelope.
pub fn first_key_id(bytes: &[u8]) -> Option<DataKeyId> {
    let at = memchr::memmem::find(bytes, PREFIX.as_bytes())?;
    let rest = &bytes[at + PREFIX.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits])
        .ok()?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// Whether `bytes` holds an envelope anywhere (a quick look before parsing).
pub fn mentions_envelope(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, PREFIX.as_bytes()).is_some()
}

/// A key-encryption key: wraps and unwraps data keys.
pub struct Kek {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

impl Kek {
    /// The KEK `id` from its base64 text, which must decode to exactly 32 bytes.
    pub fn from_base64(id: &str, text: &str) -> Result<Kek, String> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
            "is not base64: write 32 random bytes base64-encoded (`openssl rand -base64 32`)"
                .to_owned()
        })?);
        let key: &[u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "decodes to {} bytes; a key-encryption key is exactly {KEY_BYTES} random bytes \
                 (`openssl rand -base64 32`)",
                bytes.len()
            )
        })?;
        Ok(Kek {
            id: id.to_owned(),
            cipher: Aes256Gcm::new(key.into()),
        })
    }

    /// The KEK's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A new random data key for `subject_ref`, wrapped: (the key, its wrapped bytes).
    pub fn new_data_key(&self, subject_ref: &str) -> (Zeroizing<[u8; KEY_BYTES]>, Vec<u8>) {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        rand::rng().fill_bytes(key.as_mut_slice());
        let wrapped = self.wrap(subject_ref, &key);
        (key, wrapped)
    }

    /// `key` of `subject_ref`, wrapped.
    pub fn wrap(&self, subject_ref: &str, key: &[u8; KEY_BYTES]) -> Vec<u8> {
        seal_raw(&self.cipher, &wrap_aad(subject_ref), key)
    }

    /// The data key of `subject_ref` that `wrapped` holds.
    pub fn unwrap(
        &self,
        subject_ref: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_BYTES]>, OpenError> {
        let plain = open_raw(&self.cipher, &wrap_aad(subject_ref), wrapped)?;
        let key: [u8; KEY_BYTES] = plain
            .as_slice()
            .try_into()
            .map_err(|_| OpenError::Malformed)?;
        Ok(Zeroizing::new(key))
    }
}

fn wrap_aad(subject_ref: &str) -> Vec<u8> {
    let mut aad = b"ferry.dek.v1\0".to_vec();
    aad.extend_from_slice(subject_ref.as_bytes());
    aad
}

/// nonce || ciphertext || tag.
fn seal_raw(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encrypts any message shorter than 64 GiB");
    let mut out = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn open_raw(
    cipher: &Aes256Gcm,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if sealed.len() < NONCE_BYTES + 16 {
        return Err(OpenError::Malformed);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| OpenError::Malformed)?;
    cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| OpenError::Forged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: DataKeyId, byte: u8) -> DataKey {
        DataKey::new(id, "s", &[byte; KEY_BYTES])
    }

    #[test]
    fn seals_and_opens_in_place_only() {
        let k = key(7, 1);
        let here = Aad::Field {
            event: "fev_1",
            pointer: "/email",
        };
        let env = k.seal(here, b"\"ada@example.com\"");
        assert!(env.starts_with("ferry:enc:v1:7:"), "{env}");
        assert!(!env.contains("ada"));
        assert_eq!(
            k.open(here, &env).unwrap().as_slice(),
            b"\"ada@example.com\""
        );
        // Another place, another event, another key: refused.
        let moved = Aad::Field {
            event: "fev_1",
            pointer: "/name",
        };
        assert_eq!(k.open(moved, &env), Err(OpenError::Forged));
        let other_event = Aad::Field {
            event: "fev_2",
            pointer: "/email",
        };
        assert_eq!(k.open(other_event, &env), Err(OpenError::Forged));
        assert_eq!(key(7, 2).open(here, &env), Err(OpenError::Forged));
        assert_eq!(key(8, 1).open(here, &env), Err(OpenError::Forged));
        // Random nonces: the same value seals differently each time.
        assert_ne!(env, k.seal(here, b"\"ada@example.com\""));
        // A flipped character fails.
        let mut bad = env.clone().into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(k.open(here, std::str::from_utf8(&bad).unwrap()).is_err());
        assert_eq!(k.open(here, "ferry:enc:v1:7:!!"), Err(OpenError::Malformed));
    }

    #[test]
    fn finds_key_ids_without_parsing() {
        let env = key(42, 1).seal(Aad::Excerpt { delivery: "d" }, b"x");
        assert_eq!(parse(&env).map(|(id, _)| id), Some(42));
        let doc = format!("{{\"a\":1,\"b\":\"{env}\"}}");
        assert_eq!(first_key_id(doc.as_bytes()), Some(42));
        assert!(mentions_envelope(doc.as_bytes()));
        assert_eq!(first_key_id(b"{\"a\":\"ferry:enc:v1:x\"}"), None);
        assert!(parse("ferry:enc:v1:0:abc").is_none());
        assert!(parse("hello").is_none());
    }

    #[test]
    fn keks_are_exactly_32_bytes_and_bind_the_subject() {
        let short = STANDARD.encode([1u8; 16]);
        let err = Kek::from_base64("k1", &short).unwrap_err();
        assert!(err.contains("16 bytes"), "{err}");
        assert!(Kek::from_base64("k1", "not base64!").is_err());
        let kek = Kek::from_base64("k1", &STANDARD.encode([9u8; 32])).unwrap();
        let (dek, wrapped) = kek.new_data_key("subject-a");
        assert!(!wrapped.windows(32).any(|w| w == dek.as_slice()));
        assert_eq!(*kek.unwrap("subject-a", &wrapped).unwrap(), *dek);
        assert_eq!(kek.unwrap("subject-b", &wrapped), Err(OpenError::Forged));
        let other = Kek::from_base64("k2", &STANDARD.encode([8u8; 32])).unwrap();
        assert_eq!(other.unwrap("subject-a", &wrapped), Err(OpenError::Forged));
        assert_eq!(
            *other
                .unwrap("subject-a", &other.wrap("subject-a", &dek))
                .unwrap(),
            *dek
        );
    }
}
