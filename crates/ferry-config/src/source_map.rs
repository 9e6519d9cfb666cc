//! Where each part of a loaded configuration is written, kept with the [`crate::Loaded`]
//! config for checks made after loading: Ferry compiles the VRL programs and templates a
//! config holds outside this crate (the compilers are heavy), and locates what they find
//! exactly like the loader's own findings.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Severity};
use crate::locate::{Part, Pos};
use crate::merge::Origins;
use crate::sources::{Sources, diagnostic};

/// The files a configuration was loaded from, and which file declared what.
#[derive(Clone, Default)]
pub struct SourceMap {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    root: PathBuf,
    sources: Sources,
    origins: Origins,
    /// Each file's text, by file id.
    texts: Vec<String>,
}

impl fmt::Debug for SourceMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceMap")
            .field("root", &self.inner.root)
            .field("files", &self.inner.texts.len())
            .finish()
    }
}

impl SourceMap {
    pub(crate) fn new(
        root: PathBuf,
        sources: Sources,
        origins: Origins,
        texts: Vec<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                root,
                sources,
                origins,
                texts,
            }),
        }
    }

    /// A diagnostic about the field at `path` (e.g.
    /// `["flows", "orders", "destinations", "crm", "map"]`; sequence items by index, e.g.
    /// `["flows", "orders", "steps", "0", "filter"]`), positioned at its value in the file
    /// that declared it (or at its deepest written ancestor). A path outside `flows`,
    /// `systems`, `schemas` and `settings`, or one nobody declared, points at the config
    /// directory itself.
    pub fn diagnostic(
        &self,
        severity: Severity,
        path: &[&str],
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        let path = &template_path(path);
        match self.file_of(path) {
            Some(file) => self
                .inner
                .sources
                .at(severity, file, path, Part::Value, message, help),
            None => self.unlocated(severity, path, message.into(), help),
        }
    }

    /// A diagnostic about a place inside the string at `path` (a program or template):
    /// `line` and `column` are 1-based, within the string. Positioned exactly there when
    /// the string is a literal block (`|`) or written on one line without escapes;
    /// otherwise at the string's start.
    pub fn diagnostic_in_string(
        &self,
        severity: Severity,
        path: &[&str],
        line: usize,
        column: usize,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        let path = &template_path(path);
        let mut d = self.diagnostic(severity, path, message, help);
        let Some(file) = self.file_of(path) else {
            return d;
        };
        let Some(text) = self.inner.texts.get(file) else {
            return d;
        };
        let start = Pos {
            line: d.line,
            column: d.column,
        };
        if let Some(pos) = inside_string(text, start, line.max(1), column.max(1)) {
            d.line = pos.line;
            d.column = pos.column;
        }
        d
    }

    /// The file that declared the top-level entry `path` starts with.
    fn file_of(&self, path: &[&str]) -> Option<usize> {
        let origins = &self.inner.origins;
        let file = match path {
            ["flows", name, ..] => origins.flows.get(*name).copied(),
            ["systems", name, ..] => origins.systems.get(*name).copied(),
            ["schemas", name, ..] => origins.schemas.get(*name).copied(),
            ["tenants", name, ..] => origins.tenants.get(*name).copied(),
            ["settings", ..] => origins.settings,
            _ => None,
        }?;
        (file < self.inner.sources.files.len()).then_some(file)
    }

    fn unlocated(
        &self,
        severity: Severity,
        path: &[&str],
        message: String,
        help: Option<String>,
    ) -> Diagnostic {
        let mut d = diagnostic(
            severity,
            self.inner.root.clone(),
            Pos::START,
            path.join("."),
            message,
            help,
        );
        d.line = 0;
        d.column = 0;
        d
    }
}

/// The path as written in the files: a flow run per tenant (`orders@acme`) is written once,
/// as its template (`orders`).
fn template_path<'a>(path: &[&'a str]) -> Vec<&'a str> {
    let mut out = path.to_vec();
    if let ["flows", name, ..] = path
        && let Some((template, _)) = crate::tenants::split_tenant_flow(name)
    {
        out[1] = template;
    }
    out
}

