//! Fetching one page: `GET` the source's URL with the cursor's query parameters through the
//! egress guard, bounded in size, retried briefly on transient failures.

use std::time::Duration;

use ferry_delivery::{GuardedClient, parse_retry_after};
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::strict_json::{self, JsonError};

/// Largest page body read; a larger one fails the run (memory stays bounded).
pub const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;
/// Tries per page within one run before the run fails.
pub const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` waited for within a run; a longer one fails the run (the next
/// run is scheduled anyway).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why a page could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError {
    /// What went wrong, for the run record and the logs (never a body or a header value).
    pub message: String,
    /// Worth another try within the run (connection, timeout, 408, 429, 5xx).
    pub transient: bool,
    /// The source asked to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl PageError {
    fn permanent(message: String) -> Self {
        PageError {
            message,
            transient: false,
            retry_after: None,
        }
    }
}

/// Fetches the pages of one source.
#[derive(Debug, Clone)]
pub struct PageClient {
    client: GuardedClient,
    url: Url,
    headers: HeaderMap,
}

impl PageClient {
    /// A client of `url` sending `headers`, through `client`'s guard.
    pub fn new(client: GuardedClient, url: Url, mut headers: HeaderMap) -> Self {
        headers
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("application/json"));
        PageClient {
            client,
            url,
            headers,
        }
    }

    /// The URL asked for with `query` (set over any parameter of the same name in the
    /// configured URL).
    pub fn url_for(&self, query: &[(String, String)]) -> Url {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !query.iter().any(|(q, _)| q == k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() && query.is_empty() {
            return url;
        }
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .extend_pairs(query);
        url
    }

    /// The page at `query`, as JSON read strictly ([`strict_json`]: a page with a duplicate
    /// object key or nested too deeply fails like one that is not JSON), trying up to
    /// [`ATTEMPTS`] times on transient failures.
    pub async fn fetch(&self, query: &[(String, String)]) -> Result<Value, PageError> {
        let url = self.url_for(query);
        let mut attempt = 1;
        loop {
            match self.once(&url).await {
                Ok(body) => return Ok(body),
                Err(e) if e.transient && attempt < ATTEMPTS => {
                    let wait = e.retry_after.unwrap_or(backoff(attempt));
                    if wait > MAX_RETRY_AFTER {
                        return Err(e);
                    }
                    tracing::debug!(error = %e.message, attempt, "pull page failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn once(&self, url: &Url) -> Result<Value, PageError> {
        let what = redacted(url);
        let req = self
            .client
            .request(Method::GET, url.clone())
            .map_err(|refused| PageError::permanent(format!("GET {what}: {refused}")))?;
        let mut resp = req
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| PageError {
                message: format!("GET {what}: {}", request_error(&e)),
                transient: !is_refusal(&e),
                retry_after: None,
            })?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
            return Err(PageError {
                message: format!("GET {what}: HTTP {}", status.as_u16()),
                transient: transient_status(status),
                retry_after,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| PageError {
            message: format!("GET {what}: reading the body: {}", request_error(&e)),
            transient: true,
            retry_after: None,
        })? {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(PageError::permanent(format!(
                    "GET {what}: the page is larger than {MAX_PAGE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        strict_json::parse(&body).map_err(|e| {
            PageError::permanent(match e {
                JsonError::Malformed(e) => format!("GET {what}: the page is not JSON: {e}"),
                refused => format!("GET {what}: the page is refused: {refused}"),
            })
        })
    }
}

/// 408, 425, 429 and 5xx are worth another try.
fn transient_status(s: StatusCode) -> bool {
    s.is_server_error() || matches!(s.as_u16(), 408 | 425 | 429)
}

/// 250 ms, then 1 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 * 4_u64.pow(attempt.saturating_sub(1).min(4)))
}

/// The URL without its query (which may carry tokens), for messages.
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A request error in a few words, with its cause (e.g. the egress guard's refusal).
fn request_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(cause) => format!("{kind}: {}", chain(cause)),
        None => kind.to_owned(),
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    parts.dedup();
    parts.join(": ")
}

/// The egress guard refused the connection: no retry will change that.
fn is_refusal(e: &reqwest::Error) -> bool {
    ferry_delivery::egress::refusal_of(e).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_delivery::EgressPolicy;

    fn client(url: &str) -> PageClient {
        let guarded =
            GuardedClient::new(EgressPolicy::default(), Duration::from_secs(1)).expect("client");
        PageClient::new(guarded, Url::parse(url).expect("url"), HeaderMap::new())
    }

    #[test]
    fn cursor_parameters_replace_those_of_the_url() {
        let c = client("https://api.example/v1/items?kind=a&page=old");
        let q = vec![("page".to_owned(), "p 2".to_owned())];
        assert_eq!(
            c.url_for(&q).as_str(),
            "https://api.example/v1/items?kind=a&page=p+2"
        );
        assert_eq!(
            c.url_for(&[]).as_str(),
            "https://api.example/v1/items?kind=a&page=old"
        );
        let bare = client("https://api.example/v1/items");
        assert_eq!(bare.url_for(&[]).as_str(), "https://api.example/v1/items");
        assert_eq!(redacted(&c.url_for(&q)), "https://api.example/v1/items");
    }

    #[test]
    fn transient_statuses() {
        for s in [500, 502, 503, 408, 429] {
            assert!(
                transient_status(StatusCode::from_u16(s).expect("status")),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(
                !transient_status(StatusCode::from_u16(s).expect("status")),
                "{s}"
            );
        }
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(1000));
    }
}
