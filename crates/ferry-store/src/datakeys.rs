//! The store's vocabulary for data keys: the per-subject keys that encrypt classified fields
//! at rest. The store keeps each one only **wrapped** (encrypted by a key-encryption key,
//! whose id it keeps beside it) and never sees a key in clear; erasing a subject destroys
//! its wrapped key and keeps a tombstone (the subject reference and when), so every copy
//! encrypted under it becomes unreadable.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// Identity of a data key: a positive integer the store assigns, never reused (a shredded
/// key keeps its row as a tombstone). Written into every envelope the key encrypts.
pub type DataKeyId = i64;

/// The subject reference of the hub-wide key that encrypts the classified fields of events
/// without a subject value (and rejected records). Never a real subject reference, which
/// is lowercase hex.
pub const NO_SUBJECT: &str = "-";

/// A data key to store unless its subject already has a live one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDataKey {
    /// The data subject's reference (a keyed hash of its identifier, or [`NO_SUBJECT`]).
    pub subject_ref: String,
    /// The id of the key-encryption key that wrapped it.
    pub kek_id: String,
    /// The key, wrapped (nonce, ciphertext and tag).
    pub wrapped: Vec<u8>,
    pub created_at: Millis,
}

/// A stored data key, or the tombstone of a shredded one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataKeyRecord {
    pub id: DataKeyId,
    pub subject_ref: String,
    /// The key-encryption key that wrapped it (kept on a tombstone: which KEK it had).
    pub kek_id: String,
    /// The wrapped key; `None` once shredded.
    pub wrapped: Option<Vec<u8>>,
    pub created_at: Millis,
    /// When it was shredded; `None` while live.
    pub shredded_at: Option<Millis>,
}

/// A data key re-wrapped by another key-encryption key (key rotation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewrappedKey {
    pub id: DataKeyId,
    /// The key-encryption key it was read wrapped by: the update applies only if it still
    /// is (so a concurrent rotation or shred is never overwritten).
    pub from_kek: String,
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

/// How many data keys the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataKeyStats {
    /// Live keys per key-encryption key id, by id.
    pub live_by_kek: Vec<(String, u64)>,
    /// Shredded keys (tombstones).
    pub shredded: u64,
}
