//! The HTTP connector: sends one claimed delivery to an HTTP endpoint, signed per Standard
//! Webhooks, and reports what happened without ever trusting the response. Every call goes
//! through the SSRF guard ([`crate::egress`]).

use std::error::Error as _;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_config::BodyFormat;
use ferry_signature::SigningKey;
use ferry_store::unix_millis;
use ferry_store::{ClaimedDelivery, Millis};
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};

use crate::classify::{
    LOCAL_FAILURE, Verdict, classify_status, local_failure, parse_retry_after, status_class,
};
use crate::connector::{BatchCall, Connector};
use crate::egress::{
    EGRESS_REFUSED, EgressPolicy, EgressRefused, guarded_client_builder, refusal_of,
};
use crate::oauth2::{OAuth2Grant, TokenSource};
use crate::outcome::AttemptResult;
use crate::render::Rendered;

/// How many bytes of a response body are kept as the attempt's excerpt. Reading stops there.
pub const RESPONSE_EXCERPT_BYTES: usize = 512;

/// The longest error text recorded for an attempt (in bytes).
const MAX_ERROR_TEXT: usize = 1024;

/// The `user-agent` of every outbound call.
pub const USER_AGENT: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// An HTTP endpoint that a lane delivers to.
#[derive(Clone)]
pub struct HttpTarget {
    /// Where to send.
    pub url: Url,
    /// Usually `POST`.
    pub method: Method,
    /// Static headers sent with every request (auth, API keys...). The delivery headers
    /// (`webhook-*`, `idempotency-key`, and `traceparent`/`tracestate` when the event has
    /// them) replace
    /// same-named ones. `content-type` is the event's own when it was stored with one, else
    /// this map's, else `application/json`.
    pub headers: HeaderMap,
    /// Total time for one attempt: connect, send, response head and excerpt.
    pub timeout: Duration,
    /// Time to establish the connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// When set, every request carries a Standard Webhooks `webhook-signature`.
    pub signing_key: Option<SigningKey>,
    /// The SSRF guard's allow-list: which non-public networks and host names this target
    /// may reach. [`EgressPolicy::new`] allows public addresses only.
    pub egress: EgressPolicy,
    /// `Json`: the body as is; `Cloudevents`: the body wrapped in a CloudEvents envelope
    /// ([`crate::cloudevents`]), sent as `application/cloudevents+json`.
    pub format: BodyFormat,
}

impl fmt::Debug for HttpTarget {
    /// Shows no secrets: the URL without credentials or query, header names without values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = format!(
            "{}://{}{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or(""),
            self.url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ) + self.url.path();
        f.debug_struct("HttpTarget")
            .field("url", &url)
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("signed", &self.signing_key.is_some())
            .field("egress", &self.egress)
            .field("format", &self.format)
            .finish()
    }
}

/// Sends deliveries to one [`HttpTarget`] through its own connection pool (a bulkhead: a
/// slow receiver only ever ties up its own lane's connections).
#[derive(Debug)]
pub struct HttpConnector {
    client: reqwest::Client,
    target: HttpTarget,
    /// Set when the URL's host is an address literal the egress policy refuses: every
    /// attempt then fails with it, without a connection.
    refused: Option<EgressRefused>,
    /// With `auth: oauth2`: where each attempt's bearer token comes from.
    oauth2: Option<TokenSource>,
    /// Where synthetic events go instead of the target's URL.
    sandbox: Option<Url>,
}

impl HttpConnector {
    /// Build the connector and its client: guarded by the target's egress policy,
    /// redirects off, no proxy, the target's timeouts, up to `pool_size` idle connections
    /// kept per host.
    ///
    /// A URL whose host is an address literal the policy refuses does not fail here: each
    /// attempt fails instead, as [`EGRESS_REFUSED`], so the deliveries reach the dead-letter
    /// queue with the reason.
    pub fn new(target: HttpTarget, pool_size: usize) -> Result<Self, reqwest::Error> {
        let client = guarded_client_builder(target.egress.clone())
            .timeout(target.timeout)
            .connect_timeout(target.connect_timeout)
            .pool_max_idle_per_host(pool_size.max(1))
            .build()?;
        let refused = target.egress.check_literal(&target.url).err();
        Ok(HttpConnector {
            client,
            target,
            refused,
            oauth2: None,
            sandbox: None,
        })
    }

    /// Send synthetic events to `url` instead of the target's URL (through the same
    /// egress guard).
    pub fn with_sandbox(mut self, url: Url) -> Self {
        self.sandbox = Some(url);
        self
    }

