//! Data protection for Ferry: which fields of an event carry which data categories (from
//! the schemas' `x-ferry-category` and `x-ferry-subject` annotations), the taxonomy those
//! categories come from (fideslang's, plus custom keys), each destination system's policy
//! applied to what it receives (pass, keyed hash, redact, encrypt, drop; refused by
//! default), the checks `ferry validate` makes of it, the data map, keyed hashing for
//! protected values and subject references, and encryption at rest of classified fields
//! under per-subject data keys ([`Keyring`], [`envelope`], [`at_rest`]).
#![forbid(unsafe_code)]

pub mod at_rest;
mod cache;
pub mod check;
pub mod classify;
pub mod datamap;
pub mod encrypt;
pub mod envelope;
pub mod hasher;
pub mod keyring;
pub mod policy;
mod presence;
pub mod taxonomy;

pub use classify::{Classifier, FieldClasses, schemas_of_flow};
pub use datamap::{DataMap, DataMapRow, Observed};
pub use encrypt::FieldCipher;
pub use envelope::{DataKey, Kek};
pub use hasher::KeyedHasher;
pub use keyring::{KeyError, Keyring, Rotation};
pub use policy::{Action, Protected, Protector, Rules};
pub use taxonomy::{Kind, Taxonomy};
