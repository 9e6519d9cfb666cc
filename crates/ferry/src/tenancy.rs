//! Tenants on a node: which flows this node serves (`ferry serve --region`), where the
//! webhooks of the others must go, and the admin tokens that see one tenant only.
//!
//! The config has already expanded every flow run per tenant into `<flow>@<tenant>`
//! (`ferry_config::tenants`). A node of region `eu` keeps only the flows of `eu`'s tenants
//! (and the flows of no tenant or of a tenant without a region): it runs no lane, pull or
//! probe for the others, and answers their webhooks `421 Misdirected Request`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Context as _;
use ferry_config::{Config, Source, tenants};
use secrecy::SecretString;

/// A webhook path of a flow another region's nodes serve.
#[derive(Debug, Clone)]
pub struct ForeignRoute {
    pub tenant: String,
    pub region: String,
}

/// One tenant's admin token and the flows it may see.
#[derive(Clone)]
pub struct TenantToken {
    pub tenant: String,
    pub token: SecretString,
    pub flows: Arc<BTreeSet<String>>,
}

/// What a node's region and the tenants' tokens make of the config.
#[derive(Clone, Default)]
pub struct Tenancy {
    /// The node's region (`None`: it serves every region).
    pub region: Option<String>,
    /// Webhook paths (`acme/orders`) of the flows this node does not serve.
    pub foreign: BTreeMap<String, ForeignRoute>,
    /// Every flow this node does not serve (another region's): its admin API leaves their
    /// lanes out rather than show them as no longer configured.
    pub foreign_flows: Arc<BTreeSet<String>>,
    /// The tenants' admin tokens.
    pub tokens: Vec<TenantToken>,
    /// The region of each flow this node serves that belongs to a tenant with a region.
    pub flow_regions: HashMap<String, String>,
}

impl Tenancy {
    /// Keep in `config` only the flows a node of `region` serves, and read the tenants'
    /// admin tokens (an unreadable one stops the start: fail closed).
    pub fn apply(config: &mut Config, region: Option<&str>) -> anyhow::Result<Self> {
        if let Some(region) = region {
            let known = config
                .tenants
                .values()
                .any(|t| t.region.as_deref() == Some(region));
            if !known {
                tracing::warn!(
                    region,
                    "no tenant is in this node's region: it serves only the flows of no region"
                );
            }
        }
        // Every tenant's flows, this node's or not: a tenant's token sees its deliveries
        // whichever region's node delivered them.
        let mut flows_of: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (name, flow) in &config.flows {
            if let Some(tenant) = &flow.tenant {
                flows_of
                    .entry(tenant.as_str())
                    .or_default()
                    .insert(name.clone());
            }
        }
        let mut tokens = Vec::new();
        for (name, tenant) in &config.tenants {
            let Some(token) = &tenant.admin_token else {
                continue;
            };
            let token = token
                .resolve(&config.root)
                .with_context(|| format!("tenants.{name}.admin_token"))?;
            tokens.push(TenantToken {
                tenant: name.clone(),
                token,
                flows: Arc::new(flows_of.remove(name.as_str()).unwrap_or_default()),
            });
        }

        let mut foreign = BTreeMap::new();
        let mut foreign_flows = BTreeSet::new();
        let others: Vec<String> = config
            .flows
            .iter()
            .filter(|(_, f)| !tenants::serves(config, region, f))
            .map(|(name, _)| name.clone())
            .collect();
        for name in others {
            let Some(flow) = config.flows.remove(&name) else {
                continue;
            };
            foreign_flows.insert(name.clone());
            let tenant = flow.tenant.clone().unwrap_or_default();
            let tenant_region = config
                .tenants
                .get(&tenant)
                .and_then(|t| t.region.clone())
                .unwrap_or_default();
            if let Source::Webhook(src) = &flow.source {
                foreign.insert(
                    ferry_config::webhook_path(&name, src),
                    ForeignRoute {
                        tenant,
                        region: tenant_region,
                    },
                );
            }
        }
        let flow_regions = config
            .flows
            .iter()
            .filter_map(|(name, flow)| {
                let tenant = config.tenants.get(flow.tenant.as_deref()?)?;
                Some((name.clone(), tenant.region.clone()?))
            })
            .collect();
        if let Some(region) = region {
            tracing::info!(
                region,
                flows = config.flows.len(),
                other_regions = foreign.len(),
                "serving this region's tenants only"
            );
        }
        Ok(Tenancy {
            region: region.map(str::to_string),
            foreign,
            foreign_flows: Arc::new(foreign_flows),
            tokens,
            flow_regions,
        })
    }
}