/// Where `line`:`column` of the string whose value starts at `start` is in `text`, when that
/// can be told for sure: a literal block scalar (`|`, `|-`, `|+`; the locator places its
/// value at its first line of content, and its lines are the file's lines after the
/// header, each indented like the first), or a plain or quoted scalar on one line without
/// escapes.
fn inside_string(text: &str, start: Pos, line: usize, column: usize) -> Option<Pos> {
    let lines: Vec<&str> = text.lines().collect();
    let first_line = lines.get(start.line.checked_sub(1)?)?;
    let before: String = first_line
        .chars()
        .take(start.column.checked_sub(1)?)
        .collect();
    if before.trim().is_empty() {
        // Content at the start of its line: a block scalar, whose header is the nearest
        // non-blank line above.
        let header_at = (0..start.line - 1)
            .rev()
            .find(|i| !lines[*i].trim().is_empty())?;
        if !is_literal_header(lines[header_at]) {
            return None;
        }
        let at = header_at + 1 + line;
        let source_line = lines.get(at - 1)?;
        let indent = start.column - 1;
        return (source_line.chars().count() >= indent).then_some(Pos {
            line: at,
            column: indent + column,
        });
    }
    let rest: String = first_line.chars().skip(start.column - 1).collect();
    let first = rest.chars().next()?;
    match first {
        '|' | '>' | '[' | '{' | '&' | '*' | '!' => None,
        '"' | '\'' => {
            let body: String = rest.chars().skip(1).collect();
            let close = body.find(first)?;
            let inner = &body[..close];
            let escaped = inner.contains('\\') || body[close + 1..].starts_with(first);
            (line == 1 && !escaped && column <= inner.chars().count() + 1).then_some(Pos {
                line: start.line,
                column: start.column + column,
            })
        }
        _ => {
            // A plain scalar on one line: it ends at ` #` or the line's end.
            let len = rest.find(" #").unwrap_or(rest.len());
            let on_one_line = lines
                .get(start.line)
                .is_none_or(|next| next.trim().is_empty() || !continues(next, first_line));
            (line == 1 && on_one_line && column <= rest[..len].chars().count() + 1).then_some(Pos {
                line: start.line,
                column: start.column + column - 1,
            })
        }
    }
}

/// Whether `line` ends with a literal block scalar header (`|`, `|-`, `|+`, `|2`…),
/// possibly followed by a comment.
fn is_literal_header(line: &str) -> bool {
    let code = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    }
    .trim_end();
    let Some(bar) = code.rfind('|') else {
        return false;
    };
    let indicators = &code[bar + 1..];
    let before = code[..bar].trim_end();
    indicators
        .chars()
        .all(|c| c == '-' || c == '+' || c.is_ascii_digit())
        && (before.ends_with(':') || before.ends_with('-') || before.is_empty())
}

/// Whether `next` continues a plain scalar begun on `header` (it is indented deeper).
fn continues(next: &str, header: &str) -> bool {
    let indent = |l: &str| l.chars().take_while(|c| *c == ' ').count();
    indent(next) > indent(header) && !next.trim_start().starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
flows:
  f:
    steps:
      - filter: .a == 1
      - filter: '.b == 2'
      - filter: |
          .c = 1
          .d == to_int(.e)
    x: \"with \\\" escape\"
";

    #[test]
    fn positions_inside_strings() {
        let loc = crate::locate::Locator::build(TEXT, 1000);
        let value = |i: &str| loc.find(&["flows", "f", "steps", i, "filter"], Part::Value);
        // Plain: `.a == 1` starts at line 4, column 17.
        assert_eq!(
            value("0"),
            Pos {
                line: 4,
                column: 17
            }
        );
        let p = inside_string(TEXT, value("0"), 1, 4);
        assert_eq!(
            p,
            Some(Pos {
                line: 4,
                column: 20
            })
        );
        // Single-quoted: the value starts at the quote.
        let p = inside_string(TEXT, value("1"), 1, 1);
        assert_eq!(
            p,
            Some(Pos {
                line: 5,
                column: 18
            })
        );
        // Literal block: line 2 of the program is line 8 of the file, indented 10.
        let p = inside_string(TEXT, value("2"), 2, 7);
        assert_eq!(
            p,
            Some(Pos {
                line: 8,
                column: 17
            })
        );
        // Escapes: not positioned inside.
        let x = loc.find(&["flows", "f", "x"], Part::Value);
        assert_eq!(inside_string(TEXT, x, 1, 3), None);
        // Out of range: not positioned inside.
        assert_eq!(
            inside_string(
                TEXT,
                Pos {
                    line: 99,
                    column: 1
                },
                1,
                1
            ),
            None
        );
        assert!(is_literal_header("    map: |-  # comment"));
        assert!(!is_literal_header("    map: >"));
    }
}
