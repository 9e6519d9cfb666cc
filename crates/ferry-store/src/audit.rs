//! The audit trail: an append-only, hash-chained log of every data movement (an event
//! accepted, a delivery delivered, a replay, a purge, a shredded subject) and every admin
//! action, written by the store in the same transaction as the change it records.
//!
//! The log is a sequence of [`AuditRecord`]s. A backend writes one record per kind of entry
//! per commit (so group commit stays cheap: a commit of 500 appends writes one `accepted`
//! record holding 500 entries), numbered from 1 without gaps. Each record's hash covers its
//! content and the hash of the record before it ([`record_hash`]), so changing, removing,
//! inserting or reordering a record breaks the chain at that record, which
//! [`ChainVerifier`] finds. The last record's hash (the head) printed by `ferry audit verify`
//! can be kept elsewhere (an anchor): a chain rewritten from some record on, or cut short,
//! no longer holds that record with that hash.
//!
//! Entries never hold a raw identifier or a classified value: a data subject appears as its
//! reference (a keyed hash), an event as its id, data as the names of its categories.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{DeliveryFilter, DeliveryId, EventId, Millis, RejectedId};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// What the audit trail records about an accepted event, computed at ingress: never the
/// raw identifier or a classified value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventAudit {
    /// The version of the flow that accepted it (`flows.X.version`).
    pub flow_version: u32,
    /// The data subject's reference (a keyed hash of its identifier), when the event names
    /// a subject and a hash key is configured.
    pub subject: Option<String>,
    /// The data categories present in the event, sorted. Also what retention by category
    /// goes by.
    pub categories: Vec<String>,
}

/// What the audit trail records about a delivery when it is delivered, carried by its
/// outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAudit {
    /// The system the destination delivers to.
    pub destination_system: Option<String>,
    /// The data categories the delivery carried and how each was protected on the way
    /// (`pass`, `hash`, `redact`, `encrypt`, `drop`).
    pub categories_sent: Vec<CategorySent>,
}

/// One data category of a delivery and how it was protected.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CategorySent {
    pub category: String,
    /// `pass`, `hash`, `redact`, `encrypt` or `drop`.
    pub how: String,
}

/// One entry of the audit trail. Serialised as a JSON object with a `kind` field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEntry {
    /// An event was accepted and stored with its deliveries.
    Accepted {
        at: Millis,
        event: EventId,
        flow: String,
        flow_version: u32,
        source_system: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        categories: Vec<String>,
    },
    /// A destination accepted a delivery.
    Delivered {
        at: Millis,
        delivery: DeliveryId,
        event: EventId,
        flow: String,
        destination: String,
        destination_system: Option<String>,
        categories_sent: Vec<CategorySent>,
    },
    /// Deliveries matching `filter` were replayed (`count` of them), on `by`'s request.
    Replayed {
        at: Millis,
        by: String,
        filter: DeliveryFilter,
        count: u64,
    },
    /// A rejected record was replayed through its flow, making `events`.
    RejectedReplayed {
        at: Millis,
        by: String,
        rejected: RejectedId,
        flow: String,
        events: Vec<EventId>,
    },
    /// The retention purge deleted events past their retention, with their deliveries and
    /// attempts.
    Purged {
        at: Millis,
        events: u64,
        deliveries: u64,
        attempts: u64,
        event_ids: Vec<EventId>,
    },
    /// A data subject's key was destroyed (crypto-shredding): its stored data is unreadable.
    Shredded {
        at: Millis,
        /// Who asked (an admin token's id, never the token).
        by: String,
        /// The subject's reference.
        subject: String,
        /// More about it (key ids, counts): never a raw identifier or classified value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<serde_json::Value>,
    },
    /// An admin action (pause, resume, key rotation…).
    Admin {
        at: Millis,
        /// Who: an admin token's id, never the token.
        by: String,
        /// What: `pause`, `resume`, `rotate_keys`…
        action: String,
        /// What it acted on (a lane `flow/destination`, a key id…).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// More about it (a reason, counts): never a raw identifier or classified value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<serde_json::Value>,
    },
}

