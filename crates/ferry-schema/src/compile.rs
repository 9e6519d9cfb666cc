//! Compiling one schema document into a validator. `$ref` resolves only against the config's
//! own schema files (by `$id` or by file path); any other reference, on the network or on
//! disk, is refused and reported.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use jsonschema::{Draft, PatternOptions, Retrieve, Uri, Validator};
use serde_json::Value;

use crate::annotations::escape;
use crate::documents::{Document, FILE_URI_PREFIX, by_uri, resolve};
use crate::problem::SchemaProblem;

/// Serves the config's schema documents to the validator builder, and remembers every other
/// URI it was asked for (each one a refused reference).
struct ConfigRetriever {
    docs: Arc<BTreeMap<String, Value>>,
    refused: Arc<Mutex<BTreeSet<String>>>,
}

impl Retrieve for ConfigRetriever {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        match self.docs.get(uri.as_str()) {
            Some(doc) => Ok(doc.clone()),
            None => {
                self.refused
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(uri.as_str().to_string());
                Err(format!("`{uri}` is not a schema of the config").into())
            }
        }
    }
}

/// Every config document by each URI it answers to ([`by_uri`]), shared by the compilations.
pub(crate) fn retrievable(docs: &[Document]) -> Arc<BTreeMap<String, Value>> {
    let map = by_uri(docs)
        .into_iter()
        .map(|(uri, i)| (uri, docs[i].value.clone()))
        .collect();
    Arc::new(map)
}

/// Compile `doc` as JSON Schema 2020-12, `format` asserted, patterns on the linear-time
/// `regex` engine (no backtracking on untrusted input). Every place where the document breaks
/// the 2020-12 meta-schema, and every `$ref` to something that is not a schema of the
/// config, is reported, each at its place.
pub(crate) fn compile(
    doc: &Document,
    docs: &Arc<BTreeMap<String, Value>>,
) -> Result<Validator, Vec<SchemaProblem>> {
    let meta = jsonschema::draft202012::meta::validator();
    let mut problems: Vec<SchemaProblem> = meta
        .iter_errors(&doc.value)
        .map(|e| {
            SchemaProblem::at(
                &doc.name,
                doc.path.clone(),
                &doc.text,
                e.instance_path().as_str(),
                format!("invalid JSON Schema: {e}"),
                None,
            )
        })
        .collect();
    let mut refs = Refs::default();
    refs.walk(&doc.value, &doc.file_uri, String::new());
    problems.extend(
        refs.found
            .iter()
            .filter(|r| !docs.contains_key(&r.uri) && !refs.local.contains(&r.uri))
            .map(|r| refused_reference(doc, Some(r), &r.uri)),
    );
    if !problems.is_empty() {
        return Err(problems);
    }

    let refused = Arc::new(Mutex::new(BTreeSet::new()));
    let retriever = ConfigRetriever {
        docs: docs.clone(),
        refused: refused.clone(),
    };
    let built = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_base_uri(doc.file_uri.clone())
        .with_retriever(retriever)
        .should_validate_formats(true)
        .with_pattern_options(PatternOptions::regex())
        .build(&doc.value);
    let error = match built {
        Ok(validator) => return Ok(validator),
        Err(error) => error,
    };
    // A reference the scan above let through was refused: one made by another schema file
    // this one refers to (reported on that file too).
    let refused: Vec<String> = refused
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    if refused.is_empty() {
        let pointer = error.instance_path().as_str().to_string();
        return Err(vec![SchemaProblem::at(
            &doc.name,
            doc.path.clone(),
            &doc.text,
            &pointer,
            format!("invalid JSON Schema: {error}"),
            None,
        )]);
    }
    Err(refused
        .iter()
        .map(|uri| refused_reference(doc, None, uri))
        .collect())
}

/// The problem for a `$ref` that resolved to `uri`, which is no schema of the config: at the
/// reference `found` in `doc`, or at the document for a reference made by another schema
/// file it refers to.
fn refused_reference(doc: &Document, found: Option<&Ref>, uri: &str) -> SchemaProblem {
    let (pointer, written) = match found {
        Some(r) => (r.pointer.as_str(), r.written.as_str()),
        None => ("", uri),
    };
    let message = if found.is_none() {
        format!(
            "a schema this one refers to has a `$ref` to `{uri}`, which is not a schema of \
             the config"
        )
    } else if let Some(path) = uri.strip_prefix(FILE_URI_PREFIX) {
        format!(
            "`$ref` `{written}` names no schema of the config (no `schemas:` entry has the \
             file `{path}` or that `$id`)"
        )
    } else {
        format!(
            "`$ref` `{written}` is refused: Ferry resolves `$ref` only against the config's \
             schemas and never fetches `{uri}` from the network or the file system"
        )
    };
    SchemaProblem::at(
        &doc.name,
        doc.path.clone(),
        &doc.text,
        pointer,
        message,
        Some(
            "declare the referenced schema under `schemas:` (it is found by its `$id` or its \
             file path), or copy what you need into `$defs`"
                .to_string(),
        ),
    )
}

/// One `$ref` of a document.
struct Ref {
    /// JSON pointer to the `$ref` value.
    pointer: String,
    /// The reference resolved against its base, without fragment.
    uri: String,
    /// The reference as written.
    written: String,
}

/// The `$ref`s of a document, and the URIs its own resources answer to (its base and every
/// nested `$id`).
#[derive(Default)]
struct Refs {
    found: Vec<Ref>,
    local: BTreeSet<String>,
}

impl Refs {
    fn walk(&mut self, value: &Value, base: &str, pointer: String) {
        match value {
            Value::Object(map) => {
                let base = match map.get("$id").and_then(Value::as_str) {
                    Some(id) => resolve(base, id).unwrap_or_else(|_| base.to_string()),
                    None => base.to_string(),
                };
                self.local.insert(base.clone());
                if let Some(Value::String(r)) = map.get("$ref")
                    && let Ok(uri) = resolve(&base, r)
                {
                    self.found.push(Ref {
                        pointer: format!("{pointer}/$ref"),
                        uri,
                        written: r.clone(),
                    });
                }
                for (key, child) in map {
                    self.walk(child, &base, format!("{pointer}/{}", escape(key)));
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    self.walk(child, base, format!("{pointer}/{i}"));
                }
            }
            _ => {}
        }
    }
}
