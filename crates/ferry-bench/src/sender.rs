//! The load generator: one task per connection, each with its own HTTP/1.1 connection and
//! one request in flight at a time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use ferry_signature::SigningKey;
use hdrhistogram::Histogram;
use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::clock::{Clock, unix_secs};
use crate::payload::{self, Template};
use crate::receiver::new_histogram;

/// Longest error-response excerpt kept per error kind.
const EXAMPLE_CHARS: usize = 300;
/// Pause after a failed connect, so a dead hub does not turn the tool into a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Where events are posted.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: HeaderValue,
    /// Origin-form request path, e.g. `/ingest/bench`.
    pub path: String,
}

impl Target {
    /// Parse `http://host[:port][/prefix]` and resolve it; events go to
    /// `{prefix}/ingest/{flow}`.
    pub async fn from_url(url: &str, flow: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("invalid --url `{url}`"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "--url must start with http:// (ferry-bench speaks plain HTTP/1.1 only)"
        );
        let authority = uri.authority().context("--url has no host")?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve `{host}`"))?
            .next()
            .with_context(|| format!("`{host}` resolves to no address"))?;
        anyhow::ensure!(
            !flow.is_empty() && !flow.contains(['/', '?', '#']),
            "--flow is the ingest path segment, e.g. `orders` for /ingest/orders"
        );
        let prefix = uri.path().trim_end_matches('/');
        Ok(Self {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
            path: format!("{prefix}/ingest/{flow}"),
        })
    }

    pub fn local(addr: SocketAddr, flow: &str) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            path: format!("/ingest/{flow}"),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }
}

/// How the events of a run are scheduled.
#[derive(Debug, Clone)]
pub struct Plan {
    pub start: Instant,
    /// Stop after this many events.
    pub limit: Option<u64>,
    /// Stop scheduling events at this instant.
    pub deadline: Option<Instant>,
    /// Fixed rate, events per second: event `i` is due at `start + i / rate`.
    pub rate: Option<f64>,
    pub request_timeout: Duration,
}

impl Plan {
    /// When event `i` is due in fixed-rate mode.
    fn intended(&self, i: u64) -> Option<Instant> {
        self.rate
            .map(|r| self.start + Duration::from_secs_f64(i as f64 / r))
    }
}

/// Everything the workers share.
#[derive(Debug)]
pub struct Shared {
    pub plan: Plan,
    pub target: Target,
    /// More hubs (nodes of one cluster): connection `k` goes to `[target, also…][k % n]`.
    also: Vec<Target>,
    /// Connections started so far, to spread them over the targets.
    connections: std::sync::atomic::AtomicUsize,
    pub template: Template,
    pub key: SigningKey,
    pub run: String,
    pub clock: Clock,
    next: AtomicU64,
    /// Requests written so far.
    pub sent: AtomicU64,
    /// 2xx answers so far.
    pub ok: AtomicU64,
    /// Failed requests so far.
    pub failed: AtomicU64,
    /// Set to make every worker stop after its current request.
    pub stop: AtomicBool,
    /// Keep a [`Sent`] record (with the body's hash) of every event written.
    record: bool,
}

impl Shared {
    pub fn new(
        plan: Plan,
        target: Target,
        template: Template,
        key: SigningKey,
        run: String,
        clock: Clock,
    ) -> Self {
        Self {
            plan,
            target,
            also: Vec::new(),
            connections: std::sync::atomic::AtomicUsize::new(0),
            template,
            key,
            run,
            clock,
            next: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            record: false,
        }
    }

    /// Spread the connections over these hubs too (nodes sharing one store), round robin.
    pub fn spreading(mut self, also: Vec<Target>) -> Self {
        self.also = also;
        self
    }

    /// The hub the next connection sends to.
    fn next_target(&self) -> &Target {
        let k = self.connections.fetch_add(1, Ordering::Relaxed) % (1 + self.also.len());
        match k {
            0 => &self.target,
            k => &self.also[k - 1],
        }
    }

