//! Data protection in the hub: the checks `ferry validate` makes of it ([`check`]), and each
//! destination's policy applied to what it receives ([`DestinationProtection`]), its keys
//! resolved once at start-up ([`Keys`]).
//!
//! A destination is protected when its flow can carry classified fields (see
//! [`Classifier::flow_is_classified`]) or its system denies unclassified ones: its render
//! then applies the policy to the stored event before anything else (`enrich`, `map`,
//! `contract`, templates), so nothing downstream sees a value the system may not receive.
//! A classified value the system may not receive is removed and counted in
//! `ferry_protect_refused_total{flow,destination}`; values removed for carrying no category
//! (`unclassified: deny`) in `ferry_protect_unclassified_removed_total`, and events that
//! became `{}` that way in `ferry_protect_emptied_total`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use bytes::Bytes;
use ferry_config::{
    Config, Destination, Diagnostic, SecretRef, SecretUse, SourceMap, Unclassified, check_strength,
    decode_encryption_key,
};
use ferry_delivery::RenderError;
use ferry_protect::{Classifier, FieldCipher, FieldClasses, KeyedHasher, Protector};
use ferry_schema::SchemaRegistry;
use ferry_store::ClaimedDelivery;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// Every finding of data protection in a loaded config: its taxonomy keys, its schemas'
/// `x-ferry-category` against the taxonomy (with the schemas' other problems), and the
/// static check of its flows against the systems' policies (errors and warnings).
pub fn check(config: &Config, sources: &SourceMap) -> Vec<Diagnostic> {
    let (taxonomy, mut out) = ferry_protect::check::taxonomy(config, sources);
    match SchemaRegistry::load_checked(config, &|c| taxonomy.category_check(c)) {
        Ok(registry) => out.extend(ferry_protect::check::flows(config, &registry, sources)),
        Err(problems) => out.extend(problems.iter().map(|p| p.to_diagnostic())),
    }
    out
}

/// The keys of the protection actions, resolved: the hub's `hash_key` and each system's
/// `encryption_key`.
#[derive(Debug, Default)]
pub struct Keys {
    hasher: Option<Arc<KeyedHasher>>,
    ciphers: BTreeMap<String, FieldCipher>,
}

impl Keys {
    /// Resolve the keys of `config` with `secret`. A hash key under 32 bytes, or an
    /// encryption key (or key-encryption key) that is not 32 bytes of base64, is an error
    /// naming its setting: the hub does not start.
    pub fn resolve(
        config: &Config,
        secret: &dyn Fn(&SecretRef) -> Result<SecretString>,
    ) -> Result<Keys> {
        let protection = &config.settings.protection;
        for (i, kek) in protection.keys.iter().enumerate() {
            let value =
                secret(&kek.key).map_err(|e| anyhow!("settings.protection.keys[{i}].key: {e}"))?;
            decode_encryption_key(value.expose_secret())
                .map_err(|e| anyhow!("settings.protection.keys[{i}].key (`{}`): {e}", kek.id))?;
        }
        let hasher = match &protection.hash_key {
            None => None,
            Some(r) => {
                let value = secret(r).map_err(|e| anyhow!("settings.protection.hash_key: {e}"))?;
                let bytes = value.expose_secret().as_bytes();
                check_strength(SecretUse::HashKey, bytes)
                    .and_then(|()| KeyedHasher::new(bytes))
                    .map(Arc::new)
                    .map(Some)
                    .map_err(|e| anyhow!("settings.protection.hash_key: {e}"))?
            }
        };
        let mut ciphers = BTreeMap::new();
        for (system, def) in &config.systems {
            let Some(r) = def.policy.as_ref().and_then(|p| p.encryption_key.as_ref()) else {
                continue;
            };
            let field = format!("systems.{system}.policy.encryption_key");
            let value = secret(r).map_err(|e| anyhow!("{field}: {e}"))?;
            let key = secrecy::SecretSlice::from(
                decode_encryption_key(value.expose_secret())
                    .map_err(|e| anyhow!("{field}: {e}"))?,
            );
            ciphers.insert(
                system.clone(),
                FieldCipher::new(key.expose_secret()).map_err(|e| anyhow!("{field}: {e}"))?,
            );
        }
        Ok(Keys { hasher, ciphers })
    }

    /// The hub's keyed hasher (`settings.protection.hash_key`), if one is set: also the key
    /// of subject references.
    pub fn hasher(&self) -> Option<&Arc<KeyedHasher>> {
        self.hasher.as_ref()
    }
}

/// The protection of one destination: its system's policy with its keys, and which schema
/// classifies an event of its flow.
#[derive(Debug)]
pub struct DestinationProtection {
    classifier: Arc<Classifier>,
    protector: Protector,
    refused: metrics::Counter,
    unclassified_removed: metrics::Counter,
    emptied: metrics::Counter,
}

