//! Loading a config directory: read every file, deserialize, merge, validate, and report
//! everything found at once.

use std::path::Path;

use crate::describe::describe;
use crate::diagnostic::{ConfigErrors, Diagnostic, Severity};
use crate::files::{self, file_error};
use crate::locate::{Locator, Part};
use crate::merge::{Origins, merge};
use crate::model::Config;
use crate::parse::{self, MAX_ERRORS_PER_FILE};
use crate::source_map::SourceMap;
use crate::sources::{SourceFile, Sources};
use crate::validate;

/// How to load a config directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Read every secret reference now, and report the ones that cannot be read (and
    /// Standard Webhooks secrets that are not base64). Off for checking a config on a machine
    /// that does not have the secrets. Default: on.
    pub resolve_secrets: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            resolve_secrets: true,
        }
    }
}

/// A configuration that loaded, and the warnings found in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged, validated configuration.
    pub config: Config,
    /// Things that look wrong but do not stop the config from being used.
    pub warnings: Vec<Diagnostic>,
    /// Where each part of the config is written, to locate findings of later checks.
    pub sources: SourceMap,
}

/// Load the config directory `dir`: every `.yaml`/`.yml` file under it (recursively, in
/// path order), merged into one [`Config`] whose `root` is `dir`.
///
/// Every problem is reported at once, each located by file, line, column and field:
/// syntax, type and unknown-field errors (one per broken `systems:`/`flows:` entry, in
/// every file), names defined twice, references to undeclared systems, invalid URLs,
/// headers, limits and durations, and, with [`LoadOptions::resolve_secrets`], secrets that
/// cannot be read. The error is returned when there is at least one error; warnings alone
/// come back in [`Loaded::warnings`]. Never panics, whatever the files hold.
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let (paths, mut diags) = files::discover(dir).map_err(|error| ConfigErrors {
        errors: vec![error],
        warnings: Vec::new(),
    })?;
    if paths.is_empty() && diags.is_empty() {
        diags.push(file_error(
            dir,
            "the config directory has no `.yaml` or `.yml` files".to_string(),
            Some("declare `settings:`, `systems:` and `flows:` in YAML files there".to_string()),
        ));
    }

    let mut config = Config {
        root: dir.to_path_buf(),
        ..Config::default()
    };
    let mut origins = Origins::default();
    let mut sources = Sources::default();
    let mut texts = Vec::new();
    for path in paths {
        let text = match files::read(&path) {
            Ok(text) => text,
            Err(error) => {
                diags.push(error);
                continue;
            }
        };
        let parsed = parse::parse_file(&text);
        let locator = Locator::build(&text, parse::MAX_NODES);
        diags.extend(
            parsed
                .errors
                .iter()
                .filter_map(|e| describe(e, &path, &locator)),
        );
        if parsed.truncated {
            diags.push(file_error(
                &path,
                format!("stopped after {MAX_ERRORS_PER_FILE} errors in this file"),
                Some("fix these and load again".to_string()),
            ));
        }
        let file = sources.files.len();
        sources.files.push(SourceFile { path, locator });
        texts.push(text);
        report_repeated_keys(&sources, file, &mut diags);
        merge(
            &mut config,
            &mut origins,
            file,
            parsed,
            &sources,
            &mut diags,
        );
    }

    validate::check(&config, &origins, &sources, opts, &mut diags);
    if !diags.iter().any(|d| d.severity == Severity::Error) {
        crate::tenants::expand(&mut config);
    }
    let map = SourceMap::new(dir.to_path_buf(), sources, origins, texts);
    finish(config, map, diags)
}

fn report_repeated_keys(sources: &Sources, file: usize, diags: &mut Vec<Diagnostic>) {
    for dup in sources.files[file].locator.duplicates() {
        let path: Vec<&str> = dup.path.iter().map(String::as_str).collect();
        let key = path.last().copied().unwrap_or_default();
        let mut d = sources.at(
            Severity::Error,
            file,
            &path,
            Part::Key,
            format!(
                "`{key}` is written twice in this mapping (first at line {})",
                dup.first.line
            ),
            Some("remove or rename one of them".to_string()),
        );
        d.line = dup.again.line;
        d.column = dup.again.column;
        diags.push(d);
    }
}

/// Sort diagnostics by place, drop exact repeats, and split errors from warnings.
fn finish(
    config: Config,
    sources: SourceMap,
    mut diags: Vec<Diagnostic>,
) -> Result<Loaded, ConfigErrors> {
    diags.sort_by_cached_key(|d| {
        (
            d.file.clone(),
            d.line,
            d.column,
            d.severity,
            d.field.clone(),
            d.message.clone(),
        )
    });
    diags.dedup();
    let (errors, warnings): (Vec<_>, Vec<_>) = diags
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if errors.is_empty() {
        Ok(Loaded {
            config,
            warnings,
            sources,
        })
    } else {
        Err(ConfigErrors { errors, warnings })
    }
}
