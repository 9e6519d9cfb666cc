//! Inbound authentication schemes, one per file, plus the helpers they share
//! (HMAC-SHA256, header access, timestamp window).

use ::hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;

use crate::{SigningKey, VerifyError};

mod basic;
mod bearer;
mod github;
mod hmac;
pub(crate) mod standard_webhooks;
mod stripe;
mod unsigned;

pub use basic::Basic;
pub use bearer::Bearer;
pub use github::GitHub;
pub use hmac::{Encoding, GenericHmac};
pub use standard_webhooks::StandardWebhooks;
pub use stripe::{STRIPE_SIGNATURE_HEADER, StripeStyle};
pub use unsigned::Unsigned;

/// Default timestamp tolerance (5 minutes), as recommended by Standard Webhooks and Stripe.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// HMAC-SHA256 over the concatenation of `parts`, ready to finalize or verify.
fn mac_over(key: &SigningKey, parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())
        .expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// HMAC-SHA256 tag of the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &SigningKey, parts: &[&[u8]]) -> Vec<u8> {
    mac_over(key, parts).finalize().into_bytes().to_vec()
}

/// True if any candidate equals the HMAC-SHA256 tag of `parts`.
///
/// The body is hashed once; each candidate is checked with the constant-time
/// `Mac::verify_slice`. An empty key matches nothing: anyone can compute a MAC under it.
pub(crate) fn hmac_matches_any<'a>(
    key: &SigningKey,
    parts: &[&[u8]],
    candidates: impl IntoIterator<Item = &'a [u8]>,
) -> bool {
    if key.as_bytes().is_empty() {
        return false;
    }
    let mac = mac_over(key, parts);
    candidates
        .into_iter()
        .any(|tag| mac.clone().verify_slice(tag).is_ok())
}

/// The first value of header `name`. A header that is present but empty (or only
/// whitespace) carries no signature at all, so it counts as missing (`signature_missing`),
/// not as malformed: the sender sent nothing to check.
fn header_value<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<&'a http::HeaderValue, VerifyError> {
    headers
        .get(name)
        .filter(|v| !v.as_bytes().trim_ascii().is_empty())
        .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// Raw bytes of the first value of header `name` (missing when absent or empty).
pub(crate) fn header_bytes<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<&'a [u8], VerifyError> {
    header_value(headers, name).map(|v| v.as_bytes())
}

/// First value of header `name` as visible ASCII text (missing when absent or empty).
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    header_value(headers, name)?
        .to_str()
        .map_err(|_| malformed(name, "value contains non-ASCII or control bytes"))
}

/// Shorthand for [`VerifyError::MalformedHeader`].
pub(crate) fn malformed(header: &str, reason: impl Into<String>) -> VerifyError {
    VerifyError::MalformedHeader {
        header: header.to_owned(),
        reason: reason.into(),
    }
}

/// Name of the header carrying Bearer and Basic credentials.
pub(crate) const AUTHORIZATION: &str = "authorization";

/// The credentials after `scheme` (matched case-insensitively) in the
/// `authorization` header.
pub(crate) fn auth_credentials<'a>(
    headers: &'a HeaderMap,
    scheme: &str,
) -> Result<&'a [u8], VerifyError> {
    let value = header_bytes(headers, AUTHORIZATION)?.trim_ascii();
    let (word, rest) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], value[space + 1..].trim_ascii_start()),
        None => (value, &value[value.len()..]),
    };
    if !word.eq_ignore_ascii_case(scheme.as_bytes()) {
        return Err(malformed(
            AUTHORIZATION,
            format!("expected the `{scheme}` authentication scheme"),
        ));
    }
    if rest.is_empty() {
        return Err(malformed(
            AUTHORIZATION,
            format!("no credentials after `{scheme}`"),
        ));
    }
    Ok(rest)
}

/// Parse a unix-seconds timestamp: ASCII digits only, fitting in an `i64`.
pub(crate) fn parse_timestamp(header: &str, raw: &str) -> Result<i64, VerifyError> {
    let bad = || {
        malformed(
            header,
            "timestamp is not a non-negative integer of unix seconds",
        )
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    raw.parse::<i64>().map_err(|_| bad())
}

/// Accept `timestamp` only if it is within `tolerance_secs` of `now` either way.
/// A negative tolerance counts as zero.
pub(crate) fn check_window(
    timestamp: i64,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let tolerance_secs = tolerance_secs.max(0);
    let age = now.saturating_sub(timestamp);
    if age > tolerance_secs {
        Err(VerifyError::StaleTimestamp {
            age_secs: age,
            tolerance_secs,
        })
    } else if age < -tolerance_secs {
        Err(VerifyError::FutureTimestamp {
            ahead_secs: age.saturating_neg(),
            tolerance_secs,
        })
    } else {
        Ok(())
    }
}

/// Helpers for the scheme tests.
#[cfg(test)]
pub(crate) mod test_util {
    use http::{HeaderMap, HeaderName, HeaderValue};

    /// Build a header map from `(name, value)` pairs.
    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2.
        let key = SigningKey::from_bytes(b"Jefe".to_vec());
        let tag = hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac_matches_any(
            &key,
            &[b"what do ya want for nothing?"],
            [&b"short"[..], &tag[..]]
        ));
        assert!(!hmac_matches_any(
            &key,
            &[b"what do ya want for nothing!"],
            [&tag[..]]
        ));
        assert!(!hmac_matches_any(&key, &[b"x"], std::iter::empty()));
    }

    #[test]
    fn timestamp_parsing() {
        assert_eq!(parse_timestamp("h", "1614265330").unwrap(), 1614265330);
        for bad in ["", "-1", "+1", "1.5", "abc", " 1", "99999999999999999999"] {
            assert_eq!(
                parse_timestamp("h", bad).unwrap_err().code(),
                "signature_malformed"
            );
        }
    }

    #[test]
    fn window_edges() {
        assert!(check_window(1000, 1300, 300).is_ok());
        assert!(check_window(1300, 1000, 300).is_ok());
        assert_eq!(
            check_window(1000, 1301, 300).unwrap_err(),
            VerifyError::StaleTimestamp {
                age_secs: 301,
                tolerance_secs: 300
            }
        );
        assert_eq!(
            check_window(1301, 1000, 300).unwrap_err(),
            VerifyError::FutureTimestamp {
                ahead_secs: 301,
                tolerance_secs: 300
            }
        );
        // Extremes saturate instead of overflowing.
        assert!(check_window(i64::MAX, i64::MIN, 300).is_err());
        assert!(check_window(i64::MIN, i64::MAX, 300).is_err());
        assert!(check_window(0, 0, -5).is_ok());
    }
}
