//! Checks of `settings.protection` and `systems.*.policy` that need no taxonomy: key ids,
//! the keys the policies' actions need, rules that contradict each other. (Whether the keys
//! of categories and uses are known is checked where the taxonomy is, in `ferry-protect`;
//! whether the secrets resolve to usable keys, with the other secrets.)

use std::collections::BTreeMap;

use super::Checker;
use crate::locate::Part;
use crate::protection::ProtectAction;

pub(super) fn check(c: &mut Checker) {
    key_ids(c);
    policies(c);
}

/// `settings.protection.keys`: each id letters, digits, `-`, `_`, `.`, and unique.
fn key_ids(c: &mut Checker) {
    let Some(file) = c.origins.settings else {
        return;
    };
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, kek) in c.config.settings.protection.keys.iter().enumerate() {
        let index = i.to_string();
        let path = ["settings", "protection", "keys", index.as_str(), "id"];
        let valid = !kek.id.is_empty()
            && kek
                .id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
        if !valid {
            c.error(
                file,
                &path,
                Part::Value,
                format!(
                    "key id `{}` must be letters, digits, `-`, `_` or `.` (at least one)",
                    kek.id
                ),
                Some("e.g. `kek-2026-12`: the id is written in every envelope it wraps".into()),
            );
        }
        if let Some(first) = seen.insert(kek.id.as_str(), i) {
            c.error(
                file,
                &path,
                Part::Value,
                format!(
                    "key id `{}` is used twice (keys {first} and {i}): envelopes name the key \
                     that wraps them by its id",
                    kek.id
                ),
                Some("give each key-encryption key its own id".into()),
            );
        }
    }
}

/// Each system policy: the keys its actions need exist, and no key is both received and
/// protected.
fn policies(c: &mut Checker) {
    let has_hash_key = c.config.settings.protection.hash_key.is_some();
    for (system, def) in &c.config.systems {
        let (Some(policy), Some(file)) = (&def.policy, c.system_file(system)) else {
            continue;
        };
        for (category, action) in &policy.protect {
            let path = ["systems", system, "policy", "protect", category.as_str()];
            match action {
                ProtectAction::Hash if !has_hash_key => c.error(
                    file,
                    &path,
                    Part::Value,
                    format!("`hash` needs a hash key, and `settings.protection.hash_key` is not set (system `{system}`, `{category}`)"),
                    Some("set `settings.protection.hash_key: { file: … }` (at least 32 random bytes, e.g. `openssl rand -hex 32`)".into()),
                ),
                ProtectAction::Encrypt if policy.encryption_key.is_none() => c.error(
                    file,
                    &path,
                    Part::Value,
                    format!("`encrypt` needs the system's key, and `systems.{system}.policy.encryption_key` is not set (`{category}`)"),
                    Some("set `encryption_key: { file: … }` in the policy: 32 random bytes, base64 (`openssl rand -base64 32`), shared with the system so it can decrypt".into()),
                ),
                _ => {}
            }
        }
        for (i, category) in policy.receives.iter().enumerate() {
            if policy.protect.contains_key(category) {
                let index = i.to_string();
                c.error(
                    file,
                    &["systems", system, "policy", "receives", &index],
                    Part::Value,
                    format!(
                        "`{category}` is both received as it is and protected: one rule per key"
                    ),
                    Some(format!(
                        "remove it from `receives`, or its `protect` rule (`{category}: pass` is the same as receiving it)"
                    )),
                );
            }
        }
        let encrypts = policy
            .protect
            .values()
            .any(|a| *a == ProtectAction::Encrypt);
        if policy.encryption_key.is_some() && !encrypts {
            c.warning(
                file,
                &["systems", system, "policy", "encryption_key"],
                Part::Key,
                format!("system `{system}` has an `encryption_key` but no `encrypt` rule uses it"),
                Some("add a `protect` rule `<category>: encrypt`, or remove the key".into()),
            );
        }
    }
}
