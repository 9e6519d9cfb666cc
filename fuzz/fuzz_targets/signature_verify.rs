//! Inbound signature verification, every scheme: arbitrary header values (raw bytes, or
//! near-valid ones built from structured parts so the fuzzer gets past the parsers), body
//! and clock. Properties:
//!
//! 1. `verify` never panics, whatever the request;
//! 2. a correctly signed request (built here independently, with the `hmac` crate) within the
//!    timestamp tolerance is accepted: the oracle catches a parser that refuses valid input.

#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use ferry_signature::schemes::{
    Basic, Bearer, Encoding, GenericHmac, GitHub, StandardWebhooks, StripeStyle,
};
use ferry_signature::{SignatureScheme, SigningKey};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

#[derive(Arbitrary, Debug)]
enum Scheme {
    StandardWebhooks {
        key: Vec<u8>,
        tolerance: i64,
    },
    Stripe {
        key: Vec<u8>,
        tolerance: i64,
        custom_header: bool,
    },
    GitHub {
        key: Vec<u8>,
    },
    Hmac {
        key: Vec<u8>,
        base64: bool,
        prefix: Option<String>,
    },
    Bearer {
        token: Vec<u8>,
    },
    Basic {
        username: String,
        password: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Name {
    WebhookId,
    WebhookTimestamp,
    WebhookSignature,
    SvixId,
    SvixTimestamp,
    SvixSignature,
    StripeSignature,
    CustomStripe,
    HubSignature,
    XSignature,
    Authorization,
    Other(String),
}

impl Name {
    fn header(&self) -> Option<HeaderName> {
        let name = match self {
            Name::WebhookId => "webhook-id",
            Name::WebhookTimestamp => "webhook-timestamp",
            Name::WebhookSignature => "webhook-signature",
            Name::SvixId => "svix-id",
            Name::SvixTimestamp => "svix-timestamp",
            Name::SvixSignature => "svix-signature",
            Name::StripeSignature => "stripe-signature",
            Name::CustomStripe => "x-vendor-signature",
            Name::HubSignature => "x-hub-signature-256",
            Name::XSignature => "x-signature",
            Name::Authorization => "authorization",
            Name::Other(s) => return HeaderName::from_bytes(s.as_bytes()).ok(),
        };
        Some(HeaderName::from_static(name))
    }
}

/// A header value: raw, or assembled from the parts each scheme parses.
#[derive(Arbitrary, Debug)]
enum Value {
    Raw(Vec<u8>),
    /// `now + offset` as decimal, possibly padded with spaces.
    Timestamp {
        offset: i32,
        pad: bool,
    },
    /// A Standard Webhooks list: `version,base64(tag)` entries separated by spaces.
    SignatureList(Vec<(String, Vec<u8>)>),
    /// A Stripe-style `t=...,v1=...` list.
    Stripe {
        t: Option<i32>,
        v1: Vec<Vec<u8>>,
        extra: Vec<(String, String)>,
    },
    /// `prefix` then the tag, hex or base64.
    Digest {
        prefix: String,
        tag: Vec<u8>,
        base64: bool,
    },
    /// `scheme credentials`, the credentials raw or base64.
    Auth {
        scheme: String,
        credentials: Vec<u8>,
        base64: bool,
    },
}

impl Value {
    fn bytes(&self, now: i64) -> Vec<u8> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            Value::Raw(b) => b.clone(),
            Value::Timestamp { offset, pad } => {
                let t = now.saturating_add(i64::from(*offset));
                if *pad {
                    format!("  {t} ").into_bytes()
                } else {
                    t.to_string().into_bytes()
                }
            }
            Value::SignatureList(entries) => entries
                .iter()
                .map(|(v, tag)| format!("{v},{}", b64(tag)))
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes(),
            Value::Stripe { t, v1, extra } => {
                let mut items = Vec::new();
                if let Some(off) = t {
                    items.push(format!("t={}", now.saturating_add(i64::from(*off))));
                }
                items.extend(v1.iter().map(|tag| format!("v1={}", hex::encode(tag))));
                items.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
                items.join(",").into_bytes()
            }
            Value::Digest {
                prefix,
                tag,
                base64,
            } => {
                let enc = if *base64 { b64(tag) } else { hex::encode(tag) };
                format!("{prefix}{enc}").into_bytes()
            }
            Value::Auth {
                scheme,
                credentials,
                base64,
            } => {
                let mut out = format!("{scheme} ").into_bytes();
                if *base64 {
                    out.extend(b64(credentials).into_bytes());
                } else {
                    out.extend(credentials);
                }
                out
            }
        }
    }
}

/// Build a correctly signed request too, and require that it verifies.
#[derive(Arbitrary, Debug)]
struct Oracle {
    msg_id: String,
    /// Timestamp offset from now, in seconds.
    offset: i16,
}

#[derive(Arbitrary, Debug)]
struct Input {
    scheme: Scheme,
    headers: Vec<(Name, Value)>,
    body: Vec<u8>,
    now: i64,
    oracle: Option<Oracle>,
}

