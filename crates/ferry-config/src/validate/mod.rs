//! Semantic checks of the merged configuration: everything the types alone do not say.
//! Each finding is located at the offending field of the file that declared it.

mod catalog;
mod dedupe;
mod destinations;
mod enrich;
mod flows;
mod observability;
mod protection;
mod pull;
mod queue_sources;
mod resilience;
mod retention;
mod retry;
mod rules;
mod secrets;
mod settings;
mod steps;
mod synthetic;
mod table_source;
mod tenants;
mod transforms;

use crate::diagnostic::{Diagnostic, Severity};
use crate::load::LoadOptions;
use crate::locate::Part;
use crate::merge::Origins;
use crate::model::Config;
use crate::sources::{FileId, Sources};

/// Run every check, appending findings to `diags`.
pub(crate) fn check(
    config: &Config,
    origins: &Origins,
    sources: &Sources,
    opts: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
) {
    let mut checker = Checker {
        config,
        origins,
        sources,
        diags,
    };
    settings::check(&mut checker);
    observability::check(&mut checker);
    catalog::check(&mut checker);
    flows::check(&mut checker);
    destinations::check(&mut checker);
    enrich::check(&mut checker);
    resilience::check(&mut checker);
    retry::check(&mut checker);
    retention::check(&mut checker);
    pull::check(&mut checker);
    table_source::check(&mut checker);
    queue_sources::check(&mut checker);
    dedupe::check(&mut checker);
    steps::check(&mut checker);
    transforms::check(&mut checker);
    synthetic::check(&mut checker);
    protection::check(&mut checker);
    tenants::check(&mut checker);
    if opts.resolve_secrets {
        secrets::check(&mut checker);
    }
}

/// What the checks read, and where they report.
pub(crate) struct Checker<'a> {
    pub config: &'a Config,
    pub origins: &'a Origins,
    pub sources: &'a Sources,
    diags: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    /// An error at `path` in `file`.
    pub fn error(
        &mut self,
        file: FileId,
        path: &[&str],
        part: Part,
        message: String,
        help: Option<String>,
    ) {
        self.push(Severity::Error, file, path, part, message, help);
    }

    /// A warning at `path` in `file`.
    pub fn warning(
        &mut self,
        file: FileId,
        path: &[&str],
        part: Part,
        message: String,
        help: Option<String>,
    ) {
        self.push(Severity::Warning, file, path, part, message, help);
    }

    fn push(
        &mut self,
        severity: Severity,
        file: FileId,
        path: &[&str],
        part: Part,
        message: String,
        help: Option<String>,
    ) {
        let d = self.sources.at(severity, file, path, part, message, help);
        self.diags.push(d);
    }

    /// The file a flow came from.
    pub fn flow_file(&self, name: &str) -> Option<FileId> {
        self.origins.flows.get(name).copied()
    }

    /// The file a system came from.
    pub fn system_file(&self, name: &str) -> Option<FileId> {
        self.origins.systems.get(name).copied()
    }
}
