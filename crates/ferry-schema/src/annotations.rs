//! Ferry's annotations on schema properties:
//!
//! - `"x-ferry-category": "user.contact.email"`: the field's data category, a
//!   fideslang-style dotted key (lowercase segments `[a-z][a-z0-9_]*`, at least two, the
//!   first one of fideslang's top-level categories, [`TOP_LEVEL_CATEGORIES`]);
//! - `"x-ferry-subject": true`: the field identifies the data subject (used for DSAR).
//!
//! [`lint`] checks every annotation of a document; [`collect`] lists the annotated fields of
//! the instances a schema describes, by instance JSON pointer (`*` stands for every array
//! item or every other property), following `$ref`s into the config's other schemas.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::documents::{Document, resolve};
use crate::problem::SchemaProblem;

/// The data-category annotation.
pub const CATEGORY_KEY: &str = "x-ferry-category";
/// The subject-identity annotation.
pub const SUBJECT_KEY: &str = "x-ferry-subject";
/// fideslang's top-level data categories (fideslang 2 and later: `user` data about a person,
/// `system` data of the system itself).
pub const TOP_LEVEL_CATEGORIES: &[&str] = &["user", "system"];

/// Keywords whose value is one subschema.
const ONE: &[&str] = &[
    "additionalProperties",
    "contains",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
];
/// Keywords whose value is an array of subschemas.
const LIST: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const MAP: &[&str] = &[
    "$defs",
    "dependentSchemas",
    "patternProperties",
    "properties",
];

/// Deepest nesting of `$ref`s and subschemas followed when collecting annotations.
const MAX_DEPTH: usize = 64;

/// Whether `key` is a data category Ferry accepts: `Err` says why not.
pub fn check_category(key: &str) -> Result<(), String> {
    let segments: Vec<&str> = key.split('.').collect();
    let well_formed = |s: &&str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if let Some(bad) = segments.iter().find(|s| !well_formed(s)) {
        return Err(format!(
            "`{key}` is not a dotted data category: segment `{bad}` must match `[a-z][a-z0-9_]*`"
        ));
    }
    if segments.len() < 2 {
        return Err(format!(
            "`{key}` is too broad: a data category has at least two segments, e.g. \
             `user.contact.email`"
        ));
    }
    if !TOP_LEVEL_CATEGORIES.contains(&segments[0]) {
        return Err(format!(
            "`{key}` does not start with a fideslang top-level category ({})",
            TOP_LEVEL_CATEGORIES.join(", ")
        ));
    }
    Ok(())
}

/// Check every Ferry annotation in `doc` (and report unknown `x-ferry-*` keys, which are
/// most likely typos).
/// `category` is a further check of each well-formed category (e.g. against a taxonomy).
pub(crate) fn lint(doc: &Document, problems: &mut Vec<SchemaProblem>, category: &CategoryCheck) {
    lint_schema(doc, &doc.value, String::new(), problems, category);
}

/// A check of a data category beyond its form: `Err` says why it is refused.
pub type CategoryCheck<'a> = dyn Fn(&str) -> Result<(), String> + 'a;

fn lint_schema(
    doc: &Document,
    schema: &Value,
    pointer: String,
    out: &mut Vec<SchemaProblem>,
    check: &CategoryCheck,
) {
    let Value::Object(map) = schema else {
        return;
    };
    let mut problem = |key: &str, message: String, help: &str| {
        out.push(SchemaProblem::at(
            &doc.name,
            doc.path.clone(),
            &doc.text,
            &format!("{pointer}/{}", escape(key)),
            message,
            Some(help.to_string()),
        ));
    };
    for (key, value) in map {
        match key.as_str() {
            CATEGORY_KEY => match value {
                Value::String(category) => {
                    if let Err(message) = check_category(category).and_then(|()| check(category)) {
                        problem(
                            key,
                            message,
                            "use a fideslang data category, e.g. `user.contact.email` or \
                             `user.financial.bank_account` (or declare a custom one under \
                             `settings.protection.taxonomy.data_categories`)",
                        );
                    }
                }
                _ => problem(
                    key,
                    format!("`{CATEGORY_KEY}` must be a string, not {value}"),
                    "e.g. `\"x-ferry-category\": \"user.contact.email\"`",
                ),
            },
            SUBJECT_KEY if !value.is_boolean() => problem(
                key,
                format!("`{SUBJECT_KEY}` must be `true` or `false`, not {value}"),
                "mark a subject identity field with `\"x-ferry-subject\": true`",
            ),
            SUBJECT_KEY => {}
            other if other.starts_with("x-ferry-") => problem(
                key,
                format!("unknown Ferry annotation `{other}`"),
                "Ferry's annotations are `x-ferry-category` and `x-ferry-subject`",
            ),
            _ => {}
        }
    }
    for (key, value) in map {
        let here = format!("{pointer}/{}", escape(key));
        if ONE.contains(&key.as_str()) {
            lint_schema(doc, value, here, out, check);
        } else if LIST.contains(&key.as_str()) {
            for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                lint_schema(doc, item, format!("{here}/{i}"), out, check);
            }
        } else if MAP.contains(&key.as_str()) {
            for (name, item) in value.as_object().into_iter().flatten() {
                lint_schema(doc, item, format!("{here}/{}", escape(name)), out, check);
            }
        }
    }
}

/// The annotated fields of a schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Annotations {
    /// (instance pointer, category), sorted, without repeats.
    pub categories: Vec<(String, String)>,
    /// Instance pointers of subject identity fields, sorted, without repeats.
    pub subject_fields: Vec<String>,
    /// Instance pointers of the fields the schema describes that have no described fields
    /// under them (its leaves), sorted.
    pub leaves: Vec<String>,
}