    /// Record every event written to the hub ([`WorkerResult::log`]), for the crash oracle.
    pub fn recording(mut self) -> Self {
        self.record = true;
        self
    }

    /// Event numbers handed out so far (sent or not).
    pub fn attempted(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

/// One event written to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub seq: u64,
    /// [`payload::body_hash`] of the exact body sent.
    pub body_hash: u64,
    /// Answered 2xx.
    pub acked: bool,
}

/// What one worker measured.
#[derive(Debug, Clone)]
pub struct WorkerResult {
    pub sent: u64,
    /// 202: accepted and stored.
    pub accepted_new: u64,
    /// 200: already known (duplicate of an earlier send).
    pub duplicate: u64,
    /// Any other 2xx.
    pub other_2xx: u64,
    /// Seqs of the events answered with 2xx.
    pub accepted: Vec<u64>,
    /// Events that got no request written: no connection could be made.
    pub connect_failed: u64,
    /// Every event written, when recording.
    pub log: Vec<Sent>,
    /// Accept latency of 2xx answers, µs.
    pub latency_us: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// First response body seen per error kind (problem+json detail).
    pub examples: BTreeMap<String, String>,
    pub first_ok: Option<Instant>,
    pub last_done: Option<Instant>,
}

impl WorkerResult {
    fn new() -> Self {
        Self {
            sent: 0,
            accepted_new: 0,
            duplicate: 0,
            other_2xx: 0,
            accepted: Vec::new(),
            connect_failed: 0,
            log: Vec::new(),
            latency_us: new_histogram(),
            errors: BTreeMap::new(),
            examples: BTreeMap::new(),
            first_ok: None,
            last_done: None,
        }
    }

