//! `Authorization: Basic base64(username:password)`.

use std::fmt;

use base64::Engine as _;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::{AUTHORIZATION, auth_credentials, malformed};
use crate::{BASE64, SignatureScheme, VerifyError};

/// Accepts requests carrying HTTP Basic credentials equal to `username` and
/// `password`. Both are compared in constant time, and both are always compared.
#[derive(Clone)]
pub struct Basic {
    /// The expected user name.
    pub username: String,
    /// The expected password bytes.
    pub password: Vec<u8>,
}

impl Basic {
    /// A verifier expecting `username` and `password`.
    pub fn new(username: impl Into<String>, password: impl Into<Vec<u8>>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Basic")
            .field("username", &self.username)
            .field("password", &"..")
            .finish()
    }
}

impl SignatureScheme for Basic {
    fn name(&self) -> &'static str {
        "basic"
    }

    fn verify(&self, headers: &HeaderMap, _body: &[u8], _now_unix: i64) -> Result<(), VerifyError> {
        let encoded = auth_credentials(headers, "Basic")?;
        let decoded = BASE64
            .decode(encoded)
            .map_err(|_| malformed(AUTHORIZATION, "Basic credentials are not valid base64"))?;
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| malformed(AUTHORIZATION, "Basic credentials lack a `:` separator"))?;
        let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
        let ok = user.ct_eq(self.username.as_bytes()) & pass.ct_eq(&self.password);
        // An empty configured password matches nothing (fail closed).
        if bool::from(ok) && !self.password.is_empty() {
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

    fn scheme() -> Basic {
        Basic::new("ferry", "p@ss:word")
    }

    fn check(value: &str) -> Result<(), VerifyError> {
        scheme().verify(&headers(&[("authorization", value)]), b"", 0)
    }

    fn basic(userpass: &str) -> String {
        format!("Basic {}", BASE64.encode(userpass))
    }

    #[test]
    fn right() {
        assert_eq!(check(&basic("ferry:p@ss:word")), Ok(()));
        assert_eq!(
            check(&basic("ferry:p@ss:word").replace("Basic", "BASIC")),
            Ok(())
        );
        assert_eq!(scheme().name(), "basic");
    }

    #[test]
    fn wrong() {
        assert_eq!(
            check(&basic("ferry:p@ss:wore")),
            Err(VerifyError::BadCredentials)
        );
        assert_eq!(
            check(&basic("ferri:p@ss:word")),
            Err(VerifyError::BadCredentials)
        );
        assert_eq!(check(&basic("ferry:")), Err(VerifyError::BadCredentials));
        assert_eq!(
            check(&basic(":p@ss:word")),
            Err(VerifyError::BadCredentials)
        );
    }

    #[test]
    fn missing() {
        assert_eq!(
            scheme().verify(&HeaderMap::new(), b"", 0),
            Err(VerifyError::MissingHeader("authorization".into()))
        );
        assert_eq!(check("Basic").unwrap_err().code(), "signature_malformed");
    }

    #[test]
    fn wrong_scheme_word() {
        assert_eq!(
            check(&basic("ferry:p@ss:word").replace("Basic", "Bearer")),
            Err(VerifyError::MalformedHeader {
                header: "authorization".into(),
                reason: "expected the `Basic` authentication scheme".into()
            })
        );
    }

    #[test]
    fn malformed_credentials() {
        assert_eq!(
            check("Basic !!!").unwrap_err().code(),
            "signature_malformed"
        );
        assert_eq!(
            check(&basic("no-colon")).unwrap_err().code(),
            "signature_malformed"
        );
    }

    #[test]
    fn empty_configured_password_matches_nothing() {
        let h = headers(&[("authorization", &basic("ferry:"))]);
        assert_eq!(
            Basic::new("ferry", "").verify(&h, b"", 0),
            Err(VerifyError::BadCredentials)
        );
    }

    #[test]
    fn debug_hides_password() {
        let shown = format!("{:?}", scheme());
        assert!(!shown.contains("p@ss"), "{shown}");
        assert!(shown.contains("ferry"), "{shown}");
    }
}
