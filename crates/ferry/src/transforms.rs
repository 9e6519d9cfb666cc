//! Compiling the VRL programs and templates of a config: every flow step (`filter`, `route`,
//! `split`) and destination transform (`map`, URL, header and body templates) compiles when
//! the config loads, so `ferry validate` and `ferry serve` refuse a config with a broken
//! program, each error located at its file and line (the YAML string's, moved to the line
//! inside a block string) with VRL's own diagnostic.

use ferry_config::{Config, Diagnostic, Severity, SourceMap};
use ferry_transform::{CompileError, TemplateError};

use crate::ingress::dedupe::DedupeRule;
use crate::ingress::steps::IngressSteps;
use crate::render::DestinationTransforms;

/// A program or template that does not compile, located by its config path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Dotted path parts of the string, e.g. `["flows", "orders", "steps", "0", "filter"]`.
    pub path: Vec<String>,
    /// 1-based line and column inside the string.
    pub line: usize,
    /// See `line`.
    pub column: usize,
    /// The headline.
    pub message: String,
    /// The compiler's own report (several lines), if any.
    pub report: Option<String>,
    /// Error, or warning (VRL's warnings, such as an unused result).
    pub severity: Severity,
}

impl Failure {
    /// A VRL program that does not compile.
    pub fn program(path: Vec<String>, what: &str, err: CompileError) -> Self {
        Failure {
            path,
            line: err.line,
            column: err.column,
            message: format!("{what} does not compile: {err}"),
            report: Some(err.diagnostic),
            severity: Severity::Error,
        }
    }

    /// A template that does not compile.
    pub fn template(path: Vec<String>, what: &str, err: TemplateError) -> Self {
        Failure {
            path,
            line: err.line.unwrap_or(1),
            column: 1,
            message: format!("{what} does not compile: {err}"),
            report: None,
            severity: Severity::Error,
        }
    }

    /// VRL's warnings about a program that compiles.
    pub fn warning(path: Vec<String>, what: &str, report: &str) -> Self {
        Failure {
            path,
            line: 1,
            column: 1,
            message: format!("{what}: the VRL compiler warns"),
            report: Some(report.to_string()),
            severity: Severity::Warning,
        }
    }

    /// The failure as a located diagnostic.
    pub fn diagnostic(&self, sources: &SourceMap) -> Diagnostic {
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        sources.diagnostic_in_string(
            self.severity,
            &path,
            self.line,
            self.column,
            self.message.clone(),
            self.report.clone(),
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.join("."), self.message)
    }
}

/// Path parts from string slices.
pub(crate) fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_string()).collect()
}

/// Compile every program and template of `config`: errors and warnings, located.
pub fn check(config: &Config, sources: &SourceMap) -> Vec<Diagnostic> {
    compile_all(config)
        .iter()
        .map(|f| f.diagnostic(sources))
        .collect()
}

/// Compile every program and template of `config`, returning what does not compile (and
/// the warnings).
pub fn compile_all(config: &Config) -> Vec<Failure> {
    let mut found = Vec::new();
    for (flow_name, flow) in &config.flows {
        if let Err(failures) = IngressSteps::compile(flow_name, flow, &mut found) {
            found.extend(failures);
        }
        if let Err(failures) = DedupeRule::compile(flow_name, flow, &mut found) {
            found.extend(failures);
        }
        for (dest_name, dest) in &flow.destinations {
            if let Err(failures) =
                DestinationTransforms::compile(flow_name, dest_name, dest, &mut found)
            {
                found.extend(failures);
            }
        }
    }
    found
}
