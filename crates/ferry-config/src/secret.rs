//! Secrets are never written inline in config: they are references to an env var or a file.

use std::path::{Path, PathBuf};

use std::fmt;

use secrecy::SecretString;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// The error given when a secret is written inline instead of by reference.
pub const INLINE_SECRET_MESSAGE: &str = "secrets must be given by reference, not inline: \
     write `{ env: VAR_NAME }` or `{ file: path/to/secret }`";

/// A reference to a secret: `{ env: NAME }` or `{ file: PATH }` (relative to the config dir),
/// or, in a flow that runs per tenant, `{ tenant: KEY }`: the tenant's secret `KEY` (under
/// `tenants.<name>.secrets`), replaced by that reference when the flow is expanded.
///
/// Deserializing anything else fails; a plain scalar (an inline secret) fails with
/// [`INLINE_SECRET_MESSAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    /// One of the running tenant's secrets, by key.
    Tenant(String),
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable `{0}` is not set (or is empty)")]
    EnvMissing(String),
    /// The reference resolved, but to nothing but whitespace: an empty secret would let
    /// anyone in (an empty HMAC key, an empty token), so it is refused.
    #[error("secret file `{0}` is empty (or only whitespace)")]
    FileEmpty(PathBuf),
    #[error("cannot read secret file `{path}`: {error}")]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A `{ tenant: KEY }` outside a flow that runs per tenant: there is no tenant to read.
    #[error("`{{ tenant: {0} }}` names a tenant's secret, but this is not read for a tenant")]
    NoTenant(String),
}

impl SecretRef {
    /// Read the secret now. Values are trimmed of surrounding whitespace; a value that is
    /// empty after trimming is an error (fail closed), whatever the secret is for.
    pub fn resolve(&self, config_root: &Path) -> Result<SecretString, SecretError> {
        match self {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_string())),
                _ => Err(SecretError::EnvMissing(name.clone())),
            },
            SecretRef::File(p) => {
                let path = if p.is_absolute() {
                    p.clone()
                } else {
                    config_root.join(p)
                };
                let text = std::fs::read_to_string(&path).map_err(|error| SecretError::File {
                    path: path.clone(),
                    error,
                })?;
                match text.trim() {
                    "" => Err(SecretError::FileEmpty(path)),
                    trimmed => Ok(SecretString::from(trimmed.to_string())),
                }
            }
            SecretRef::Tenant(key) => Err(SecretError::NoTenant(key.clone())),
        }
    }
}

/// What a secret is for, which decides how strong it must be ([`check_strength`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretUse {
    /// The admin API's bearer token: it opens replay, pause and every delivery's payload.
    AdminToken,
    /// A token that only reads `/metrics`.
    MetricsToken,
    /// A key or credential an inbound request is checked against: an HMAC key (Stripe,
    /// GitHub, generic HMAC), a bearer token or a Basic password.
    InboundCredential,
    /// A Standard Webhooks secret (`whsec_` + base64); the strength applies to the decoded key.
    StandardWebhooksKey,
    /// A value sent as an outbound header (a vendor's API key): the vendor decides its form,
    /// so only emptiness is refused (by [`SecretRef::resolve`]).
    HeaderValue,
    /// A password Ferry presents to a broker or database: its owner decides its form, so only
    /// emptiness is refused.
    OutboundCredential,
    /// A database connection URL (it holds the password): a `postgres://` URL.
    ConnectionUrl,
    /// An AES-256 key (a key-encryption key, a system's `encryption_key`): exactly 32
    /// bytes, base64-encoded ([`decode_encryption_key`]).
    EncryptionKey,
    /// The key of keyed hashing (`settings.protection.hash_key`): at least 32 bytes.
    HashKey,
}

