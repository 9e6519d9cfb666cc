//! What `ferry validate` (and `ferry test`, and `ferry serve` before it starts) checks of
//! data protection once the config has loaded, each finding located in the config:
//!
//! - [`taxonomy`]: custom keys extend a known key; a policy's `data_use`, its `receives`
//!   and `protect` keys, and `settings.protection.retention`'s keys are known (a deprecated
//!   fideslang key is a warning naming its replacement);
//! - [`flows`], the static check: for every flow, destination and classified field the flow
//!   can carry ([`schemas_of_flow`]), a category the destination's system may not receive
//!   and no rule protects is an error naming the flow, the destination, the field and the
//!   category; a destination whose system sends unclassified fields with `warn` gets a
//!   warning listing them, and one with `deny` a warning for each schema that classifies
//!   nothing (its events arrive as `{}`).
//!
//! (`x-ferry-category` annotations are checked against the taxonomy while the schemas load:
//! see [`Taxonomy::category_check`].)

use std::collections::BTreeMap;

use ferry_config::{Config, Diagnostic, Severity, SourceMap, Unclassified};
use ferry_schema::SchemaRegistry;

use crate::classify::schemas_of_flow;
use crate::policy::{Action, Rules};
use crate::taxonomy::{Kind, Taxonomy};

/// Most fields listed in one warning.
const FIELDS_LISTED: usize = 10;

impl Taxonomy {
    /// Whether `category` may annotate a schema field: `Err` says why not.
    pub fn category_check(&self, category: &str) -> Result<(), String> {
        match self.unknown(Kind::DataCategory, category) {
            None => Ok(()),
            Some(message) => Err(message),
        }
    }
}

/// The config's taxonomy (fideslang's plus its custom keys that joined), and what is wrong
/// with the keys the config names.
pub fn taxonomy(config: &Config, sources: &SourceMap) -> (Taxonomy, Vec<Diagnostic>) {
    let protection = &config.settings.protection;
    let (taxonomy, problems) = Taxonomy::with_custom(&protection.taxonomy);
    let mut out: Vec<Diagnostic> = problems
        .into_iter()
        .map(|p| {
            sources.diagnostic(
                Severity::Error,
                &["settings", "protection", "taxonomy", p.kind.field(), &p.key],
                p.message,
                Some(format!(
                    "a custom {} extends a fideslang one or another custom key: its parent \
                     (the key without its last segment) must be known",
                    p.kind
                )),
            )
        })
        .collect();
    let mut key = |kind: Kind, path: &[&str], key: &str| {
        if let Some(message) = taxonomy.unknown(kind, key) {
            out.push(sources.diagnostic(
                Severity::Error,
                path,
                message,
                Some(format!(
                    "use a fideslang {kind} (docs/governance.md, \"The taxonomy\"), or declare a \
                     custom one under `settings.protection.taxonomy.{}`",
                    kind.field()
                )),
            ));
        } else if let Some(newer) = Taxonomy::replaced_by(kind, key) {
            out.push(sources.diagnostic(
                Severity::Warning,
                path,
                format!("fideslang deprecated the {kind} `{key}`; it is replaced by `{newer}`"),
                Some(format!("write `{newer}`")),
            ));
        }
    };
    for category in protection.retention.keys() {
        key(
            Kind::DataCategory,
            &["settings", "protection", "retention", category],
            category,
        );
    }
    for (system, def) in &config.systems {
        let Some(policy) = &def.policy else {
            continue;
        };
        key(
            Kind::DataUse,
            &["systems", system, "policy", "data_use"],
            &policy.data_use,
        );
        for (i, category) in policy.receives.iter().enumerate() {
            let index = i.to_string();
            key(
                Kind::DataCategory,
                &["systems", system, "policy", "receives", &index],
                category,
            );
        }
        for category in policy.protect.keys() {
            key(
                Kind::DataCategory,
                &["systems", system, "policy", "protect", category],
                category,
            );
        }
    }
    (taxonomy, out)
}

/// A classified field the static check found going where it may not.
struct Refused<'a> {
    category: &'a str,
    pointer: &'a str,
    schemas: Vec<&'a str>,
}