fn hmac_tag(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn header_map(pairs: &[(&str, String)]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    Some(map)
}

/// The verifier, and (when `oracle` allows one) a correctly signed header map.
fn build(scheme: &Scheme, oracle: Option<&Oracle>, body: &[u8], now: i64) -> Check {
    let ts = oracle.map(|o| now.saturating_add(i64::from(o.offset)));
    // Timestamped schemes accept only non-negative timestamps within the tolerance.
    let in_window = |tolerance: i64| {
        ts.is_some_and(|t| t >= 0 && now.abs_diff(t) <= tolerance.max(0).unsigned_abs())
    };
    match scheme {
        Scheme::StandardWebhooks { key, tolerance } => {
            let k = SigningKey::from_bytes(key.clone());
            let signed = oracle.filter(|_| in_window(*tolerance)).and_then(|o| {
                let t = ts?;
                let sig = ferry_signature::standard_webhooks::sign(&k, &o.msg_id, t, body);
                // Cross-check the outbound signer against an independent HMAC.
                let tag = hmac_tag(
                    key,
                    &[
                        o.msg_id.as_bytes(),
                        b".",
                        t.to_string().as_bytes(),
                        b".",
                        body,
                    ],
                );
                assert_eq!(
                    sig,
                    format!(
                        "v1,{}",
                        base64::engine::general_purpose::STANDARD.encode(tag)
                    )
                );
                if o.msg_id.is_empty() {
                    return None;
                }
                header_map(&[
                    ("webhook-id", o.msg_id.clone()),
                    ("webhook-timestamp", t.to_string()),
                    ("webhook-signature", format!("v0,xyz {sig}")),
                ])
            });
            Check {
                scheme: Box::new(StandardWebhooks::new(k, *tolerance)),
                signed,
            }
        }
        Scheme::Stripe {
            key,
            tolerance,
            custom_header,
        } => {
            let mut s = StripeStyle::new(SigningKey::from_bytes(key.clone()), *tolerance);
            if *custom_header {
                s = s.with_header(HeaderName::from_static("x-vendor-signature"));
            }
            let name = s.header.as_str().to_owned();
            let signed = ts.filter(|_| in_window(*tolerance)).and_then(|t| {
                let tag = hmac_tag(key, &[t.to_string().as_bytes(), b".", body]);
                header_map(&[(
                    name.as_str(),
                    format!("t={t},v0=00,v1=abcd,v1={}", hex::encode(tag)),
                )])
            });
            Check {
                scheme: Box::new(s),
                signed,
            }
        }
        Scheme::GitHub { key } => {
            let signed = oracle.and_then(|_| {
                let tag = hmac_tag(key, &[body]);
                header_map(&[(
                    "x-hub-signature-256",
                    format!("sha256={}", hex::encode(tag)),
                )])
            });
            Check {
                scheme: Box::new(GitHub::new(SigningKey::from_bytes(key.clone()))),
                signed,
            }
        }
        Scheme::Hmac {
            key,
            base64,
            prefix,
        } => {
            let encoding = if *base64 {
                Encoding::Base64
            } else {
                Encoding::Hex
            };
            let mut s = GenericHmac::new(
                SigningKey::from_bytes(key.clone()),
                HeaderName::from_static("x-signature"),
                encoding,
            );
            if let Some(p) = prefix {
                s = s.with_prefix(p.clone());
            }
            let signed = oracle.and_then(|_| {
                let tag = hmac_tag(key, &[body]);
                let enc = if *base64 {
                    base64::engine::general_purpose::STANDARD.encode(tag)
                } else {
                    hex::encode(tag)
                };
                let value = format!("{}{enc}", prefix.as_deref().unwrap_or(""));
                header_map(&[("x-signature", value)])
            });
            Check {
                scheme: Box::new(s),
                signed,
            }
        }
        Scheme::Bearer { token } => {
            // The header is trimmed, so a token with surrounding whitespace cannot match.
            let usable = !token.is_empty() && token.trim_ascii() == token.as_slice();
            let signed = oracle.filter(|_| usable).and_then(|_| {
                let token = std::str::from_utf8(token).ok()?;
                header_map(&[("authorization", format!("Bearer {token}"))])
            });
            Check {
                scheme: Box::new(Bearer::new(token.clone())),
                signed,
            }
        }
        Scheme::Basic { username, password } => {
            // The first `:` separates user from password.
            let signed = oracle.filter(|_| !username.contains(':')).and_then(|_| {
                let mut userpass = username.as_bytes().to_vec();
                userpass.push(b':');
                userpass.extend(password);
                let enc = base64::engine::general_purpose::STANDARD.encode(userpass);
                header_map(&[("authorization", format!("Basic {enc}"))])
            });
            Check {
                scheme: Box::new(Basic::new(username.clone(), password.clone())),
                signed,
            }
        }
    }
}

struct Check {
    scheme: Box<dyn SignatureScheme>,
    signed: Option<HeaderMap>,
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        if let (Some(name), Ok(value)) = (
            name.header(),
            HeaderValue::from_bytes(&value.bytes(input.now)),
        ) {
            headers.append(name, value);
        }
    }
    let check = build(&input.scheme, input.oracle.as_ref(), &input.body, input.now);
    // 1. Never panics; errors carry a stable code.
    if let Err(e) = check.scheme.verify(&headers, &input.body, input.now) {
        assert!(!e.code().is_empty());
        let _ = e.to_string();
    }
    // 2. A correctly signed request is accepted.
    if let Some(signed) = check.signed {
        let got = check.scheme.verify(&signed, &input.body, input.now);
        assert_eq!(
            got,
            Ok(()),
            "{} refused a correctly signed request: {signed:?}",
            check.scheme.name()
        );
    }
});
