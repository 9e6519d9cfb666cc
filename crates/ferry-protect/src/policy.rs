//! The policy of a destination system, applied to an event before it leaves Ferry.
//!
//! For a data category, the action is the one of the most specific key covering it (a key
//! covers its sub-categories) among the system's `receives` (= `pass`) and its `protect`
//! rules; a category neither received nor protected is **refused**: its value is removed
//! (fail closed). A system without a policy may receive no classified field. Fields without
//! a category follow the system's `unclassified` setting (else the hub's): `allow` and
//! `warn` send them as they are, `deny` removes them.

use std::collections::BTreeSet;
use std::sync::Arc;

use ferry_config::{ProtectAction, SystemPolicy, Unclassified};
use serde_json::Value;

use crate::classify::{FieldClasses, Keep};
use crate::encrypt::FieldCipher;
use crate::hasher::KeyedHasher;
use crate::taxonomy::covers;

/// What is done to a value of a category on its way to a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Sent as it is.
    Pass,
    /// Keyed HMAC-SHA256, stable per system.
    Hash,
    /// Replaced by [`REDACTED`].
    Redact,
    /// AES-256-GCM under the system's key ([`crate::encrypt`]).
    Encrypt,
    /// Removed, as the policy says.
    Drop,
    /// Removed: nothing in the policy lets the system receive it.
    Refuse,
}

/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";

impl Action {
    /// Its name: `pass`, `hash`, `redact`, `encrypt`, `drop` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Hash => "hash",
            Action::Redact => "redact",
            Action::Encrypt => "encrypt",
            Action::Drop => "drop",
            Action::Refuse => "refused",
        }
    }
}

impl From<ProtectAction> for Action {
    fn from(a: ProtectAction) -> Action {
        match a {
            ProtectAction::Pass => Action::Pass,
            ProtectAction::Hash => Action::Hash,
            ProtectAction::Redact => Action::Redact,
            ProtectAction::Encrypt => Action::Encrypt,
            ProtectAction::Drop => Action::Drop,
        }
    }
}

/// Which rule decided a category's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub action: Action,
    /// The key of the rule (`receives` or `protect`), `None` when refused.
    pub rule: Option<String>,
}

/// The rules of one system's policy.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// (key, action), `receives` as `pass`; a `protect` rule replaces a `receives` entry of
    /// the same key.
    rules: Vec<(String, Action)>,
}

impl Rules {
    /// The rules of `policy`; none (every category refused) without one.
    pub fn of(policy: Option<&SystemPolicy>) -> Rules {
        let Some(policy) = policy else {
            return Rules::default();
        };
        let mut rules: Vec<(String, Action)> = policy
            .receives
            .iter()
            .filter(|k| !policy.protect.contains_key(*k))
            .map(|k| (k.clone(), Action::Pass))
            .collect();
        rules.extend(policy.protect.iter().map(|(k, a)| (k.clone(), (*a).into())));
        Rules { rules }
    }

    /// The action for `category`: the most specific rule covering it, else refused.
    pub fn resolve(&self, category: &str) -> Resolution {
        self.rules
            .iter()
            .filter(|(key, _)| covers(key, category))
            .max_by_key(|(key, _)| key.len())
            .map_or(
                Resolution {
                    action: Action::Refuse,
                    rule: None,
                },
                |(key, action)| Resolution {
                    action: *action,
                    rule: Some(key.clone()),
                },
            )
    }
}

/// What protecting one event did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protected {
    /// Each category present, with the name of what was done to it ([`Action::as_str`]).
    pub categories_sent: Vec<(String, String)>,
    /// Classified values removed because the system may not receive them.
    pub refused: usize,
    /// Values removed because they carry no category (`unclassified: deny`).
    pub unclassified_removed: usize,
    /// Whether nothing of the event was classified under `deny`, so it became `{}`.
    pub emptied: bool,
}

/// One destination system's policy with the keys its actions need.
#[derive(Debug, Clone)]
pub struct Protector {
    system: String,
    rules: Rules,
    unclassified: Unclassified,
    hasher: Option<Arc<KeyedHasher>>,
    cipher: Option<FieldCipher>,
}