impl AuditEntry {
    /// The entry's kind, as stored in its record's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEntry::Accepted { .. } => "accepted",
            AuditEntry::Delivered { .. } => "delivered",
            AuditEntry::Replayed { .. } => "replayed",
            AuditEntry::RejectedReplayed { .. } => "rejected_replayed",
            AuditEntry::Purged { .. } => "purged",
            AuditEntry::Shredded { .. } => "shredded",
            AuditEntry::Admin { .. } => "admin",
        }
    }

    /// When it happened.
    pub fn at(&self) -> Millis {
        match self {
            AuditEntry::Accepted { at, .. }
            | AuditEntry::Delivered { at, .. }
            | AuditEntry::Replayed { at, .. }
            | AuditEntry::RejectedReplayed { at, .. }
            | AuditEntry::Purged { at, .. }
            | AuditEntry::Shredded { at, .. }
            | AuditEntry::Admin { at, .. } => *at,
        }
    }

    /// Whether a caller may record it through [`crate::Store::audit_admin_action`]: admin
    /// actions and shredding. The other kinds are written by the store itself, with the
    /// change they record.
    pub fn is_admin_action(&self) -> bool {
        matches!(self, AuditEntry::Admin { .. } | AuditEntry::Shredded { .. })
    }
}

/// One record of the audit trail, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its position, from 1, without gaps.
    pub seq: u64,
    /// The latest time among its entries.
    pub at: Millis,
    /// The kind of all its entries.
    pub kind: String,
    /// Its entries: a JSON array of [`AuditEntry`] objects, exactly as stored (the hash
    /// covers these bytes).
    pub entries: String,
    /// The hash of the record before it ([`GENESIS_HASH`] for the first).
    pub prev_hash: Vec<u8>,
    /// [`record_hash`] of this record.
    pub hash: Vec<u8>,
}

impl AuditRecord {
    /// Its entries, parsed.
    pub fn parse_entries(&self) -> Result<Vec<AuditEntry>, serde_json::Error> {
        serde_json::from_str(&self.entries)
    }

    /// Whether its hash is the hash of its content.
    pub fn hash_matches(&self) -> bool {
        record_hash(
            &self.prev_hash,
            self.seq,
            self.at,
            &self.kind,
            &self.entries,
        )[..]
            == self.hash[..]
    }
}

/// The hash of a record: SHA-256 over `prev_hash`, `seq` (8 bytes, big-endian), `at` (8
/// bytes, big-endian, two's complement), `kind`, a zero byte, and `entries`.
pub fn record_hash(prev_hash: &[u8], seq: u64, at: Millis, kind: &str, entries: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(seq.to_be_bytes());
    h.update(at.to_be_bytes());
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(entries.as_bytes());
    h.finalize().into()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Where the chain breaks: the first bad position and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainFault {
    /// Records `from..=to` are missing: removed (the stored records jump from `from - 1`
    /// to `to + 1`, or start at `to + 1`).
    Missing { from: u64, to: u64 },
    /// Record `seq` does not follow the record before it: its `prev_hash` is not that
    /// record's hash. Records were removed and renumbered, inserted, or reordered here.
    Unlinked { seq: u64 },
    /// Record `seq`'s content does not match its hash: it was modified.
    Modified { seq: u64 },
    /// Record `seq`'s entries are not what the store writes (not a JSON array of entries of
    /// its kind), although its hash matches: written by something other than Ferry.
    Malformed { seq: u64, why: String },
    /// The anchor given to check against is not in the chain: the record at its position
    /// has another hash, or the chain ends before it.
    AnchorMismatch {
        seq: u64,
        expected: String,
        found: Option<String>,
    },
}

impl ChainFault {
    /// The first bad position.
    pub fn position(&self) -> u64 {
        match self {
            ChainFault::Missing { from, .. } => *from,
            ChainFault::Unlinked { seq }
            | ChainFault::Modified { seq }
            | ChainFault::Malformed { seq, .. }
            | ChainFault::AnchorMismatch { seq, .. } => *seq,
        }
    }
}

impl std::fmt::Display for ChainFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainFault::Missing { from, to } if from == to => {
                write!(f, "record {from} is missing: it was removed")
            }
            ChainFault::Missing { from, to } => {
                write!(f, "records {from} to {to} are missing: they were removed")
            }
            ChainFault::Unlinked { seq } => write!(
                f,
                "record {seq} does not follow record {}: its prev_hash is not that record's hash (records were removed and renumbered, inserted or reordered here)",
                seq.saturating_sub(1)
            ),
            ChainFault::Modified { seq } => write!(
                f,
                "record {seq} was modified: its content does not match its hash"
            ),
            ChainFault::Malformed { seq, why } => {
                write!(f, "record {seq} is not a record Ferry writes: {why}")
            }
            ChainFault::AnchorMismatch {
                seq,
                expected,
                found: Some(found),
            } => write!(
                f,
                "record {seq} has hash {found}, but the anchor says {expected}: the chain was rewritten from there or before"
            ),
            ChainFault::AnchorMismatch {
                seq,
                expected,
                found: None,
            } => write!(
                f,
                "the chain ends before record {seq}, which the anchor names with hash {expected}: records were removed from its end"
            ),
        }
    }
}

