//! Ferry's configuration: a directory of YAML files declaring `settings`, `systems` and
//! `flows`. Typed, unknown fields rejected, secrets only by reference, and every error
//! located by file, line and field.
#![forbid(unsafe_code)]

mod model;
mod secret;

pub use model::*;
pub use secret::{SecretError, SecretRef};
