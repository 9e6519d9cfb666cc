//! The files a configuration was read from, and located diagnostics about them.

use std::path::PathBuf;

use crate::diagnostic::{Diagnostic, Severity};
use crate::locate::{Locator, Part, Pos};

/// One file that was read and indexed.
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub locator: Locator,
}

/// Every file read, indexed by position in load order.
#[derive(Default)]
pub(crate) struct Sources {
    pub files: Vec<SourceFile>,
}

/// Index of a file in [`Sources`].
pub(crate) type FileId = usize;

impl Sources {
    /// A diagnostic about `path` in `file`, positioned at its key or value (or at its
    /// deepest written ancestor, when the path itself is not written out).
    pub fn at(
        &self,
        severity: Severity,
        file: FileId,
        path: &[&str],
        part: Part,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        let source = &self.files[file];
        let pos = source.locator.find(path, part);
        diagnostic(
            severity,
            source.path.clone(),
            pos,
            path.join("."),
            message.into(),
            help,
        )
    }

    /// Where `path` is written in `file`, as `file:line`, for messages naming another place.
    pub fn describe(&self, file: FileId, path: &[&str]) -> String {
        let source = &self.files[file];
        let pos = source.locator.find(path, Part::Key);
        format!("{}:{}", source.path.display(), pos.line)
    }
}

/// Build a positioned diagnostic.
pub(crate) fn diagnostic(
    severity: Severity,
    file: PathBuf,
    pos: Pos,
    field: String,
    message: String,
    help: Option<String>,
) -> Diagnostic {
    Diagnostic {
        severity,
        file,
        line: pos.line,
        column: pos.column,
        field,
        message,
        help,
    }
}
