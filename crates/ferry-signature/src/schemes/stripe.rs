//! Stripe-style signatures: `t=<unix>,v1=<hex>[,v1=<hex>...]` over `{t}.{body}`.

use http::{HeaderMap, HeaderName};

use super::{
    DEFAULT_TOLERANCE_SECS, check_window, header_str, hmac_matches_any, malformed, parse_timestamp,
};
use crate::{SignatureScheme, SigningKey, VendorEventId, VerifyError};

/// The header Stripe signs with.
pub const STRIPE_SIGNATURE_HEADER: &str = "stripe-signature";

/// Verifies Stripe-style signature headers such as
/// `stripe-signature: t=1492774577,v1=5257a8...,v1=...`.
///
/// The tag is hex HMAC-SHA256 over `{t}.{body}`. Any matching `v1` entry is
/// accepted (secret rotation); other keys such as `v0` are ignored. `t` must be
/// within `tolerance_secs` of now in either direction.
///
/// For Stripe itself the key is the endpoint's whole signing secret as shown in the
/// dashboard, `whsec_` prefix included, taken as raw bytes (not base64-decoded, unlike a
/// Standard Webhooks secret).
#[derive(Debug, Clone)]
pub struct StripeStyle {
    /// Shared secret (for Stripe, the `whsec_...` string as raw bytes).
    pub key: SigningKey,
    /// Maximum allowed distance between `t` and now, either way.
    pub tolerance_secs: i64,
    /// Header carrying the signature; `stripe-signature` by default.
    pub header: HeaderName,
}

impl StripeStyle {
    /// Stripe's event id: the event object's `id` (`evt_…`) in the body. Stripe sends no id
    /// header, and re-sends an event (retries, "Resend" in the dashboard) with the same id.
    pub const VENDOR_EVENT_ID: VendorEventId = VendorEventId::JsonPointer("/id");

    /// The vendor event id of a Stripe-style scheme reading the signature from `header`:
    /// Stripe's (the body's `/id`) when it is `Stripe-Signature`, any case. Another header
    /// means another vendor that borrowed the format, whose body's `/id` may be anything
    /// (an object's id shared by many events): then none.
    pub fn vendor_event_id_for(header: &str) -> Option<VendorEventId> {
        header
            .eq_ignore_ascii_case(STRIPE_SIGNATURE_HEADER)
            .then_some(Self::VENDOR_EVENT_ID)
    }

    /// A verifier reading the `stripe-signature` header.
    pub fn new(key: SigningKey, tolerance_secs: i64) -> Self {
        Self {
            key,
            tolerance_secs,
            header: HeaderName::from_static(STRIPE_SIGNATURE_HEADER),
        }
    }

    /// A verifier with the default 300 s tolerance.
    pub fn with_default_tolerance(key: SigningKey) -> Self {
        Self::new(key, DEFAULT_TOLERANCE_SECS)
    }

    /// Read the signature from `header` instead of `stripe-signature`.
    pub fn with_header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }
}

/// The parts of a Stripe-style header that matter.
struct Parsed<'a> {
    timestamp: &'a str,
    /// Decoded `v1` tags; undecodable ones are left out (they cannot match).
    signatures: Vec<Vec<u8>>,
}

