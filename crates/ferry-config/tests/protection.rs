//! `settings.protection` and `systems.*.policy`: key ids, the keys the actions need, and the
//! secrets behind them, each problem located at its field.

mod common;

use common::{dir, error_at, errors, flow, load, load_unresolved};

/// 32 bytes, base64.
const AES_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// 40 bytes of text.
const HASH_KEY: &str = "3f9a2c7e1b4d8f0a6c5e9b2d7f1a3c8e4b6d0f2a";

fn systems(crm_policy: &str) -> String {
    format!(
        "systems:\n  billing: {{ owner: team-payments }}\n  crm:\n    owner: team-growth\n    policy:\n{crm_policy}"
    )
}

#[test]
fn a_valid_protection_config_loads() {
    let tmp = dir(&[
        (
            "ferry.yaml",
            "settings:\n  protection:\n    keys:\n      - { id: kek-2026.12_a, key: { file: kek } }\n    hash_key: { file: hash-key }\n    unclassified: warn\n    retention: { user.contact: 30d }\n",
        ),
        (
            "systems.yaml",
            &systems(
                "      data_use: marketing.communications.email\n      receives: [user.name]\n      protect: { user.contact.email: hash, user.financial: encrypt }\n      encryption_key: { file: crm-key }\n",
            ),
        ),
        ("flows/f.yaml", &flow("f", "http://crm.test/x")),
        ("kek", AES_KEY),
        ("crm-key", AES_KEY),
        ("hash-key", HASH_KEY),
    ]);
    let loaded = load(tmp.path()).expect("valid");
    let p = &loaded.config.settings.protection;
    assert_eq!(p.keys[0].id, "kek-2026.12_a");
    assert_eq!(
        p.retention["user.contact"],
        std::time::Duration::from_secs(30 * 86400)
    );
}

#[test]
fn key_ids_must_be_well_formed_and_unique() {
    let tmp = dir(&[(
        "ferry.yaml",
        "settings:\n  protection:\n    keys:\n      - { id: a/b, key: { env: K1 } }\n      - { id: k2, key: { env: K2 } }\n      - { id: k2, key: { env: K3 } }\n",
    )]);
    let errs = errors(load_unresolved(tmp.path()));
    let bad = error_at(&errs, "settings.protection.keys.0.id");
    assert!(bad.message.contains("`a/b`"), "{}", bad.message);
    assert_eq!(bad.line, 4);
    let twice = error_at(&errs, "settings.protection.keys.2.id");
    assert!(twice.message.contains("used twice"), "{}", twice.message);
    assert_eq!(twice.line, 6);
}

#[test]
fn hash_needs_the_hash_key_and_encrypt_the_systems_key() {
    let tmp = dir(&[
        (
            "systems.yaml",
            &systems(
                "      data_use: essential\n      protect:\n        user.contact.email: hash\n        user.name: encrypt\n",
            ),
        ),
        ("flows/f.yaml", &flow("f", "http://crm.test/x")),
    ]);
    let errs = errors(load_unresolved(tmp.path()));
    let hash = error_at(&errs, "systems.crm.policy.protect.user.contact.email");
    assert!(
        hash.message
            .contains("`settings.protection.hash_key` is not set"),
        "{}",
        hash.message
    );
    assert_eq!(hash.line, 8);
    let encrypt = error_at(&errs, "systems.crm.policy.protect.user.name");
    assert!(
        encrypt
            .message
            .contains("`systems.crm.policy.encryption_key` is not set"),
        "{}",
        encrypt.message
    );
    assert_eq!(encrypt.line, 9);
}

#[test]
fn a_key_is_either_received_or_protected() {
    let tmp = dir(&[
        (
            "systems.yaml",
            &systems(
                "      data_use: essential\n      receives: [user.name]\n      protect: { user.name: redact }\n",
            ),
        ),
        ("flows/f.yaml", &flow("f", "http://crm.test/x")),
    ]);
    let errs = errors(load_unresolved(tmp.path()));
    let e = error_at(&errs, "systems.crm.policy.receives.0");
    assert!(e.message.contains("both received"), "{}", e.message);
}

#[test]
fn key_material_is_checked_when_secrets_resolve() {
    let tmp = dir(&[
        (
            "ferry.yaml",
            "settings:\n  protection:\n    keys:\n      - { id: k1, key: { file: short-kek } }\n      - { id: k2, key: { file: not-base64 } }\n    hash_key: { file: short-hash }\n",
        ),
        (
            "systems.yaml",
            &systems(
                "      data_use: essential\n      protect: { user.name: encrypt }\n      encryption_key: { file: crm-key }\n",
            ),
        ),
        ("flows/f.yaml", &flow("f", "http://crm.test/x")),
        ("short-kek", "c2hvcnQ="),
        ("not-base64", "not base64 at all!"),
        ("short-hash", "only-twenty-bytes-xx"),
        ("crm-key", "MDEyMzQ1Njc4OWFiY2RlZg=="),
    ]);
    // Without resolving, the references alone are fine.
    load_unresolved(tmp.path()).expect("loads without reading secrets");
    let errs = errors(load(tmp.path()));
    let short = error_at(&errs, "settings.protection.keys.0.key");
    assert!(
        short.message.contains("decodes to 5 bytes"),
        "{}",
        short.message
    );
    let b64 = error_at(&errs, "settings.protection.keys.1.key");
    assert!(b64.message.contains("not base64"), "{}", b64.message);
    let hash = error_at(&errs, "settings.protection.hash_key");
    assert!(
        hash.message.contains("at least 32 bytes"),
        "{}",
        hash.message
    );
    let crm = error_at(&errs, "systems.crm.policy.encryption_key");
    assert!(
        crm.message.contains("decodes to 16 bytes"),
        "{}",
        crm.message
    );
    for e in &errs {
        assert!(!e.message.contains("only-twenty"), "values never quoted");
    }
}
