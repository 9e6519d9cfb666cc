//! Inbound verification cost of the HMAC schemes on a 1 KB body, valid signature (the
//! common case: the whole tag is computed and compared).
//!
//! `cargo bench -p ferry-signature --bench verify -- --measurement-time 3 --warm-up-time 1`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_signature::schemes::{GitHub, StandardWebhooks, StripeStyle};
use ferry_signature::{SignatureScheme, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

const NOW: i64 = 1_700_000_000;
const SECRET: &[u8] = b"bench-secret-0123456789abcdef";

/// A 1 KB JSON event.
fn body() -> Vec<u8> {
    let mut b = br#"{"id":"evt_0001","type":"order.created","data":{"note":""#.to_vec();
    let tail = br#""}}"#;
    b.resize(1024 - tail.len(), b'x');
    b.extend_from_slice(tail);
    b
}

fn tag(parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).expect("key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).expect("header value"));
    }
    map
}

fn verify(c: &mut Criterion) {
    let body = body();
    assert_eq!(body.len(), 1024);
    let ts = NOW.to_string();

    let standard = StandardWebhooks::with_default_tolerance(SigningKey::from_bytes(SECRET));
    let sig = ferry_signature::standard_webhooks::sign(
        &SigningKey::from_bytes(SECRET),
        "msg_0001",
        NOW,
        &body,
    );
    let standard_headers = headers(&[
        ("webhook-id", "msg_0001".into()),
        ("webhook-timestamp", ts.clone()),
        ("webhook-signature", sig),
    ]);

    let stripe = StripeStyle::with_default_tolerance(SigningKey::from_bytes(SECRET));
    let stripe_tag = hex::encode(tag(&[ts.as_bytes(), b".", &body]));
    let stripe_headers = headers(&[("stripe-signature", format!("t={ts},v1={stripe_tag}"))]);

    let github = GitHub::new(SigningKey::from_bytes(SECRET));
    let github_headers = headers(&[(
        "x-hub-signature-256",
        format!("sha256={}", hex::encode(tag(&[&body]))),
    )]);

    let cases: [(&str, &dyn SignatureScheme, &HeaderMap); 3] = [
        ("standard_webhooks", &standard, &standard_headers),
        ("stripe", &stripe, &stripe_headers),
        ("github", &github, &github_headers),
    ];
    let mut group = c.benchmark_group("verify_1kb");
    group.throughput(Throughput::Bytes(body.len() as u64));
    for (name, scheme, headers) in cases {
        assert_eq!(scheme.verify(headers, &body, NOW), Ok(()), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| scheme.verify(black_box(headers), black_box(&body), NOW))
        });
    }
    group.finish();

    // A refused request costs about the same: the tag is computed before any comparison.
    let wrong = headers(&[("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))]);
    c.bench_function("verify_1kb/github_mismatch", |b| {
        b.iter(|| github.verify(black_box(&wrong), black_box(&body), NOW))
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);
