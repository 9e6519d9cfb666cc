//! Merging the files' sections into one [`Config`], remembering which file declared what.

use std::collections::{BTreeSet, HashMap};

use crate::diagnostic::{Diagnostic, Severity};
use crate::locate::Part;
use crate::model::Config;
use crate::parse::ParsedFile;
use crate::sources::{FileId, Sources};

/// Which file each part of the merged config came from.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    pub settings: Option<FileId>,
    pub systems: HashMap<String, FileId>,
    pub flows: HashMap<String, FileId>,
    pub schemas: HashMap<String, FileId>,
    pub tenants: HashMap<String, FileId>,
    /// Every system name written under `systems:` in any file, including entries that did not
    /// deserialize (so references to them are not reported as undeclared on top of that).
    pub system_names: BTreeSet<String>,
}

/// Add one file's sections to `config`. A second `settings:`, or a system or flow already
/// defined in another file, is an error located in the later file. (A name repeated within
/// one file is reported by the locator as a repeated key.)
pub(crate) fn merge(
    config: &mut Config,
    origins: &mut Origins,
    file: FileId,
    parsed: ParsedFile,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) {
    let locator = &sources.files[file].locator;
    origins.system_names.extend(locator.keys(&["systems"]));

    if parsed.has_settings {
        match origins.settings {
            Some(first) => diags.push(sources.at(
                Severity::Error,
                file,
                &["settings"],
                Part::Key,
                format!(
                    "`settings` is given in two files: {} and {}",
                    sources.describe(first, &["settings"]),
                    sources.describe(file, &["settings"])
                ),
                Some("only one file of the config directory may hold `settings:`".to_string()),
            )),
            None => {
                origins.settings = Some(file);
                config.settings = parsed.settings.unwrap_or_default();
            }
        }
    }

    for (name, system) in parsed.systems {
        if claim(
            &mut origins.systems,
            "system",
            "systems",
            &name,
            file,
            sources,
            diags,
        ) {
            config.systems.insert(name, system);
        }
    }
    for (name, flow) in parsed.flows {
        if claim(
            &mut origins.flows,
            "flow",
            "flows",
            &name,
            file,
            sources,
            diags,
        ) {
            config.flows.insert(name, flow);
        }
    }
    for (name, schema) in parsed.schemas {
        if claim(
            &mut origins.schemas,
            "schema",
            "schemas",
            &name,
            file,
            sources,
            diags,
        ) {
            config.schemas.insert(name, schema);
        }
    }
    for (name, tenant) in parsed.tenants {
        if claim(
            &mut origins.tenants,
            "tenant",
            "tenants",
            &name,
            file,
            sources,
            diags,
        ) {
            config.tenants.insert(name, tenant);
        }
    }
}

/// Record that `file` defines `name`; false (with an error when the other definition is in
/// another file) when it is already defined.
fn claim(
    defined: &mut HashMap<String, FileId>,
    what: &str,
    section: &str,
    name: &str,
    file: FileId,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    match defined.get(name) {
        None => {
            defined.insert(name.to_string(), file);
            true
        }
        Some(&first) if first == file => false,
        Some(&first) => {
            diags.push(sources.at(
                Severity::Error,
                file,
                &[section, name],
                Part::Key,
                format!(
                    "{what} `{name}` is already defined in {}",
                    sources.describe(first, &[section, name])
                ),
                Some(format!(
                    "{what} names are unique across the config directory"
                )),
            ));
            false
        }
    }
}
