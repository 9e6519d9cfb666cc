//! Turning serde-saphyr errors into located diagnostics: a message for people, the dotted
//! path of the field, and help where there is something useful to say.

use std::borrow::Cow;
use std::path::Path;

use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};

use crate::diagnostic::{Diagnostic, Severity};
use crate::locate::{Locator, Pos};
use crate::parse::ParseError;
use crate::sources::diagnostic;

const DURATION_HELP: &str = "durations are written like `500ms`, `10s`, `5m` or `24h`";
const BOMB_HELP: &str = "the file has too many nodes, aliases or nesting levels to load \
                         safely; YAML alias bombs are refused";

/// The diagnostic for a deserialization error, or `None` for one reported otherwise (a
/// repeated struct field: the locator reports every repeated key).
pub(crate) fn describe(err: &ParseError, file: &Path, locator: &Locator) -> Option<Diagnostic> {
    let outer = err.error.without_snippet();
    let (inner, alias_def) = match outer {
        Error::AliasError {
            error, locations, ..
        } => (error.without_snippet(), Some(locations.defined_location)),
        other => (other, None),
    };
    let location = outer.location().filter(|l| l.line() > 0);
    let pos = location
        .map(|l| Pos {
            line: to_usize(l.line()),
            column: to_usize(l.column()),
        })
        .or(err.entry)
        .unwrap_or(Pos::START);
    let span_len = location.map(|l| to_usize(l.span().len()));

    let mut path = None;
    let mut help = None;
    let message: String = match inner {
        Error::SerdeUnknownField {
            field, expected, ..
        } => {
            path = Some(locator.unknown_key_at(pos, field).unwrap_or_else(|| {
                let mut p = locator.path_at(pos, span_len);
                if p.last().map(String::as_str) != Some(field.as_str()) {
                    p.push(field.clone());
                }
                p
            }));
            help = did_you_mean(field, expected);
            format!("unknown field `{field}`, expected {}", one_of(expected))
        }
        Error::SerdeMissingField { field, .. } => {
            let mut p = locator
                .mapping_at(pos)
                .unwrap_or_else(|| locator.path_at(pos, span_len));
            p.push((*field).to_string());
            path = Some(p);
            format!("missing field `{field}`")
        }
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            help = did_you_mean(variant, expected);
            format!("unknown variant `{variant}`, expected {}", one_of(expected))
        }
        Error::Message { msg, .. } if msg.starts_with("duplicate field") => return None,
        Error::Budget { breach, .. } => {
            help = Some(BOMB_HELP.to_string());
            format!("YAML resource limit exceeded ({breach:?})")
        }
        Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. }
        | Error::AliasReplayCounterOverflow { .. } => {
            help = Some(BOMB_HELP.to_string());
            "YAML alias expansion limit exceeded".to_string()
        }
        Error::MultipleDocuments { .. } => {
            help = Some("put each `---` document in a file of its own".to_string());
            "a config file holds a single YAML document".to_string()
        }
        other => {
            let text = UserMessageFormatter.format_message(other);
            let (text, extra_help) = reword(text);
            help = extra_help;
            text.into_owned()
        }
    };
    if let (Some(def), None) = (alias_def, &help)
        && def.line() > 0
    {
        help = Some(format!(
            "the value comes from the anchor defined at line {}, column {}",
            def.line(),
            def.column()
        ));
    }

    let path = path.unwrap_or_else(|| locator.path_at(pos, span_len));
    Some(diagnostic(
        Severity::Error,
        file.to_path_buf(),
        pos,
        path.join("."),
        message,
        help,
    ))
}

/// Rephrase messages that name Rust types rather than what to write.
fn reword(text: Cow<'_, str>) -> (Cow<'_, str>, Option<String>) {
    if text.contains("untagged enum HeaderValue") {
        return (
            Cow::Borrowed("a header value must be a string or a secret reference"),
            Some("write `Name: value` or `Name: { env: VAR_NAME }`".to_string()),
        );
    }
    if text.contains("expected a duration") || text.contains("time unit") {
        return (text, Some(DURATION_HELP.to_string()));
    }
    (text, None)
}

fn one_of(expected: &[&str]) -> String {
    match expected {
        [] => "no fields here".to_string(),
        [only] => format!("`{only}`"),
        _ => {
            let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
            format!("one of {}", list.join(", "))
        }
    }
}

/// `did you mean `x`?` for the expected name closest to `got`, when it is close.
fn did_you_mean(got: &str, expected: &[&str]) -> Option<String> {
    if got.len() > 64 {
        return None;
    }
    let got = got.to_ascii_lowercase();
    expected
        .iter()
        .map(|e| (edit_distance(&got, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4) && *d < e.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| format!("did you mean `{e}`?"))
}

/// Levenshtein distance, in characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            row[j + 1] = substitute.min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("ownr", &["owner", "tier"]).as_deref(),
            Some("did you mean `owner`?")
        );
        assert_eq!(did_you_mean("xyz", &["owner", "tier"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