/// The static check of every flow's destinations against their systems' policies.
pub fn flows(config: &Config, registry: &SchemaRegistry, sources: &SourceMap) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let categories: BTreeMap<&str, Vec<(String, String)>> = registry
        .names()
        .map(|name| (name, registry.categories(name)))
        .collect();
    let default_unclassified = config.settings.protection.unclassified;
    for (flow_name, flow) in &config.flows {
        let schemas = schemas_of_flow(config, registry, flow_name);
        for (dest_name, dest) in &flow.destinations {
            let path = [
                "flows",
                flow_name.as_str(),
                "destinations",
                dest_name.as_str(),
            ];
            let policy = config
                .systems
                .get(&dest.system)
                .and_then(|s| s.policy.as_ref());
            let rules = Rules::of(policy);
            // (category, pointer) → the schemas declaring it.
            let mut refused: BTreeMap<(&str, &str), Refused> = BTreeMap::new();
            for schema in &schemas {
                for (pointer, category) in categories.get(schema).into_iter().flatten() {
                    if rules.resolve(category).action != Action::Refuse {
                        continue;
                    }
                    refused
                        .entry((category.as_str(), pointer.as_str()))
                        .or_insert_with(|| Refused {
                            category,
                            pointer,
                            schemas: Vec::new(),
                        })
                        .schemas
                        .push(schema);
                }
            }
            for r in refused.values() {
                let message = format!(
                    "flow `{flow_name}` sends `{}` (field `{}` of schema {}) to destination \
                     `{dest_name}`, whose system `{}` may not receive it, and no rule protects it",
                    r.category,
                    r.pointer,
                    quoted(&r.schemas),
                    dest.system,
                );
                let help = match policy {
                    None => format!(
                        "system `{}` has no `policy`, so it may receive no classified field: give \
                         it one, e.g. `policy: {{ data_use: …, receives: [{}] }}`, or a `protect` \
                         rule for `{}` (`hash`, `redact`, `encrypt` or `drop`)",
                        dest.system, r.category, r.category
                    ),
                    Some(_) => format!(
                        "add `{}` (or a key covering it) to `systems.{}.policy.receives`, or a \
                         `protect` rule for it (`hash`, `redact`, `encrypt` or `drop`)",
                        r.category, dest.system
                    ),
                };
                out.push(sources.diagnostic(Severity::Error, &path, message, Some(help)));
            }
            let unclassified = policy
                .and_then(|p| p.unclassified)
                .unwrap_or(default_unclassified);
            for schema in &schemas {
                let classified = categories.get(schema).map(Vec::as_slice).unwrap_or(&[]);
                match unclassified {
                    Unclassified::Allow => {}
                    Unclassified::Warn => {
                        let loose: Vec<String> = registry
                            .leaf_fields(schema)
                            .into_iter()
                            .filter(|leaf| !classified.iter().any(|(p, _)| under(p, leaf)))
                            .collect();
                        if loose.is_empty() {
                            continue;
                        }
                        out.push(
                            sources.diagnostic(
                                Severity::Warning,
                                &path,
                                format!(
                                    "destination `{dest_name}` of flow `{flow_name}` receives \
                                 fields of schema `{schema}` that carry no data category, as \
                                 they are (system `{}`, unclassified: warn): {}",
                                    dest.system,
                                    listed(&loose)
                                ),
                                Some(
                                    "classify them with `x-ferry-category` in the schema, or set \
                                 the system's `policy.unclassified` to `allow` or `deny`"
                                        .to_string(),
                                ),
                            ),
                        );
                    }
                    Unclassified::Deny if classified.is_empty() => {
                        out.push(
                            sources.diagnostic(
                                Severity::Warning,
                                &path,
                                format!(
                                    "schema `{schema}` classifies no field, and system `{}` denies \
                                 unclassified fields: destination `{dest_name}` of flow \
                                 `{flow_name}` receives `{{}}` for its events",
                                    dest.system
                                ),
                                Some(
                                    "classify the fields the system needs with `x-ferry-category`"
                                        .to_string(),
                                ),
                            ),
                        );
                    }
                    Unclassified::Deny => {}
                }
            }
        }
    }
    out
}

/// Whether the field at `pointer` lies at or under the classified field `classified`.
fn under(classified: &str, pointer: &str) -> bool {
    pointer == classified
        || pointer
            .strip_prefix(classified)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `` `a`, `b` `` (the root as `(the whole event)`), at most [`FIELDS_LISTED`].
fn listed(pointers: &[String]) -> String {
    let mut shown: Vec<String> = pointers
        .iter()
        .take(FIELDS_LISTED)
        .map(|p| {
            if p.is_empty() {
                "(the whole event)".to_string()
            } else {
                format!("`{p}`")
            }
        })
        .collect();
    if pointers.len() > FIELDS_LISTED {
        shown.push(format!("and {} more", pointers.len() - FIELDS_LISTED));
    }
    shown.join(", ")
}

/// `` `a` `` or `` `a`, `b` ``.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_under_a_classified_one_are_covered() {
        assert!(under("/customer", "/customer/email"));
        assert!(under("/customer", "/customer"));
        assert!(!under("/customer", "/customers/x"));
        assert!(under("", "/anything"));
    }

    #[test]
    fn long_lists_are_cut() {
        let many: Vec<String> = (0..12).map(|i| format!("/f{i}")).collect();
        let text = listed(&many);
        assert!(text.ends_with("and 2 more"), "{text}");
        assert_eq!(listed(&[String::new()]), "(the whole event)");
    }
}
