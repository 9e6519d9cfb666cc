#![forbid(unsafe_code)]
//! Webhook signature schemes for Ferry.
//!
//! Inbound: each [`SignatureScheme`] in [`schemes`] checks a request's headers
//! and raw body, comparing secrets and MACs in constant time.
//! Outbound: [`standard_webhooks::sign`] produces a Standard Webhooks
//! `webhook-signature` value.

use std::fmt;

use base64::Engine as _;

pub mod schemes;

/// Outbound signing for [Standard Webhooks](https://www.standardwebhooks.com).
pub mod standard_webhooks {
    pub use crate::schemes::standard_webhooks::sign;
}

/// Base64 (standard alphabet) that accepts input with or without `=` padding.
pub(crate) const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Raw key bytes of a shared secret. `Debug` never shows the bytes.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// Use `b` as the key as is.
    pub fn from_bytes(b: impl Into<Vec<u8>>) -> Self {
        Self(b.into())
    }

    /// Parse a Standard Webhooks secret: an optional `whsec_` prefix followed by
    /// base64 (standard alphabet, padding optional). Surrounding whitespace is
    /// ignored. Fails if the rest is not base64 or decodes to no bytes.
    pub fn from_standard_webhooks(secret: &str) -> Result<Self, KeyError> {
        let secret = secret.trim();
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        if encoded.is_empty() {
            return Err(KeyError::Empty);
        }
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| KeyError::InvalidBase64)?;
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(bytes))
    }

    /// The raw key bytes (for strength checks; never log them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// Why a secret could not be turned into a [`SigningKey`].
///
/// Messages never include any part of the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret (after any `whsec_` prefix) is empty.
    #[error("signing secret is empty")]
    Empty,
    /// The secret (after any `whsec_` prefix) is not standard base64.
    #[error(
        "signing secret is not valid base64 (standard alphabet) after the optional `whsec_` prefix"
    )]
    InvalidBase64,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent; holds the header name.
    #[error("missing required header `{0}`")]
    MissingHeader(String),
    /// A header is present but cannot be parsed.
    #[error("malformed header `{header}`: {reason}")]
    MalformedHeader {
        /// Header name.
        header: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// The signed timestamp is older than the tolerance allows.
    #[error("signature timestamp is {age_secs}s old, beyond the {tolerance_secs}s tolerance")]
    StaleTimestamp {
        /// How far in the past the timestamp is.
        age_secs: i64,
        /// The configured tolerance.
        tolerance_secs: i64,
    },
    /// The signed timestamp is further in the future than the tolerance allows.
    #[error(
        "signature timestamp is {ahead_secs}s in the future, beyond the {tolerance_secs}s tolerance"
    )]
    FutureTimestamp {
        /// How far in the future the timestamp is.
        ahead_secs: i64,
        /// The configured tolerance.
        tolerance_secs: i64,
    },
    /// No signature in the request matched the body.
    #[error("no signature in the request matches the body")]
    Mismatch,
    /// Bearer or Basic credentials in the `authorization` header are wrong.
    #[error("invalid credentials in header `authorization`")]
    BadCredentials,
}

impl VerifyError {
    /// Stable snake_case code for problem+json bodies and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "signature_missing",
            Self::MalformedHeader { .. } => "signature_malformed",
            Self::StaleTimestamp { .. } => "timestamp_stale",
            Self::FutureTimestamp { .. } => "timestamp_future",
            Self::Mismatch => "signature_mismatch",
            Self::BadCredentials => "credentials_invalid",
        }
    }
}

/// Where a vendor puts its own id of an event: what Ferry dedupes re-sends by when a flow
/// does not say (`event_id`). A sender re-sends an event (after a time-out, a 5xx, by hand)
/// with the same id, so an event stored under its id is stored once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorEventId {
    /// The first of these headers the request carries (lower-case names, in order).
    Headers(&'static [&'static str]),
    /// The string (or number) at this JSON pointer in the body.
    JsonPointer(&'static str),
}