    /// Authenticate every call with an OAuth2 access token obtained per `grant` (see
    /// [`crate::oauth2`]): token requests go through the target's egress policy, with its
    /// timeouts.
    pub fn with_oauth2(mut self, grant: OAuth2Grant) -> Result<Self, reqwest::Error> {
        self.oauth2 = Some(TokenSource::new(
            grant,
            self.target.egress.clone(),
            self.target.timeout,
            self.target.connect_timeout,
        )?);
        Ok(self)
    }

    /// The target this connector sends to.
    pub fn target(&self) -> &HttpTarget {
        &self.target
    }

    /// Make one attempt to deliver `delivery` (its stored payload, to the target's URL).
    /// Never panics and never fails: every error becomes part of the returned
    /// [`AttemptResult`].
    pub async fn send(&self, delivery: &ClaimedDelivery) -> AttemptResult {
        self.send_rendered(delivery, None).await
    }

    /// Make one attempt to deliver `delivery` as `rendered` says (body, URL, headers,
    /// content type; see [`Rendered`]), or as stored when `None`. The signature covers the
    /// body sent. A rendered URL goes through the same egress guard as the target's.
    pub async fn send_rendered(
        &self,
        delivery: &ClaimedDelivery,
        rendered: Option<&Rendered>,
    ) -> AttemptResult {
        let wall = SystemTime::now();
        let started_at = unix_millis(wall);
        let clock = Instant::now();
        if let Some(refused) = &self.refused {
            return refused_attempt(started_at, clock, refused);
        }
        let sandbox = self
            .sandbox
            .as_ref()
            .filter(|_| crate::synthetic::is_synthetic(delivery));
        let url = match sandbox.or(rendered.and_then(|r| r.url.as_ref())) {
            Some(url) => {
                if let Err(refused) = self.target.egress.check_literal(url) {
                    return refused_attempt(started_at, clock, &refused);
                }
                url.clone()
            }
            None => self.target.url.clone(),
        };
        let body = rendered.map_or_else(|| delivery.payload.clone(), |r| r.body.clone());
        // CloudEvents output: the envelope is what is signed and sent.
        let body = match self.target.format {
            BodyFormat::Json => body,
            BodyFormat::Cloudevents => crate::cloudevents::envelope(delivery, &body),
        };
        let mut headers = self.request_headers(delivery, unix_secs(wall), &body, rendered);
        if self.target.format == BodyFormat::Cloudevents {
            let ce = HeaderValue::from_static(crate::cloudevents::CONTENT_TYPE);
            headers.insert(CONTENT_TYPE, ce);
        }
        self.exchange(url, headers, body, 0, started_at, clock)
            .await
            .0
    }

