//! Bearer-token check for the admin API, in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::problem::Problem;

/// Refuse the request unless it carries the admin token.
pub async fn require_token(
    State(token): State<Arc<Option<SecretString>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token.as_ref() else {
        metrics::counter!("ferry_admin_rejected_total", "reason" => "no_token_configured")
            .increment(1);
        return Problem::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "Admin API disabled",
            "no admin token is configured (settings.admin.token); every admin call is refused",
        )
        .into_response();
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok =
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(token.expose_secret().as_bytes())));
    if !ok {
        metrics::counter!("ferry_admin_rejected_total", "reason" => "unauthorized").increment(1);
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "admin_unauthorized",
            "Unauthorized",
            if presented.is_none() {
                "admin calls need `Authorization: Bearer <token>`"
            } else {
                "the bearer token is not the admin token"
            },
        )
        .into_response();
    }
    next.run(req).await
}