impl Protector {
    /// The protector of `system` with `policy` (none: every classified field refused);
    /// `default_unclassified` applies unless the policy says. `hasher` is the hub's
    /// `hash_key`, `cipher` the system's `encryption_key`: a `hash` or `encrypt` without its
    /// key refuses the value (fail closed; `ferry validate` refuses such a config).
    pub fn new(
        system: &str,
        policy: Option<&SystemPolicy>,
        default_unclassified: Unclassified,
        hasher: Option<Arc<KeyedHasher>>,
        cipher: Option<FieldCipher>,
    ) -> Protector {
        Protector {
            system: system.to_string(),
            rules: Rules::of(policy),
            unclassified: policy
                .and_then(|p| p.unclassified)
                .unwrap_or(default_unclassified),
            hasher,
            cipher,
        }
    }

    /// The system's rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// What fields without a category do at this system.
    pub fn unclassified(&self) -> Unclassified {
        self.unclassified
    }

    /// Protect `value` (an event whose classified fields are `classes`, `None` when its
    /// schema classifies nothing) for this system, in place.
    pub fn protect(&self, classes: Option<&FieldClasses>, value: &mut Value) -> Protected {
        let mut out = Protected::default();
        let present = classes
            .map(|c| c.categories_present(value))
            .unwrap_or_default();
        if self.unclassified == Unclassified::Deny {
            match classes.filter(|c| c.has_categories()) {
                Some(classes) => out.unclassified_removed = classes.retain_classified(value),
                None => {
                    out.unclassified_removed = count_values(value);
                    *value = Value::Object(Default::default());
                    out.emptied = true;
                }
            }
        }
        let Some(classes) = classes else {
            return out;
        };
        let mut done: BTreeSet<(String, Action)> = BTreeSet::new();
        classes.visit_mut(value, &mut |category, v| {
            let action = self.apply(category, v);
            if action == Action::Refuse {
                out.refused += 1;
            }
            done.insert((category.to_string(), action));
            match action {
                Action::Drop | Action::Refuse => Keep::Remove,
                _ => Keep::Yes,
            }
        });
        // Categories present whose values a deeper action removed first still say what the
        // policy does with them.
        out.categories_sent = present
            .into_iter()
            .map(|category| {
                let action = done
                    .iter()
                    .find(|(c, _)| *c == category)
                    .map_or_else(|| self.rules.resolve(&category).action, |(_, a)| *a);
                (category, action.as_str().to_string())
            })
            .collect();
        out
    }

    /// Whether protecting an event classified by `classes` changes nothing of it: every
    /// category passes and fields without one are not removed. Such an event can go as it
    /// is ([`Protector::protect_text`]).
    pub fn passes_all(&self, classes: Option<&FieldClasses>) -> bool {
        self.unclassified != Unclassified::Deny
            && classes.is_none_or(|c| {
                c.fields()
                    .all(|(_, category)| self.rules.resolve(category).action == Action::Pass)
            })
    }

    /// [`Protector::protect`] of an event that [`Protector::passes_all`], from its JSON text
    /// (not built as a value): what was done, the text itself being what goes. Not JSON: an
    /// error.
    pub fn protect_text(
        &self,
        classes: Option<&FieldClasses>,
        json: &[u8],
    ) -> Result<Protected, serde_json::Error> {
        let present = match classes {
            Some(c) => c.categories_present_in_text(json)?,
            None => {
                serde_json::from_slice::<serde::de::IgnoredAny>(json)?;
                BTreeSet::new()
            }
        };
        Ok(Protected {
            categories_sent: present
                .into_iter()
                .map(|category| (category, Action::Pass.as_str().to_string()))
                .collect(),
            ..Protected::default()
        })
    }

    /// Apply the action of `category` to `v`; the action done (a `hash` or `encrypt` that
    /// cannot be done refuses).
    fn apply(&self, category: &str, v: &mut Value) -> Action {
        match self.rules.resolve(category).action {
            Action::Pass => Action::Pass,
            Action::Hash => match &self.hasher {
                Some(h) => {
                    *v = Value::String(h.hash_for_system(&self.system, v));
                    Action::Hash
                }
                None => Action::Refuse,
            },
            Action::Redact => {
                *v = Value::String(REDACTED.to_string());
                Action::Redact
            }
            Action::Encrypt => match self.cipher.as_ref().map(|c| c.encrypt(&self.system, v)) {
                Some(Ok(text)) => {
                    *v = Value::String(text);
                    Action::Encrypt
                }
                _ => Action::Refuse,
            },
            Action::Drop => Action::Drop,
            Action::Refuse => Action::Refuse,
        }
    }
}

