//! The taxonomy Ferry's classification and policies speak: fideslang's default data
//! categories, data uses and data subjects ([`fideslang`], built in), plus the custom keys a
//! config declares under `settings.protection.taxonomy`, each extending a known key.
//!
//! A key covers its sub-keys: `user.contact` covers `user.contact.email`.

pub mod fideslang;

use std::collections::BTreeMap;
use std::fmt;

use ferry_config::CustomTaxonomy;

/// One key of the taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The dotted key, e.g. `user.contact.email`.
    pub key: &'static str,
    /// fideslang's name for it.
    pub name: &'static str,
    /// fideslang's description.
    pub description: &'static str,
    /// For a key fideslang deprecated: the key that replaces it.
    pub replaced_by: Option<&'static str>,
}

/// The three kinds of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// What a field holds (`user.contact.email`).
    DataCategory,
    /// What a system does with what it receives (`marketing.advertising`).
    DataUse,
    /// Whose data it is (`customer`).
    DataSubject,
}

impl Kind {
    /// All three.
    pub const ALL: [Kind; 3] = [Kind::DataCategory, Kind::DataUse, Kind::DataSubject];

    /// The built-in keys of this kind.
    pub fn builtin(self) -> &'static [Entry] {
        match self {
            Kind::DataCategory => fideslang::DATA_CATEGORIES,
            Kind::DataUse => fideslang::DATA_USES,
            Kind::DataSubject => fideslang::DATA_SUBJECTS,
        }
    }

    /// Its field under `settings.protection.taxonomy` (`data_categories`…).
    pub fn field(self) -> &'static str {
        match self {
            Kind::DataCategory => "data_categories",
            Kind::DataUse => "data_uses",
            Kind::DataSubject => "data_subjects",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::DataCategory => "data category",
            Kind::DataUse => "data use",
            Kind::DataSubject => "data subject",
        })
    }
}

/// A custom key that cannot join the taxonomy, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomKeyProblem {
    pub kind: Kind,
    pub key: String,
    pub message: String,
}

/// The built-in keys plus a config's custom keys that extend a known key.
#[derive(Debug, Clone, Default)]
pub struct Taxonomy {
    /// Custom keys that joined, by kind: key → description.
    custom: BTreeMap<(Kind, String), String>,
}

impl Taxonomy {
    /// fideslang's keys only.
    pub fn builtin() -> Taxonomy {
        Taxonomy::default()
    }

    /// fideslang's keys plus `custom`'s: a custom key joins when it is well formed (dotted
    /// segments `[a-z][a-z0-9_]*`) and its parent (the key without its last segment) is
    /// known, built in or a custom key that joined. The others are returned as problems.
    pub fn with_custom(custom: &CustomTaxonomy) -> (Taxonomy, Vec<CustomKeyProblem>) {
        let mut taxonomy = Taxonomy::default();
        let mut problems = Vec::new();
        for kind in Kind::ALL {
            let declared = match kind {
                Kind::DataCategory => &custom.data_categories,
                Kind::DataUse => &custom.data_uses,
                Kind::DataSubject => &custom.data_subjects,
            };
            // Shortest first, so a custom parent joins before its custom children.
            let mut keys: Vec<(&String, &String)> = declared.iter().collect();
            keys.sort_by_key(|(k, _)| (k.split('.').count(), k.as_str()));
            for (key, description) in keys {
                match taxonomy.check_custom(kind, key) {
                    Ok(()) => {
                        taxonomy
                            .custom
                            .insert((kind, key.clone()), description.clone());
                    }
                    Err(message) => problems.push(CustomKeyProblem {
                        kind,
                        key: key.clone(),
                        message,
                    }),
                }
            }
        }
        (taxonomy, problems)
    }

    fn check_custom(&self, kind: Kind, key: &str) -> Result<(), String> {
        check_segments(key)?;
        if self.knows(kind, key) {
            return Err(format!("`{key}` is already a {kind} of the taxonomy"));
        }
        let Some((parent, _)) = key.rsplit_once('.') else {
            return Err(format!(
                "custom {kind} `{key}` extends no key: a custom key extends a known one, e.g. \
                 `{}.{key}`",
                kind.builtin()[0].key
            ));
        };
        if !self.knows(kind, parent) {
            return Err(format!(
                "custom {kind} `{key}` extends `{parent}`, which is not a known {kind}"
            ));
        }
        Ok(())
    }

    /// Whether `key` is a known key of `kind`.
    pub fn knows(&self, kind: Kind, key: &str) -> bool {
        kind.builtin().iter().any(|e| e.key == key)
            || self.custom.contains_key(&(kind, key.to_string()))
    }

