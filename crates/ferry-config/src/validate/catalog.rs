//! Checks of the system catalog: system names, systems of record, and ownership.

use std::collections::BTreeMap;

use super::Checker;
use super::rules;
use crate::locate::Part;

pub(super) fn check(c: &mut Checker) {
    system_names(c);
    systems_of_record(c);
    owners(c);
}

fn system_names(c: &mut Checker) {
    for name in c.config.systems.keys() {
        let Some(file) = c.system_file(name) else {
            continue;
        };
        if let Err((message, help)) = rules::name("system", name) {
            c.error(file, &["systems", name], Part::Key, message, help);
        }
    }
}

/// Warn when two systems claim to be the system of record for the same entity.
fn systems_of_record(c: &mut Checker) {
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    for (system, def) in &c.config.systems {
        for (i, entity) in def.records.iter().enumerate() {
            match claimed.get(entity.as_str()) {
                None => {
                    claimed.insert(entity, system);
                }
                Some(first) if first == system => {}
                Some(first) => {
                    let Some(file) = c.system_file(system) else {
                        continue;
                    };
                    let index = i.to_string();
                    let message = format!(
                        "systems `{first}` and `{system}` both claim to be the system of record \
                         for `{entity}`"
                    );
                    let help = Some(format!(
                        "one system owns the truth about `{entity}`: remove it from the other's `records`"
                    ));
                    c.warning(
                        file,
                        &["systems", system, "records", &index],
                        Part::Value,
                        message,
                        help,
                    );
                }
            }
        }
    }
}

/// Warn about flows nobody owns: no `owner:` and a source system without one either.
fn owners(c: &mut Checker) {
    for (name, flow) in &c.config.flows {
        if flow.owner.is_some() {
            continue;
        }
        let source = flow.source.system();
        let Some(system) = c.config.systems.get(source) else {
            continue;
        };
        if system.owner.is_some() {
            continue;
        }
        let Some(file) = c.flow_file(name) else {
            continue;
        };
        c.warning(
            file,
            &["flows", name],
            Part::Key,
            "flow has no owner".to_string(),
            Some(format!(
                "set `owner:` on the flow, or on its source system `{source}`"
            )),
        );
    }
}
