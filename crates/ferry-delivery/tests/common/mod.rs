//! Test helpers: scripted loopback receivers (axum and raw TCP), a real store, polling.
#![allow(dead_code)]

pub mod recording;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use ferry_delivery::{HttpTarget, LaneSpec, RetryPolicy};
use ferry_store::{
    DeliveryDetail, DeliveryId, EventId, LaneKey, Millis, NewDelivery, NewEvent, Store,
};
use reqwest::{Method, Url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous deadline for anything awaited in a test.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One scripted answer of a receiver.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: vec![],
            body: vec![],
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub path: String,
}

#[derive(Clone)]
struct RecvState {
    script: Arc<Vec<Reply>>,
    received: Arc<Mutex<Vec<Received>>>,
    current: Arc<AtomicUsize>,
    max_concurrent: Arc<AtomicUsize>,
}

/// A loopback HTTP receiver answering with `script` in order (the last reply repeats).
pub struct Receiver {
    pub addr: SocketAddr,
    state: RecvState,
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Receiver {
        assert!(!script.is_empty());
        let state = RecvState {
            script: Arc::new(script),
            received: Arc::default(),
            current: Arc::default(),
            max_concurrent: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    pub fn max_concurrent(&self) -> usize {
        self.state.max_concurrent.load(Ordering::SeqCst)
    }
}

async fn handle(
    State(state): State<RecvState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            headers,
            body,
            path: uri.path().to_owned(),
        });
        received.len() - 1
    };
    let now = state.current.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_concurrent.fetch_max(now, Ordering::SeqCst);
    let reply = state.script[n.min(state.script.len() - 1)].clone();
    tokio::time::sleep(reply.delay).await;
    state.current.fetch_sub(1, Ordering::SeqCst);
    let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in &reply.headers {
        response = response.header(*name, value.as_str());
    }
    response.body(Body::from(reply.body)).unwrap()
}

/// Body bytes an endless server writes on one connection at most.
pub const ENDLESS_CAP: usize = 256 << 20;

/// What a raw server's endless body came to on its (last) connection.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Body bytes written.
    pub written: AtomicUsize,
    /// Set when the server stopped: the client hung up or [`ENDLESS_CAP`] was reached.
    pub ended: AtomicBool,
}

/// A raw TCP server: reads a request head, then writes `head` and, if `endless_chunks`,
/// chunked body data until the client hangs up (at most [`ENDLESS_CAP`] bytes).
pub async fn raw_server(head: &'static [u8], endless_chunks: bool) -> SocketAddr {
    raw_server_watched(head, endless_chunks).await.0
}

/// [`raw_server`], also telling how much of the endless body it wrote before it stopped.
pub async fn raw_server_watched(
    head: &'static [u8],
    endless_chunks: bool,
) -> (SocketAddr, Arc<Streamed>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streamed = Arc::new(Streamed::default());
    let watched = streamed.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let streamed = watched.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                if socket.write_all(head).await.is_err() {
                    return;
                }
                if endless_chunks {
                    let chunk = [b"4000\r\n".as_slice(), &[b'a'; 0x4000], b"\r\n"].concat();
                    while streamed.written.load(Ordering::SeqCst) < ENDLESS_CAP {
                        if socket.write_all(&chunk).await.is_err() {
                            break;
                        }
                        streamed.written.fetch_add(chunk.len(), Ordering::SeqCst);
                    }
                    streamed.ended.store(true, Ordering::SeqCst);
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, streamed)
}

/// A port with nothing listening: bind, note the address, drop the listener.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

pub fn lane(flow: &str, destination: &str) -> LaneKey {
    LaneKey {
        flow: flow.to_owned(),
        destination: destination.to_owned(),
    }
}

pub fn target(url: Url) -> HttpTarget {
    HttpTarget {
        url,
        method: Method::POST,
        headers: reqwest::header::HeaderMap::new(),
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        signing_key: None,
        egress: loopback_allowed(),
        format: Default::default(),
    }
}

/// The receivers of these tests listen on loopback, which the SSRF guard refuses unless
/// allow-listed.
pub fn loopback_allowed() -> ferry_delivery::EgressPolicy {
    ferry_delivery::EgressPolicy::from_entries(["127.0.0.0/8", "::1"]).unwrap()
}

/// Short backoffs so retries happen within a test.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        max_age: Duration::from_secs(3600),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    }
}

pub fn spec(key: LaneKey, target: HttpTarget, retry: RetryPolicy, concurrency: usize) -> LaneSpec {
    LaneSpec {
        key,
        connector: Arc::new(ferry_delivery::HttpConnector::new(target, concurrency).unwrap()),
        retry,
        concurrency,
        gate: Default::default(),
        batch: None,
        render: None,
        system: Some("dst".into()),
    }
}

/// A real SQLite store in a fresh temporary directory.
pub fn open_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = ferry_store::sqlite::SqliteStore::open(
        dir.path(),
        ferry_store::sqlite::SqliteOptions::default(),
    )
    .unwrap();
    (dir, Arc::new(store))
}

/// Append one event for `lane`, due now; returns its delivery id.
pub async fn append(
    store: &dyn Store,
    lane: &LaneKey,
    payload: &'static [u8],
    headers: &[(&str, &str)],
) -> DeliveryId {
    let now = now_millis();
    let id = DeliveryId::new();
    store
        .append(vec![NewEvent {
            id: EventId::new(),
            flow: lane.flow.clone(),
            source: "test".into(),
            dedupe_key: None,
            event_type: Some("order.created".into()),
            received_at: now,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            payload: Bytes::from_static(payload),
            deliveries: vec![NewDelivery {
                id,
                destination: lane.destination.clone(),
                due_at: now,
                order_key: None,
                claimed_until: None,
            }],
            dedupe_window: None,
            audit: Default::default(),
        }])
        .await
        .unwrap();
    id
}

/// Poll the delivery until `pred` holds; panic with its last state after [`DEADLINE`].
pub async fn wait_for(
    store: &dyn Store,
    id: DeliveryId,
    what: &str,
    pred: impl Fn(&DeliveryDetail) -> bool,
) -> DeliveryDetail {
    let started = Instant::now();
    loop {
        let detail = store.delivery(id).await.unwrap();
        if let Some(detail) = &detail
            && pred(detail)
        {
            return detail.clone();
        }
        if started.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}; last seen: {detail:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `cond` until it holds or [`DEADLINE`] passes.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        if started.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
