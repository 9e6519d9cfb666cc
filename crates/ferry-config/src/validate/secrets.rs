//! Resolving every secret reference, each failure located at its field. Fail closed: an empty
//! secret, or one too short for what it guards ([`check_strength`]), is an error; Standard
//! Webhooks secrets must also be base64 (after an optional `whsec_` prefix).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;

use super::Checker;
use crate::locate::Part;
use crate::model::{HeaderValue, HttpAuth, OutboundSigning, SignatureConfig, Source};
use crate::secret::{SecretError, SecretRef, SecretUse as Use, check_strength};
use crate::sources::FileId;

/// One secret reference of the config: where it is written and what it is for.
pub(super) struct Found<'a> {
    pub file: FileId,
    pub path: Vec<String>,
    pub secret: &'a SecretRef,
    pub usage: Use,
}

pub(super) fn check(c: &mut Checker) {
    for found in collect(c) {
        let SecretRef::Tenant(key) = found.secret else {
            let path: Vec<&str> = found.path.iter().map(String::as_str).collect();
            check_one(c, found.file, &path, found.secret, found.usage);
            continue;
        };
        // A tenant's secret, checked for what this flow uses it for, at the tenant's entry.
        // (`{ tenant: KEY }` where no tenant has it is reported by the tenant checks.)
        let tenants = match found.path.first().map(String::as_str) {
            Some("flows") => found
                .path
                .get(1)
                .and_then(|flow| c.config.flows.get(flow))
                .map(|f| f.tenants.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        for tenant in tenants {
            let Some(secret) = c
                .config
                .tenants
                .get(&tenant)
                .and_then(|t| t.secrets.get(key.as_str()))
            else {
                continue;
            };
            let Some(file) = c.origins.tenants.get(&tenant).copied() else {
                continue;
            };
            let path = ["tenants", tenant.as_str(), "secrets", key.as_str()];
            check_one(c, file, &path, secret, found.usage);
        }
    }
}

/// Resolve one reference and check its value is fit for `usage`, reporting at `path`.
fn check_one(c: &mut Checker, file: FileId, path: &[&str], secret: &SecretRef, usage: Use) {
    {
        let value = match secret.resolve(&c.config.root) {
            Ok(value) => value,
            Err(error) => {
                let help = help_for(&error);
                c.error(file, path, Part::Value, error.to_string(), help);
                return;
            }
        };
        let value = value.expose_secret();
        let problem = match usage {
            Use::StandardWebhooksKey => standard_webhooks_problem(value),
            Use::ConnectionUrl => (!(value.starts_with("postgres://")
                || value.starts_with("postgresql://")))
            .then(|| "the secret is not a `postgres://` connection URL".to_string()),
            Use::EncryptionKey => crate::secret::decode_encryption_key(value).err(),
            Use::HeaderValue => http::HeaderValue::from_str(value)
                .err()
                .map(|_| "the secret is not a valid header value (it holds control characters or line breaks)".to_string()),
            usage => check_strength(usage, value.as_bytes()).err(),
        };
        if let Some(message) = problem {
            let help = Some(format!("check the value of {}", describe(secret)));
            c.error(file, path, Part::Value, message, help);
        }
    }
}

/// Every secret reference of the config, with where it is and what it is for.
pub(super) fn collect<'a>(c: &Checker<'a>) -> Vec<Found<'a>> {
    let mut out = Vec::new();
    let config = c.config;
    let own = |parts: &[&str]| parts.iter().map(|p| (*p).to_string()).collect::<Vec<_>>();
    if let (Some(file), Some(token)) = (c.origins.settings, &config.settings.admin.token) {
        out.push(Found {
            file,
            path: own(&["settings", "admin", "token"]),
            secret: token,
            usage: Use::AdminToken,
        });
    }
    if let (Some(file), Some(token)) = (c.origins.settings, &config.settings.metrics.token) {
        out.push(Found {
            file,
            path: own(&["settings", "metrics", "token"]),
            secret: token,
            usage: Use::MetricsToken,
        });
    }
    if let (Some(file), Some(hook)) = (c.origins.settings, &config.settings.notifications.webhook)
        && let Some(secret) = &hook.secret
    {
        out.push(Found {
            file,
            path: own(&["settings", "notifications", "webhook", "secret"]),
            secret,
            usage: Use::StandardWebhooksKey,
        });
    }
    if let Some(file) = c.origins.settings {
        for (team, channels) in &config.settings.oncall {
            if let Some(pager) = &channels.pager {
                out.push(Found {
                    file,
                    path: own(&["settings", "oncall", team, "pager", "routing_key"]),
                    secret: &pager.routing_key,
                    usage: Use::OutboundCredential,
                });
            }
            let signing = [
                (
                    "pager",
                    channels.pager.as_ref().and_then(|p| p.secret.as_ref()),
                ),
                (
                    "chat",
                    channels.chat.as_ref().and_then(|h| h.secret.as_ref()),
                ),
                (
                    "digest",
                    channels.digest.as_ref().and_then(|d| d.secret.as_ref()),
                ),
            ];
            for (channel, secret) in signing {
                if let Some(secret) = secret {
                    out.push(Found {
                        file,
                        path: own(&["settings", "oncall", team, channel, "secret"]),
                        secret,
                        usage: Use::StandardWebhooksKey,
                    });
                }
            }
        }
    }
    protection_keys(c, &mut out);
    for (tenant, def) in &config.tenants {
        if let (Some(file), Some(token)) = (c.origins.tenants.get(tenant), &def.admin_token) {
            out.push(Found {
                file: *file,
                path: own(&["tenants", tenant, "admin_token"]),
                secret: token,
                usage: Use::AdminToken,
            });
        }
    }
    for (flow, def) in &config.flows {
        let Some(file) = c.flow_file(flow) else {
            continue;
        };
        if let Source::Webhook(src) = &def.source
            && let Some((field, secret)) = src.signature.secret()
        {
            let usage = if matches!(src.signature, SignatureConfig::StandardWebhooks { .. }) {
                Use::StandardWebhooksKey
            } else {
                Use::InboundCredential
            };
            let scheme = src.signature.scheme();
            let path = own(&[
                "flows",
                flow,
                "source",
                "webhook",
                "signature",
                scheme,
                field,
            ]);
            out.push(Found {
                file,
                path,
                secret,
                usage,
            });
        }
        if let Source::Rabbitmq(src) = &def.source
            && let Some(secret) = &src.password
        {
            out.push(Found {
                file,
                path: own(&["flows", flow, "source", "rabbitmq", "password"]),
                secret,
                usage: Use::OutboundCredential,
            });
        }
        if let Source::Pull(src) = &def.source {
            for (header, value) in &src.headers {
                if let HeaderValue::Secret(secret) = value {
                    out.push(Found {
                        file,
                        path: own(&["flows", flow, "source", "pull", "headers", header]),
                        secret,
                        usage: Use::HeaderValue,
                    });
                }
            }
        }
        if let Source::Postgres(src) = &def.source {
            out.push(Found {
                file,
                path: own(&["flows", flow, "source", "postgres", "url"]),
                secret: &src.url,
                usage: Use::ConnectionUrl,
            });
        }
        for (name, dest) in &def.destinations {
            if let Some(secret) = dest.rabbitmq.as_ref().and_then(|r| r.password.as_ref()) {
                let path = own(&["flows", flow, "destinations", name, "rabbitmq", "password"]);
                out.push(Found {
                    file,
                    path,
                    secret,
                    usage: Use::OutboundCredential,
                });
            }
            if let Some(postgres) = &dest.postgres {
                let path = own(&["flows", flow, "destinations", name, "postgres", "url"]);
                out.push(Found {
                    file,
                    path,
                    secret: &postgres.url,
                    usage: Use::ConnectionUrl,
                });
            }
            if let Some(auth) = dest.http.as_ref().and_then(|h| h.auth.as_ref()) {
                let found: Vec<(&str, &str, &SecretRef, Use)> =
                    match auth {
                        HttpAuth::Basic { password, .. } => {
                            vec![("basic", "password", password, Use::HeaderValue)]
                        }
                        HttpAuth::Bearer { token } => {
                            vec![("bearer", "token", token, Use::HeaderValue)]
                        }
                        // Form-encoded to the token endpoint: any text goes, only emptiness is
                        // refused.
                        HttpAuth::Oauth2(oauth2) => std::iter::once((
                            "oauth2",
                            "client_secret",
                            &oauth2.client_secret,
                            Use::OutboundCredential,
                        ))
                        .chain(oauth2.refresh_token.as_ref().map(|token| {
                            ("oauth2", "refresh_token", token, Use::OutboundCredential)
                        }))
                        .collect(),
                    };
                for (scheme, field, secret, usage) in found {
                    let path = own(&[
                        "flows",
                        flow,
                        "destinations",
                        name,
                        "http",
                        "auth",
                        scheme,
                        field,
                    ]);
                    out.push(Found {
                        file,
                        path,
                        secret,
                        usage,
                    });
                }
            }
            let http_headers = dest.http.iter().flat_map(|h| &h.headers);
            for (header, value) in http_headers {
                if let HeaderValue::Secret(secret) = value {
                    let path = own(&[
                        "flows",
                        flow,
                        "destinations",
                        name,
                        "http",
                        "headers",
                        header,
                    ]);
                    out.push(Found {
                        file,
                        path,
                        secret,
                        usage: Use::HeaderValue,
                    });
                }
            }
            let enrich_headers = dest.enrich.iter().flat_map(|e| &e.headers);
            for (header, value) in enrich_headers {
                if let HeaderValue::Secret(secret) = value {
                    let path = own(&[
                        "flows",
                        flow,
                        "destinations",
                        name,
                        "enrich",
                        "headers",
                        header,
                    ]);
                    out.push(Found {
                        file,
                        path,
                        secret,
                        usage: Use::HeaderValue,
                    });
                }
            }
            if let Some(OutboundSigning::StandardWebhooks { secret }) =
                dest.http.as_ref().and_then(|h| h.signing.as_ref())
            {
                let path = own(&[
                    "flows",
                    flow,
                    "destinations",
                    name,
                    "http",
                    "signing",
                    "standard_webhooks",
                    "secret",
                ]);
                out.push(Found {
                    file,
                    path,
                    secret,
                    usage: Use::StandardWebhooksKey,
                });
            }
        }
    }
    out
}

