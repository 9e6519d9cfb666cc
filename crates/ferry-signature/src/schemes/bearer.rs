//! `Authorization: Bearer <token>`.

use std::fmt;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::auth_credentials;
use crate::{SignatureScheme, VerifyError};

/// Accepts requests whose `authorization` header is `Bearer <token>`, compared
/// in constant time. An empty configured token matches nothing.
#[derive(Clone)]
pub struct Bearer {
    /// The expected token.
    pub token: Vec<u8>,
}

impl Bearer {
    /// A verifier expecting `token`.
    pub fn new(token: impl Into<Vec<u8>>) -> Self {
        Self {
            token: token.into(),
        }
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer").field("token", &"..").finish()
    }
}

impl SignatureScheme for Bearer {
    fn name(&self) -> &'static str {
        "bearer"
    }

    fn verify(&self, headers: &HeaderMap, _body: &[u8], _now_unix: i64) -> Result<(), VerifyError> {
        let presented = auth_credentials(headers, "Bearer")?;
        if bool::from(presented.ct_eq(&self.token)) {
            Ok(())
        } else {
            Err(VerifyError::BadCredentials)
        }
    }

    /// The credentials are all in the headers: check them fully before any body is read.
    fn check_headers(&self, headers: &HeaderMap, now_unix: i64) -> Result<(), VerifyError> {
        self.verify(headers, b"", now_unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemes::test_util::headers;

    fn check(value: &str) -> Result<(), VerifyError> {
        Bearer::new("s3cret-token").verify(&headers(&[("authorization", value)]), b"", 0)
    }

    #[test]
    fn right() {
        assert_eq!(check("Bearer s3cret-token"), Ok(()));
        assert_eq!(check("bearer   s3cret-token"), Ok(()));
        assert_eq!(Bearer::new("x").name(), "bearer");
    }

    #[test]
    fn wrong() {
        assert_eq!(
            check("Bearer s3cret-tokem"),
            Err(VerifyError::BadCredentials)
        );
        assert_eq!(check("Bearer s3cret"), Err(VerifyError::BadCredentials));
        assert_eq!(
            check("Bearer s3cret-token2"),
            Err(VerifyError::BadCredentials)
        );
    }

    #[test]
    fn missing() {
        assert_eq!(
            Bearer::new("t").verify(&HeaderMap::new(), b"", 0),
            Err(VerifyError::MissingHeader("authorization".into()))
        );
        assert_eq!(check("Bearer").unwrap_err().code(), "signature_malformed");
        assert_eq!(
            check("Bearer   ").unwrap_err().code(),
            "signature_malformed"
        );
    }

    #[test]
    fn wrong_scheme_word() {
        assert_eq!(
            check("Token s3cret-token"),
            Err(VerifyError::MalformedHeader {
                header: "authorization".into(),
                reason: "expected the `Bearer` authentication scheme".into()
            })
        );
        assert_eq!(
            check("Basic s3cret-token").unwrap_err().code(),
            "signature_malformed"
        );
        assert_eq!(
            check("s3cret-token").unwrap_err().code(),
            "signature_malformed"
        );
    }

    #[test]
    fn empty_configured_token_matches_nothing() {
        let h = headers(&[("authorization", "Bearer x")]);
        assert_eq!(
            Bearer::new("").verify(&h, b"", 0),
            Err(VerifyError::BadCredentials)
        );
    }

    #[test]
    fn debug_hides_token() {
        let shown = format!("{:?}", Bearer::new("s3cret-token"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("115"), "{shown}");
    }
}
