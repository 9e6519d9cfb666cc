//! One `enrich` lookup: `GET` the rendered URL through the egress guard, bounded in time
//! and size, and read the JSON answer. What each failure means for the delivery:
//!
//! | answer | class | the delivery |
//! | --- | --- | --- |
//! | `2xx` with JSON (at most [`MAX_RESPONSE_BYTES`]) | — | goes on with the value |
//! | time-out, connection error, `408`, `409`, `425`, `429`, `5xx` | `enrich_failed` | retried later |
//! | `404`, `410` | `enrich_not_found` | dead-lettered (a retry cannot create the record; replay once it exists) |
//! | another `4xx`, a `3xx` (redirects are not followed) | `enrich_failed` | dead-lettered |
//! | `2xx` that is not JSON, or too large, or refused by [`crate::strict_json`] (an object repeats a key, nesting 128 levels deep) | `enrich_invalid` | dead-lettered |
//! | refused by the egress guard | `egress_refused` | dead-lettered |
//!
//! Messages name the host and path, never the query, the headers or the response body's
//! values (a repeated key is named, with the pointer of its object, as schema problems
//! name pointers).

use std::time::Duration;

use ferry_delivery::egress::{EGRESS_REFUSED, refusal_of};
use ferry_delivery::{GuardedClient, RenderError, Verdict, classify_status};
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;

use crate::strict_json::{self, JsonError};

/// Largest response read; a larger one fails the lookup (memory stays bounded).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Class of a lookup that failed (retried when the failure may pass).
pub const ENRICH_FAILED: &str = "enrich_failed";
/// Class of a lookup answered `404` or `410`.
pub const ENRICH_NOT_FOUND: &str = "enrich_not_found";
/// Class of a lookup whose answer is not usable JSON.
pub const ENRICH_INVALID: &str = "enrich_invalid";

/// `GET url` with `headers` through `client` (whose time-out, `timeout`, bounds the whole
/// request): the JSON value and the body's size in bytes.
pub async fn get(
    client: &GuardedClient,
    url: &Url,
    headers: &HeaderMap,
    timeout: Duration,
) -> Result<(Value, usize), RenderError> {
    let what = shown(url);
    let refused = |reason: &dyn std::fmt::Display| {
        RenderError::permanent(
            EGRESS_REFUSED,
            format!("the enrich lookup of {what} was refused: egress refused: {reason}"),
        )
    };
    let request = client
        .request(Method::GET, url.clone())
        .map_err(|r| refused(&r))?;
    let mut headers = headers.clone();
    headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("application/json"));
    let mut response = request.headers(headers).send().await.map_err(|e| {
        if let Some(r) = refusal_of(&e) {
            return refused(r);
        }
        let why = if e.is_timeout() {
            format!("timed out after {}", humantime::format_duration(timeout))
        } else if e.is_connect() {
            "could not connect".to_owned()
        } else {
            "the request failed".to_owned()
        };
        RenderError::retryable(ENRICH_FAILED, format!("the enrich lookup of {what} {why}"))
    })?;
    let status = response.status().as_u16();
    match (status, classify_status(status)) {
        (_, Verdict::Delivered) => {}
        (404 | 410, _) => {
            return Err(RenderError::permanent(
                ENRICH_NOT_FOUND,
                format!("the enrich lookup of {what} found nothing (HTTP {status})"),
            ));
        }
        // (`classify_status` never says `Local`: that is about a failed call, not a status.)
        (_, Verdict::Retry { .. } | Verdict::Local { .. }) => {
            return Err(RenderError::retryable(
                ENRICH_FAILED,
                format!("the enrich lookup of {what} failed: HTTP {status}"),
            ));
        }
        (_, Verdict::Permanent) => {
            return Err(RenderError::permanent(
                ENRICH_FAILED,
                format!("the enrich lookup of {what} was refused: HTTP {status}"),
            ));
        }
    }
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out while reading the answer"
            } else {
                "failed while reading the answer"
            };
            RenderError::retryable(ENRICH_FAILED, format!("the enrich lookup of {what} {why}"))
        })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(RenderError::permanent(
                ENRICH_INVALID,
                format!(
                    "the enrich lookup of {what} answered more than {MAX_RESPONSE_BYTES} bytes"
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let value = strict_json::parse(&body).map_err(|e| {
        RenderError::permanent(
            ENRICH_INVALID,
            match e {
                JsonError::Malformed(e) => format!(
                    "the enrich lookup of {what} answered something that is not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
                refused => format!("the enrich lookup of {what} answered JSON that is refused: {refused}"),
            },
        )
    })?;
    Ok((value, body.len()))
}

/// The URL for messages: scheme, host, port and path; no query, user or fragment.
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    format!("`{shown}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_leave_out_the_query() {
        let url = Url::parse("https://u:p@crm.example/c/7?token=x#f").expect("url");
        assert_eq!(shown(&url), "`https://crm.example/c/7`");
    }
}
