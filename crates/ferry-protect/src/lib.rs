//! Data protection for Ferry: which fields of an event carry which data categories (from
//! the schemas' `x-ferry-category` and `x-ferry-subject` annotations), keyed hashing for
//! protected values and subject references, and encryption at rest of classified fields
//! under per-subject data keys ([`Keyring`], [`envelope`], [`at_rest`]).
#![forbid(unsafe_code)]

pub mod at_rest;
mod cache;
pub mod classify;
pub mod envelope;
pub mod hasher;
pub mod keyring;

pub use classify::{Classifier, FieldClasses};
pub use envelope::{DataKey, Kek};
pub use hasher::KeyedHasher;
pub use keyring::{KeyError, Keyring, Rotation};
