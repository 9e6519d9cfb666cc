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

/// Read the YAML file at `path` into a `T`, with the limits config files are read with
/// (size, nesting, node count, alias expansion: a YAML bomb is refused). A key written twice
/// in one mapping is an error. The error names the file, line, column and dotted field.
pub fn read_yaml_file<T: DeserializeOwned>(path: &Path) -> Result<T, Diagnostic> {
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
    serde_saphyr::from_str_with_options::<T>(&text, parse::options()).map_err(|error| {
        describe(&ParseError { error, entry: None }, path, &locator)
            .unwrap_or_else(|| file_error(path, "the file cannot be read as YAML".into(), None))
    })
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
    fn repeated_keys_are_errors() {
        let (_dir, path) = write("tests:\n  a: 1\n  a: 2\n");
        let err = read_yaml_file::<Doc>(&path).unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
        assert!(err.message.contains("twice"), "{}", err.message);
    }
}