    /// Make the call (authenticated, with OAuth2, by a token; after a `401` to that token,
    /// once more at once with a new one) and judge its response. `keep`: see
    /// [`read_body`].
    async fn exchange(
        &self,
        url: Url,
        mut headers: HeaderMap,
        body: bytes::Bytes,
        keep: usize,
        started_at: Millis,
        clock: Instant,
    ) -> (AttemptResult, Option<bytes::Bytes>) {
        let token = match &self.oauth2 {
            None => None,
            Some(source) => match source.token().await {
                Ok(token) => Some(token),
                Err(error) => return (error.attempt(started_at, clock), None),
            },
        };
        if let Some(token) = &token {
            headers.insert(AUTHORIZATION, token.header().clone());
        }
        let request = |headers: HeaderMap| {
            self.client
                .request(self.target.method.clone(), url.clone())
                .headers(headers)
                .body(body.clone())
                .send()
        };
        let mut sent = request(headers.clone()).await;
        if let (Some(source), Some(used)) = (&self.oauth2, &token)
            && matches!(&sent, Ok(response) if response.status() == StatusCode::UNAUTHORIZED)
        {
            match source.rejected(used).await {
                Ok(fresh) => {
                    headers.insert(AUTHORIZATION, fresh.header().clone());
                    sent = request(headers).await;
                }
                Err(error) => return (error.attempt(started_at, clock), None),
            }
        }
        match sent {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let keep = if (200..300).contains(&status) {
                    keep
                } else {
                    0
                };
                let (excerpt, kept) = read_body(&mut response, keep).await;
                drop(response);
                let verdict = match classify_status(status) {
                    Verdict::Retry { .. } => Verdict::Retry { retry_after },
                    other => other,
                };
                let error = match verdict {
                    Verdict::Delivered => None,
                    _ => Some(describe_status(status)),
                };
                let result = AttemptResult {
                    started_at,
                    latency: clock.elapsed(),
                    status: Some(status),
                    verdict,
                    error_class: status_class(status),
                    error,
                    response_excerpt: excerpt,
                };
                (result, kept)
            }
            Err(err) => {
                if let Some(refused) = refusal_of(&err) {
                    return (refused_attempt(started_at, clock, refused), None);
                }
                let (error_class, verdict) = classify_error(&err);
                let result = AttemptResult {
                    started_at,
                    latency: clock.elapsed(),
                    status: None,
                    verdict,
                    error_class,
                    error: Some(describe_error(err)),
                    response_excerpt: None,
                };
                (result, None)
            }
        }
    }

    fn request_headers(
        &self,
        delivery: &ClaimedDelivery,
        timestamp: i64,
        body: &[u8],
        rendered: Option<&Rendered>,
    ) -> HeaderMap {
        let mut headers = self.target.headers.clone();
        if let Some(rendered) = rendered {
            for (name, value) in &rendered.headers {
                headers.insert(name, value.clone());
            }
        }
        let content_type = rendered
            .and_then(|r| r.content_type.clone())
            .or_else(|| stored_header(delivery, "content-type"))
            .or_else(|| headers.get(CONTENT_TYPE).cloned())
            .unwrap_or(HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, content_type);
        let id = delivery.id.to_string();
        // `dlv_` + hex digits: always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&id) {
            headers.insert(WEBHOOK_ID, value.clone());
            headers.insert(IDEMPOTENCY_KEY, value);
        }
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        if let Some(key) = &self.target.signing_key {
            let signature = ferry_signature::standard_webhooks::sign(key, &id, timestamp, body);
            if let Ok(value) = HeaderValue::from_str(&signature) {
                headers.insert(WEBHOOK_SIGNATURE, value);
            }
        }
        if crate::synthetic::is_synthetic(delivery) {
            headers.insert(
                HeaderName::from_static(crate::synthetic::HEADER),
                HeaderValue::from_static("true"),
            );
        }
        // W3C Trace Context: `tracestate` travels with its `traceparent`, never alone.
        if let Some(traceparent) = stored_header(delivery, "traceparent") {
            headers.insert(TRACEPARENT, traceparent);
            if let Some(tracestate) = stored_header(delivery, "tracestate") {
                headers.insert(TRACESTATE, tracestate);
            }
        }
        headers
    }
}

/// The result of an attempt the egress guard refused: permanent, no status.
fn refused_attempt(started_at: Millis, clock: Instant, refused: &EgressRefused) -> AttemptResult {
    AttemptResult {
        started_at,
        latency: clock.elapsed(),
        status: None,
        verdict: Verdict::Permanent,
        error_class: EGRESS_REFUSED,
        error: Some(truncate(format!("egress refused: {refused}"))),
        response_excerpt: None,
    }
}

/// A header kept with the event, if present and a valid header value.
fn stored_header(delivery: &ClaimedDelivery, name: &str) -> Option<HeaderValue> {
    delivery
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| HeaderValue::from_str(v.trim()).ok())
}

