//! Finding and reading the config directory's YAML files.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Severity};

/// Files larger than this are refused (4 MiB).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Directories nested deeper than this under the config directory are not searched.
const MAX_DIR_DEPTH: usize = 16;

/// A whole-file (or whole-directory) error.
pub(crate) fn file_error(file: &Path, message: String, help: Option<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message,
        help,
    }
}

/// The config files under `dir`: every `.yaml` and `.yml` file but the fixture files of
/// `ferry test` (see [`is_test_file`]), recursively, sorted by relative path, each as
/// `dir` joined with that path. Names starting with `.` are skipped, files and directories
/// alike: editor and VCS files, and the `..data` links of a Kubernetes ConfigMap mount
/// (whose files would otherwise be found twice). Symbolic links to files are followed,
/// links to directories are not (no cycles). Unreadable subdirectories are reported and
/// skipped; an unusable `dir` fails the whole call.
pub(crate) fn discover(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Diagnostic>), Diagnostic> {
    discover_matching(dir, |name| is_yaml(name) && !is_test_file(name))
}

/// The fixture files of `ferry test` under `dir` (`*.test.yaml`, `*.test.yml`), found like
/// the config files of [`load_dir`](crate::load_dir) (same skipping rules), sorted by
/// relative path. An unusable `dir` is an error; unreadable subdirectories are reported.
pub fn discover_tests(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Diagnostic>), Diagnostic> {
    discover_matching(dir, is_test_file)
}

/// Whether a file name is a fixture file of `ferry test` (`*.test.yaml`, `*.test.yml`):
/// such files live beside the config but are not part of it.
pub fn is_test_file(name: &str) -> bool {
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

fn is_yaml(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// The files under `dir` whose names satisfy `wanted` (see [`discover`]).
fn discover_matching(
    dir: &Path,
    wanted: fn(&str) -> bool,
) -> Result<(Vec<PathBuf>, Vec<Diagnostic>), Diagnostic> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(file_error(
                dir,
                "the config path is not a directory".to_string(),
                Some("point Ferry at the directory that holds the YAML files".to_string()),
            ));
        }
        Err(e) => {
            return Err(file_error(
                dir,
                format!("cannot open the config directory: {e}"),
                None,
            ));
        }
    }
    let mut found = Vec::new();
    let mut errors = Vec::new();
    walk(dir, Path::new(""), 0, wanted, &mut found, &mut errors);
    found.sort();
    Ok((found.into_iter().map(|rel| dir.join(rel)).collect(), errors))
}

fn walk(
    root: &Path,
    rel: &Path,
    depth: usize,
    wanted: fn(&str) -> bool,
    found: &mut Vec<PathBuf>,
    errors: &mut Vec<Diagnostic>,
) {
    let here = root.join(rel);
    let entries = match fs::read_dir(&here) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(file_error(
                &here,
                format!("cannot read directory: {e}"),
                None,
            ));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(file_error(
                    &here,
                    format!("cannot read directory: {e}"),
                    None,
                ));
                continue;
            }
        };
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        if name_str.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let child = rel.join(&name);
        if kind.is_dir() {
            if depth < MAX_DIR_DEPTH {
                walk(root, &child, depth + 1, wanted, found, errors);
            }
        } else if wanted(name_str)
            && (kind.is_file() || (kind.is_symlink() && root.join(&child).is_file()))
        {
            found.push(child);
        }
    }
}

/// Read a config file as UTF-8 text, refusing files over [`MAX_FILE_BYTES`].
pub(crate) fn read(path: &Path) -> Result<String, Diagnostic> {
    let too_big = || {
        file_error(
            path,
            format!("file is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
            Some("split the configuration into several files".to_string()),
        )
    };
    let file = fs::File::open(path)
        .map_err(|e| file_error(path, format!("cannot read file: {e}"), None))?;
    if file.metadata().is_ok_and(|m| m.len() > MAX_FILE_BYTES) {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // Read one byte past the limit, in case the file grew since its metadata was read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(path, format!("cannot read file: {e}"), None))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        Diagnostic {
            line,
            column,
            ..file_error(
                path,
                "file is not valid UTF-8".to_string(),
                Some("save the file as UTF-8".to_string()),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(found: &[PathBuf], dir: &Path) -> Vec<String> {
        found
            .iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect()
    }

    /// Fixture files of `ferry test` live beside the flows they test but are not config.
    #[test]
    fn config_discovery_skips_test_files_and_test_discovery_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("flows")).unwrap();
        for f in [
            "ferry.yaml",
            "flows/orders.yaml",
            "flows/orders.test.yaml",
            "flows/billing.yml",
            "flows/billing.test.yml",
            "flows/.hidden.test.yaml",
            "notes.txt",
        ] {
            fs::write(root.join(f), "").unwrap();
        }
        let (config, errors) = discover(root).unwrap();
        assert!(errors.is_empty());
        assert_eq!(
            names(&config, root),
            ["ferry.yaml", "flows/billing.yml", "flows/orders.yaml"]
        );
        let (tests, _) = discover_tests(root).unwrap();
        assert_eq!(
            names(&tests, root),
            ["flows/billing.test.yml", "flows/orders.test.yaml"]
        );
        assert!(is_test_file("orders.test.yaml"));
        assert!(
            !is_test_file("test.yaml"),
            "a file named `test.yaml` is config"
        );
    }
}