/// The keys of data protection: key-encryption keys, the hash key, systems' encryption keys.
fn protection_keys<'a>(c: &Checker<'a>, out: &mut Vec<Found<'a>>) {
    let own = |parts: &[&str]| parts.iter().map(|p| (*p).to_string()).collect::<Vec<_>>();
    let protection = &c.config.settings.protection;
    if let Some(file) = c.origins.settings {
        for (i, kek) in protection.keys.iter().enumerate() {
            out.push(Found {
                file,
                path: own(&["settings", "protection", "keys", &i.to_string(), "key"]),
                secret: &kek.key,
                usage: Use::EncryptionKey,
            });
        }
        if let Some(secret) = &protection.hash_key {
            out.push(Found {
                file,
                path: own(&["settings", "protection", "hash_key"]),
                secret,
                usage: Use::HashKey,
            });
        }
    }
    for (system, def) in &c.config.systems {
        let (Some(file), Some(secret)) = (
            c.system_file(system),
            def.policy.as_ref().and_then(|p| p.encryption_key.as_ref()),
        ) else {
            continue;
        };
        out.push(Found {
            file,
            path: own(&["systems", system, "policy", "encryption_key"]),
            secret,
            usage: Use::EncryptionKey,
        });
    }
}

/// Why a Standard Webhooks secret is unusable, if it is. Never includes the value.
fn standard_webhooks_problem(value: &str) -> Option<String> {
    let encoded = value.strip_prefix("whsec_").unwrap_or(value);
    match STANDARD.decode(encoded) {
        Ok(bytes) if bytes.is_empty() => Some("the Standard Webhooks secret is empty".to_string()),
        Ok(bytes) => check_strength(Use::StandardWebhooksKey, &bytes).err(),
        Err(_) => Some(
            "the Standard Webhooks secret is not valid base64 (after the optional `whsec_` prefix)"
                .to_string(),
        ),
    }
}

fn help_for(error: &SecretError) -> Option<String> {
    Some(match error {
        SecretError::EnvMissing(_) => {
            "set the environment variable before starting Ferry, or load without resolving secrets"
                .to_string()
        }
        SecretError::File { .. } => {
            "relative `file:` paths are resolved against the config directory".to_string()
        }
        SecretError::FileEmpty(_) => {
            "an empty secret would let anyone in; write the secret into the file".to_string()
        }
        SecretError::NoTenant(_) => {
            "`{ tenant: KEY }` is only for flows that list `tenants:`".to_string()
        }
    })
}

fn describe(secret: &SecretRef) -> String {
    match secret {
        SecretRef::Env(name) => format!("environment variable `{name}`"),
        SecretRef::File(path) => format!("secret file `{}`", path.display()),
        SecretRef::Tenant(key) => format!("each tenant's secret `{key}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_secrets() {
        assert_eq!(
            standard_webhooks_problem("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            None
        );
        assert_eq!(
            standard_webhooks_problem("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            None
        );
        assert!(standard_webhooks_problem("whsec_not base64!").is_some());
        assert!(standard_webhooks_problem("whsec_").is_some());
    }
}