fn parse<'a>(header: &str, value: &'a str) -> Result<Parsed<'a>, VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    let mut v1_entries = 0usize;
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, val)) = item.split_once('=') else {
            return Err(malformed(
                header,
                "expected comma-separated `key=value` pairs",
            ));
        };
        match key.trim() {
            "t" if timestamp.is_some() => {
                return Err(malformed(header, "more than one `t=` timestamp"));
            }
            "t" => timestamp = Some(val.trim()),
            "v1" => {
                v1_entries += 1;
                if let Ok(tag) = hex::decode(val.trim()) {
                    signatures.push(tag);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed(header, "missing `t=` timestamp"))?;
    if v1_entries == 0 {
        return Err(malformed(header, "no `v1=` signature"));
    }
    Ok(Parsed {
        timestamp,
        signatures,
    })
}

impl SignatureScheme for StripeStyle {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Result<(), VerifyError> {
        let parsed = self.signed_header(headers, now_unix)?;

        let content: [&[u8]; 3] = [parsed.timestamp.as_bytes(), b".", body];
        let candidates = parsed.signatures.iter().map(Vec::as_slice);
        if hmac_matches_any(&self.key, &content, candidates) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn check_headers(&self, headers: &HeaderMap, now_unix: i64) -> Result<(), VerifyError> {
        self.signed_header(headers, now_unix).map(|_| ())
    }

    fn vendor_event_id(&self) -> Option<VendorEventId> {
        Self::vendor_event_id_for(self.header.as_str())
    }
}

impl StripeStyle {
    /// The signature header, parsed, with its timestamp inside the tolerance.
    fn signed_header<'a>(
        &self,
        headers: &'a HeaderMap,
        now_unix: i64,
    ) -> Result<Parsed<'a>, VerifyError> {
        let header = self.header.as_str();
        let parsed = parse(header, header_str(headers, header)?)?;
        let timestamp = parse_timestamp(header, parsed.timestamp)?;
        check_window(timestamp, now_unix, self.tolerance_secs)?;
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemes::hmac_sha256;
    use crate::schemes::test_util::headers;

    const SECRET: &[u8] = b"whsec_test_secret";
    const T: i64 = 1492774577;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;

    fn scheme() -> StripeStyle {
        StripeStyle::new(SigningKey::from_bytes(SECRET), 300)
    }

    fn tag(secret: &[u8], t: i64, body: &[u8]) -> String {
        let t = t.to_string();
        hex::encode(hmac_sha256(
            &SigningKey::from_bytes(secret),
            &[t.as_bytes(), b".", body],
        ))
    }

    fn request(value: &str) -> HeaderMap {
        headers(&[("stripe-signature", value)])
    }

    #[test]
    fn valid() {
        let value = format!("t={T},v1={},v0=deadbeef", tag(SECRET, T, BODY));
        assert_eq!(scheme().verify(&request(&value), BODY, T + 10), Ok(()));
        assert_eq!(scheme().name(), "stripe");
    }

    #[test]
    fn tampered_body() {
        let value = format!("t={T},v1={}", tag(SECRET, T, BODY));
        assert_eq!(
            scheme().verify(&request(&value), b"{}", T),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn tampered_timestamp() {
        // Signed for T, but the header claims T + 1.
        let value = format!("t={},v1={}", T + 1, tag(SECRET, T, BODY));
        assert_eq!(
            scheme().verify(&request(&value), BODY, T),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future() {
        let value = format!("t={T},v1={}", tag(SECRET, T, BODY));
        assert_eq!(
            scheme().verify(&request(&value), BODY, T + 301),
            Err(VerifyError::StaleTimestamp {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            scheme().verify(&request(&value), BODY, T - 301),
            Err(VerifyError::FutureTimestamp {
                ahead_secs: 301,
                tolerance_secs: 300
            })
        );
    }

    #[test]
    fn rotated_second_v1_matches() {
        let value = format!(
            "t={T}, v1={}, v1=zz-not-hex, v1={}",
            tag(b"old secret", T, BODY),
            tag(SECRET, T, BODY)
        );
        assert_eq!(scheme().verify(&request(&value), BODY, T), Ok(()));
    }

    #[test]
    fn correct_tag_under_v0_is_ignored() {
        let value = format!("t={T},v0={},v1=00", tag(SECRET, T, BODY));
        assert_eq!(
            scheme().verify(&request(&value), BODY, T),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn missing_t() {
        let value = format!("v1={}", tag(SECRET, T, BODY));
        assert_eq!(
            scheme().verify(&request(&value), BODY, T),
            Err(VerifyError::MalformedHeader {
                header: "stripe-signature".into(),
                reason: "missing `t=` timestamp".into()
            })
        );
    }

    #[test]
    fn stripe_events_are_known_by_their_body_id_other_vendors_by_nothing() {
        assert_eq!(
            scheme().vendor_event_id(),
            Some(VendorEventId::JsonPointer("/id"))
        );
        let custom = scheme().with_header(HeaderName::from_static("x-acme-signature"));
        assert_eq!(custom.vendor_event_id(), None);
        assert_eq!(
            StripeStyle::vendor_event_id_for("Stripe-Signature"),
            Some(StripeStyle::VENDOR_EVENT_ID)
        );
    }

    #[test]
    fn empty_header_is_missing_not_malformed() {
        for value in ["", " "] {
            let err = scheme().verify(&request(value), BODY, T).unwrap_err();
            assert_eq!(
                err,
                VerifyError::MissingHeader("stripe-signature".into()),
                "{value:?}"
            );
            assert_eq!(err.code(), "signature_missing");
            assert_eq!(
                scheme()
                    .check_headers(&request(value), T)
                    .unwrap_err()
                    .code(),
                "signature_missing"
            );
        }
    }

    #[test]
    fn malformed() {
        for value in [
            "garbage",
            "t=abc,v1=00",
            "t=-5,v1=00",
            &format!("t={T}"),
            &format!("t={T},v0=00"),
            &format!("t={T},t={T},v1=00"),
        ] {
            assert_eq!(
                scheme()
                    .verify(&request(value), BODY, T)
                    .unwrap_err()
                    .code(),
                "signature_malformed",
                "{value:?}"
            );
        }
    }

    #[test]
    fn missing_header_and_custom_header() {
        assert_eq!(
            scheme().verify(&HeaderMap::new(), BODY, T),
            Err(VerifyError::MissingHeader("stripe-signature".into()))
        );
        let custom = scheme().with_header(HeaderName::from_static("x-acme-signature"));
        let value = format!("t={T},v1={}", tag(SECRET, T, BODY));
        let h = headers(&[("x-acme-signature", &value)]);
        assert_eq!(custom.verify(&h, BODY, T), Ok(()));
        assert_eq!(
            custom.verify(&request(&value), BODY, T),
            Err(VerifyError::MissingHeader("x-acme-signature".into()))
        );
    }
}
