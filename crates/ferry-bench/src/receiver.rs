//! The destination the hub delivers to: records what arrived, and answers 200 — or, with
//! faults configured, 500, 429, 503, nothing at all, or a TCP reset (see `faults.rs`).
//! Only a 200 the receiver gave counts as a delivery.
//!
//! It is a plain hyper HTTP/1.1 server with its own accept loop, so it can reset a
//! connection (`SO_LINGER` 0, then close) and stop listening during an outage.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::faults::{Answer, Faults, Outage, OutageMode};
use crate::payload;

/// Longest a hung request is held when the client never gives up; then it is reset.
const HANG_MAX: Duration = Duration::from_secs(120);
/// Characters of the first unparsable body kept for the report.
const EXAMPLE_CHARS: usize = 200;

/// What the receiver has seen.
#[derive(Debug)]
pub struct Sink {
    clock: Clock,
    run: Vec<u8>,
    /// Requests received (any answer); the drain loop watches it for progress.
    requests: AtomicU64,
    /// Distinct events of this run delivered.
    unique: AtomicU64,
    inner: Mutex<Inner>,
}

/// What the receiver knows about one event of this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The `webhook-id` of its first delivery (empty when it had none).
    pub first_id: Box<str>,
    /// Hash of the body of its first delivery ([`payload::body_hash`]).
    pub body_hash: u64,
    /// Deliveries (answered 200), the first included.
    pub deliveries: u32,
    /// Later deliveries under a different `webhook-id` than the first.
    pub other_ids: u32,
    /// Later deliveries whose body differs from the first's.
    pub other_bodies: u32,
    /// The first different `webhook-id`, for the report.
    pub other_id_example: Option<Box<str>>,
}

#[derive(Debug)]
struct Inner {
    events: HashMap<u64, Seen>,
    /// Hashes of every `webhook-id` seen (this run).
    ids: HashSet<u64>,
    /// The counters (`requests` and `unique` are kept apart, as atomics, and filled in by
    /// [`Sink::stats`]).
    counts: SinkStats,
}

/// A copy of the receiver's counters.
#[derive(Debug, Clone)]
pub struct SinkStats {
    /// Requests received, whatever the answer.
    pub requests: u64,
    pub unique: u64,
    pub e2e_us: Histogram<u64>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Deliveries whose `webhook-id` had already been received.
    pub duplicate_ids: u64,
    /// Events received again under a different `webhook-id`.
    pub redelivered_events: u64,
    /// Deliveries of this run without a `webhook-id` header.
    pub missing_id: u64,
    /// Requests carrying another run's events.
    pub foreign: u64,
    /// Requests whose body is not a bench event.
    pub unparsable: u64,
    /// The start of the first such body.
    pub unparsable_example: Option<String>,
}

impl SinkStats {
    /// Nothing received.
    pub fn empty() -> Self {
        Self {
            requests: 0,
            unique: 0,
            e2e_us: new_histogram(),
            first: None,
            last: None,
            duplicate_ids: 0,
            redelivered_events: 0,
            missing_id: 0,
            foreign: 0,
            unparsable: 0,
            unparsable_example: None,
        }
    }

