//! What loading the schemas reports: one [`SchemaProblem`] per thing wrong, located in the
//! schema file.

use std::fmt;
use std::path::PathBuf;

use ferry_config::{Diagnostic, Severity};

use crate::position::position;

/// One problem with a schema of the config, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// The schema's name under `schemas:`.
    pub schema: String,
    /// The schema file: the config directory joined with the schema's `file:`.
    pub file: PathBuf,
    /// JSON pointer to the offending place in the schema document (`""` is the whole
    /// document), when the problem has one.
    pub pointer: Option<String>,
    /// 1-based line in the file; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column (in characters); 0 when the problem concerns the whole file.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something useful to say.
    pub help: Option<String>,
}

impl SchemaProblem {
    /// A problem with the whole file of schema `schema`.
    pub(crate) fn file(schema: &str, file: PathBuf, message: String, help: Option<String>) -> Self {
        Self {
            schema: schema.to_string(),
            file,
            pointer: None,
            line: 0,
            column: 0,
            message,
            help,
        }
    }

    /// A problem at `pointer` in the document whose text is `text`.
    pub(crate) fn at(
        schema: &str,
        file: PathBuf,
        text: &str,
        pointer: &str,
        message: String,
        help: Option<String>,
    ) -> Self {
        let (line, column) = position(text, pointer);
        Self {
            schema: schema.to_string(),
            file,
            pointer: Some(pointer.to_string()),
            line,
            column,
            message,
            help,
        }
    }

    /// The problem as a config [`Diagnostic`] (an error), so `ferry validate` prints it with
    /// the config's other errors: the field is the JSON pointer written as `#/a/b`.
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            field: self
                .pointer
                .as_ref()
                .map(|p| format!("#{p}"))
                .unwrap_or_default(),
            message: format!("schema `{}`: {}", self.schema, self.message),
            help: self.help.clone(),
        }
    }
}

/// `<file>:<line>:<column>: #<pointer>: schema `<name>`: <message>`, like a config diagnostic.
impl fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.to_diagnostic();
        write!(f, "{}", d.file.display())?;
        if d.has_position() {
            write!(f, ":{}:{}", d.line, d.column)?;
        }
        if !d.field.is_empty() {
            write!(f, ": {}", d.field)?;
        }
        write!(f, ": {}", d.message)
    }
}
