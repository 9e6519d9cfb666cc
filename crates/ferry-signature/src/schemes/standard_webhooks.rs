//! [Standard Webhooks](https://www.standardwebhooks.com) (also sent by Svix).

use base64::Engine as _;
use http::HeaderMap;

use super::{
    DEFAULT_TOLERANCE_SECS, check_window, header_bytes, header_str, hmac_matches_any, hmac_sha256,
    malformed, parse_timestamp,
};
use crate::{BASE64, SignatureScheme, SigningKey, VendorEventId, VerifyError};

/// The header names of one naming family.
struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

impl Names {
    fn any_present(&self, headers: &HeaderMap) -> bool {
        [self.id, self.timestamp, self.signature]
            .iter()
            .any(|name| headers.contains_key(*name))
    }
}

const WEBHOOK: Names = Names {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

const SVIX: Names = Names {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

/// The `webhook-signature` value for a message: `v1,<base64 of
/// HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>`.
pub fn sign(key: &SigningKey, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let tag = hmac_sha256(
        key,
        &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", BASE64.encode(tag))
}

/// Verifies Standard Webhooks requests: `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` (or the `svix-*` equivalents when no `webhook-*` header
/// is present). Any matching `v1` entry in the space-separated signature list
/// is accepted, so senders can rotate secrets.
#[derive(Debug, Clone)]
pub struct StandardWebhooks {
    /// Shared secret (see [`SigningKey::from_standard_webhooks`]).
    pub key: SigningKey,
    /// Maximum allowed distance between the signed timestamp and now, either way.
    pub tolerance_secs: i64,
}

impl StandardWebhooks {
    /// The event id of Standard Webhooks (and of Svix, its origin): the signed `webhook-id`
    /// (`svix-id`) header, the same on every re-send of a message.
    pub const VENDOR_EVENT_ID: VendorEventId = VendorEventId::Headers(&["webhook-id", "svix-id"]);

    /// A verifier with the given key and timestamp tolerance.
    pub fn new(key: SigningKey, tolerance_secs: i64) -> Self {
        Self {
            key,
            tolerance_secs,
        }
    }

    /// A verifier with the default 300 s tolerance.
    pub fn with_default_tolerance(key: SigningKey) -> Self {
        Self::new(key, DEFAULT_TOLERANCE_SECS)
    }
}

/// Decode the `v1` signatures in a space-separated `version,base64` list.
///
/// Entries of other versions and undecodable `v1` entries are skipped; the
/// header is malformed only if it has no `version,signature` entry at all.
fn v1_signatures(header: &str, value: &str) -> Result<Vec<Vec<u8>>, VerifyError> {
    let mut parseable = false;
    let mut signatures = Vec::new();
    for entry in value.split_ascii_whitespace() {
        let Some((version, encoded)) = entry.split_once(',') else {
            continue;
        };
        parseable = true;
        if version == "v1"
            && let Ok(tag) = BASE64.decode(encoded)
        {
            signatures.push(tag);
        }
    }
    if parseable {
        Ok(signatures)
    } else {
        Err(malformed(
            header,
            "expected space-separated `v1,<base64>` signatures",
        ))
    }
}

impl SignatureScheme for StandardWebhooks {
    fn name(&self) -> &'static str {
        "standard_webhooks"
    }

    fn vendor_event_id(&self) -> Option<VendorEventId> {
        Some(Self::VENDOR_EVENT_ID)
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Result<(), VerifyError> {
        let signed = self.signed_headers(headers, now_unix)?;
        let content: [&[u8]; 5] = [signed.id, b".", signed.timestamp.as_bytes(), b".", body];
        let signatures = signed.signatures;
        if hmac_matches_any(&self.key, &content, signatures.iter().map(Vec::as_slice)) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn check_headers(&self, headers: &HeaderMap, now_unix: i64) -> Result<(), VerifyError> {
        self.signed_headers(headers, now_unix).map(|_| ())
    }
}

/// The signed headers of a request, parsed and with the timestamp inside the tolerance.
struct SignedHeaders<'a> {
    id: &'a [u8],
    timestamp: &'a str,
    signatures: Vec<Vec<u8>>,
}

impl StandardWebhooks {
    fn signed_headers<'a>(
        &self,
        headers: &'a HeaderMap,
        now_unix: i64,
    ) -> Result<SignedHeaders<'a>, VerifyError> {
        let names = if WEBHOOK.any_present(headers) || !SVIX.any_present(headers) {
            &WEBHOOK
        } else {
            &SVIX
        };
        let id = header_bytes(headers, names.id)?;
        let raw_timestamp = header_str(headers, names.timestamp)?.trim();
        let signature = header_str(headers, names.signature)?;

        let timestamp = parse_timestamp(names.timestamp, raw_timestamp)?;
        let signatures = v1_signatures(names.signature, signature)?;
        check_window(timestamp, now_unix, self.tolerance_secs)?;
        Ok(SignedHeaders {
            id,
            timestamp: raw_timestamp,
            signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemes::test_util::headers;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn key() -> SigningKey {
        SigningKey::from_standard_webhooks(SECRET).unwrap()
    }

    fn scheme() -> StandardWebhooks {
        StandardWebhooks::new(key(), 300)
    }

    fn request(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", ID),
            ("webhook-timestamp", &TS.to_string()),
            ("webhook-signature", signature),
        ])
    }

    #[test]
    fn published_vector_signs() {
        assert_eq!(sign(&key(), ID, TS, BODY), EXPECTED);
    }

    #[test]
    fn published_vector_verifies() {
        assert_eq!(scheme().verify(&request(EXPECTED), BODY, TS), Ok(()));
        assert_eq!(scheme().name(), "standard_webhooks");
    }

    #[test]
    fn tampered_body_mismatches() {
        let body = br#"{"test": 2432232315}"#;
        assert_eq!(
            scheme().verify(&request(EXPECTED), body, TS),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_mismatches() {
        let other = StandardWebhooks::new(SigningKey::from_bytes(b"another key".to_vec()), 300);
        assert_eq!(
            other.verify(&request(EXPECTED), BODY, TS),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn tampered_id_or_timestamp_mismatches() {
        let mut h = request(EXPECTED);
        h.insert("webhook-id", "msg_other".parse().unwrap());
        assert_eq!(scheme().verify(&h, BODY, TS), Err(VerifyError::Mismatch));
        let mut h = request(EXPECTED);
        h.insert("webhook-timestamp", (TS + 1).to_string().parse().unwrap());
        assert_eq!(scheme().verify(&h, BODY, TS), Err(VerifyError::Mismatch));
    }

    #[test]
    fn stale_timestamp() {
        assert_eq!(
            scheme().verify(&request(EXPECTED), BODY, TS + 301),
            Err(VerifyError::StaleTimestamp {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(scheme().verify(&request(EXPECTED), BODY, TS + 300), Ok(()));
    }

    #[test]
    fn future_timestamp() {
        assert_eq!(
            scheme().verify(&request(EXPECTED), BODY, TS - 301),
            Err(VerifyError::FutureTimestamp {
                ahead_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(scheme().verify(&request(EXPECTED), BODY, TS - 300), Ok(()));
    }

    #[test]
    fn bare_v1_is_refused() {
        assert!(scheme().verify(&request("v1,"), BODY, TS).is_err());
        assert_eq!(
            scheme().verify(&request("v1,"), BODY, TS),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn rotation_accepts_a_later_match() {
        let wrong = sign(&SigningKey::from_bytes(b"old key".to_vec()), ID, TS, BODY);
        let list = format!(
            "{wrong} v1,!!notbase64!! v1a,{} v1, {EXPECTED}",
            &EXPECTED[3..]
        );
        assert_eq!(scheme().verify(&request(&list), BODY, TS), Ok(()));
        // The same list without the good entry is refused.
        let list = format!("{wrong} v1,!!notbase64!! v1,");
        assert_eq!(
            scheme().verify(&request(&list), BODY, TS),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn other_versions_are_ignored() {
        // A correct tag labelled with another version must not verify.
        let relabelled = EXPECTED.replacen("v1,", "v1a,", 1);
        assert_eq!(
            scheme().verify(&request(&relabelled), BODY, TS),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn unparseable_signature_header_is_malformed() {
        for value in ["garbage", "v1 g0hM9SsE"] {
            assert_eq!(
                scheme()
                    .verify(&request(value), BODY, TS)
                    .unwrap_err()
                    .code(),
                "signature_malformed",
                "{value:?}"
            );
        }
    }

    #[test]
    fn empty_signature_header_is_missing() {
        for value in ["", "  "] {
            assert_eq!(
                scheme().verify(&request(value), BODY, TS),
                Err(VerifyError::MissingHeader("webhook-signature".into())),
                "{value:?}"
            );
        }
    }

    #[test]
    fn non_integer_timestamp_is_malformed() {
        let mut h = request(EXPECTED);
        h.insert("webhook-timestamp", "1614265330.5".parse().unwrap());
        assert_eq!(
            scheme().verify(&h, BODY, TS),
            Err(VerifyError::MalformedHeader {
                header: "webhook-timestamp".into(),
                reason: "timestamp is not a non-negative integer of unix seconds".into()
            })
        );
    }

    #[test]
    fn missing_each_header_is_named() {
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = request(EXPECTED);
            h.remove(name);
            assert_eq!(
                scheme().verify(&h, BODY, TS),
                Err(VerifyError::MissingHeader(name.into()))
            );
        }
        assert_eq!(
            scheme().verify(&HeaderMap::new(), BODY, TS),
            Err(VerifyError::MissingHeader("webhook-id".into()))
        );
    }

    #[test]
    fn svix_aliases_work() {
        let ts = TS.to_string();
        let h = headers(&[
            ("svix-id", ID),
            ("svix-timestamp", &ts),
            ("svix-signature", EXPECTED),
        ]);
        assert_eq!(scheme().verify(&h, BODY, TS), Ok(()));
        assert_eq!(
            scheme().verify(&h, b"tampered", TS),
            Err(VerifyError::Mismatch)
        );
        let h = headers(&[("svix-id", ID), ("svix-timestamp", &ts)]);
        assert_eq!(
            scheme().verify(&h, BODY, TS),
            Err(VerifyError::MissingHeader("svix-signature".into()))
        );
    }

    #[test]
    fn sign_round_trips_with_empty_body() {
        let sig = sign(&key(), "msg_1", 42, b"");
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "42"),
            ("webhook-signature", &sig),
        ]);
        assert_eq!(scheme().verify(&h, b"", 42), Ok(()));
    }
}
