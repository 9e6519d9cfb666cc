//! Secrets are never written inline in config: they are references to an env var or a file.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

/// A reference to a secret: `{ env: NAME }` or `{ file: PATH }` (relative to the config dir).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
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
    File { path: PathBuf, error: std::io::Error },
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
                let path = if p.is_absolute() { p.clone() } else { config_root.join(p) };
                std::fs::read_to_string(&path)
                    .map(|s| SecretString::from(s.trim().to_string()))
                    .map_err(|error| SecretError::File { path, error })
            }
        }
    }
}
