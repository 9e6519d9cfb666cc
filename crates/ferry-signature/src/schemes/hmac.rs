//! Generic HMAC-SHA256 of the body in a single header, hex or base64 encoded.

use base64::Engine as _;
use http::{HeaderMap, HeaderName};

use super::{header_bytes, hmac_matches_any, malformed};
use crate::{BASE64, SignatureScheme, SigningKey, VerifyError};

/// Length of an HMAC-SHA256 tag in bytes.
const TAG_LEN: usize = 32;

/// How the digest is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hexadecimal, either case.
    Hex,
    /// Base64, standard alphabet, padding optional.
    Base64,
}

/// Verifies a header whose value is `prefix` (if configured) followed by the
/// encoded HMAC-SHA256 of the raw body.
#[derive(Debug, Clone)]
pub struct GenericHmac {
    /// Shared secret.
    pub key: SigningKey,
    /// Header carrying the digest.
    pub header: HeaderName,
    /// How the digest is encoded.
    pub encoding: Encoding,
    /// Literal text that must precede the digest, such as `sha256=`.
    pub prefix: Option<String>,
}

impl GenericHmac {
    /// A verifier without a prefix.
    pub fn new(key: SigningKey, header: HeaderName, encoding: Encoding) -> Self {
        Self {
            key,
            header,
            encoding,
            prefix: None,
        }
    }

    /// Require `prefix` before the digest.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }
}

/// Check that header `header` holds `prefix` + the encoded HMAC-SHA256 of `body`.
pub(crate) fn verify_body_digest(
    key: &SigningKey,
    headers: &HeaderMap,
    header: &str,
    encoding: Encoding,
    prefix: Option<&str>,
    body: &[u8],
) -> Result<(), VerifyError> {
    let tag = read_body_digest(headers, header, encoding, prefix)?;
    if hmac_matches_any(key, &[body], [tag.as_slice()]) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The digest in `header`: present, with `prefix`, decoding to an HMAC-SHA256 tag. Checked
/// before the body is read, and again by [`verify_body_digest`].
pub(crate) fn read_body_digest(
    headers: &HeaderMap,
    header: &str,
    encoding: Encoding,
    prefix: Option<&str>,
) -> Result<Vec<u8>, VerifyError> {
    let mut value = header_bytes(headers, header)?;
    if let Some(prefix) = prefix {
        value = value
            .strip_prefix(prefix.as_bytes())
            .ok_or_else(|| malformed(header, format!("value must start with `{prefix}`")))?;
    }
    let value = value.trim_ascii();
    let tag = match encoding {
        Encoding::Hex => {
            hex::decode(value).map_err(|_| malformed(header, "digest is not valid hex"))?
        }
        Encoding::Base64 => BASE64
            .decode(value)
            .map_err(|_| malformed(header, "digest is not valid base64"))?,
    };
    if tag.len() != TAG_LEN {
        return Err(malformed(
            header,
            format!(
                "digest is {} bytes, expected {TAG_LEN} (HMAC-SHA256)",
                tag.len()
            ),
        ));
    }
    Ok(tag)
}

impl SignatureScheme for GenericHmac {
    fn name(&self) -> &'static str {
        "hmac"
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], _now_unix: i64) -> Result<(), VerifyError> {
        verify_body_digest(
            &self.key,
            headers,
            self.header.as_str(),
            self.encoding,
            self.prefix.as_deref(),
            body,
        )
    }

    fn check_headers(&self, headers: &HeaderMap, _now_unix: i64) -> Result<(), VerifyError> {
        read_body_digest(
            headers,
            self.header.as_str(),
            self.encoding,
            self.prefix.as_deref(),
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemes::hmac_sha256;
    use crate::schemes::test_util::headers;

    const SECRET: &[u8] = b"generic secret";
    const BODY: &[u8] = b"hello, ferry";
    const HEADER: &str = "x-signature";

    fn digest() -> Vec<u8> {
        hmac_sha256(&SigningKey::from_bytes(SECRET), &[BODY])
    }

    fn scheme(encoding: Encoding, prefix: Option<&str>) -> GenericHmac {
        let s = GenericHmac::new(
            SigningKey::from_bytes(SECRET),
            HeaderName::from_static(HEADER),
            encoding,
        );
        match prefix {
            Some(p) => s.with_prefix(p),
            None => s,
        }
    }

    fn check(s: &GenericHmac, value: &str, body: &[u8]) -> Result<(), VerifyError> {
        s.verify(&headers(&[(HEADER, value)]), body, 0)
    }

    #[test]
    fn hex_without_prefix() {
        let s = scheme(Encoding::Hex, None);
        let value = hex::encode(digest());
        assert_eq!(check(&s, &value, BODY), Ok(()));
        assert_eq!(check(&s, &value.to_uppercase(), BODY), Ok(()));
        assert_eq!(check(&s, &value, b"other"), Err(VerifyError::Mismatch));
        assert_eq!(
            check(&s, "zz", BODY).unwrap_err().code(),
            "signature_malformed"
        );
        assert_eq!(s.name(), "hmac");
    }

    #[test]
    fn hex_with_prefix() {
        let s = scheme(Encoding::Hex, Some("sha256="));
        let bare = hex::encode(digest());
        assert_eq!(check(&s, &format!("sha256={bare}"), BODY), Ok(()));
        assert_eq!(
            check(&s, &bare, BODY),
            Err(VerifyError::MalformedHeader {
                header: HEADER.into(),
                reason: "value must start with `sha256=`".into()
            })
        );
        assert_eq!(
            check(&s, &format!("sha256={bare}"), b"x"),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn base64_without_prefix() {
        let s = scheme(Encoding::Base64, None);
        let value = BASE64.encode(digest());
        assert_eq!(check(&s, &value, BODY), Ok(()));
        assert_eq!(check(&s, value.trim_end_matches('='), BODY), Ok(()));
        assert_eq!(check(&s, &value, b"x"), Err(VerifyError::Mismatch));
        assert_eq!(
            check(&s, "***", BODY).unwrap_err().code(),
            "signature_malformed"
        );
    }

    #[test]
    fn base64_with_prefix() {
        let s = scheme(Encoding::Base64, Some("hmac-sha256 "));
        let value = BASE64.encode(digest());
        assert_eq!(check(&s, &format!("hmac-sha256 {value}"), BODY), Ok(()));
        assert_eq!(
            check(&s, &value, BODY).unwrap_err().code(),
            "signature_malformed"
        );
        let wrong = BASE64.encode(hmac_sha256(&SigningKey::from_bytes(b"k"), &[BODY]));
        assert_eq!(
            check(&s, &format!("hmac-sha256 {wrong}"), BODY),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn truncated_digest_is_malformed() {
        let s = scheme(Encoding::Hex, None);
        let short = hex::encode(&digest()[..16]);
        assert_eq!(
            check(&s, &short, BODY).unwrap_err().code(),
            "signature_malformed"
        );
    }

    #[test]
    fn missing_header() {
        let s = scheme(Encoding::Hex, None);
        assert_eq!(
            s.verify(&HeaderMap::new(), BODY, 0),
            Err(VerifyError::MissingHeader(HEADER.into()))
        );
    }
}