/// Fewest bytes of an admin or metrics token: 32 random bytes, e.g. `openssl rand -hex 32`.
pub const MIN_TOKEN_BYTES: usize = 32;
/// Fewest bytes of a key or credential that inbound requests are checked against.
pub const MIN_CREDENTIAL_BYTES: usize = 16;
/// Bytes of an AES-256 key, and fewest bytes of a hash key.
pub const MIN_KEY_BYTES: usize = 32;
/// Fewest distinct bytes in a token: `aaaa…` or `0000…` is long but guessable.
const MIN_DISTINCT_BYTES: usize = 8;

impl SecretUse {
    /// The fewest bytes a secret for this use must have (after trimming, and for Standard
    /// Webhooks after base64 decoding).
    pub const fn min_bytes(self) -> usize {
        match self {
            SecretUse::AdminToken | SecretUse::MetricsToken => MIN_TOKEN_BYTES,
            SecretUse::InboundCredential | SecretUse::StandardWebhooksKey => MIN_CREDENTIAL_BYTES,
            SecretUse::HeaderValue | SecretUse::OutboundCredential | SecretUse::ConnectionUrl => 1,
            SecretUse::EncryptionKey | SecretUse::HashKey => MIN_KEY_BYTES,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            SecretUse::AdminToken => "an admin token",
            SecretUse::MetricsToken => "a metrics token",
            SecretUse::InboundCredential => "a webhook signing secret or credential",
            SecretUse::StandardWebhooksKey => "a Standard Webhooks key (decoded)",
            SecretUse::HeaderValue => "a header value",
            SecretUse::OutboundCredential => "a password",
            SecretUse::ConnectionUrl => "a connection URL",
            SecretUse::EncryptionKey => "an AES-256 key (decoded)",
            SecretUse::HashKey => "a hash key",
        }
    }
}

/// Why a resolved secret is too weak for `usage`, if it is; `key` is the secret's bytes as
/// used (for Standard Webhooks, the decoded key). The message never includes the value.
pub fn check_strength(usage: SecretUse, key: &[u8]) -> Result<(), String> {
    let min = usage.min_bytes();
    if key.len() < min {
        let hint = match usage {
            SecretUse::AdminToken | SecretUse::MetricsToken | SecretUse::HashKey => {
                " of entropy: generate one with `openssl rand -hex 32`"
            }
            _ => "",
        };
        return Err(format!(
            "the secret is {} bytes; {} needs at least {min} bytes{hint}",
            key.len(),
            usage.describe(),
        ));
    }
    if matches!(usage, SecretUse::AdminToken | SecretUse::MetricsToken) {
        let mut seen = [false; 256];
        key.iter().for_each(|&b| seen[usize::from(b)] = true);
        let distinct = seen.iter().filter(|s| **s).count();
        if distinct < MIN_DISTINCT_BYTES {
            return Err(format!(
                "the secret repeats {distinct} distinct characters; {} needs at least 32 bytes \
                 of entropy: generate one with `openssl rand -hex 32`",
                usage.describe(),
            ));
        }
    }
    Ok(())
}

/// The 32 bytes of an AES-256 key given as base64 (standard alphabet, padded: what
/// `openssl rand -base64 32` prints). The message never includes the value.
pub fn decode_encryption_key(value: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| {
            "the key is not base64: write 32 random bytes in base64, e.g. `openssl rand -base64 32`"
                .to_string()
        })?;
    if bytes.len() != MIN_KEY_BYTES {
        return Err(format!(
            "the key decodes to {} bytes; an AES-256 key is exactly {MIN_KEY_BYTES}: generate one with `openssl rand -base64 32`",
            bytes.len()
        ));
    }
    Ok(bytes)
}

const KEYS: &[&str] = &["env", "file", "tenant"];

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
                "tenant" => {
                    let key: String = map.next_value()?;
                    if key.trim().is_empty() {
                        return Err(de::Error::custom(
                            "`tenant` needs the name of a tenant's secret",
                        ));
                    }
                    SecretRef::Tenant(key)
                }
                other => return Err(de::Error::unknown_field(other, KEYS)),
            };
            if found.is_some() {
                return Err(de::Error::custom(
                    "a secret reference has exactly one of `env`, `file` or `tenant`",
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