impl DestinationProtection {
    /// The protection of destination `dest_name` of `flow`, or `None` when none applies
    /// (its flow carries no classified field and its system does not deny unclassified
    /// ones).
    pub fn for_destination(
        config: &Config,
        classifier: &Arc<Classifier>,
        keys: &Keys,
        flow: &str,
        dest_name: &str,
        dest: &Destination,
    ) -> Option<Arc<DestinationProtection>> {
        let policy = config
            .systems
            .get(&dest.system)
            .and_then(|s| s.policy.as_ref());
        let protector = Protector::new(
            &dest.system,
            policy,
            config.settings.protection.unclassified,
            keys.hasher.clone(),
            keys.ciphers.get(&dest.system).cloned(),
        );
        if !classifier.flow_is_classified(flow) && protector.unclassified() != Unclassified::Deny {
            return None;
        }
        let labels = [
            ("flow", flow.to_string()),
            ("destination", dest_name.to_string()),
        ];
        Some(Arc::new(DestinationProtection {
            classifier: classifier.clone(),
            protector,
            refused: metrics::counter!(ferry_metrics::PROTECT_REFUSED_TOTAL, &labels),
            unclassified_removed: metrics::counter!(
                ferry_metrics::PROTECT_UNCLASSIFIED_REMOVED_TOTAL,
                &labels
            ),
            emptied: metrics::counter!(ferry_metrics::PROTECT_EMPTIED_TOTAL, &labels),
        }))
    }

    /// `payload` (the stored event of `delivery`) as its destination may receive it, and
    /// the categories it carries with how each was protected. Unchanged (and not parsed)
    /// when the event's schema classifies nothing and unclassified fields are allowed;
    /// unchanged (only its categories read) when the policy passes every category.
    pub fn apply(
        &self,
        delivery: &ClaimedDelivery,
        payload: &Bytes,
    ) -> Result<(Bytes, Vec<(String, String)>), RenderError> {
        let Some(classes) = self.classes_to_protect(delivery) else {
            return Ok((payload.clone(), Vec::new()));
        };
        // Fail closed: what cannot be read cannot be protected.
        let not_json = |_| {
            RenderError::permanent(
                "payload_invalid",
                "the stored event is not JSON, so its classified fields cannot be protected",
            )
        };
        if self.protector.passes_all(classes) {
            // Nothing to change: the stored text goes, only its categories are read.
            let done = self
                .protector
                .protect_text(classes, payload)
                .map_err(not_json)?;
            return Ok((payload.clone(), done.categories_sent));
        }
        let event: Value = serde_json::from_slice(payload).map_err(not_json)?;
        self.protect_parsed(classes, event)
    }

    /// [`DestinationProtection::apply`] for the stored event already parsed (decrypted at
    /// rest): written to JSON once, protected.
    pub fn apply_value(
        &self,
        delivery: &ClaimedDelivery,
        event: Value,
    ) -> Result<(Bytes, Vec<(String, String)>), RenderError> {
        let Some(classes) = self.classes_to_protect(delivery) else {
            let body = serde_json::to_vec(&event).map_err(|e| {
                RenderError::permanent(
                    "payload_invalid",
                    format!("the event cannot be written as JSON: {e}"),
                )
            })?;
            return Ok((Bytes::from(body), Vec::new()));
        };
        self.protect_parsed(classes, event)
    }

    /// The classified fields of `delivery`'s event, or `None` when the event goes as it is
    /// (its schema classifies nothing and unclassified fields are allowed).
    fn classes_to_protect(&self, delivery: &ClaimedDelivery) -> Option<Option<&FieldClasses>> {
        let classes = self
            .classifier
            .classes(&delivery.lane.flow, delivery.event_type.as_deref())
            .filter(|c| c.has_categories());
        if classes.is_none() && self.protector.unclassified() != Unclassified::Deny {
            return None;
        }
        Some(classes.map(|c| c.as_ref()))
    }

    fn protect_parsed(
        &self,
        classes: Option<&FieldClasses>,
        mut event: Value,
    ) -> Result<(Bytes, Vec<(String, String)>), RenderError> {
        let done = self.protector.protect(classes, &mut event);
        self.refused.increment(done.refused as u64);
        self.unclassified_removed
            .increment(done.unclassified_removed as u64);
        if done.emptied {
            self.emptied.increment(1);
        }
        let body = serde_json::to_vec(&event).map_err(|e| {
            RenderError::permanent(
                "payload_invalid",
                format!("the protected event cannot be written as JSON: {e}"),
            )
        })?;
        Ok((Bytes::from(body), done.categories_sent))
    }
}
