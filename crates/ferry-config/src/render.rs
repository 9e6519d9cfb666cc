//! Rendering diagnostics for a terminal: one block per diagnostic with the offending source
//! line and a caret, then a count.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Severity};
use crate::files::MAX_FILE_BYTES;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[1;33m";
const BLUE: &str = "\x1b[1;34m";
const CYAN: &str = "\x1b[1;36m";

/// Render diagnostics for a terminal:
///
/// ```text
/// error: config/flows.yaml:7:16: flows.a.destinations.crm.http.url: URL must be http or https
///   |
/// 7 |           url: ftp://example.com
///   |                ^^^^^^^^^^^^^^^^^
///   = help: write an `http://` or `https://` URL
///
/// 1 error, 0 warnings
/// ```
///
/// Source lines are read from the diagnostics' files. `color` adds ANSI colours (pass
/// `false` when the output is not a terminal). Control characters from the files are
/// neutralised, so a config file cannot drive the terminal.
pub fn render(diags: &[Diagnostic], color: bool) -> String {
    let paint = Paint { on: color };
    let mut lines = SourceLines::default();
    let mut out = String::new();
    for d in diags {
        render_one(&mut out, d, &paint, &mut lines);
        out.push('\n');
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    let _ = writeln!(out, "{}", paint.bold(&summary(errors, warnings)));
    out
}

/// `N errors, M warnings`.
pub(crate) fn summary(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

/// Replace control characters (escape sequences included) so text is safe to print.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

fn render_one(out: &mut String, d: &Diagnostic, paint: &Paint, lines: &mut SourceLines) {
    let label = match d.severity {
        Severity::Error => paint.wrap(RED, "error"),
        Severity::Warning => paint.wrap(YELLOW, "warning"),
    };
    let mut head = d.file.display().to_string();
    if d.has_position() {
        let _ = write!(head, ":{}:{}", d.line, d.column);
    }
    if !d.field.is_empty() {
        let _ = write!(head, ": {}", d.field);
    }
    let _ = writeln!(
        out,
        "{label}: {}",
        paint.bold(&sanitize(&format!("{head}: {}", d.message)))
    );

    let number = d.line.to_string();
    let gutter = " ".repeat(number.len());
    let bar = paint.wrap(BLUE, "|");
    if let Some(source) = d
        .has_position()
        .then(|| lines.line(&d.file, d.line))
        .flatten()
    {
        let source = sanitize(&source);
        let column = (d.column.max(1) - 1).min(source.chars().count());
        let width = token_width(&source, column);
        let caret_color = if d.severity == Severity::Error {
            RED
        } else {
            YELLOW
        };
        let _ = writeln!(out, "{gutter} {bar}");
        let _ = writeln!(out, "{} {bar} {source}", paint.wrap(BLUE, &number));
        let _ = writeln!(
            out,
            "{gutter} {bar} {}{}",
            " ".repeat(column),
            paint.wrap(caret_color, &"^".repeat(width))
        );
    }
    if let Some(help) = &d.help {
        // A help of several lines (e.g. a compiler's own report) keeps its lines, each
        // indented under the first.
        let mut lines = help.lines();
        let first = lines.next().unwrap_or_default();
        let _ = writeln!(
            out,
            "{gutter} {} {}",
            paint.wrap(CYAN, "= help:"),
            sanitize(first)
        );
        let indent = " ".repeat(gutter.len() + " = help: ".len());
        for line in lines {
            let _ = writeln!(out, "{indent}{}", sanitize(line).trim_end());
        }
    }
}

/// How many characters the caret should underline: a quoted string to its closing quote, a
/// flow collection to its closing bracket (when on the same line), else up to whitespace or
/// flow punctuation.
fn token_width(line: &str, column: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(column).collect();
    let Some(&first) = rest.first() else { return 1 };
    let len = if first == '{' || first == '[' {
        let mut depth = 0usize;
        let close = rest.iter().position(|c| {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' => depth = depth.saturating_sub(1),
                _ => {}
            }
            depth == 0
        });
        close.map_or(1, |i| i + 1)
    } else if first == '"' || first == '\'' {
        rest.iter()
            .skip(1)
            .position(|c| *c == first)
            .map_or(rest.len(), |i| i + 2)
    } else {
        let mut n = 0;
        while n < rest.len() {
            let c = rest[n];
            let ends_key = c == ':' && rest.get(n + 1).is_none_or(|next| next.is_whitespace());
            if c.is_whitespace() || matches!(c, ',' | ']' | '}' | '#') || ends_key {
                break;
            }
            n += 1;
        }
        n
    };
    len.max(1)
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    fn bold(&self, text: &str) -> String {
        self.wrap(BOLD, text)
    }
}

/// Source files, read once per render.
#[derive(Default)]
struct SourceLines {
    files: HashMap<PathBuf, Option<String>>,
}

impl SourceLines {
    fn line(&mut self, file: &Path, line: usize) -> Option<String> {
        let text = self
            .files
            .entry(file.to_path_buf())
            .or_insert_with(|| read_capped(file));
        text.as_deref()?
            .lines()
            .nth(line.checked_sub(1)?)
            .map(str::to_string)
    }
}

fn read_capped(file: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    fs::File::open(file)
        .ok()?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_widths() {
        assert_eq!(token_width("  url: \"http://x y\" # c", 7), 12);
        assert_eq!(token_width("  ownr: y", 2), 4);
        assert_eq!(token_width("  a: {x: 1, y: 2}", 9), 1);
        assert_eq!(token_width("  a: {x: [1], y: 2} # c", 5), 14);
        assert_eq!(token_width("  a: {x: [1", 5), 1);
        assert_eq!(token_width("  http://x:80/a", 2), 13);
        assert_eq!(token_width("", 5), 1);
    }

    #[test]
    fn sanitizes_and_counts() {
        assert_eq!(sanitize("a\x1b[31mb\tc"), "a\u{fffd}[31mb c");
        assert_eq!(summary(1, 2), "1 error, 2 warnings");
    }
}
