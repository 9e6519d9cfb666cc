//! Where a schema's `file:` is: a file inside the config directory, never outside it.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::steps::SchemaDef;

/// Why a schema's `file:` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFileError {
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl SchemaFileError {
    fn new(message: String, help: &str) -> Self {
        Self {
            message,
            help: Some(help.to_string()),
        }
    }
}

impl SchemaDef {
    /// The schema file: `root` joined with `file`, which must be a relative path naming a
    /// regular file inside the config directory `root`, also after symbolic links are
    /// followed (a schema file is never read from outside the config directory).
    pub fn path_in(&self, root: &Path) -> Result<PathBuf, SchemaFileError> {
        let file = Path::new(&self.file);
        let inside = "give the path of a file in the config directory, relative to it, \
                      e.g. `schemas/order.created.json`";
        if self.file.trim().is_empty() {
            return Err(SchemaFileError::new(
                "the schema `file` is empty".to_string(),
                inside,
            ));
        }
        if file.is_absolute() || file.has_root() {
            return Err(SchemaFileError::new(
                format!("`{}` is an absolute path", self.file),
                inside,
            ));
        }
        if file.components().any(|c| c == Component::ParentDir) {
            return Err(SchemaFileError::new(
                format!("`{}` leaves the config directory (`..`)", self.file),
                inside,
            ));
        }
        let path = root.join(file);
        let meta = fs::metadata(&path).map_err(|e| {
            SchemaFileError::new(
                format!("cannot read schema file `{}`: {e}", self.file),
                "create the file, or correct the path (it is relative to the config directory)",
            )
        })?;
        if !meta.is_file() {
            return Err(SchemaFileError::new(
                format!("`{}` is not a file", self.file),
                inside,
            ));
        }
        let real_root = fs::canonicalize(root);
        let real_file = fs::canonicalize(&path);
        match (real_root, real_file) {
            (Ok(r), Ok(f)) if f.starts_with(&r) => Ok(path),
            (Ok(_), Ok(_)) => Err(SchemaFileError::new(
                format!(
                    "`{}` is a link to a file outside the config directory",
                    self.file
                ),
                inside,
            )),
            (Err(e), _) | (_, Err(e)) => Err(SchemaFileError::new(
                format!("cannot resolve schema file `{}`: {e}", self.file),
                inside,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(file: &str) -> SchemaDef {
        SchemaDef {
            file: file.to_string(),
            description: None,
        }
    }

    #[test]
    fn accepts_files_inside_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("config");
        fs::create_dir_all(root.join("schemas")).unwrap();
        fs::write(root.join("schemas/a.json"), "{}").unwrap();
        fs::write(dir.path().join("outside.json"), "{}").unwrap();

        assert_eq!(
            def("schemas/a.json").path_in(&root).unwrap(),
            root.join("schemas/a.json")
        );
        for (file, says) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../outside.json", "leaves"),
            ("schemas/missing.json", "cannot read"),
            ("schemas", "not a file"),
        ] {
            let err = def(file).path_in(&root).unwrap_err();
            assert!(err.message.contains(says), "{file}: {}", err.message);
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_links_leading_outside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("config");
        fs::create_dir_all(&root).unwrap();
        fs::write(dir.path().join("outside.json"), "{}").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.json"), root.join("s.json")).unwrap();
        let err = def("s.json").path_in(&root).unwrap_err();
        assert!(err.message.contains("outside"), "{}", err.message);
    }
}
