//! What the audit trail records about an event a flow accepts, computed at ingress (for
//! webhooks, pulled records and queue messages alike, see [`super::pipeline::process_flow`]):
//! the flow's version, the data categories present and the data subject's reference — a
//! keyed hash of its identifier, never the identifier itself. The store writes it with the
//! event, in the same transaction.

use std::sync::Arc;

use ferry_protect::{Classifier, KeyedHasher};
use ferry_store::EventAudit;
use serde_json::Value;

/// A flow's part in the audit record of each event it accepts.
#[derive(Debug, Clone)]
pub struct AcceptAudit {
    /// `flows.X.version`.
    pub flow_version: u32,
    /// Which schema's annotations classify an event (shared by every flow).
    pub classifier: Arc<Classifier>,
    /// `settings.protection.hash_key`, for subject references; without one, no event names
    /// its subject in the audit trail.
    pub hasher: Option<Arc<KeyedHasher>>,
}

/// Version 1 (the default of `flows.X.version`), no classified schema, no hash key.
impl Default for AcceptAudit {
    fn default() -> Self {
        AcceptAudit {
            flow_version: 1,
            classifier: Arc::new(Classifier::default()),
            hasher: None,
        }
    }
}

impl AcceptAudit {
    /// The audit record of an event of `flow` with type `event_type`: `value` is the event
    /// parsed (or `None`, when the flow did not need to parse it; it is parsed here only if
    /// its schema classifies something).
    pub fn record(
        &self,
        flow: &str,
        event_type: Option<&str>,
        value: Option<&Value>,
        payload: &[u8],
    ) -> EventAudit {
        let mut audit = EventAudit {
            flow_version: self.flow_version,
            subject: None,
            categories: Vec::new(),
        };
        let Some(classes) = self.classifier.classes(flow, event_type) else {
            return audit;
        };
        let parsed;
        let value = match value {
            Some(v) => v,
            None => match serde_json::from_slice::<Value>(payload) {
                Ok(v) => {
                    parsed = v;
                    &parsed
                }
                // Ingress accepts only JSON; a body that is not has no fields to classify.
                Err(_) => return audit,
            },
        };
        audit.categories = classes.categories_present(value).into_iter().collect();
        if let Some(hasher) = &self.hasher {
            audit.subject = classes.subject(value).map(|id| hasher.subject_ref(&id));
        }
        audit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn audit(hasher: Option<Arc<KeyedHasher>>) -> AcceptAudit {
        let config = ferry_config::Config::default();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("customer.json"),
            json!({
                "type": "object",
                "properties": {
                    "email": {"type": "string", "x-ferry-category": "user.contact.email", "x-ferry-subject": true},
                    "total": {"type": "number"}
                }
            })
            .to_string(),
        )
        .unwrap();
        let mut config = config;
        config.root = dir.path().to_path_buf();
        config.schemas.insert(
            "customer.created".into(),
            ferry_config::SchemaDef {
                file: "customer.json".into(),
                description: None,
            },
        );
        let registry = ferry_schema::SchemaRegistry::load(&config).expect("schemas");
        AcceptAudit {
            flow_version: 4,
            classifier: Arc::new(Classifier::new(&config, &registry)),
            hasher,
        }
    }

    #[test]
    fn records_version_categories_and_a_keyed_subject_reference() {
        let hasher = Arc::new(KeyedHasher::new(&[7; 32]).unwrap());
        let a = audit(Some(hasher.clone()));
        let body = br#"{"email":"ada@example.com","total":3}"#;
        let got = a.record("f", Some("customer.created"), None, body);
        assert_eq!(got.flow_version, 4);
        assert_eq!(got.categories, vec!["user.contact.email".to_owned()]);
        let subject = got.subject.expect("a subject reference");
        assert_eq!(subject, hasher.subject_ref("ada@example.com"));
        assert!(!subject.contains("ada"));
        // Without a hash key: categories, no subject.
        let got = audit(None).record("f", Some("customer.created"), None, body);
        assert_eq!((got.subject, got.categories.len()), (None, 1));
        // An event its schema does not classify: the version only.
        let got = a.record("f", Some("other"), None, body);
        assert!(got.categories.is_empty() && got.subject.is_none());
        assert_eq!(got.flow_version, 4);
    }
}
