//! Ferry's configuration: a directory of YAML files declaring `settings`, `systems` and
//! `flows`. Typed, unknown fields rejected, secrets only by reference, and every error
//! located by file, line and field.
//!
//! ```no_run
//! use ferry_config::{load_dir, render, LoadOptions};
//!
//! match load_dir("config".as_ref(), &LoadOptions::default()) {
//!     Ok(loaded) => {
//!         eprint!("{}", render(&loaded.warnings, false));
//!         println!("{} flows", loaded.config.flows.len());
//!     }
//!     Err(errors) => {
//!         let all: Vec<_> = errors.all().cloned().collect();
//!         eprint!("{}", render(&all, true));
//!     }
//! }
//! ```
#![forbid(unsafe_code)]

pub mod alerting;
pub mod connectors;
mod describe;
mod diagnostic;
pub mod egress;
mod files;
mod load;
mod locate;
mod merge;
mod model;
mod parse;
pub mod protection;
mod render;
mod resilience;
mod retry_span;
mod schedule;
mod schema_file;
mod secret;
mod source_map;
mod sources;
mod steps;
pub mod tenants;
mod validate;
mod yaml_file;

pub use connectors::{
    KafkaDestination, KafkaSource, NatsDestination, NatsSource, PostgresCursor,
    PostgresDestination, PostgresSource, RabbitmqDestination, RabbitmqSource,
};
pub use diagnostic::{ConfigErrors, Diagnostic, Severity};
pub use files::{MAX_FILE_BYTES, discover_tests, is_test_file};
pub use load::{LoadOptions, Loaded, load_dir};
pub use model::*;
pub use protection::{
    CustomTaxonomy, KeyEncryptionKey, ProtectAction, ProtectionSettings, SystemPolicy, Unclassified,
};
pub use render::render;
pub use resilience::*;
pub use retry_span::RetrySpan;
pub use schedule::Schedule;
pub use schema_file::SchemaFileError;
pub use secret::{
    INLINE_SECRET_MESSAGE, MIN_CREDENTIAL_BYTES, MIN_KEY_BYTES, MIN_TOKEN_BYTES, SecretError,
    SecretRef, SecretUse, check_strength, decode_encryption_key,
};
pub use source_map::SourceMap;
pub use steps::*;
pub use tenants::{Tenant, TenantLimits};
pub use yaml_file::{YamlIndex, read_yaml_file, read_yaml_file_indexed};