    /// The counters of several receivers added up (`unique` counts each event once per
    /// receiver), the latencies merged, the window from the first to the last arrival.
    pub fn merged<'a>(all: impl IntoIterator<Item = &'a SinkStats>) -> Self {
        let mut m = Self::empty();
        for s in all {
            m.requests += s.requests;
            m.unique += s.unique;
            // Both histograms auto-resize, so adding cannot fail on range.
            let _ = m.e2e_us.add(&s.e2e_us);
            m.first = match (m.first, s.first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            m.last = m.last.max(s.last);
            m.duplicate_ids += s.duplicate_ids;
            m.redelivered_events += s.redelivered_events;
            m.missing_id += s.missing_id;
            m.foreign += s.foreign;
            m.unparsable += s.unparsable;
            if m.unparsable_example.is_none() {
                m.unparsable_example.clone_from(&s.unparsable_example);
            }
        }
        m
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits; auto-resize keeps larger outliers recordable.
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("constant histogram bounds are valid");
    h.auto(true);
    h
}

fn id_hash(id: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl Sink {
    pub fn new(clock: Clock, run: &str) -> Self {
        Self {
            clock,
            run: run.as_bytes().to_vec(),
            requests: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                events: HashMap::new(),
                ids: HashSet::new(),
                counts: SinkStats::empty(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters unusable for a report.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn unique(&self) -> u64 {
        self.unique.load(Ordering::Relaxed)
    }

    /// The end-to-end latencies (µs) of the events received so far.
    pub fn e2e_us(&self) -> Histogram<u64> {
        self.lock().counts.e2e_us.clone()
    }

    /// Count a request answered with a fault (not a delivery).
    fn refused(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Record a delivery answered 200.
    fn record(&self, headers: &HeaderMap, body: &[u8]) {
        let now = Instant::now();
        let now_ns = self.clock.wall_ns(now);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let Some(p) = payload::probe(body) else {
            let counts = &mut self.lock().counts;
            counts.unparsable += 1;
            if counts.unparsable_example.is_none() {
                let text = String::from_utf8_lossy(body);
                counts.unparsable_example = Some(text.chars().take(EXAMPLE_CHARS).collect());
            }
            return;
        };
        if p.run != self.run.as_slice() {
            self.lock().counts.foreign += 1;
            return;
        }
        let hash = payload::body_hash(body);
        let id = headers.get("webhook-id").map(HeaderValue::as_bytes);
        let id_str = id.map(String::from_utf8_lossy).unwrap_or_default();
        let mut guard = self.lock();
        let g = &mut *guard;
        match id {
            None => g.counts.missing_id += 1,
            Some(id) => {
                if !g.ids.insert(id_hash(id)) {
                    g.counts.duplicate_ids += 1;
                }
            }
        }
        match g.events.get_mut(&p.seq) {
            Some(seen) => {
                seen.deliveries = seen.deliveries.saturating_add(1);
                if *seen.first_id != *id_str {
                    seen.other_ids = seen.other_ids.saturating_add(1);
                    seen.other_id_example.get_or_insert_with(|| id_str.into());
                    g.counts.redelivered_events += 1;
                }
                if seen.body_hash != hash {
                    seen.other_bodies = seen.other_bodies.saturating_add(1);
                }
            }
            None => {
                g.events.insert(
                    p.seq,
                    Seen {
                        first_id: id_str.into(),
                        body_hash: hash,
                        deliveries: 1,
                        other_ids: 0,
                        other_bodies: 0,
                        other_id_example: None,
                    },
                );
                let us = now_ns.saturating_sub(p.sent_ns) / 1_000;
                g.counts.e2e_us.saturating_record(us.max(1));
                g.counts.first.get_or_insert(now);
                g.counts.last = Some(now);
                self.unique.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many of `accepted` (event seqs) have not arrived.
    pub fn missing(&self, accepted: &[u64]) -> u64 {
        let g = self.lock();
        accepted
            .iter()
            .filter(|s| !g.events.contains_key(s))
            .count() as u64
    }

    /// Keep in `seqs` only the events that have not arrived.
    pub fn retain_missing(&self, seqs: &mut Vec<u64>) {
        let g = self.lock();
        seqs.retain(|s| !g.events.contains_key(s));
    }

    /// Every event of this run received so far.
    pub fn events(&self) -> HashMap<u64, Seen> {
        self.lock().events.clone()
    }

    pub fn stats(&self) -> SinkStats {
        let g = self.lock();
        SinkStats {
            requests: self.requests(),
            unique: g.events.len() as u64,
            ..g.counts.clone()
        }
    }
}

/// What every connection of a receiver shares.
#[derive(Debug)]
struct Ctx {
    sink: Arc<Sink>,
    faults: Arc<Faults>,
}

/// Bind `addr` and serve the sink on any path in the background, with `faults`; returns
/// the bound address. With an outage in `refuse` mode, give a fixed port (see `ports`).
pub async fn start(
    addr: SocketAddr,
    sink: Arc<Sink>,
    faults: Arc<Faults>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the receiver"))?;
    let bound = listener.local_addr()?;
    let outage = faults.outage().filter(|o| o.mode == OutageMode::Refuse);
    let ctx = Arc::new(Ctx { sink, faults });
    match outage {
        Some(o) => tokio::spawn(outage_cycle(listener, bound, ctx, o)),
        None => tokio::spawn(accept_loop(listener, ctx, None)),
    };
    Ok(bound)
}

/// Accept connections for ever; each is served in its own task and reset when `down`
/// turns true.
async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, down: Option<watch::Receiver<bool>>) {
    let mut warned = false;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, ctx.clone(), down.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: say so once, don't spin.
                if !warned {
                    eprintln!("ferry-bench: receiver cannot accept: {e}");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Serve for `up`, then close the listener and reset every connection for `down`, then
/// listen again on the same address; for ever.
async fn outage_cycle(first: TcpListener, addr: SocketAddr, ctx: Arc<Ctx>, outage: Outage) {
    let mut listener = Some(first);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => rebind(addr).await,
        };
        let (down_tx, down_rx) = watch::channel(false);
        // The accept loop never ends: the timeout drops it, and the listener with it.
        let _ = tokio::time::timeout(outage.up(), accept_loop(l, ctx.clone(), Some(down_rx))).await;
        let _ = down_tx.send(true);
        ctx.faults.counts.outages.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(outage.down).await;
    }
}

async fn rebind(addr: SocketAddr) -> TcpListener {
    let mut warned = false;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                if !warned {
                    eprintln!(
                        "ferry-bench: receiver cannot listen on {addr} again yet ({e}), retrying"
                    );
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serve one connection until it ends, a request asks for a reset, or an outage begins.
async fn connection(stream: TcpStream, ctx: Arc<Ctx>, down: Option<watch::Receiver<bool>>) {
    let _ = stream.set_nodelay(true);
    // A second handle on the socket that outlives hyper's: the socket closes when this task
    // ends, and with an RST when `SO_LINGER` is zero by then.
    let fd = stream.as_fd().try_clone_to_owned().ok();
    let reset = Arc::new(Notify::new());
    let service = {
        let (ctx, reset) = (ctx.clone(), reset.clone());
        service_fn(move |req| {
            let (ctx, reset) = (ctx.clone(), reset.clone());
            async move { Ok::<_, Infallible>(handle(&ctx, &reset, req).await) }
        })
    };
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let outage = async move {
        if let Some(mut rx) = down
            && rx.wait_for(|down| *down).await.is_ok()
        {
            return;
        }
        std::future::pending::<()>().await;
    };
    let by_outage = tokio::select! {
        _ = conn => return,
        () = reset.notified() => false,
        () = outage => true,
    };
    if by_outage {
        ctx.faults
            .counts
            .outage_resets
            .fetch_add(1, Ordering::Relaxed);
    }
    if let Some(fd) = &fd {
        let _ = socket2::SockRef::from(fd).set_linger(Some(Duration::ZERO));
    }
    // `fd` is the last handle on the socket: dropping it here sends the RST.
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Counts a hung request while it is held.
struct Hanging<'a>(&'a AtomicU64);

impl Drop for Hanging<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(ctx: &Ctx, reset: &Notify, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        // The client went away in the middle of the body.
        Err(_) => return plain(StatusCode::BAD_REQUEST),
    };
    let (answer, delay) = ctx.faults.draw();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    ctx.faults.counts.count(answer);
    if answer != Answer::Ok {
        ctx.sink.refused();
    }
    match answer {
        Answer::Ok => {
            ctx.sink.record(&parts.headers, &body);
            plain(StatusCode::OK)
        }
        Answer::Fail => plain(StatusCode::INTERNAL_SERVER_ERROR),
        Answer::TooMany => {
            let mut r = plain(StatusCode::TOO_MANY_REQUESTS);
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Answer::Unavailable => plain(StatusCode::SERVICE_UNAVAILABLE),
        Answer::Hang => {
            // hyper drops this future when the client closes the connection.
            let open = &ctx.faults.counts.open_hangs;
            open.fetch_add(1, Ordering::Relaxed);
            let _held = Hanging(open);
            tokio::time::sleep(HANG_MAX).await;
            reset.notify_one();
            std::future::pending().await
        }
        Answer::Reset => {
            reset.notify_one();
            std::future::pending().await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::cli::FaultOpts;
    use crate::payload::Template;

    fn headers(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h
    }

    #[test]
    fn counts_unique_duplicates_and_foreign() {
        let clock = Clock::new();
        let sink = Sink::new(clock, "0123456789abcdef");
        let t = Template::new("0123456789abcdef", 256).unwrap();
        let other = Template::new("fedcba9876543210", 256).unwrap();
        let sent = clock.now_ns();
        sink.record(&headers("dlv_1"), &t.body(sent, 1));
        sink.record(&headers("dlv_1"), &t.body(sent, 1)); // same delivery again
        sink.record(&headers("dlv_9"), &t.body(sent, 1)); // same event, new delivery id
        sink.record(&headers("dlv_2"), &t.body(sent, 2));
        sink.record(&headers("dlv_2"), &t.body(sent + 1, 2)); // same id, another body
        sink.record(&headers("dlv_3"), &other.body(sent, 3));
        sink.record(&headers("dlv_4"), b"{}");
        let s = sink.stats();
        assert_eq!((s.requests, s.unique), (7, 2));
        assert_eq!((s.duplicate_ids, s.redelivered_events), (2, 1));
        assert_eq!((s.foreign, s.unparsable, s.missing_id), (1, 1, 0));
        assert_eq!(s.unparsable_example.as_deref(), Some("{}"));
        assert_eq!(s.e2e_us.len(), 2);
        assert_eq!(sink.missing(&[1, 2, 3, 4]), 2);
        let mut seqs = vec![1, 2, 3, 4];
        sink.retain_missing(&mut seqs);
        assert_eq!(seqs, [3, 4]);
        let events = sink.events();
        let e1 = &events[&1];
        assert_eq!(
            (&*e1.first_id, e1.deliveries, e1.other_ids),
            ("dlv_1", 3, 1)
        );
        assert_eq!(e1.other_id_example.as_deref(), Some("dlv_9"));
        assert_eq!(e1.body_hash, payload::body_hash(&t.body(sent, 1)));
        assert_eq!((events[&2].other_ids, events[&2].other_bodies), (0, 1));

        let other = Sink::new(clock, "0123456789abcdef");
        other.record(&headers("dlv_7"), &t.body(sent, 7));
        let (a, b) = (sink.stats(), other.stats());
        let m = SinkStats::merged([&a, &b]);
        assert_eq!((m.requests, m.unique, m.e2e_us.len()), (8, 3, 3));
        assert_eq!((m.duplicate_ids, m.foreign), (2, 1));
        assert_eq!((m.first, m.last), (a.first, b.last));
        assert_eq!(SinkStats::merged([]).unique, 0);
    }

    fn faults(f: impl FnOnce(&mut FaultOpts)) -> Arc<Faults> {
        let mut o = FaultOpts::default();
        f(&mut o);
        Arc::new(Faults::new(&o, 42).unwrap())
    }

    async fn serve(faults: Arc<Faults>, addr: SocketAddr) -> (Arc<Sink>, SocketAddr, Template) {
        let run = payload::new_run_id();
        let sink = Arc::new(Sink::new(Clock::new(), &run));
        let bound = start(addr, sink.clone(), faults).await.unwrap();
        (sink, bound, Template::new(&run, 300).unwrap())
    }

    /// Write one request on a fresh connection; the raw answer, or the read error.
    async fn post(addr: SocketAddr, body: &[u8], id: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr).await?;
        let head = format!(
            "POST /sink HTTP/1.1\r\nhost: x\r\nwebhook-id: {id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[tokio::test]
    async fn only_200_answers_are_deliveries() {
        let f = faults(|o| {
            o.fail_ratio = 0.3;
            o.too_many_ratio = 0.2;
        });
        let (sink, addr, t) = serve(f.clone(), "127.0.0.1:0".parse().unwrap()).await;
        let (mut ok, mut other) = (0, 0);
        for seq in 0..60 {
            let answer = post(addr, &t.body(1, seq), &format!("dlv_{seq}"))
                .await
                .unwrap();
            if answer.starts_with("HTTP/1.1 200") {
                ok += 1;
            } else if answer.starts_with("HTTP/1.1 429") {
                assert!(answer.to_ascii_lowercase().contains("retry-after: 1"));
                other += 1;
            } else {
                assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
                other += 1;
            }
        }
        assert!(ok > 10 && other > 10, "{ok} {other}");
        let s = sink.stats();
        assert_eq!((s.unique, s.requests), (ok, 60));
        let tally = f.counts.tally();
        assert_eq!(tally.status_500 + tally.status_429, other);
    }

    #[tokio::test]
    async fn reset_is_a_tcp_reset_and_hang_ends_with_the_client() {
        let f = faults(|o| o.reset_ratio = 0.999);
        let (sink, addr, t) = serve(f.clone(), "127.0.0.1:0".parse().unwrap()).await;
        let err = post(addr, &t.body(1, 1), "dlv_1").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        assert_eq!((sink.unique(), f.counts.tally().reset), (0, 1));

        let f = faults(|o| o.hang_ratio = 0.999);
        let (sink, addr, t) = serve(f.clone(), "127.0.0.1:0".parse().unwrap()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let body = t.body(1, 1);
        let head = format!(
            "POST /sink HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        // Polled with generous deadlines: a busy machine may take its time to get there.
        let t0 = Instant::now();
        while f.counts.open_hangs.load(Ordering::Relaxed) != 1 {
            assert!(t0.elapsed() < Duration::from_secs(30), "no hang began");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(read.is_err(), "a hung request must get no answer");
        drop(s);
        let t0 = Instant::now();
        while f.counts.open_hangs.load(Ordering::Relaxed) != 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "hang outlived its client"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!((sink.unique(), f.counts.tally().hang), (0, 1));
    }

    /// Poll `cond` every 10 ms; panic with `what` after a generous 30 s.
    async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
        let t0 = Instant::now();
        while !cond().await {
            assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn outage_refuses_connections_then_listens_again() {
        // Up for 5 s, then down for 1 s. The test follows the phases by what it observes (a
        // reset, a refused connection, an answer again), not by sleeping through them; the
        // only thing it needs time for is to connect and post once in the first 5 s up.
        let f = faults(|o| o.outage = Some("every=6s,for=1s".parse().unwrap()));
        let addr = crate::ports::stable_loopback().unwrap();
        let (sink, addr, t) = serve(f.clone(), addr).await;
        // A kept-alive connection opened while up (and accepted: the post's, after it, was
        // answered)...
        let mut kept = TcpStream::connect(addr).await.unwrap();
        assert!(
            post(addr, &t.body(1, 1), "dlv_1")
                .await
                .unwrap()
                .starts_with("HTTP/1.1 200")
        );
        // ... is reset when the outage begins (the read waits for it).
        let mut buf = [0u8; 1];
        assert_eq!(
            kept.read(&mut buf).await.unwrap_err().kind(),
            ErrorKind::ConnectionReset
        );
        until("the outage to be counted", || async {
            f.counts.tally().outages >= 1
        })
        .await;
        assert_eq!(
            f.counts.tally().outage_resets,
            1,
            "only the kept connection"
        );
        until("a connection refused", || async {
            TcpStream::connect(addr)
                .await
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
        })
        .await;
        // Up again: a post goes through.
        let body = t.body(1, 2);
        until("the receiver to answer again", || async {
            post(addr, &body, "dlv_2")
                .await
                .is_ok_and(|a| a.starts_with("HTTP/1.1 200"))
        })
        .await;
        assert_eq!(sink.unique(), 2);
    }
}