/// How many values `value` holds (itself for a scalar, else its members, deeply).
fn count_values(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.values().map(|v| 1 + count_nested(v)).sum(),
        Value::Array(items) => items.iter().map(|v| 1 + count_nested(v)).sum(),
        _ => 1,
    }
}

fn count_nested(value: &Value) -> usize {
    match value {
        Value::Object(_) | Value::Array(_) => count_values(value),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use serde_json::json;

    fn policy(receives: &[&str], protect: &[(&str, ProtectAction)]) -> SystemPolicy {
        SystemPolicy {
            data_use: "essential.service".into(),
            receives: receives.iter().map(|s| s.to_string()).collect(),
            protect: protect
                .iter()
                .map(|(k, a)| (k.to_string(), *a))
                .collect::<BTreeMap<_, _>>(),
            unclassified: None,
            encryption_key: None,
        }
    }

    #[test]
    fn the_most_specific_rule_wins_and_the_rest_is_refused() {
        let p = policy(
            &["user.contact"],
            &[
                ("user.contact.email", ProtectAction::Hash),
                ("user.contact.email.work", ProtectAction::Pass),
                ("user.financial", ProtectAction::Drop),
            ],
        );
        let rules = Rules::of(Some(&p));
        let action = |c: &str| rules.resolve(c).action;
        assert_eq!(action("user.contact.phone_number"), Action::Pass);
        assert_eq!(action("user.contact"), Action::Pass);
        assert_eq!(action("user.contact.email"), Action::Hash);
        assert_eq!(action("user.contact.email.work"), Action::Pass);
        assert_eq!(action("user.contact.email.work.alias"), Action::Pass);
        assert_eq!(action("user.financial.bank_account"), Action::Drop);
        assert_eq!(action("user.name"), Action::Refuse);
        assert_eq!(
            action("user"),
            Action::Refuse,
            "a parent is not covered by its child"
        );
        assert_eq!(action("user.contacts"), Action::Refuse);
        assert_eq!(
            rules.resolve("user.contact.email.x").rule.as_deref(),
            Some("user.contact.email")
        );
        assert_eq!(rules.resolve("user.name").rule, None);
    }

    #[test]
    fn without_a_policy_everything_classified_is_refused() {
        let rules = Rules::of(None);
        assert_eq!(rules.resolve("user.contact.email").action, Action::Refuse);
        assert_eq!(rules.resolve("system.operations").action, Action::Refuse);
    }

    #[test]
    fn a_protect_rule_replaces_receiving_the_same_key() {
        let p = policy(&["user.name"], &[("user.name", ProtectAction::Redact)]);
        assert_eq!(
            Rules::of(Some(&p)).resolve("user.name").action,
            Action::Redact
        );
    }

    fn classes() -> FieldClasses {
        FieldClasses::new(
            &[
                ("/email".into(), "user.contact.email".into()),
                ("/name".into(), "user.name".into()),
                ("/lines/*/card".into(), "user.financial.credit_card".into()),
            ],
            &[],
        )
    }

    #[test]
    fn applies_each_action_and_reports_the_categories() {
        let mut p = policy(
            &[],
            &[
                ("user.contact.email", ProtectAction::Hash),
                ("user.financial", ProtectAction::Encrypt),
            ],
        );
        p.encryption_key = None;
        let hasher = Arc::new(KeyedHasher::new(&[3; 32]).unwrap());
        let cipher = FieldCipher::new(&[4; 32]).unwrap();
        let protector = Protector::new(
            "crm",
            Some(&p),
            Unclassified::Allow,
            Some(hasher.clone()),
            Some(cipher.clone()),
        );
        let mut event = json!({"email": "a@x.io", "name": "Ada", "lines": [{"card": "4242", "qty": 1}], "total": 3});
        let out = protector.protect(Some(&classes()), &mut event);
        assert_eq!(
            event["email"],
            json!(hasher.hash_for_system("crm", &json!("a@x.io")))
        );
        assert!(event.get("name").is_none(), "refused: removed");
        let card = event["lines"][0]["card"].as_str().unwrap();
        assert_eq!(cipher.decrypt("crm", card).unwrap(), json!("4242"));
        assert_eq!(event["total"], json!(3));
        assert_eq!(out.refused, 1);
        assert_eq!(
            out.categories_sent,
            [
                ("user.contact.email".to_string(), "hash".to_string()),
                (
                    "user.financial.credit_card".to_string(),
                    "encrypt".to_string()
                ),
                ("user.name".to_string(), "refused".to_string()),
            ]
        );
    }

    #[test]
    fn a_missing_key_refuses_instead_of_sending() {
        let p = policy(
            &[],
            &[
                ("user.contact.email", ProtectAction::Hash),
                ("user.name", ProtectAction::Encrypt),
            ],
        );
        let protector = Protector::new("crm", Some(&p), Unclassified::Allow, None, None);
        let mut event = json!({"email": "a@x.io", "name": "Ada"});
        let out = protector.protect(Some(&classes()), &mut event);
        assert_eq!(event, json!({}));
        assert_eq!(out.refused, 2);
    }

    #[test]
    fn redact_drop_and_unclassified_deny() {
        let mut p = policy(
            &["user.contact.email"],
            &[("user.name", ProtectAction::Redact)],
        );
        p.unclassified = Some(Unclassified::Deny);
        let protector = Protector::new("crm", Some(&p), Unclassified::Allow, None, None);
        assert_eq!(protector.unclassified(), Unclassified::Deny);
        let mut event = json!({"email": "a@x.io", "name": "Ada", "total": 3, "lines": []});
        let out = protector.protect(Some(&classes()), &mut event);
        assert_eq!(
            event,
            json!({"email": "a@x.io", "name": REDACTED, "lines": []})
        );
        assert_eq!(out.unclassified_removed, 1);
        assert!(!out.emptied);
        let mut unannotated = json!({"total": 3, "nested": {"a": 1}});
        let out = protector.protect(None, &mut unannotated);
        assert_eq!(unannotated, json!({}));
        assert!(out.emptied);
        assert_eq!(out.unclassified_removed, 3);
        // Allow: unclassified values stay, unannotated events pass untouched.
        let allow = Protector::new("crm", None, Unclassified::Allow, None, None);
        let mut plain = json!({"total": 3});
        assert_eq!(allow.protect(None, &mut plain), Protected::default());
        assert_eq!(plain, json!({"total": 3}));
    }

    #[test]
    fn an_event_passed_whole_reports_what_protecting_it_reports() {
        let passing = [
            policy(&["user"], &[]),
            policy(
                &["user.contact"],
                &[
                    ("user.name", ProtectAction::Pass),
                    ("user.financial", ProtectAction::Pass),
                ],
            ),
        ];
        let text = r#"{"email": "a@x.io", "name": null, "lines": [{"card": "4242"}], "total": 3}"#;
        for p in &passing {
            let protector = Protector::new("crm", Some(p), Unclassified::Warn, None, None);
            assert!(protector.passes_all(Some(&classes())));
            let mut event: Value = serde_json::from_str(text).unwrap();
            let expected = protector.protect(Some(&classes()), &mut event);
            let got = protector
                .protect_text(Some(&classes()), text.as_bytes())
                .unwrap();
            assert_eq!(got, expected);
            assert_eq!(
                event,
                serde_json::from_str::<Value>(text).unwrap(),
                "unchanged"
            );
            assert!(
                protector
                    .protect_text(Some(&classes()), b"{\"email\":")
                    .is_err()
            );
        }
        // One category not passed, or unclassified fields denied: the event is protected.
        let hashing = policy(&["user"], &[("user.contact.email", ProtectAction::Hash)]);
        let narrow = policy(&["user.contact", "user.name"], &[]);
        for p in [&hashing, &narrow] {
            let protector = Protector::new("crm", Some(p), Unclassified::Allow, None, None);
            assert!(!protector.passes_all(Some(&classes())));
        }
        let mut denying = policy(&["user"], &[]);
        denying.unclassified = Some(Unclassified::Deny);
        let protector = Protector::new("crm", Some(&denying), Unclassified::Allow, None, None);
        assert!(!protector.passes_all(Some(&classes())));
        assert!(!protector.passes_all(None));
        assert!(Protector::new("crm", None, Unclassified::Allow, None, None).passes_all(None));
    }
}