/// An anchor: a record's position and hash, kept outside the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: Vec<u8>,
}

impl std::str::FromStr for Anchor {
    type Err = String;
    /// `SEQ:HASH` (hex), as `ferry audit verify` prints the head.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "`{s}` is not an anchor: write SEQ:HASH as `ferry audit verify` prints the head, e.g. 42:9f86d0…"
            )
        };
        let (seq, hash) = s.trim().split_once(':').ok_or_else(bad)?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        if seq == 0 || hash.len() != 64 {
            return Err(bad());
        }
        let bytes = (0..32)
            .map(|i| u8::from_str_radix(&hash[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        Ok(Anchor { seq, hash: bytes })
    }
}

/// Checks records one at a time, in `seq` order, and remembers the head.
#[derive(Debug)]
pub struct ChainVerifier {
    last_seq: u64,
    last_hash: Vec<u8>,
    count: u64,
    anchor: Option<Anchor>,
    anchor_seen: bool,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new(None)
    }
}

impl ChainVerifier {
    /// A verifier of a chain from its first record; with an `anchor`, the chain must hold
    /// that record with that hash.
    pub fn new(anchor: Option<Anchor>) -> Self {
        ChainVerifier {
            last_seq: 0,
            last_hash: GENESIS_HASH.to_vec(),
            count: 0,
            anchor,
            anchor_seen: false,
        }
    }

