//! The data map: for each data category, every flow, destination and destination system it
//! may reach, and how it is protected there — from the config (flows × the schemas they can
//! carry × the destination systems' policies). Each row has room for what did flow
//! ([`Observed`], from the audit trail), joined in by whoever has the store.

use std::collections::BTreeMap;

use ferry_config::Config;
use ferry_schema::SchemaRegistry;
use serde::{Deserialize, Serialize};

use crate::classify::schemas_of_flow;
use crate::policy::Rules;
use crate::taxonomy::covers;

/// One category, one flow, one destination: how the category reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataMapRow {
    /// The data category (`user.contact.email`).
    pub category: String,
    /// The flow carrying it, and its version.
    pub flow: String,
    pub flow_version: u32,
    /// The system the flow's events come from.
    pub source_system: String,
    /// The destination within the flow, and its system.
    pub destination: String,
    pub system: String,
    /// The system's declared data use (`None` without a policy).
    pub data_use: Option<String>,
    /// How the category is protected there: `pass`, `hash`, `redact`, `encrypt`, `drop`,
    /// or `refused` (removed: no rule lets it through; `ferry validate` refuses such a
    /// config, so a running hub has none).
    pub protection: String,
    /// The policy key that decided it (`receives` or `protect`), if any.
    pub rule: Option<String>,
    /// The fields carrying it, as `schema#/pointer`.
    pub fields: Vec<String>,
    /// What did flow, from the audit trail, when known (`None` from the config alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
}

/// What the audit trail says did flow for one row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Deliveries recorded delivered with the category.
    pub delivered: u64,
    /// When the last of them was delivered (Unix milliseconds).
    pub last_delivered_at: Option<i64>,
}

/// The data map of a config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataMap {
    /// By category, flow, destination.
    pub rows: Vec<DataMapRow>,
}

impl DataMap {
    /// The data map of `config` over `registry`'s schemas: the fields of the schemas each
    /// flow can carry ([`schemas_of_flow`]), per destination.
    pub fn build(config: &Config, registry: &SchemaRegistry) -> DataMap {
        let mut rows: BTreeMap<(String, String, String), DataMapRow> = BTreeMap::new();
        for (flow_name, flow) in &config.flows {
            for schema in schemas_of_flow(config, registry, flow_name) {
                for (pointer, category) in registry.categories(schema) {
                    for (dest_name, dest) in &flow.destinations {
                        let policy = config
                            .systems
                            .get(&dest.system)
                            .and_then(|s| s.policy.as_ref());
                        let resolution = Rules::of(policy).resolve(&category);
                        let key = (category.clone(), flow_name.clone(), dest_name.clone());
                        rows.entry(key)
                            .or_insert_with(|| DataMapRow {
                                category: category.clone(),
                                flow: flow_name.clone(),
                                flow_version: flow.version,
                                source_system: flow.source.system().to_string(),
                                destination: dest_name.clone(),
                                system: dest.system.clone(),
                                data_use: policy.map(|p| p.data_use.clone()),
                                protection: resolution.action.as_str().to_string(),
                                rule: resolution.rule,
                                fields: Vec::new(),
                                observed: None,
                            })
                            .fields
                            .push(format!("{schema}#{pointer}"));
                    }
                }
            }
        }
        DataMap {
            rows: rows.into_values().collect(),
        }
    }

    /// The rows whose category is `category` or under it, and whose destination system is
    /// `system` (each when given).
    pub fn select(&self, category: Option<&str>, system: Option<&str>) -> DataMap {
        DataMap {
            rows: self
                .rows
                .iter()
                .filter(|r| category.is_none_or(|c| covers(c, &r.category)))
                .filter(|r| system.is_none_or(|s| r.system == s))
                .cloned()
                .collect(),
        }
    }

    /// The systems the selected rows reach with the category as it is or protected (not
    /// dropped or refused), each with how, sorted: the answer to "which systems receive …?".
    pub fn receiving_systems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .rows
            .iter()
            .filter(|r| !matches!(r.protection.as_str(), "drop" | "refused"))
            .map(|r| (r.system.clone(), r.protection.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