    fn error(&mut self, shared: &Shared, kind: String, example: Option<String>) {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(ex) = example {
            self.examples.entry(kind.clone()).or_insert(ex);
        }
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    /// Fold `other` into `self`.
    pub fn merge(&mut self, other: WorkerResult) {
        self.sent += other.sent;
        self.accepted_new += other.accepted_new;
        self.duplicate += other.duplicate;
        self.other_2xx += other.other_2xx;
        self.accepted.extend(other.accepted);
        self.connect_failed += other.connect_failed;
        self.log.extend(other.log);
        // Both histograms auto-resize, so adding cannot fail on range.
        let _ = self.latency_us.add(&other.latency_us);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.examples {
            self.examples.entry(k).or_insert(v);
        }
        self.first_ok = min_opt(self.first_ok, other.first_ok);
        self.last_done = self.last_done.max(other.last_done);
    }

    pub fn empty() -> Self {
        Self::new()
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

type Sender = SendRequest<Full<Bytes>>;

/// Why a request failed, as a short stable label.
fn classify(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return "connection closed before response".into();
    }
    if e.is_canceled() {
        return "request canceled".into();
    }
    if e.is_parse() {
        return "malformed response".into();
    }
    if e.is_timeout() {
        return "timeout".into();
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("io: {}", io.kind());
        }
        source = s.source();
    }
    format!("http: {e}")
}

async fn connect(target: &Target, timeout: Duration) -> Result<Sender, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(target.addr)).await {
        Err(_) => return Err("connect: timeout".into()),
        Ok(Err(e)) => return Err(format!("connect: {}", e.kind())),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("connect: {}", classify(&e)))?;
    tokio::spawn(async move {
        // Connection errors surface on the request side; nothing to do with them here.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Make `conn` a connection ready for a request, reconnecting if it was closed.
async fn ensure_ready(
    conn: &mut Option<Sender>,
    target: &Target,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(s) = conn.as_mut() {
        if s.ready().await.is_ok() {
            return Ok(());
        }
        *conn = None;
    }
    let mut s = connect(target, timeout).await?;
    s.ready()
        .await
        .map_err(|e| format!("connect: {}", classify(&e)))?;
    *conn = Some(s);
    Ok(())
}

enum Outcome {
    Answer {
        status: StatusCode,
        retry_after: bool,
        body: Bytes,
    },
    Failed(String),
}

async fn exchange(sender: &mut Sender, req: Request<Full<Bytes>>) -> Outcome {
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(classify(&e)),
    };
    let status = resp.status();
    let retry_after = resp.headers().contains_key(RETRY_AFTER);
    match resp.into_body().collect().await {
        Ok(b) => Outcome::Answer {
            status,
            retry_after,
            body: b.to_bytes(),
        },
        Err(e) => Outcome::Failed(format!("reading response: {}", classify(&e))),
    }
}

/// Send events until the plan is exhausted.
pub async fn worker(shared: Arc<Shared>) -> WorkerResult {
    let plan = &shared.plan;
    let target = shared.next_target();
    let mut res = WorkerResult::new();
    let mut conn: Option<Sender> = None;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if plan.limit.is_some_and(|n| i >= n) {
            break;
        }
        let intended = plan.intended(i);
        if let Some(deadline) = plan.deadline
            && intended.unwrap_or_else(Instant::now) >= deadline
        {
            break;
        }
        if let Some(due) = intended
            && due > Instant::now()
        {
            tokio::time::sleep_until(due.into()).await;
        }
        if let Err(kind) = ensure_ready(&mut conn, target, plan.request_timeout).await {
            conn = None;
            res.connect_failed += 1;
            res.error(&shared, kind, None);
            res.last_done = Some(Instant::now());
            tokio::time::sleep(CONNECT_BACKOFF).await;
            continue;
        }
        let Some(sender) = conn.as_mut() else {
            continue;
        };

        // In fixed-rate mode both latencies count from when the event was due, so a
        // stalled hub cannot hide its stall by delaying our sends.
        let sent_ns = shared.clock.wall_ns(intended.unwrap_or_else(Instant::now));
        let body = shared.template.body(sent_ns, i);
        let body_hash = shared.record.then(|| payload::body_hash(&body));
        let id = format!("evt_{}_{i}", shared.run);
        let ts = unix_secs();
        let sig = ferry_signature::standard_webhooks::sign(&shared.key, &id, ts, &body);
        let req = Request::post(target.path.as_str())
            .header(HOST, target.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts)
            .header("webhook-signature", sig)
            .body(Full::new(body));
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                res.error(&shared, format!("building request: {e}"), None);
                continue;
            }
        };
        let t0 = intended.unwrap_or_else(Instant::now);
        res.sent += 1;
        shared.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = tokio::time::timeout(plan.request_timeout, exchange(sender, req)).await;
        let done = Instant::now();
        res.last_done = Some(done);
        if let Some(body_hash) = body_hash {
            let acked =
                matches!(&outcome, Ok(Outcome::Answer { status, .. }) if status.is_success());
            res.log.push(Sent {
                seq: i,
                body_hash,
                acked,
            });
        }
        match outcome {
            Err(_) => {
                conn = None;
                res.error(&shared, "timeout".into(), None);
            }
            Ok(Outcome::Failed(kind)) => {
                conn = None;
                res.error(&shared, kind, None);
            }
            Ok(Outcome::Answer {
                status,
                retry_after,
                body,
            }) => {
                if status.is_success() {
                    shared.ok.fetch_add(1, Ordering::Relaxed);
                    match status {
                        StatusCode::ACCEPTED => res.accepted_new += 1,
                        StatusCode::OK => res.duplicate += 1,
                        _ => res.other_2xx += 1,
                    }
                    res.accepted.push(i);
                    res.first_ok.get_or_insert(done);
                    let us = done.saturating_duration_since(t0).as_micros();
                    res.latency_us
                        .saturating_record(u64::try_from(us).unwrap_or(u64::MAX).max(1));
                } else {
                    let kind = if retry_after {
                        format!("status {} (with Retry-After)", status.as_u16())
                    } else {
                        format!("status {}", status.as_u16())
                    };
                    let example: String = String::from_utf8_lossy(&body)
                        .chars()
                        .take(EXAMPLE_CHARS)
                        .collect();
                    res.error(&shared, kind, Some(example));
                }
            }
        }
    }
    res
}