impl VendorEventId {
    /// Where the id is, for people: ``the `webhook-id` header`` or ``the body's `/id` ``.
    pub fn describe(&self) -> String {
        match self {
            VendorEventId::Headers([first, rest @ ..]) => {
                let rest: Vec<String> = rest.iter().map(|n| format!("`{n}`")).collect();
                if rest.is_empty() {
                    format!("the `{first}` header")
                } else {
                    format!("the `{first}` (or {}) header", rest.join(", "))
                }
            }
            VendorEventId::Headers([]) => "no header".to_string(),
            VendorEventId::JsonPointer(pointer) => format!("the body's `{pointer}`"),
        }
    }
}

/// One inbound authentication scheme.
pub trait SignatureScheme: Send + Sync + fmt::Debug {
    /// Stable scheme name: `"standard_webhooks"`, `"stripe"`, `"github"`,
    /// `"hmac"`, `"bearer"`, `"basic"` or `"none"`.
    fn name(&self) -> &'static str;

    /// Verify `body` as received with `headers`; `now_unix` is the current
    /// time in unix seconds.
    fn verify(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError>;

    /// What can be checked before the body is read: the signature headers are present and
    /// well formed, and a signed timestamp is inside the tolerance. A request that fails
    /// here is refused without reading (or buffering) its body. Never accepts by itself:
    /// [`verify`](Self::verify) must still pass. The default checks nothing.
    fn check_headers(&self, _headers: &http::HeaderMap, _now_unix: i64) -> Result<(), VerifyError> {
        Ok(())
    }

    /// Where the vendor this scheme stands for puts its event id, if the scheme knows: the
    /// dedupe key of a flow that configures none. `None` for generic schemes (`hmac`,
    /// `bearer`, `basic`, `none`): they say nothing about who sends.
    fn vendor_event_id(&self) -> Option<VendorEventId> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_debug_hides_bytes() {
        let key = SigningKey::from_bytes(b"super-secret".to_vec());
        assert_eq!(format!("{key:?}"), "SigningKey(..)");
    }

    #[test]
    fn standard_webhooks_secret_parsing() {
        let with = SigningKey::from_standard_webhooks("whsec_c2VjcmV0").unwrap();
        let without = SigningKey::from_standard_webhooks("c2VjcmV0").unwrap();
        assert_eq!(with.as_bytes(), b"secret");
        assert_eq!(without.as_bytes(), b"secret");
        assert_eq!(
            SigningKey::from_standard_webhooks(" whsec_c2VjcmV0\n")
                .unwrap()
                .as_bytes(),
            b"secret"
        );
    }

    #[test]
    fn standard_webhooks_secret_errors() {
        assert_eq!(
            SigningKey::from_standard_webhooks("").unwrap_err(),
            KeyError::Empty
        );
        assert_eq!(
            SigningKey::from_standard_webhooks("whsec_").unwrap_err(),
            KeyError::Empty
        );
        assert_eq!(
            SigningKey::from_standard_webhooks("whsec_not base64!").unwrap_err(),
            KeyError::InvalidBase64
        );
        // Error messages must not echo the secret.
        let msg = SigningKey::from_standard_webhooks("whsec_s3cr3t-!")
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }

    #[test]
    fn error_codes_are_stable() {
        let cases = [
            (VerifyError::MissingHeader("x".into()), "signature_missing"),
            (
                VerifyError::MalformedHeader {
                    header: "x".into(),
                    reason: "y".into(),
                },
                "signature_malformed",
            ),
            (
                VerifyError::StaleTimestamp {
                    age_secs: 1,
                    tolerance_secs: 0,
                },
                "timestamp_stale",
            ),
            (
                VerifyError::FutureTimestamp {
                    ahead_secs: 1,
                    tolerance_secs: 0,
                },
                "timestamp_future",
            ),
            (VerifyError::Mismatch, "signature_mismatch"),
            (VerifyError::BadCredentials, "credentials_invalid"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code);
        }
    }

    #[test]
    fn display_names_the_header() {
        let missing = VerifyError::MissingHeader("webhook-id".into()).to_string();
        assert_eq!(missing, "missing required header `webhook-id`");
        let malformed = VerifyError::MalformedHeader {
            header: "stripe-signature".into(),
            reason: "missing `t=` timestamp".into(),
        }
        .to_string();
        assert_eq!(
            malformed,
            "malformed header `stripe-signature`: missing `t=` timestamp"
        );
    }
}
