//! Reading the schema files of a config: each file inside the config directory, size-limited,
//! parsed as JSON, and given the URIs other schemas may `$ref` it by.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ferry_config::Config;
use jsonschema::uri;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::problem::SchemaProblem;

/// Largest schema file read, in bytes (1 MiB).
pub const MAX_SCHEMA_BYTES: u64 = 1024 * 1024;

/// The URI scheme of schema files: `ferry:///schemas/order.json` is the file
/// `schemas/order.json` of the config directory. A relative `$ref` (`customer.json`)
/// therefore resolves like a relative file path.
pub(crate) const FILE_URI_PREFIX: &str = "ferry:///";

/// The `$schema` values taken as JSON Schema 2020-12.
const DRAFT_2020_12: &[&str] = &[
    "https://json-schema.org/draft/2020-12/schema",
    "https://json-schema.org/draft/2020-12/schema#",
];

/// One schema file, read and parsed.
pub(crate) struct Document {
    /// The schema's name under `schemas:`.
    pub name: String,
    /// The config directory joined with the schema's `file:`.
    pub path: PathBuf,
    /// The file's text (for locating problems).
    pub text: String,
    pub value: Value,
    /// `ferry:///<file>`, the base URI of the document.
    pub file_uri: String,
    /// Its `$id`, resolved against `file_uri`, when it has one.
    pub id_uri: Option<String>,
}

/// Read and parse every schema of `config`. Files that cannot be read or parsed are reported
/// and left out.
pub(crate) fn read_all(config: &Config, problems: &mut Vec<SchemaProblem>) -> Vec<Document> {
    let mut docs = Vec::new();
    for (name, def) in &config.schemas {
        let shown = config.root.join(&def.file);
        let path = match def.path_in(&config.root) {
            Ok(path) => path,
            Err(e) => {
                problems.push(SchemaProblem::file(name, shown, e.message, e.help));
                continue;
            }
        };
        let text = match read_capped(&path) {
            Ok(text) => text,
            Err(message) => {
                problems.push(SchemaProblem::file(name, shown, message, None));
                continue;
            }
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => {
                problems.push(SchemaProblem {
                    line: e.line(),
                    column: e.column(),
                    ..SchemaProblem::file(
                        name,
                        shown,
                        format!("the file is not valid JSON: {e}"),
                        None,
                    )
                });
                continue;
            }
        };
        if let Some(problem) = check_dialect(name, &shown, &text, &value) {
            problems.push(problem);
            continue;
        }
        let file_uri = file_uri(&def.file);
        let id_uri = match value.get("$id") {
            None => None,
            Some(Value::String(id)) => match resolve(&file_uri, id) {
                Ok(uri) => Some(uri),
                Err(message) => {
                    problems.push(SchemaProblem::at(name, shown, &text, "/$id", message, None));
                    continue;
                }
            },
            Some(_) => {
                let message = "`$id` must be a string".to_string();
                problems.push(SchemaProblem::at(name, shown, &text, "/$id", message, None));
                continue;
            }
        };
        docs.push(Document {
            name: name.clone(),
            path: shown,
            text,
            value,
            file_uri,
            id_uri,
        });
    }
    report_shared_ids(&docs, problems);
    docs
}

/// The documents by every URI they can be referred to with (`$id` and file URI).
pub(crate) fn by_uri(docs: &[Document]) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for (i, doc) in docs.iter().enumerate() {
        map.entry(doc.file_uri.clone()).or_insert(i);
        if let Some(id) = &doc.id_uri {
            map.entry(id.clone()).or_insert(i);
        }
    }
    map
}

/// `reference` resolved against `base`, without its fragment.
pub(crate) fn resolve(base: &str, reference: &str) -> Result<String, String> {
    let base = uri::from_str(base).map_err(|e| format!("invalid base URI `{base}`: {e}"))?;
    let resolved = uri::resolve_against(&base.borrow(), reference)
        .map_err(|e| format!("`{reference}` is not a valid URI reference: {e}"))?;
    let text = resolved.as_str();
    Ok(text.split_once('#').map_or(text, |(u, _)| u).to_string())
}

/// Characters of a file path written as is in its URI: the unreserved ones and `/`.
const PATH_KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// `ferry:///` followed by the file path, percent-encoded.
fn file_uri(file: &str) -> String {
    let path = file.strip_prefix("./").unwrap_or(file);
    format!("{FILE_URI_PREFIX}{}", utf8_percent_encode(path, PATH_KEPT))
}

fn read_capped(path: &Path) -> Result<String, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_SCHEMA_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() as u64 > MAX_SCHEMA_BYTES {
        return Err(format!(
            "the file is larger than {} KiB",
            MAX_SCHEMA_BYTES / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())
}

/// Ferry's schemas are JSON Schema 2020-12: a document is an object or a boolean, and a
/// `$schema`, when given, names 2020-12.
fn check_dialect(name: &str, file: &Path, text: &str, value: &Value) -> Option<SchemaProblem> {
    let problem = |pointer: &str, message: String, help: &str| {
        Some(SchemaProblem::at(
            name,
            file.to_path_buf(),
            text,
            pointer,
            message,
            Some(help.to_string()),
        ))
    };
    match value {
        Value::Bool(_) => None,
        Value::Object(map) => match map.get("$schema") {
            None => None,
            Some(Value::String(s)) if DRAFT_2020_12.contains(&s.as_str()) => None,
            Some(other) => problem(
                "/$schema",
                format!("`$schema` is {other}: Ferry's schemas are JSON Schema 2020-12"),
                "write `\"$schema\": \"https://json-schema.org/draft/2020-12/schema\"`, or leave \
                 `$schema` out",
            ),
        },
        _ => problem(
            "",
            "a schema is a JSON object (or `true`/`false`)".to_string(),
            "e.g. `{ \"type\": \"object\", \"properties\": { ... } }`",
        ),
    }
}

/// Two files with the same `$id` make references to it ambiguous.
fn report_shared_ids(docs: &[Document], problems: &mut Vec<SchemaProblem>) {
    let mut seen: BTreeMap<&str, &Document> = BTreeMap::new();
    for doc in docs {
        let Some(id) = doc.id_uri.as_deref() else {
            continue;
        };
        match seen.get(id) {
            Some(first) if first.path != doc.path => problems.push(SchemaProblem::at(
                &doc.name,
                doc.path.clone(),
                &doc.text,
                "/$id",
                format!("`$id` `{id}` is also the `$id` of {}", first.path.display()),
                Some("give every schema file its own `$id`".to_string()),
            )),
            _ => {
                seen.insert(id, doc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_and_resolution() {
        assert_eq!(file_uri("schemas/a b.json"), "ferry:///schemas/a%20b.json");
        assert_eq!(file_uri("./x.json"), "ferry:///x.json");
        assert_eq!(
            resolve("ferry:///schemas/order.json", "customer.json#/$defs/x").unwrap(),
            "ferry:///schemas/customer.json"
        );
        assert_eq!(
            resolve("ferry:///schemas/order.json", "../common/id.json").unwrap(),
            "ferry:///common/id.json"
        );
        assert_eq!(
            resolve("ferry:///schemas/order.json", "https://example.com/s.json").unwrap(),
            "https://example.com/s.json"
        );
    }
}
