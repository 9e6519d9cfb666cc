//! Reading a YAML file that lives beside the config but is not part of it (the fixture
//! files of `ferry test`), with the config's limits and located errors.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::describe::describe;
use crate::diagnostic::{Diagnostic, Severity};
use crate::files::{self, file_error};
use crate::locate::{Locator, Part};
use crate::parse::{self, ParseError};
use crate::sources::{SourceFile, Sources};

/// Where the fields of a YAML file read by [`read_yaml_file_indexed`] are written, for
/// errors found after it was read (a fixture's `file:` that cannot be read, say).
pub struct YamlIndex {
    sources: Sources,
}

impl YamlIndex {
    /// An error about `field` (a path of keys and sequence indexes, e.g.
    /// `["tests", "t", "input", "file"]`), located at its value (or at its deepest written
    /// ancestor when it is not written out).
    pub fn error_at(&self, field: &[&str], message: String, help: Option<String>) -> Diagnostic {
        self.sources
            .at(Severity::Error, 0, field, Part::Value, message, help)
    }
}

impl std::fmt::Debug for YamlIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YamlIndex")
            .field("file", &self.sources.files[0].path)
            .finish_non_exhaustive()
    }
}

/// Read the YAML file at `path` into a `T`, with the limits config files are read with
/// (size, nesting, node count, alias expansion: a YAML bomb is refused). A key written twice
/// in one mapping is an error. The error names the file, line, column and dotted field.
pub fn read_yaml_file<T: DeserializeOwned>(path: &Path) -> Result<T, Diagnostic> {
    read_yaml_file_indexed(path).map(|(value, _)| value)
}

/// [`read_yaml_file`], also returning where each field is written.
pub fn read_yaml_file_indexed<T: DeserializeOwned>(
    path: &Path,
) -> Result<(T, YamlIndex), Diagnostic> {
    let text = files::read(path)?;
    let locator = Locator::build(&text, parse::MAX_NODES);
    if let Some(dup) = locator.duplicates().first().cloned() {
        let dotted: Vec<&str> = dup.path.iter().map(String::as_str).collect();
        let key = dotted.last().copied().unwrap_or_default();
        let message = format!(
            "`{key}` is written twice in this mapping (first at line {})",
            dup.first.line
        );
        let (line, column) = (dup.again.line, dup.again.column);
        let sources = Sources {
            files: vec![SourceFile {
                path: path.to_path_buf(),
                locator,
            }],
        };
        let mut d = sources.at(
            Severity::Error,
            0,
            &dotted,
            Part::Key,
            message,
            Some("remove or rename one of them".to_string()),
        );
        d.line = line;
        d.column = column;
        return Err(d);
    }
    let value =
        serde_saphyr::from_str_with_options::<T>(&text, parse::options()).map_err(|error| {
            describe(&ParseError { error, entry: None }, path, &locator)
                .unwrap_or_else(|| file_error(path, "the file cannot be read as YAML".into(), None))
        })?;
    let sources = Sources {
        files: vec![SourceFile {
            path: path.to_path_buf(),
            locator,
        }],
    };
    Ok((value, YamlIndex { sources }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        tests: BTreeMap<String, u32>,
    }

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.test.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_a_document() {
        let (_dir, path) = write("tests:\n  a: 1\n  b: 2\n");
        let doc: Doc = read_yaml_file(&path).unwrap();
        assert_eq!(doc.tests.len(), 2);
    }

    #[test]
    fn errors_are_located() {
        let (_dir, path) = write("tests:\n  a: 1\nextra: true\n");
        let err = read_yaml_file::<Doc>(&path).unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
        assert!(err.message.contains("extra"), "{}", err.message);
    }

    #[test]
    fn fields_are_located_after_reading() {
        let (_dir, path) = write("tests:\n  a: 1\n  b: { file: x.json }\n");
        #[derive(Debug, serde::Deserialize)]
        struct Any {
            #[allow(dead_code)]
            tests: BTreeMap<String, serde::de::IgnoredAny>,
        }
        let (_, index) = read_yaml_file_indexed::<Any>(&path).unwrap();
        let d = index.error_at(&["tests", "b", "file"], "no such file".into(), None);
        assert_eq!(
            (d.line, d.column, d.field.as_str()),
            (3, 14, "tests.b.file")
        );
        assert_eq!(d.file, path);
    }

    #[test]
    fn repeated_keys_are_errors() {
        let (_dir, path) = write("tests:\n  a: 1\n  a: 2\n");
        let err = read_yaml_file::<Doc>(&path).unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
        assert!(err.message.contains("twice"), "{}", err.message);
    }
}
