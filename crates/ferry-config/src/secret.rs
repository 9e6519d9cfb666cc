//! Secrets are never written inline in config: they are references to an env var or a file.

use std::path::{Path, PathBuf};

use std::fmt;

use secrecy::SecretString;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// The error given when a secret is written inline instead of by reference.
pub const INLINE_SECRET_MESSAGE: &str = "secrets must be given by reference, not inline: \
     write `{ env: VAR_NAME }` or `{ file: path/to/secret }`";

/// A reference to a secret: `{ env: NAME }` or `{ file: PATH }` (relative to the config dir).
///
/// Deserializing anything else fails; a plain scalar (an inline secret) fails with
/// [`INLINE_SECRET_MESSAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable `{0}` is not set (or is empty)")]
    EnvMissing(String),
    #[error("cannot read secret file `{path}`: {error}")]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl SecretRef {
    /// Read the secret now. File contents are trimmed of surrounding whitespace.
    pub fn resolve(&self, config_root: &Path) -> Result<SecretString, SecretError> {
        match self {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                _ => Err(SecretError::EnvMissing(name.clone())),
            },
            SecretRef::File(p) => {
                let path = if p.is_absolute() {
                    p.clone()
                } else {
                    config_root.join(p)
                };
                std::fs::read_to_string(&path)
                    .map(|s| SecretString::from(s.trim().to_string()))
                    .map_err(|error| SecretError::File { path, error })
            }
        }
    }
}

const KEYS: &[&str] = &["env", "file"];

impl<'de> serde::Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any`, so that an inline scalar reaches the visitor and gets the
        // explanatory message rather than a generic "expected a map".
        deserializer.deserialize_any(SecretRefVisitor)
    }
}

struct SecretRefVisitor;

impl SecretRefVisitor {
    fn inline<E: de::Error>() -> E {
        E::custom(INLINE_SECRET_MESSAGE)
    }
}

impl<'de> Visitor<'de> for SecretRefVisitor {
    type Value = SecretRef;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a secret reference `{ env: VAR_NAME }` or `{ file: path/to/secret }`")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
        Err(Self::inline())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRef, E> {
        Err(Self::inline())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRef, E> {
        Err(Self::inline())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRef, E> {
        Err(Self::inline())
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<SecretRef, E> {
        Err(Self::inline())
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<SecretRef, E> {
        Err(Self::inline())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRef, E> {
        Err(Self::inline())
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<SecretRef, E> {
        Err(Self::inline())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
        let mut found: Option<SecretRef> = None;
        while let Some(key) = map.next_key::<String>()? {
            let value = match key.as_str() {
                "env" => {
                    let name: String = map.next_value()?;
                    if name.trim().is_empty() {
                        return Err(de::Error::custom(
                            "`env` needs an environment variable name",
                        ));
                    }
                    SecretRef::Env(name)
                }
                "file" => {
                    let path: PathBuf = map.next_value()?;
                    if path.as_os_str().is_empty() {
                        return Err(de::Error::custom("`file` needs a path"));
                    }
                    SecretRef::File(path)
                }
                other => return Err(de::Error::unknown_field(other, KEYS)),
            };
            if found.is_some() {
                return Err(de::Error::custom(
                    "a secret reference has exactly one of `env` or `file`",
                ));
            }
            found = Some(value);
        }
        found.ok_or_else(|| {
            de::Error::custom(
                "empty secret reference: write `{ env: VAR_NAME }` or `{ file: path/to/secret }`",
            )
        })
    }
}
