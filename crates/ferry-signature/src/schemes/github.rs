//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of body>`.

use http::HeaderMap;

use super::hmac::{Encoding, read_body_digest, verify_body_digest};
use crate::{SignatureScheme, SigningKey, VendorEventId, VerifyError};

const HEADER: &str = "x-hub-signature-256";
const PREFIX: &str = "sha256=";

/// Verifies GitHub webhook deliveries via `X-Hub-Signature-256`.
#[derive(Debug, Clone)]
pub struct GitHub {
    /// The webhook secret configured on GitHub, as raw bytes.
    pub key: SigningKey,
}

impl GitHub {
    /// GitHub's event id: the `X-GitHub-Delivery` header, a GUID that a redelivery keeps.
    pub const VENDOR_EVENT_ID: VendorEventId = VendorEventId::Headers(&["x-github-delivery"]);

    /// A verifier for the given webhook secret.
    pub fn new(key: SigningKey) -> Self {
        Self { key }
    }
}

impl SignatureScheme for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], _now_unix: i64) -> Result<(), VerifyError> {
        verify_body_digest(
            &self.key,
            headers,
            HEADER,
            Encoding::Hex,
            Some(PREFIX),
            body,
        )
    }

    fn check_headers(&self, headers: &HeaderMap, _now_unix: i64) -> Result<(), VerifyError> {
        read_body_digest(headers, HEADER, Encoding::Hex, Some(PREFIX)).map(|_| ())
    }

    fn vendor_event_id(&self) -> Option<VendorEventId> {
        Some(Self::VENDOR_EVENT_ID)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemes::test_util::headers;

    /// GitHub's documented example: secret "It's a Secret to Everybody",
    /// payload "Hello, World!".
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn scheme() -> GitHub {
        GitHub::new(SigningKey::from_bytes(SECRET))
    }

    #[test]
    fn the_event_id_is_the_delivery_header() {
        assert_eq!(
            scheme().vendor_event_id(),
            Some(VendorEventId::Headers(&["x-github-delivery"]))
        );
    }

    fn check(value: &str, body: &[u8]) -> Result<(), VerifyError> {
        scheme().verify(&headers(&[("X-Hub-Signature-256", value)]), body, 0)
    }

    #[test]
    fn valid() {
        assert_eq!(check(SIG, BODY), Ok(()));
        assert_eq!(scheme().name(), "github");
    }

    #[test]
    fn wrong() {
        assert_eq!(check(SIG, b"Hello, World?"), Err(VerifyError::Mismatch));
        let other = GitHub::new(SigningKey::from_bytes(b"not it".to_vec()));
        let h = headers(&[("x-hub-signature-256", SIG)]);
        assert_eq!(other.verify(&h, BODY, 0), Err(VerifyError::Mismatch));
    }

    #[test]
    fn missing_prefix() {
        assert_eq!(
            check(&SIG["sha256=".len()..], BODY),
            Err(VerifyError::MalformedHeader {
                header: HEADER.into(),
                reason: "value must start with `sha256=`".into()
            })
        );
        // The legacy SHA-1 prefix is not accepted either.
        assert_eq!(
            check(&SIG.replace("sha256=", "sha1="), BODY)
                .unwrap_err()
                .code(),
            "signature_malformed"
        );
    }

    #[test]
    fn non_hex() {
        let value = format!("sha256={}", "g".repeat(64));
        assert_eq!(
            check(&value, BODY),
            Err(VerifyError::MalformedHeader {
                header: HEADER.into(),
                reason: "digest is not valid hex".into()
            })
        );
    }

    /// A body "signed" with an empty key must not pass, whatever the configured key is.
    #[test]
    fn empty_key_matches_nothing() {
        let empty = SigningKey::from_bytes(Vec::new());
        let tag = hex::encode(crate::schemes::hmac_sha256(&empty, &[BODY]));
        let h = headers(&[("x-hub-signature-256", &format!("sha256={tag}"))]);
        assert_eq!(
            GitHub::new(empty).verify(&h, BODY, 0),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn headers_are_checked_before_the_body() {
        assert_eq!(
            scheme().check_headers(&headers(&[(HEADER, SIG)]), 0),
            Ok(())
        );
        assert_eq!(
            scheme().check_headers(&HeaderMap::new(), 0),
            Err(VerifyError::MissingHeader(HEADER.into()))
        );
        assert_eq!(
            scheme()
                .check_headers(&headers(&[(HEADER, "sha256=zz")]), 0)
                .unwrap_err()
                .code(),
            "signature_malformed"
        );
    }

    #[test]
    fn missing_header() {
        assert_eq!(
            scheme().verify(&HeaderMap::new(), BODY, 0),
            Err(VerifyError::MissingHeader(HEADER.into()))
        );
    }
}
