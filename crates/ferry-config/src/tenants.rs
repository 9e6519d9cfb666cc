//! Tenants: the customers (or business units) a flow can run for, each with its own
//! credentials, limits and data region.
//!
//! A flow with `tenants: [acme, globex]` is a template: loading expands it into one flow per
//! tenant, named `<flow>@<tenant>` (`@` is not allowed in a declared name, so expanded names
//! never collide with declared ones). Each copy reads its `{ tenant: KEY }` secrets from its
//! tenant, takes its tenant's limits, and, for a webhook source, is posted to at
//! `/ingest/<tenant>/<path>`. Everything downstream (lanes, store, metrics, admin API) sees
//! ordinary flows, so a tenant's events, lanes and limits are its own.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::{Config, Flow, HeaderValue, HttpAuth, OutboundSigning, SignatureConfig, Source};
use crate::resilience::RateLimitConfig;
use crate::secret::SecretRef;

/// What separates a flow's name from its tenant's in an expanded flow's name.
pub const TENANT_SEPARATOR: char = '@';

/// One tenant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Who the tenant is, in a sentence.
    #[serde(default)]
    pub description: Option<String>,
    /// The data region the tenant's events are accepted and delivered in (`eu`, `us`...).
    /// A node started with `--region R` serves only the tenants of region `R`; a tenant
    /// without a region is served by every node.
    #[serde(default)]
    pub region: Option<String>,
    /// A bearer token for the admin API that sees only this tenant's lanes, deliveries and
    /// events (at least 32 bytes of entropy, by reference).
    #[serde(default)]
    pub admin_token: Option<SecretRef>,
    /// The tenant's credentials, by key: a flow's `{ tenant: KEY }` reads `secrets.KEY` of
    /// the tenant it runs for.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// The tenant's own limits, by destination name: they replace the destination's
    /// `rate_limit` and `concurrency` in this tenant's flows.
    #[serde(default)]
    pub limits: BTreeMap<String, TenantLimits>,
}

/// A tenant's limits on one destination.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Replaces the destination's `rate_limit` for this tenant.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Replaces the destination's `concurrency` for this tenant.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// The name of `flow`'s copy for `tenant`.
pub fn tenant_flow_name(flow: &str, tenant: &str) -> String {
    format!("{flow}{TENANT_SEPARATOR}{tenant}")
}

/// The flow and tenant an expanded flow's name stands for; `None` for a declared name.
pub fn split_tenant_flow(name: &str) -> Option<(&str, &str)> {
    name.split_once(TENANT_SEPARATOR)
}

/// The tenant an expanded flow runs for; `None` for a flow of no tenant.
pub fn tenant_of(flow: &str) -> Option<&str> {
    split_tenant_flow(flow).map(|(_, tenant)| tenant)
}

/// Whether a node of `region` (`None`: every region) serves `flow`.
pub fn serves(config: &Config, region: Option<&str>, flow: &Flow) -> bool {
    let (Some(region), Some(tenant)) = (region, flow.tenant.as_deref()) else {
        return true;
    };
    config
        .tenants
        .get(tenant)
        .and_then(|t| t.region.as_deref())
        .is_none_or(|r| r == region)
}

/// Replace every flow that runs per tenant by its copies, one per tenant. Called on a
/// validated config: every tenant named exists, and has every secret its flows read.
pub(crate) fn expand(config: &mut Config) {
    let templates: Vec<String> = config
        .flows
        .iter()
        .filter(|(_, f)| !f.tenants.is_empty())
        .map(|(name, _)| name.clone())
        .collect();
    for name in templates {
        let Some(template) = config.flows.remove(&name) else {
            continue;
        };
        for tenant_name in &template.tenants {
            let Some(tenant) = config.tenants.get(tenant_name) else {
                continue;
            };
            let flow = for_tenant(&name, &template, tenant_name, tenant);
            config
                .flows
                .insert(tenant_flow_name(&name, tenant_name), flow);
        }
    }
}

/// `template`'s copy for one tenant.
fn for_tenant(name: &str, template: &Flow, tenant_name: &str, tenant: &Tenant) -> Flow {
    let mut flow = template.clone();
    flow.tenants.clear();
    flow.tenant = Some(tenant_name.to_string());
    if let Source::Webhook(src) = &mut flow.source {
        let path = src.path.clone().unwrap_or_else(|| name.to_string());
        src.path = Some(format!("{tenant_name}/{path}"));
    }
    for secret in secrets_mut(&mut flow) {
        if let SecretRef::Tenant(key) = secret
            && let Some(own) = tenant.secrets.get(key.as_str())
        {
            *secret = own.clone();
        }
    }
    for (dest_name, dest) in &mut flow.destinations {
        let Some(limits) = tenant.limits.get(dest_name) else {
            continue;
        };
        if let Some(rate) = &limits.rate_limit {
            dest.rate_limit = Some(rate.clone());
        }
        if let Some(concurrency) = limits.concurrency {
            dest.concurrency = concurrency;
        }
    }
    flow
}

/// Every secret reference a flow holds, to substitute a tenant's.
pub(crate) fn secrets_mut(flow: &mut Flow) -> Vec<&mut SecretRef> {
    let mut out: Vec<&mut SecretRef> = Vec::new();
    match &mut flow.source {
        Source::Webhook(src) => {
            if let Some(secret) = signature_secret_mut(&mut src.signature) {
                out.push(secret);
            }
        }
        Source::Pull(src) => out.extend(header_secrets(&mut src.headers)),
        Source::Postgres(src) => out.push(&mut src.url),
        Source::Rabbitmq(src) => out.extend(src.password.as_mut()),
        Source::Nats(_) | Source::Kafka(_) => {}
    }
    for dest in flow.destinations.values_mut() {
        if let Some(rabbitmq) = &mut dest.rabbitmq {
            out.extend(rabbitmq.password.as_mut());
        }
        if let Some(postgres) = &mut dest.postgres {
            out.push(&mut postgres.url);
        }
        if let Some(enrich) = &mut dest.enrich {
            out.extend(header_secrets(&mut enrich.headers));
        }
        let Some(http) = &mut dest.http else {
            continue;
        };
        match &mut http.auth {
            Some(HttpAuth::Basic { password, .. }) => out.push(password),
            Some(HttpAuth::Bearer { token }) => out.push(token),
            Some(HttpAuth::Oauth2(oauth2)) => {
                out.push(&mut oauth2.client_secret);
                out.extend(oauth2.refresh_token.as_mut());
            }
            None => {}
        }
        out.extend(header_secrets(&mut http.headers));
        if let Some(OutboundSigning::StandardWebhooks { secret }) = &mut http.signing {
            out.push(secret);
        }
    }
    out
}

fn header_secrets(
    headers: &mut BTreeMap<String, HeaderValue>,
) -> impl Iterator<Item = &mut SecretRef> {
    headers.values_mut().filter_map(|v| match v {
        HeaderValue::Secret(secret) => Some(secret),
        HeaderValue::Literal(_) => None,
    })
}

fn signature_secret_mut(signature: &mut SignatureConfig) -> Option<&mut SecretRef> {
    match signature {
        SignatureConfig::StandardWebhooks { secret, .. }
        | SignatureConfig::Stripe { secret, .. }
        | SignatureConfig::Github { secret }
        | SignatureConfig::Hmac { secret, .. } => Some(secret),
        SignatureConfig::Bearer { token } => Some(token),
        SignatureConfig::Basic { password, .. } => Some(password),
        SignatureConfig::None {} => None,
    }
}
