//! Checks of schemas and the steps and contracts naming them: every schema file exists inside
//! the config directory, and every schema a `validate` step or a destination `contract`
//! names is declared under `schemas:` (what is inside the schema files is checked by
//! `ferry-schema`). Also: a CloudEvents destination that batches sends a bare array (no
//! `wrap`).

use super::Checker;
use crate::locate::Part;
use crate::model::Flow;
use crate::sources::FileId;
use crate::steps::{BodyFormat, Step};

pub(super) fn check(c: &mut Checker) {
    schema_files(c);
    for (name, flow) in &c.config.flows {
        let Some(file) = c.flow_file(name) else {
            continue;
        };
        flow_steps(c, file, name, flow);
        for (dest, def) in &flow.destinations {
            if let Some(contract) = &def.contract {
                let field = ["flows", name, "destinations", dest, "contract", "schema"];
                named_schema(c, file, &field, &contract.schema);
            }
            let wrapped = def.batch.as_ref().is_some_and(|b| b.wrap.is_some());
            let cloudevents = def
                .http
                .as_ref()
                .is_some_and(|h| h.format == BodyFormat::Cloudevents);
            if cloudevents && wrapped {
                let field = ["flows", name, "destinations", dest, "batch", "wrap"];
                c.error(
                    file,
                    &field,
                    Part::Value,
                    "a CloudEvents batch (`format: cloudevents` with `batch`) is a JSON array \
                     of envelopes by spec (`application/cloudevents-batch+json`), so it \
                     cannot be wrapped in an object"
                        .to_string(),
                    Some("remove `wrap`, or send `format: json`".to_string()),
                );
            }
        }
    }
}

fn schema_files(c: &mut Checker) {
    for (name, def) in &c.config.schemas {
        let Some(&file) = c.origins.schemas.get(name) else {
            continue;
        };
        if let Err(e) = def.path_in(&c.config.root) {
            c.error(
                file,
                &["schemas", name, "file"],
                Part::Value,
                e.message,
                e.help,
            );
        }
    }
}

fn flow_steps(c: &mut Checker, file: FileId, flow_name: &str, flow: &Flow) {
    let has_type_pointer = flow.source.event_type_pointer().is_some();
    for (i, step) in flow.steps.iter().enumerate() {
        let Step::Validate(validate) = step else {
            continue;
        };
        let index = i.to_string();
        let at = ["flows", flow_name, "steps", index.as_str(), "validate"];
        match &validate.schema {
            Some(schema) => {
                let field: Vec<&str> = at.iter().copied().chain(["schema"]).collect();
                named_schema(c, file, &field, schema);
            }
            None if !has_type_pointer => c.warning(
                file,
                &at,
                Part::Key,
                "this `validate` step picks the schema by event type, but the source has no \
                 `event_type` pointer: only CloudEvents requests carry a type, every other \
                 event counts as of an unknown type"
                    .to_string(),
                Some(
                    "set `event_type: /type` (a JSON pointer) on the webhook source, or name \
                     the schema: `validate: { schema: ... }`"
                        .to_string(),
                ),
            ),
            None => {}
        }
    }
}

/// An error at `field` unless `schema` is declared under `schemas:`.
fn named_schema(c: &mut Checker, file: FileId, field: &[&str], schema: &str) {
    if c.origins.schemas.contains_key(schema) {
        return;
    }
    let close = c.origins.schemas.keys().find(|declared| {
        declared.len() <= 64
            && schema.len() <= 64
            && crate::describe::edit_distance(declared, schema) <= 2
    });
    let help = match close {
        Some(name) => format!("did you mean `{name}`?"),
        None => format!("declare it: `schemas: {{ {schema}: {{ file: schemas/{schema}.json }} }}`"),
    };
    c.error(
        file,
        field,
        Part::Value,
        format!("schema `{schema}` is not declared under `schemas:`"),
        Some(help),
    );
}
