//! `tenants:` and the flows that run per tenant: names and regions, the tenants a flow names,
//! the secrets it reads from them, and each tenant's limits.

use super::{Checker, resilience, rules};
use crate::locate::Part;
use crate::model::Source;
use crate::secret::SecretRef;

/// Most flows a config may expand to (flows × their tenants): each is a label value of the
/// metrics, and lanes are per flow.
pub(crate) const MAX_TENANT_FLOWS: usize = 10_000;

pub(super) fn check(c: &mut Checker) {
    tenants(c);
    flows(c);
    secrets(c);
}

fn tenants(c: &mut Checker) {
    let config = c.config;
    for (name, tenant) in &config.tenants {
        let Some(file) = c.origins.tenants.get(name).copied() else {
            continue;
        };
        if let Err((message, help)) = rules::name("tenant", name) {
            c.error(file, &["tenants", name], Part::Key, message, help);
        }
        if let Some(region) = &tenant.region
            && let Err((message, help)) = rules::name("region", region)
        {
            c.error(
                file,
                &["tenants", name, "region"],
                Part::Value,
                message,
                help,
            );
        }
        for (dest, limits) in &tenant.limits {
            let at = |field: &'static str| vec!["tenants", name, "limits", dest.as_str(), field];
            let used = config
                .flows
                .values()
                .any(|f| f.tenants.iter().any(|t| t == name) && f.destinations.contains_key(dest));
            if !used {
                c.error(
                    file,
                    &["tenants", name, "limits", dest],
                    Part::Key,
                    format!("no flow run for tenant `{name}` has a destination `{dest}`"),
                    Some(
                        "limits are keyed by the name of a destination of a flow that lists \
                         this tenant under `tenants:`"
                            .to_string(),
                    ),
                );
            }
            if let Some(concurrency) = limits.concurrency
                && !(1..=rules::MAX_CONCURRENCY).contains(&concurrency)
            {
                c.error(
                    file,
                    &at("concurrency"),
                    Part::Value,
                    format!(
                        "concurrency must be between 1 and {}, not {concurrency}",
                        rules::MAX_CONCURRENCY
                    ),
                    None,
                );
            }
            if let Some(rl) = &limits.rate_limit {
                for (field, message, help) in resilience::rate_limit_problems(rl) {
                    let mut path = at("rate_limit");
                    path.push(field);
                    c.error(file, &path, Part::Value, message, help);
                }
            }
        }
    }
}

fn flows(c: &mut Checker) {
    let config = c.config;
    let mut expanded = 0usize;
    for (name, flow) in &config.flows {
        let Some(file) = c.flow_file(name) else {
            continue;
        };
        if flow.tenants.is_empty() {
            continue;
        }
        expanded += flow.tenants.len();
        if !matches!(flow.source, Source::Webhook(_) | Source::Pull(_)) {
            c.error(
                file,
                &["flows", name, "tenants"],
                Part::Key,
                "a flow runs per tenant only with a `webhook` or `pull` source".to_string(),
                Some(
                    "a queue or table is read once for the hub: declare one flow per tenant \
                     reading that tenant's queue or table instead"
                        .to_string(),
                ),
            );
        }
        for (i, tenant) in flow.tenants.iter().enumerate() {
            let index = i.to_string();
            let path = ["flows", name.as_str(), "tenants", index.as_str()];
            if !config.tenants.contains_key(tenant) {
                c.error(
                    file,
                    &path,
                    Part::Value,
                    format!("tenant `{tenant}` is not declared"),
                    Some("declare it under `tenants:`".to_string()),
                );
            }
            if flow.tenants[..i].contains(tenant) {
                c.error(
                    file,
                    &path,
                    Part::Value,
                    format!("tenant `{tenant}` is listed twice"),
                    None,
                );
            }
        }
    }
    if expanded > MAX_TENANT_FLOWS {
        let first = config.flows.iter().find(|(_, f)| !f.tenants.is_empty());
        if let Some((name, _)) = first
            && let Some(file) = c.flow_file(name)
        {
            c.error(
                file,
                &["flows", name, "tenants"],
                Part::Key,
                format!(
                    "flows run for {expanded} tenants in all; at most {MAX_TENANT_FLOWS} \
                     (each is a lane and a metrics label value)"
                ),
                Some("shard tenants across hubs (docs/scaling.md)".to_string()),
            );
        }
    }
}

/// A flow's `{ tenant: KEY }` secrets: only in a flow that runs per tenant, and every one of
/// its tenants has the key.
fn secrets(c: &mut Checker) {
    let config = c.config;
    for found in super::secrets::collect(c) {
        let SecretRef::Tenant(key) = found.secret else {
            continue;
        };
        let path: Vec<&str> = found.path.iter().map(String::as_str).collect();
        let tenants = match path.as_slice() {
            ["flows", flow, ..] => config.flows.get(*flow).map(|f| f.tenants.as_slice()),
            _ => None,
        };
        match tenants {
            None | Some([]) => c.error(
                found.file,
                &path,
                Part::Value,
                format!("`{{ tenant: {key} }}` reads a tenant's secret, but this is not a flow run per tenant"),
                Some("list the flow's tenants under `tenants:`, or write `{ env: VAR }`".to_string()),
            ),
            Some(tenants) => {
                for tenant in tenants {
                    let has = config
                        .tenants
                        .get(tenant)
                        .is_none_or(|t| t.secrets.contains_key(key.as_str()));
                    if !has {
                        c.error(
                            found.file,
                            &path,
                            Part::Value,
                            format!("tenant `{tenant}` has no secret `{key}`"),
                            Some(format!("add `{key}` under `tenants.{tenant}.secrets`")),
                        );
                    }
                }
            }
        }
    }
}