pub(crate) fn describe_status(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

/// Error class and verdict of a failed request. A request that failed because this host ran
/// out of a resource (too many open files...) is [`Verdict::Local`]: it never reached the
/// destination.
pub(crate) fn classify_error(err: &reqwest::Error) -> (&'static str, Verdict) {
    if let Some(cause) = local_failure(err) {
        (LOCAL_FAILURE, Verdict::Local { cause })
    } else if err.is_timeout() {
        ("timeout", Verdict::Retry { retry_after: None })
    } else if err.is_connect() || err.is_dns() {
        ("connect", Verdict::Retry { retry_after: None })
    } else if err.is_builder() {
        // The request itself cannot be built: sending it again will not help.
        ("request", Verdict::Permanent)
    } else {
        ("request", Verdict::Retry { retry_after: None })
    }
}

/// The error and its causes on one line, without the URL (it may carry credentials).
pub(crate) fn describe_error(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    truncate(text)
}

/// At most [`MAX_ERROR_TEXT`] bytes, cut at a character boundary.
pub(crate) fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Batch calls: one request carrying several records (see [`crate::batch`]).
impl HttpConnector {
    /// Make one batch call: `body` (the records as one JSON document) with `id` as
    /// `webhook-id` and `idempotency-key`, signed per Standard Webhooks when the target has
    /// a key, `content-type` the target's or `application/json` (with `format: cloudevents`
    /// always `application/cloudevents-batch+json`). Never fails: errors are
    /// part of the [`AttemptResult`], classified like a single delivery's.
    ///
    /// With `keep_body > 0`, a `2xx` response body of at most `keep_body` bytes is returned
    /// whole (`None` when it was larger or could not be read).
    async fn send_batch_body(
        &self,
        id: &str,
        body: bytes::Bytes,
        keep_body: usize,
    ) -> (AttemptResult, Option<bytes::Bytes>) {
        let wall = SystemTime::now();
        let started_at = unix_millis(wall);
        let clock = Instant::now();
        if let Some(refused) = &self.refused {
            return (refused_attempt(started_at, clock, refused), None);
        }
        let headers = self.batch_headers(id, unix_secs(wall), &body);
        let url = self.target.url.clone();
        self.exchange(url, headers, body, keep_body, started_at, clock)
            .await
    }

    fn batch_headers(&self, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let mut headers = self.target.headers.clone();
        match self.target.format {
            // CloudEvents batched mode: the body is an array of structured envelopes.
            BodyFormat::Cloudevents => {
                let ce = HeaderValue::from_static(crate::cloudevents::BATCH_CONTENT_TYPE);
                headers.insert(CONTENT_TYPE, ce);
            }
            BodyFormat::Json if !headers.contains_key(CONTENT_TYPE) => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            BodyFormat::Json => {}
        }
        // `bat_` + hex digits: always a valid header value.
        if let Ok(value) = HeaderValue::from_str(id) {
            headers.insert(WEBHOOK_ID, value.clone());
            headers.insert(IDEMPOTENCY_KEY, value);
        }
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        if let Some(key) = &self.target.signing_key {
            let signature = ferry_signature::standard_webhooks::sign(key, id, timestamp, body);
            if let Ok(value) = HeaderValue::from_str(&signature) {
                headers.insert(WEBHOOK_SIGNATURE, value);
            }
        }
        headers
    }
}

#[async_trait::async_trait]
impl Connector for HttpConnector {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn timeout(&self) -> Duration {
        match self.oauth2 {
            // A token request, the call, and after a `401` a second token request and call.
            Some(_) => self.target.timeout.saturating_mul(4),
            None => self.target.timeout,
        }
    }

    fn record_overhead(&self, delivery: &ClaimedDelivery) -> usize {
        match self.target.format {
            BodyFormat::Json => 0,
            BodyFormat::Cloudevents => crate::cloudevents::overhead(delivery),
        }
    }

    async fn send(&self, delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> AttemptResult {
        self.send_rendered(delivery, rendered).await
    }

    /// One request whose body holds every record: a JSON array (or an object with the
    /// records under `wrap`); with `format: cloudevents` an array of envelopes (a CloudEvents
    /// batch is an array by spec: `wrap` does not apply, and `ferry validate` refuses it).
    async fn send_batch(&self, call: BatchCall<'_>) -> (AttemptResult, Option<bytes::Bytes>) {
        let records = call.records.iter();
        let body = match self.target.format {
            BodyFormat::Json => crate::batch::body(records.map(|(_, b)| &b[..]), call.wrap),
            BodyFormat::Cloudevents => {
                crate::cloudevents::batch_body(records.map(|(d, b)| (*d, &b[..])))
            }
        };
        self.send_batch_body(call.id, body, call.keep_body).await
    }
}

/// Read the body up to `max(keep, RESPONSE_EXCERPT_BYTES)` bytes. Returns the excerpt
/// (its first [`RESPONSE_EXCERPT_BYTES`]) and, when `keep > 0` and the whole body fit in
/// `keep` bytes, the body.
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    keep: usize,
) -> (Option<String>, Option<bytes::Bytes>) {
    let limit = keep.max(RESPONSE_EXCERPT_BYTES);
    let mut buf: Vec<u8> = Vec::new();
    let complete = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    let take = limit - buf.len();
                    buf.extend_from_slice(&chunk[..take]);
                    break false;
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    let excerpt = (!buf.is_empty()).then(|| {
        String::from_utf8_lossy(&buf[..buf.len().min(RESPONSE_EXCERPT_BYTES)]).into_owned()
    });
    let kept = (keep > 0 && complete).then(|| bytes::Bytes::from(buf));
    (excerpt, kept)
}
