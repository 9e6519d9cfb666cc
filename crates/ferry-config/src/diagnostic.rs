//! What loading reports: located diagnostics, and the error type carrying them.

use std::fmt;
use std::path::PathBuf;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// The configuration loads, but something looks wrong.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in the configuration, located by file, line, column and field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as the config directory joined with the file's relative path (or the
    /// directory itself for problems with the directory).
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file or directory.
    pub line: usize,
    /// 1-based column (in characters); 0 when the problem concerns the whole file or directory.
    pub column: usize,
    /// Dotted path of the offending field, e.g.
    /// `flows.billing-to-crm.destinations.crm.http.url`; empty for whole-file problems.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something useful to say. May span several lines
    /// (e.g. a VRL compiler's report); [`crate::render`] keeps them.
    pub help: Option<String>,
}

impl Diagnostic {
    /// Whether the diagnostic points at a position (rather than a whole file or directory).
    pub fn has_position(&self) -> bool {
        self.line > 0
    }
}

/// One line: `error: <file>:<line>:<col>: <field>: <message>` (position and field omitted
/// when absent).
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity, self.file.display())?;
        if self.has_position() {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The configuration could not be loaded: every error found, and the warnings found alongside.
#[derive(Debug, Clone, Default)]
pub struct ConfigErrors {
    /// At least one when returned by [`crate::load_dir`].
    pub errors: Vec<Diagnostic>,
    /// Warnings found alongside the errors.
    pub warnings: Vec<Diagnostic>,
}

impl ConfigErrors {
    /// Errors then warnings, in report order.
    pub fn all(&self) -> impl Iterator<Item = &Diagnostic> {
        self.errors.iter().chain(&self.warnings)
    }
}

/// One line per diagnostic (errors first), then a count. For the source excerpts, see
/// [`crate::render`].
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.all() {
            writeln!(f, "{}", crate::render::sanitize(&d.to_string()))?;
        }
        write!(
            f,
            "{}",
            crate::render::summary(self.errors.len(), self.warnings.len())
        )
    }
}

impl std::error::Error for ConfigErrors {}
