//! Public-API checks: every scheme survives hostile input without panicking,
//! and schemes work as trait objects without leaking secrets through `Debug`.

use ferry_signature::schemes::{
    Basic, Bearer, Encoding, GenericHmac, GitHub, StandardWebhooks, StripeStyle, Unsigned,
};
use ferry_signature::{SignatureScheme, SigningKey, VerifyError, standard_webhooks};
use http::{HeaderMap, HeaderName, HeaderValue};

fn key() -> SigningKey {
    SigningKey::from_bytes(b"hostile-test-key".to_vec())
}

fn all_schemes() -> Vec<Box<dyn SignatureScheme>> {
    vec![
        Box::new(StandardWebhooks::new(key(), 300)),
        Box::new(StripeStyle::new(key(), 300)),
        Box::new(GitHub::new(key())),
        Box::new(GenericHmac::new(
            key(),
            HeaderName::from_static("x-sig"),
            Encoding::Hex,
        )),
        Box::new(
            GenericHmac::new(key(), HeaderName::from_static("x-sig"), Encoding::Base64)
                .with_prefix("sha256="),
        ),
        Box::new(Bearer::new("token")),
        Box::new(Basic::new("user", "pass")),
        Box::new(Unsigned),
    ]
}

const HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "stripe-signature",
    "x-hub-signature-256",
    "x-sig",
    "authorization",
];

fn hostile_values() -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = [
        &b""[..],
        b" ",
        b"\t",
        b"\xff\xfe\xfd",
        b"v1,\xff\xff",
        b"t=\xff,v1=\xc3\x28",
        b"Bearer \xff\xfe",
        b"Basic \xff",
        b"Basic Og==",
        b"Basic ////",
        b"sha256=\xe2\x82",
        b"sha256=",
        b"=",
        b",,,,",
        b"=,=,=",
        b"t=,v1=",
        b"t=9223372036854775807,v1=00",
        b"t=99999999999999999999999,v1=00",
        b"-9223372036854775808",
        b"9223372036854775807",
        b"v1, v1,, ,v1 v1a,",
        b"v1,====",
        "v1,\u{00e9}\u{1F600}".as_bytes(),
    ]
    .iter()
    .map(|v| v.to_vec())
    .collect();
    values.push(b"v1,".repeat(20_000));
    values.push(b"t=1,".repeat(20_000));
    values.push([b"Bearer ".as_slice(), &b"a".repeat(100_000)].concat());
    values.push(b"9".repeat(10_000));
    values
}

#[test]
fn never_panics_on_hostile_header_values() {
    let schemes = all_schemes();
    let bodies: [&[u8]; 3] = [b"", b"\x00\xff", &[0xAB; 70_000]];
    let mut checked = 0usize;
    for value in hostile_values() {
        // Values the http crate itself rejects (control bytes) can never arrive.
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        // The value in every header at once, and in each header alone.
        let mut everywhere = HeaderMap::new();
        for name in HEADERS {
            everywhere.insert(*name, value.clone());
        }
        let mut maps = vec![everywhere];
        for name in HEADERS {
            let mut one = HeaderMap::new();
            one.insert(*name, value.clone());
            maps.push(one);
        }
        for headers in &maps {
            for scheme in &schemes {
                for body in bodies {
                    for now in [i64::MIN, -1, 0, 1_614_265_330, i64::MAX] {
                        let result = scheme.verify(headers, body, now);
                        if scheme.name() != "none" {
                            assert!(result.is_err(), "{} accepted {value:?}", scheme.name());
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} combinations checked");
}

#[test]
fn names_are_stable() {
    let names: Vec<_> = all_schemes().iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        [
            "standard_webhooks",
            "stripe",
            "github",
            "hmac",
            "hmac",
            "bearer",
            "basic",
            "none"
        ]
    );
}

#[test]
fn debug_never_shows_secrets() {
    let secret = "zzsecretzz";
    let schemes: Vec<Box<dyn SignatureScheme>> = vec![
        Box::new(StandardWebhooks::new(SigningKey::from_bytes(secret), 300)),
        Box::new(StripeStyle::new(SigningKey::from_bytes(secret), 300)),
        Box::new(GitHub::new(SigningKey::from_bytes(secret))),
        Box::new(GenericHmac::new(
            SigningKey::from_bytes(secret),
            HeaderName::from_static("x-sig"),
            Encoding::Hex,
        )),
        Box::new(Bearer::new(secret)),
        Box::new(Basic::new("user", secret)),
    ];
    for scheme in schemes {
        let shown = format!("{scheme:?}");
        assert!(!shown.contains("secret"), "{shown}");
        // Vec<u8> Debug would print decimal bytes: 'z' = 122.
        assert!(!shown.contains("122"), "{shown}");
    }
}

#[test]
fn outbound_sign_verifies_inbound_through_public_api() {
    let key = SigningKey::from_standard_webhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let sig = standard_webhooks::sign(&key, "msg_1", 1_700_000_000, b"{}");
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
    headers.insert("webhook-timestamp", HeaderValue::from_static("1700000000"));
    headers.insert("webhook-signature", HeaderValue::from_str(&sig).unwrap());
    let scheme: &dyn SignatureScheme = &StandardWebhooks::new(key, 300);
    assert_eq!(scheme.verify(&headers, b"{}", 1_700_000_100), Ok(()));
    let err = scheme.verify(&headers, b"{ }", 1_700_000_100).unwrap_err();
    assert_eq!(err, VerifyError::Mismatch);
    assert_eq!(err.code(), "signature_mismatch");
}

/// Each vendor's scheme knows where its event id is; the generic ones claim nothing.
#[test]
fn vendor_event_ids() {
    use ferry_signature::VendorEventId;
    let ids: Vec<(&str, Option<VendorEventId>)> = all_schemes()
        .iter()
        .map(|s| (s.name(), s.vendor_event_id()))
        .collect();
    assert_eq!(
        ids,
        vec![
            (
                "standard_webhooks",
                Some(VendorEventId::Headers(&["webhook-id", "svix-id"]))
            ),
            ("stripe", Some(VendorEventId::JsonPointer("/id"))),
            (
                "github",
                Some(VendorEventId::Headers(&["x-github-delivery"]))
            ),
            ("hmac", None),
            ("hmac", None),
            ("bearer", None),
            ("basic", None),
            ("none", None),
        ]
    );
    assert_eq!(
        VendorEventId::Headers(&["webhook-id", "svix-id"]).describe(),
        "the `webhook-id` (or `svix-id`) header"
    );
    assert_eq!(
        VendorEventId::JsonPointer("/id").describe(),
        "the body's `/id`"
    );
}
