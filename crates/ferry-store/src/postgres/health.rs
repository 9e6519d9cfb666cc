//! Readiness of the PostgreSQL store: whether the last batch committed.
//!
//! A failed batch (connection lost, disk full on the server…) makes the store unready with
//! the reason; the next committed batch makes it ready again. `ping` while unready writes a
//! small row through the writer, so readiness comes back as soon as the database takes
//! writes again, without waiting for other traffic.

use std::sync::Mutex;

use crate::StoreError;

/// The store's readiness, shared by the writer and the handle.
#[derive(Default)]
pub(crate) struct Health {
    /// Why the last batch failed, while no batch has committed since.
    unready: Mutex<Option<String>>,
    /// Test hook: while set, every commit fails with it.
    injected: Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn committed(&self) {
        *lock(&self.unready) = None;
    }

    pub(crate) fn failed(&self, e: &StoreError) {
        let reason = match e {
            StoreError::Unavailable(r) | StoreError::Backend(r) => r.clone(),
            other => other.to_string(),
        };
        *lock(&self.unready) = Some(reason);
    }

    /// Why the store is not ready, if it is not.
    pub(crate) fn unready(&self) -> Option<String> {
        lock(&self.unready).clone()
    }

    pub(crate) fn inject(&self, reason: Option<String>) {
        *lock(&self.injected) = reason;
    }

    pub(crate) fn injected(&self) -> Option<String> {
        lock(&self.injected).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