    /// Check the next stored record.
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), ChainFault> {
        let expected = self.last_seq + 1;
        if r.seq > expected {
            return Err(ChainFault::Missing {
                from: expected,
                to: r.seq - 1,
            });
        }
        if r.seq < expected || r.prev_hash != self.last_hash {
            return Err(ChainFault::Unlinked { seq: r.seq });
        }
        if !r.hash_matches() {
            return Err(ChainFault::Modified { seq: r.seq });
        }
        match r.parse_entries() {
            Ok(entries) if entries.is_empty() => {
                return Err(ChainFault::Malformed {
                    seq: r.seq,
                    why: "it holds no entry".to_owned(),
                });
            }
            Ok(entries) => {
                if let Some(e) = entries.iter().find(|e| e.kind() != r.kind) {
                    return Err(ChainFault::Malformed {
                        seq: r.seq,
                        why: format!("a `{}` entry in a `{}` record", e.kind(), r.kind),
                    });
                }
            }
            Err(e) => {
                return Err(ChainFault::Malformed {
                    seq: r.seq,
                    why: format!("its entries do not parse: {e}"),
                });
            }
        }
        if let Some(anchor) = &self.anchor
            && anchor.seq == r.seq
        {
            if anchor.hash != r.hash {
                return Err(ChainFault::AnchorMismatch {
                    seq: r.seq,
                    expected: hex(&anchor.hash),
                    found: Some(hex(&r.hash)),
                });
            }
            self.anchor_seen = true;
        }
        self.last_seq = r.seq;
        self.last_hash = r.hash.clone();
        self.count += 1;
        Ok(())
    }

    /// After the last record: the record count and the head (the last record's position and
    /// hash; `None` for an empty trail), or the anchor the chain did not reach.
    pub fn finish(self) -> Result<(u64, Option<(u64, String)>), ChainFault> {
        if let Some(anchor) = &self.anchor
            && !self.anchor_seen
        {
            return Err(ChainFault::AnchorMismatch {
                seq: anchor.seq,
                expected: hex(&anchor.hash),
                found: None,
            });
        }
        let head = (self.count > 0).then(|| (self.last_seq, hex(&self.last_hash)));
        Ok((self.count, head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(at: Millis, action: &str) -> AuditEntry {
        AuditEntry::Admin {
            at,
            by: "admin-token:abc".into(),
            action: action.into(),
            target: None,
            detail: None,
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_vec();
        (1..=n)
            .map(|seq| {
                let entries = serde_json::to_string(&vec![admin(seq as i64, "pause")]).unwrap();
                let hash = record_hash(&prev, seq, seq as i64, "admin", &entries).to_vec();
                let r = AuditRecord {
                    seq,
                    at: seq as i64,
                    kind: "admin".into(),
                    entries,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                r
            })
            .collect()
    }

    fn verify(records: &[AuditRecord], anchor: Option<Anchor>) -> Result<u64, ChainFault> {
        let mut v = ChainVerifier::new(anchor);
        for r in records {
            v.push(r)?;
        }
        v.finish().map(|(n, _)| n)
    }

    #[test]
    fn an_intact_chain_verifies_and_names_its_head() {
        let records = chain(4);
        let mut v = ChainVerifier::default();
        for r in &records {
            v.push(r).unwrap();
        }
        let (n, head) = v.finish().unwrap();
        assert_eq!(n, 4);
        assert_eq!(head, Some((4, hex(&records[3].hash))));
        assert_eq!(ChainVerifier::default().finish().unwrap(), (0, None));
    }

    #[test]
    fn modified_removed_and_reordered_records_are_named() {
        let mut records = chain(5);
        records[2].entries = records[2].entries.replace("pause", "resume");
        assert_eq!(verify(&records, None), Err(ChainFault::Modified { seq: 3 }));

        let mut records = chain(5);
        records.remove(2);
        assert_eq!(
            verify(&records, None),
            Err(ChainFault::Missing { from: 3, to: 3 })
        );
        let mut records = chain(5);
        records.remove(0);
        assert_eq!(verify(&records, None).unwrap_err().position(), 1);

        // Two records' contents swapped, their positions kept.
        let mut records = chain(5);
        let (a, b) = (records[1].clone(), records[3].clone());
        records[1] = AuditRecord { seq: 2, ..b };
        records[3] = AuditRecord { seq: 4, ..a };
        assert_eq!(verify(&records, None), Err(ChainFault::Unlinked { seq: 2 }));

        // Removed and renumbered.
        let mut records = chain(5);
        records.remove(1);
        for (i, r) in records.iter_mut().enumerate() {
            r.seq = i as u64 + 1;
        }
        assert_eq!(verify(&records, None), Err(ChainFault::Unlinked { seq: 2 }));
    }

    #[test]
    fn an_anchor_catches_a_cut_or_rewritten_chain() {
        let records = chain(5);
        let anchor = Anchor {
            seq: 5,
            hash: records[4].hash.clone(),
        };
        let text = format!("5:{}", hex(&records[4].hash));
        assert_eq!(text.parse::<Anchor>().unwrap(), anchor);
        assert_eq!(verify(&records, Some(anchor.clone())), Ok(5));
        assert!(matches!(
            verify(&records[..4], Some(anchor.clone())),
            Err(ChainFault::AnchorMismatch {
                seq: 5,
                found: None,
                ..
            })
        ));
        let rewritten = chain(5)
            .into_iter()
            .map(|mut r| {
                r.at += 1;
                r
            })
            .collect::<Vec<_>>();
        // A rewritten chain is consistent in itself, but not with the anchor.
        let mut prev = GENESIS_HASH.to_vec();
        let rewritten: Vec<AuditRecord> = rewritten
            .into_iter()
            .map(|mut r| {
                r.prev_hash = prev.clone();
                r.hash = record_hash(&prev, r.seq, r.at, &r.kind, &r.entries).to_vec();
                prev = r.hash.clone();
                r
            })
            .collect();
        assert_eq!(verify(&rewritten, None), Ok(5));
        assert!(matches!(
            verify(&rewritten, Some(anchor)),
            Err(ChainFault::AnchorMismatch {
                seq: 5,
                found: Some(_),
                ..
            })
        ));
        for bad in ["", "5", "x:00", "0:00", "5:abc"] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_of_another_kind_are_refused() {
        let mut records = chain(1);
        let entries = serde_json::to_string(&vec![admin(1, "pause")]).unwrap();
        records[0].kind = "purged".into();
        records[0].hash = record_hash(&GENESIS_HASH, 1, 1, "purged", &entries).to_vec();
        assert!(matches!(
            verify(&records, None),
            Err(ChainFault::Malformed { seq: 1, .. })
        ));
    }
}