    /// The built-in entry of `key`, if it is one.
    pub fn builtin_entry(kind: Kind, key: &str) -> Option<&'static Entry> {
        kind.builtin().iter().find(|e| e.key == key)
    }

    /// Why `key` is not a known key of `kind` (with the closest known keys as a hint), or
    /// `None` when it is.
    pub fn unknown(&self, kind: Kind, key: &str) -> Option<String> {
        if self.knows(kind, key) {
            return None;
        }
        let mut message = format!("`{key}` is not a known {kind}");
        let close = self.siblings(kind, key);
        if !close.is_empty() {
            message.push_str(&format!(" (known near it: {})", close.join(", ")));
        }
        Some(message)
    }

    /// Known keys sharing `key`'s longest known ancestor, at most eight.
    fn siblings(&self, kind: Kind, key: &str) -> Vec<String> {
        let mut prefix = key;
        while let Some((parent, _)) = prefix.rsplit_once('.') {
            prefix = parent;
            if self.knows(kind, prefix) {
                break;
            }
        }
        if !self.knows(kind, prefix) {
            return Vec::new();
        }
        let wanted = format!("{prefix}.");
        let mut out: Vec<String> = self
            .keys(kind)
            .filter(|k| {
                k.strip_prefix(&wanted)
                    .is_some_and(|rest| !rest.contains('.'))
            })
            .map(str::to_string)
            .collect();
        out.truncate(8);
        out
    }

    /// Every known key of `kind`: built in, then custom.
    pub fn keys(&self, kind: Kind) -> impl Iterator<Item = &str> {
        kind.builtin().iter().map(|e| e.key).chain(
            self.custom
                .keys()
                .filter(move |(k, _)| *k == kind)
                .map(|(_, key)| key.as_str()),
        )
    }

    /// The key that replaces `key` when fideslang deprecated it.
    pub fn replaced_by(kind: Kind, key: &str) -> Option<&'static str> {
        Self::builtin_entry(kind, key).and_then(|e| e.replaced_by)
    }
}

/// Whether `key` is made of dotted segments `[a-z][a-z0-9_]*`.
fn check_segments(key: &str) -> Result<(), String> {
    let well_formed = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    match key.split('.').find(|s| !well_formed(s)) {
        Some(bad) => Err(format!(
            "`{key}` is not a dotted key: segment `{bad}` must match `[a-z][a-z0-9_]*`"
        )),
        None => Ok(()),
    }
}

/// Whether `key` is `ancestor` or lies under it (`user.contact.email` under `user.contact`).
pub fn covers(ancestor: &str, key: &str) -> bool {
    key == ancestor
        || key
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_keys_have_known_parents_and_replacements() {
        for kind in Kind::ALL {
            let t = Taxonomy::builtin();
            for e in kind.builtin() {
                if let Some((parent, _)) = e.key.rsplit_once('.') {
                    assert!(t.knows(kind, parent), "{}", e.key);
                }
                if let Some(r) = e.replaced_by {
                    assert!(t.knows(kind, r), "{r}");
                }
            }
        }
        let t = Taxonomy::builtin();
        assert!(t.knows(Kind::DataCategory, "user.contact.email"));
        assert!(t.knows(Kind::DataUse, "essential.service.payment_processing"));
        assert!(t.knows(Kind::DataSubject, "customer"));
        assert!(!t.knows(Kind::DataCategory, "user.contact.emial"));
        assert_eq!(
            Taxonomy::replaced_by(Kind::DataCategory, "user.contact.url"),
            Some("user.contact.social_url")
        );
    }

    #[test]
    fn custom_keys_must_extend_a_known_key() {
        let mut custom = CustomTaxonomy::default();
        for (k, d) in [
            ("user.contact.email.work", "A work address"),
            ("user.contact.email.work.alias", "Its aliases"),
            ("user.loyalty.tier", "No parent"),
            ("loyalty", "Top level"),
            ("user.Bad", "Bad segment"),
            ("user.contact.email", "Already built in"),
        ] {
            custom.data_categories.insert(k.into(), d.into());
        }
        custom
            .data_uses
            .insert("marketing.loyalty".into(), "Loyalty programme".into());
        let (t, problems) = Taxonomy::with_custom(&custom);
        assert!(t.knows(Kind::DataCategory, "user.contact.email.work"));
        assert!(t.knows(Kind::DataCategory, "user.contact.email.work.alias"));
        assert!(t.knows(Kind::DataUse, "marketing.loyalty"));
        assert!(!t.knows(Kind::DataCategory, "marketing.loyalty"));
        let bad: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            bad,
            [
                "loyalty",
                "user.Bad",
                "user.contact.email",
                "user.loyalty.tier"
            ]
        );
        let no_parent = problems.iter().find(|p| p.key == "user.loyalty.tier");
        assert!(no_parent.unwrap().message.contains("`user.loyalty`"));
    }

    #[test]
    fn unknown_keys_name_their_known_neighbours() {
        let t = Taxonomy::builtin();
        let msg = t.unknown(Kind::DataCategory, "user.contact.emial").unwrap();
        assert!(msg.contains("user.contact.email"), "{msg}");
        assert_eq!(t.unknown(Kind::DataCategory, "user.name"), None);
    }

    #[test]
    fn a_key_covers_its_sub_keys_only() {
        assert!(covers("user.contact", "user.contact.email"));
        assert!(covers("user.contact", "user.contact"));
        assert!(!covers("user.contact", "user.contacts"));
        assert!(!covers("user.contact.email", "user.contact"));
    }
}
