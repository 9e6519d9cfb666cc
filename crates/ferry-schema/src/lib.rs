//! Ferry's schemas: one JSON Schema (2020-12) per event type (or any name a `validate` step
//! or a destination `contract` refers to), read from the files named under `schemas:` in the
//! config, with Ferry's annotations on their properties (data categories and subject
//! identity fields, see [`annotations`]).
//!
//! ```no_run
//! # fn demo(config: &ferry_config::Config) {
//! let registry = ferry_schema::SchemaRegistry::load(config).expect("valid schemas");
//! let event = serde_json::json!({"order_id": 7});
//! if let Err(violations) = registry.validate("order.created", &event) {
//!     for v in violations {
//!         println!("{}: {}", v.pointer, v.message);
//!     }
//! }
//! # }
//! ```
//!
//! `$ref` resolves only against the other schema files of the config, by their `$id` or by
//! their file path relative to the config directory (`customer.json` from
//! `schemas/order.json` is `schemas/customer.json`). Nothing is ever fetched from the network
//! or read from outside the config directory: such references are refused when the schemas
//! load. `format` is asserted (`email`, `date-time`...), and `pattern` uses a linear-time
//! regular expression engine (no look-around, no back-references).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod annotations;
mod compile;
mod documents;
mod position;
mod problem;

use std::collections::BTreeMap;
use std::fmt;

use ferry_config::Config;
use serde_json::Value;

pub use documents::MAX_SCHEMA_BYTES;
pub use problem::SchemaProblem;

/// Longest violation message, in bytes (a message may quote the schema, e.g. an `enum`).
pub const MAX_MESSAGE_BYTES: usize = 256;

/// One way a value breaks a schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON pointer (RFC 6901) to the offending part of the value; `""` is the whole value.
    pub pointer: String,
    /// What is wrong there, e.g. `value is not of type "integer"` (at most
    /// [`MAX_MESSAGE_BYTES`]). The offending value itself is never quoted (it may be personal
    /// data, and violations end up in dead-letter reasons and logs): the pointer says where.
    pub message: String,
}

/// The compiled schemas of a config, by name.
#[derive(Default)]
pub struct SchemaRegistry {
    schemas: BTreeMap<String, Compiled>,
}

struct Compiled {
    validator: jsonschema::Validator,
    annotations: annotations::Annotations,
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("schemas", &self.schemas.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SchemaRegistry {
    /// Read and compile every schema of `config` (files relative to `config.root`).
    ///
    /// Every problem is reported at once, located in its file: a file that is missing,
    /// outside the config directory, larger than [`MAX_SCHEMA_BYTES`] or not JSON (with line
    /// and column); a `$schema` other than 2020-12; an invalid schema; a `$ref` to anything
    /// but the config's schemas; a malformed `x-ferry-category` or `x-ferry-subject`, or an
    /// unknown `x-ferry-*` key. Does no network I/O. Never panics, whatever the files hold.
    pub fn load(config: &Config) -> Result<SchemaRegistry, Vec<SchemaProblem>> {
        Self::load_checked(config, &|_| Ok(()))
    }

    /// [`SchemaRegistry::load`], with every well-formed `x-ferry-category` also checked by
    /// `category` (e.g. against the config's taxonomy): an `Err` is a problem located at the
    /// annotation, with its message.
    pub fn load_checked(
        config: &Config,
        category: &annotations::CategoryCheck,
    ) -> Result<SchemaRegistry, Vec<SchemaProblem>> {
        let mut problems = Vec::new();
        let docs = documents::read_all(config, &mut problems);
        let by_uri = documents::by_uri(&docs);
        let retrievable = compile::retrievable(&docs);
        let mut schemas = BTreeMap::new();
        for (i, doc) in docs.iter().enumerate() {
            let before = problems.len();
            annotations::lint(doc, &mut problems, category);
            match compile::compile(doc, &retrievable) {
                Ok(validator) if problems.len() == before => {
                    let annotations = annotations::collect(&docs, &by_uri, i);
                    schemas.insert(
                        doc.name.clone(),
                        Compiled {
                            validator,
                            annotations,
                        },
                    );
                }
                Ok(_) => {}
                Err(found) => problems.extend(found),
            }
        }
        if problems.is_empty() {
            Ok(SchemaRegistry { schemas })
        } else {
            problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            problems.dedup();
            Err(problems)
        }
    }

    /// Whether a schema of this name is declared.
    pub fn contains(&self, name: &str) -> bool {
        self.schemas.contains_key(name)
    }

    /// The names of the schemas, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.schemas.keys().map(String::as_str)
    }

    /// Check `value` against schema `name`: every violation (not just the first), in the
    /// validator's order. A name that is not declared is one violation at the root.
    pub fn validate(&self, name: &str, value: &Value) -> Result<(), Vec<Violation>> {
        let Some(compiled) = self.schemas.get(name) else {
            return Err(vec![Violation {
                pointer: String::new(),
                message: format!("there is no schema named `{name}`"),
            }]);
        };
        let violations: Vec<Violation> = compiled
            .validator
            .iter_errors(value)
            .map(|e| Violation {
                pointer: e.instance_path().as_str().to_string(),
                message: bounded(e.masked().to_string()),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// The data categories of schema `name`'s fields: (instance JSON pointer, category),
    /// sorted. `*` in a pointer stands for every array item (or every property not named by
    /// `properties`). Empty for an unknown name.
    pub fn categories(&self, name: &str) -> Vec<(String, String)> {
        self.schemas
            .get(name)
            .map(|c| c.annotations.categories.clone())
            .unwrap_or_default()
    }

    /// The instance JSON pointers of the fields schema `name` describes with nothing
    /// described under them (its leaves; `""` when it describes no field), sorted, `*` as in
    /// [`SchemaRegistry::categories`]. Empty for an unknown name.
    pub fn leaf_fields(&self, name: &str) -> Vec<String> {
        self.schemas
            .get(name)
            .map(|c| c.annotations.leaves.clone())
            .unwrap_or_default()
    }

    /// The instance JSON pointers of schema `name`'s subject identity fields
    /// (`"x-ferry-subject": true`), sorted. Empty for an unknown name.
    pub fn subject_fields(&self, name: &str) -> Vec<String> {
        self.schemas
            .get(name)
            .map(|c| c.annotations.subject_fields.clone())
            .unwrap_or_default()
    }
}

/// `message` cut to at most [`MAX_MESSAGE_BYTES`] at a character boundary.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}