/// The annotated fields of the instances `docs[index]` describes.
pub(crate) fn collect(
    docs: &[Document],
    by_uri: &BTreeMap<String, usize>,
    index: usize,
) -> Annotations {
    let doc = &docs[index];
    let mut walk = Walk {
        docs,
        by_uri,
        out: Annotations::default(),
        stack: Vec::new(),
        fields: std::collections::BTreeSet::new(),
    };
    walk.schema(&doc.value, &doc.value, &doc.file_uri, String::new(), 0);
    walk.out.categories.sort();
    walk.out.categories.dedup();
    walk.out.subject_fields.sort();
    walk.out.subject_fields.dedup();
    let fields = std::mem::take(&mut walk.fields);
    walk.out.leaves = fields
        .iter()
        .filter(|f| {
            let below = format!("{f}/");
            !fields
                .range::<String, _>(below.clone()..)
                .next()
                .is_some_and(|next| next.starts_with(&below))
        })
        .cloned()
        .collect();
    walk.out
}

struct Walk<'a> {
    docs: &'a [Document],
    by_uri: &'a BTreeMap<String, usize>,
    out: Annotations,
    /// The `$ref` targets being followed (cycle guard).
    stack: Vec<String>,
    /// Every instance field a subschema describes.
    fields: std::collections::BTreeSet<String>,
}

impl<'a> Walk<'a> {
    /// Record the annotations of `schema` (inside document `root`, base URI `base`) for the
    /// instance field at `field`.
    fn schema(
        &mut self,
        root: &'a Value,
        schema: &'a Value,
        base: &str,
        field: String,
        depth: usize,
    ) {
        let Value::Object(map) = schema else {
            return;
        };
        if depth > MAX_DEPTH {
            return;
        }
        self.fields.insert(field.clone());
        let base = match map.get("$id").and_then(Value::as_str) {
            Some(id) => resolve(base, id).unwrap_or_else(|_| base.to_string()),
            None => base.to_string(),
        };
        if let Some(Value::String(category)) = map.get(CATEGORY_KEY)
            && check_category(category).is_ok()
        {
            self.out.categories.push((field.clone(), category.clone()));
        }
        if map.get(SUBJECT_KEY) == Some(&Value::Bool(true)) {
            self.out.subject_fields.push(field.clone());
        }
        if let Some(Value::String(reference)) = map.get("$ref") {
            self.reference(root, &base, reference, &field, depth);
        }
        for (name, sub) in map
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.schema(
                root,
                sub,
                &base,
                format!("{field}/{}", escape(name)),
                depth + 1,
            );
        }
        for key in [
            "additionalProperties",
            "items",
            "unevaluatedProperties",
            "unevaluatedItems",
        ] {
            if let Some(sub) = map.get(key) {
                self.schema(root, sub, &base, format!("{field}/*"), depth + 1);
            }
        }
        for sub in map
            .get("patternProperties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.schema(root, sub.1, &base, format!("{field}/*"), depth + 1);
        }
        for (i, sub) in map
            .get("prefixItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            self.schema(root, sub, &base, format!("{field}/{i}"), depth + 1);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for sub in map.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.schema(root, sub, &base, field.clone(), depth + 1);
            }
        }
        for key in ["if", "then", "else"] {
            if let Some(sub) = map.get(key) {
                self.schema(root, sub, &base, field.clone(), depth + 1);
            }
        }
    }

    /// Follow `$ref` `reference` (a JSON pointer or `$anchor` fragment, in this document or in
    /// another schema of the config).
    fn reference(
        &mut self,
        root: &'a Value,
        base: &str,
        reference: &str,
        field: &str,
        depth: usize,
    ) {
        let Ok(uri) = resolve(base, reference) else {
            return;
        };
        let fragment = reference.split_once('#').map_or("", |(_, f)| f);
        let (target_root, target_base) = if reference.starts_with('#') {
            (root, base.to_string())
        } else {
            match self.by_uri.get(&uri) {
                Some(&i) => (&self.docs[i].value, uri.clone()),
                None => return,
            }
        };
        let key = format!("{target_base}#{fragment}");
        if self.stack.contains(&key) {
            return;
        }
        let target = if fragment.is_empty() || fragment.starts_with('/') {
            target_root.pointer(&percent_encoding::percent_decode_str(fragment).decode_utf8_lossy())
        } else {
            find_anchor(target_root, fragment)
        };
        if let Some(target) = target {
            self.stack.push(key);
            self.schema(
                target_root,
                target,
                &target_base,
                field.to_string(),
                depth + 1,
            );
            self.stack.pop();
        }
    }
}

/// The subschema of `value` whose `$anchor` is `name`.
fn find_anchor<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => {
            if map.get("$anchor").and_then(Value::as_str) == Some(name) {
                return Some(value);
            }
            map.values().find_map(|v| find_anchor(v, name))
        }
        Value::Array(items) => items.iter().find_map(|v| find_anchor(v, name)),
        _ => None,
    }
}

/// A JSON pointer token for `key` (`~` as `~0`, `/` as `~1`).
pub(crate) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_keys() {
        for good in [
            "user.contact.email",
            "user.financial.bank_account",
            "system.operations",
        ] {
            assert_eq!(check_category(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("user", "too broad"),
            ("User.contact", "segment `User`"),
            ("user..email", "segment ``"),
            ("user.contact.e-mail", "segment `e-mail`"),
            ("account.contact.email", "top-level"),
            ("user.9x", "segment `9x`"),
        ] {
            let err = check_category(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
