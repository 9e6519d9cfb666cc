//! `GET /admin/v1/keys`, `POST /admin/v1/keys/rotate`, `POST /admin/v1/erase`: the data
//! keys of encryption at rest (see [`crate::at_rest`]) — what the store holds per
//! key-encryption key, re-wrapping them under the current one, and erasing a data subject
//! by destroying its key (crypto-shredding).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::api::AdminState;
use super::auth::AdminCaller;
use super::filters::bad_request;
use crate::at_rest::{AtRest, keys_by_kek};
use crate::problem::Problem;

/// Data keys re-wrapped per store call during a rotation.
pub const ROTATE_PAGE: usize = 500;

/// `GET /admin/v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeysStatus {
    /// The id of the KEK new data keys are wrapped by (`settings.protection.keys[0]`).
    pub current_kek: String,
    /// Every configured KEK, the current one first.
    pub configured_keks: Vec<String>,
    /// Live data keys per KEK id (every configured KEK listed, with 0 if none).
    pub data_keys: BTreeMap<String, u64>,
    /// Data keys wrapped by another KEK than the current one: what `ferry keys rotate`
    /// would re-wrap.
    pub to_rotate: u64,
    /// Data keys shredded (subjects erased).
    pub shredded: u64,
}

/// `POST /admin/v1/keys/rotate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateResponse {
    /// The KEK every data key is now wrapped by.
    pub current_kek: String,
    /// Data keys re-wrapped by this call.
    pub rewrapped: u64,
    /// Data keys that changed meanwhile (shredded, or re-wrapped by another call).
    pub skipped: u64,
    /// Data keys still wrapped by another KEK afterwards (0 once done).
    pub remaining: u64,
}

/// `POST /admin/v1/erase`: the data subject to erase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EraseRequest {
    /// The subject's identifier, as its events carry it in their `x-ferry-subject` field
    /// (e.g. the customer's email).
    pub subject: String,
}

/// The answer to an erasure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EraseResponse {
    /// The subject reference (a keyed hash, never the identifier).
    pub subject_ref: String,
    /// Data keys shredded (0: Ferry held no key of this subject — nothing of it stored
    /// encrypted, or erased already).
    pub shredded: u64,
}

fn at_rest(st: &AdminState) -> Result<&Arc<AtRest>, Problem> {
    st.at_rest.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::CONFLICT,
            "encryption_off",
            "Encryption at rest is off",
            "settings.protection.keys is not set: Ferry holds no data keys",
        )
    })
}

fn key_error(e: ferry_protect::KeyError) -> Problem {
    tracing::error!(error = %e, "admin: data keys");
    let status = if e.is_transient() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Problem::new(status, "keys_failed", "Data keys", e.to_string())
}

/// `GET /admin/v1/keys`.
pub async fn status(State(st): State<AdminState>) -> Result<Json<KeysStatus>, Problem> {
    let a = at_rest(&st)?;
    let keyring = a.keyring();
    let stats = keyring.stats().await.map_err(key_error)?;
    let current = keyring.current_kek().to_owned();
    let to_rotate = stats
        .live_by_kek
        .iter()
        .filter(|(k, _)| *k != current)
        .map(|(_, n)| n)
        .sum();
    Ok(Json(KeysStatus {
        configured_keks: keyring.kek_ids().map(str::to_owned).collect(),
        data_keys: keys_by_kek(keyring, &stats),
        current_kek: current,
        to_rotate,
        shredded: stats.shredded,
    }))
}

/// `POST /admin/v1/keys/rotate`.
pub async fn rotate(
    State(st): State<AdminState>,
    Extension(caller): Extension<AdminCaller>,
) -> Result<Json<RotateResponse>, Problem> {
    let a = at_rest(&st)?;
    let keyring = a.keyring();
    let target = Some(keyring.current_kek().to_owned());
    super::governance::record_action(&st, &caller, "rotate_keys", target, None).await?;
    let done = keyring.rotate(ROTATE_PAGE).await.map_err(key_error)?;
    let stats = keyring.stats().await.map_err(key_error)?;
    let current = keyring.current_kek().to_owned();
    let remaining = stats
        .live_by_kek
        .iter()
        .filter(|(k, _)| *k != current)
        .map(|(_, n)| n)
        .sum();
    tracing::info!(
        kek = %current,
        rewrapped = done.rewrapped,
        skipped = done.skipped,
        remaining,
        "data keys re-wrapped through the admin API"
    );
    Ok(Json(RotateResponse {
        current_kek: current,
        rewrapped: done.rewrapped,
        skipped: done.skipped,
        remaining,
    }))
}

/// `POST /admin/v1/erase`.
pub async fn erase(
    State(st): State<AdminState>,
    Extension(caller): Extension<AdminCaller>,
    body: Result<Json<EraseRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<EraseResponse>, Problem> {
    let Json(r) = body.map_err(|e| bad_request(e.body_text()))?;
    if r.subject.trim().is_empty() {
        return Err(bad_request(
            "`subject` is required: the identifier to erase",
        ));
    }
    let a = at_rest(&st)?;
    let keyring = a.keyring();
    let subject_ref = keyring.subject_ref(Some(&r.subject));
    let shredded = keyring.erase(&r.subject).await.map_err(key_error)?;
    // The key is gone: the shredding goes into the audit trail (the reference, never the
    // identifier). A failure here is reported, as the erasure itself cannot be undone.
    st.store
        .audit_admin_action(ferry_store::AuditEntry::Shredded {
            at: crate::clock::now_ms(),
            by: caller.0.clone(),
            subject: subject_ref.clone(),
            detail: Some(serde_json::json!({ "data_keys_shredded": shredded })),
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "subject erased, but its audit record could not be written");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "Erased, not audited",
                format!("the subject's data key was destroyed, but the audit record could not be written ({e}); erase again to record it"),
            )
        })?;
    metrics::counter!(ferry_metrics::PROTECT_SUBJECTS_ERASED_TOTAL)
        .increment(u64::from(shredded > 0));
    // The reference only: the identifier itself is personal data.
    tracing::info!(subject_ref = %subject_ref, shredded, "data subject erased through the admin API");
    Ok(Json(EraseResponse {
        subject_ref,
        shredded,
    }))
}
