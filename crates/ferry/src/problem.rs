//! RFC 9457 `application/problem+json` answers: every refusal names its reason.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A problem answer. `code` is stable and machine-readable (the `type` URI is derived from
/// it); `detail` is for humans.
#[derive(Debug, Clone)]
pub struct Problem {
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    pub flow: Option<String>,
    pub retry_after_secs: Option<u64>,
    /// RFC 9457 extension members added to the body (e.g. `violations`), boxed to keep
    /// `Problem` small on the error path.
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

/// The JSON body of a problem.
#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'a str>,
    #[serde(flatten)]
    extensions: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl Problem {
    /// A problem with a status, a stable code, a short title and a precise detail.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            title,
            status: status.as_u16(),
            code,
            detail: detail.into(),
            flow: None,
            retry_after_secs: None,
            extensions: None,
        }
    }

    /// Name the flow the request was for.
    pub fn for_flow(mut self, flow: &str) -> Self {
        self.flow = Some(flow.to_string());
        self
    }

    /// Add an extension member to the body, e.g. `violations`. The problem's own members
    /// (`type`, `title`, `status`, `code`, `detail`, `flow`) cannot be replaced this way: such
    /// a name is ignored.
    pub fn with_extension(mut self, name: &str, value: serde_json::Value) -> Self {
        const OWN: &[&str] = &["type", "title", "status", "code", "detail", "flow"];
        if OWN.contains(&name) {
            return self;
        }
        self.extensions
            .get_or_insert_default()
            .insert(name.to_string(), value);
        self
    }

    /// Ask the client to come back later.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&ProblemBody {
            kind: format!("urn:ferry:problem:{}", self.code),
            title: self.title,
            status: self.status,
            code: self.code,
            detail: &self.detail,
            flow: self.flow.as_deref(),
            extensions: self.extensions.as_deref(),
        })
        .unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED && self.code == "admin_unauthorized" {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
