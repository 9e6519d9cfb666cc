//! The config loader on arbitrary file contents: the bytes are written as `ferry.yaml` into a
//! temp dir (one per process, reused) and loaded with `load_dir` (secrets not resolved), then
//! every diagnostic is rendered the way `ferry check` prints it. Must never panic, whatever
//! the file holds; errors are expected and fine.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use ferry_config::{LoadOptions, load_dir, render};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static (tempfile::TempDir, PathBuf) {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("ferry.yaml");
        (dir, file)
    })
}

fuzz_target!(|data: &[u8]| {
    let (dir, file) = dir();
    std::fs::write(file, data).expect("write config file");
    let opts = LoadOptions {
        resolve_secrets: false,
    };
    match load_dir(dir.path(), &opts) {
        Ok(loaded) => {
            let _ = render(&loaded.warnings, false);
            let _ = render(&loaded.warnings, true);
        }
        Err(errors) => {
            let all: Vec<_> = errors.all().cloned().collect();
            assert!(!errors.errors.is_empty(), "an error result without errors");
            let _ = render(&all, false);
            let _ = render(&all, true);
        }
    }
});
