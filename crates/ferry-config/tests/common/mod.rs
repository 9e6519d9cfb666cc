//! Shared test helpers: config directories of real files.

#![allow(dead_code)]

use std::fs;
use std::path::Path;

use ferry_config::{ConfigErrors, Diagnostic, LoadOptions, Loaded, load_dir};
use tempfile::TempDir;

/// A standard-webhooks secret (base64 of 24 bytes).
pub const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// An environment variable no test sets.
pub const UNSET_VAR: &str = "FERRY_CONFIG_TEST_SURELY_UNSET_VARIABLE";

/// A temporary directory holding `files` (relative path, contents).
pub fn dir(files: &[(&str, &str)]) -> TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (rel, text) in files {
        let path = tmp.path().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
    tmp
}

pub fn load(dir: &Path) -> Result<Loaded, ConfigErrors> {
    load_dir(dir, &LoadOptions::default())
}

pub fn load_unresolved(dir: &Path) -> Result<Loaded, ConfigErrors> {
    load_dir(
        dir,
        &LoadOptions {
            resolve_secrets: false,
        },
    )
}

/// The errors of a load that must fail.
pub fn errors(result: Result<Loaded, ConfigErrors>) -> Vec<Diagnostic> {
    match result {
        Ok(loaded) => panic!(
            "expected errors, loaded {} flows",
            loaded.config.flows.len()
        ),
        Err(e) => e.errors,
    }
}

/// The one error whose field is `field`.
pub fn error_at<'a>(errors: &'a [Diagnostic], field: &str) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = errors.iter().filter(|d| d.field == field).collect();
    assert_eq!(found.len(), 1, "one error at {field}, got: {errors:#?}");
    found[0]
}

/// Systems `billing` and `crm`, owned.
pub const SYSTEMS: &str = "\
systems:
  billing: { owner: team-payments, tier: critical, records: [invoice] }
  crm: { owner: team-growth, tier: high, records: [customer] }
";

/// A minimal valid flow named `name`, posting to `url`.
pub fn flow(name: &str, url: &str) -> String {
    format!(
        "\
flows:
  {name}:
    source:
      webhook:
        system: billing
        signature: {{ none: {{}} }}
    destinations:
      crm:
        system: crm
        http: {{ url: \"{url}\" }}
"
    )
}

/// [`flow`] with an `event_id` on its (unsigned) source: nothing in it to warn about. The
/// bare [`flow`] draws the "no dedupe key" warning (`none` says nothing about the sender's
/// event id).
pub fn deduped_flow(name: &str, url: &str) -> String {
    flow(name, url).replace(
        "        signature: { none: {} }\n",
        "        signature: { none: {} }\n        event_id: { header: X-Event-Id }\n",
    )
}
