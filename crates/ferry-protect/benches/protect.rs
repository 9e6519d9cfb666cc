//! What a delivery of a classified 1 KB event costs the policy and the decryption at rest:
//! the event protected by building it (`serde_json::Value`) and writing it back, against
//! the same event passed whole when the policy passes every category (only its
//! categories read from the text); and a stored (encrypted) event decrypted and written
//! for sending, against one handed over in clear.
//!
//! `cargo bench -p ferry-protect --bench protect -- --measurement-time 3 --warm-up-time 1`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use ferry_config::{SystemPolicy, Unclassified};
use ferry_protect::at_rest::{Found, open_fields, seal_fields};
use ferry_protect::{DataKey, FieldClasses, Protector};
use serde_json::Value;

const EVENT_ID: &str = "0190a6f2-7c1e-7d5e-9b1a-3c4d5e6f7a8b";

/// The bench event of `ferry-bench run`: a 1 KB body, `run` and `pad` classified.
fn event() -> Vec<u8> {
    let head = r#"{"sent_ns": 1767225600123456789,"run":"0123456789abcdef","seq":                  42,"type":"bench.event","pad":""#;
    let mut text = head.as_bytes().to_vec();
    text.resize(1024 - 2, b'x');
    text.extend_from_slice(b"\"}");
    text
}

fn classes() -> FieldClasses {
    FieldClasses::new(
        &[
            ("/run".into(), "user.unique_id".into()),
            ("/pad".into(), "user.content".into()),
        ],
        &["/run".into()],
    )
}

fn protector() -> Protector {
    let policy = SystemPolicy {
        data_use: "essential.service".into(),
        receives: vec!["user".into()],
        protect: BTreeMap::new(),
        unclassified: None,
        encryption_key: None,
    };
    Protector::new("dst", Some(&policy), Unclassified::Allow, None, None)
}

/// The event sent as it is, its categories read from the text.
fn pass_whole(b: &mut Bencher<'_>, protector: &Protector, classes: &FieldClasses, text: &[u8]) {
    b.iter(|| {
        black_box(
            protector
                .protect_text(Some(classes), black_box(text))
                .unwrap(),
        )
    })
}

fn policy(c: &mut Criterion) {
    let text = event();
    let classes = classes();
    let protector = protector();
    assert!(protector.passes_all(Some(&classes)));
    let mut group = c.benchmark_group("policy_passing_every_category");
    group.bench_function("built_and_written", |b| {
        b.iter(|| {
            let mut value: Value = serde_json::from_slice(black_box(&text)).unwrap();
            let done = protector.protect(Some(&classes), &mut value);
            black_box((serde_json::to_vec(&value).unwrap(), done))
        })
    });
    group.bench_function("passed_whole", |b| {
        pass_whole(b, &protector, &classes, &text)
    });
    group.finish();
}

fn at_rest(c: &mut Criterion) {
    let text = event();
    let classes = classes();
    let protector = protector();
    let key = Arc::new(DataKey::new(7, "subject", &[9; 32]));
    let mut value: Value = serde_json::from_slice(&text).unwrap();
    seal_fields(&classes, &mut value, &key, EVENT_ID);
    let stored = serde_json::to_vec(&value).unwrap();
    let keys = BTreeMap::from([(7, Found::Key(key))]);
    let mut group = c.benchmark_group("delivery_of_an_encrypted_event");
    group.bench_function("decrypted_then_protected", |b| {
        b.iter(|| {
            let mut value: Value = serde_json::from_slice(black_box(&stored)).unwrap();
            open_fields(&mut value, EVENT_ID, &keys).unwrap();
            let done = protector.protect(Some(&classes), &mut value);
            black_box((serde_json::to_vec(&value).unwrap(), done))
        })
    });
    group.bench_function("handed_over_in_clear", |b| {
        pass_whole(b, &protector, &classes, &text)
    });
    group.finish();
}

criterion_group!(benches, policy, at_rest);
criterion_main!(benches);
