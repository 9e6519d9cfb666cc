//! Data protection: what each system may receive, how the rest is protected, the keys that
//! encrypt classified fields at rest, custom taxonomy keys and retention. docs/config.md
//! and docs/governance.md mirror these doc comments.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::SecretRef;

/// `settings.protection`: hub-wide data protection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectionSettings {
    /// Key-encryption keys (KEKs), the current one first. With at least one, classified
    /// fields of stored events are encrypted under per-subject data keys wrapped by the
    /// current KEK; older KEKs stay listed until `ferry keys rotate` has re-wrapped every
    /// data key under the current one.
    #[serde(default)]
    pub keys: Vec<KeyEncryptionKey>,
    /// The key of the `hash` action and of subject references in the audit trail
    /// (HMAC-SHA256; at least 32 bytes).
    #[serde(default)]
    pub hash_key: Option<SecretRef>,
    /// What fields without a data category do when a system's policy does not say:
    /// `allow` (default), `warn` or `deny`.
    #[serde(default)]
    pub unclassified: Unclassified,
    /// Custom taxonomy keys, each under a known parent.
    #[serde(default)]
    pub taxonomy: CustomTaxonomy,
    /// Retention per data category (a key covers its sub-categories): an event carrying the
    /// category is purged once it is older than this and its deliveries are finished.
    #[serde(default, with = "crate::protection::duration_map")]
    pub retention: BTreeMap<String, Duration>,
    /// How often the retention purge runs. Default 1h.
    #[serde(default = "default_purge_every", with = "humantime_serde")]
    pub purge_every: Duration,
}

impl Default for ProtectionSettings {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            hash_key: None,
            unclassified: Unclassified::default(),
            taxonomy: CustomTaxonomy::default(),
            retention: BTreeMap::new(),
            purge_every: default_purge_every(),
        }
    }
}

const fn default_purge_every() -> Duration {
    Duration::from_secs(3600)
}

/// One key-encryption key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEncryptionKey {
    /// Its id, written in every envelope it wraps (letters, digits, `-_.`).
    pub id: String,
    /// 32 random bytes, base64-encoded, by reference (`{ env: … }` or `{ file: … }`).
    pub key: SecretRef,
}

/// What fields without a data category do at a destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unclassified {
    /// Sent as they are.
    #[default]
    Allow,
    /// Sent, and `ferry validate` warns about them.
    Warn,
    /// Removed from every delivery of the system: only classified, permitted fields pass.
    Deny,
}

/// Custom taxonomy keys: key → description. Each key must extend a known key
/// (`user.contact.email.work` under `user.contact.email`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomTaxonomy {
    #[serde(default)]
    pub data_categories: BTreeMap<String, String>,
    #[serde(default)]
    pub data_uses: BTreeMap<String, String>,
    #[serde(default)]
    pub data_subjects: BTreeMap<String, String>,
}

/// A system's data-handling policy: what it may receive and how everything else is
/// protected before it leaves Ferry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemPolicy {
    /// The fideslang data use the system puts what it receives to (e.g.
    /// `marketing.advertising`, `essential.service.payment_processing`).
    pub data_use: String,
    /// Data categories the system may receive as they are (a key covers its
    /// sub-categories).
    #[serde(default)]
    pub receives: Vec<String>,
    /// How other categories are protected: category (covering its sub-categories) →
    /// `pass`, `hash`, `redact`, `encrypt` or `drop`. The most specific key wins.
    #[serde(default)]
    pub protect: BTreeMap<String, ProtectAction>,
    /// What fields without a category do at this system (default:
    /// `settings.protection.unclassified`).
    #[serde(default)]
    pub unclassified: Option<Unclassified>,
    /// The key of the `encrypt` action (32 bytes, base64, by reference): the system holds
    /// it to decrypt.
    #[serde(default)]
    pub encryption_key: Option<SecretRef>,
}

/// How a field of a category the system may not receive as is leaves Ferry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtectAction {
    /// As it is (the same as listing the category under `receives`).
    Pass,
    /// Keyed HMAC-SHA256, stable per system (joins still work), hex.
    Hash,
    /// Replaced by `"[redacted]"`.
    Redact,
    /// AES-256-GCM under the system's `encryption_key`.
    Encrypt,
    /// Removed.
    Drop,
}

/// `humantime` durations as map values.
pub(crate) mod duration_map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                humantime::parse_duration(&v)
                    .map(|d| (k, d))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}
