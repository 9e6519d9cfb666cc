//! No authentication at all.

use http::HeaderMap;

use crate::{SignatureScheme, VerifyError};

/// Accepts every request. Name `"none"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsigned;

impl SignatureScheme for Unsigned {
    fn name(&self) -> &'static str {
        "none"
    }

    fn verify(
        &self,
        _headers: &HeaderMap,
        _body: &[u8],
        _now_unix: i64,
    ) -> Result<(), VerifyError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_ok() {
        assert_eq!(Unsigned.name(), "none");
        assert_eq!(
            Unsigned.verify(&HeaderMap::new(), b"anything", i64::MIN),
            Ok(())
        );
    }
}
