//! Data protection for Ferry: which fields of an event carry which data categories (from
//! the schemas' `x-ferry-category` and `x-ferry-subject` annotations), and keyed hashing
//! for protected values and subject references.
#![forbid(unsafe_code)]

pub mod classify;
pub mod hasher;

pub use classify::{Classifier, FieldClasses};
pub use hasher::KeyedHasher;
