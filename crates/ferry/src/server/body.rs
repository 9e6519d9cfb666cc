//! Reading a request body within bounds: its size, the time it may take (a deadline and a
//! minimum rate, against slow uploads), and the memory all bodies in flight may hold together
//! (a global budget, so many half-sent bodies cannot grow the process without limit).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::problem::Problem;

/// Time given to a body before its rate is checked (a client's first packets may lag).
const RATE_GRACE: Duration = Duration::from_secs(2);

/// The bounds every ingress body is read within (`settings.server`).
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// The whole body must arrive within this time of the headers.
    pub timeout: Duration,
    /// Slowest accepted upload, bytes per second, after [`RATE_GRACE`].
    pub min_rate: u64,
    /// Bytes of bodies in memory at once, over all requests.
    pub budget: BodyBudget,
}

impl BodyLimits {
    /// The limits of `settings.server`.
    pub fn from_settings(s: &ferry_config::ServerSettings) -> Self {
        Self {
            timeout: s.body_timeout,
            min_rate: s.min_body_rate.max(1),
            budget: BodyBudget::new(s.body_memory),
        }
    }
}

/// The memory budget of bodies in flight, in bytes.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes of the budget held by one request; given back when dropped.
#[derive(Debug)]
pub struct BudgetHold(Option<OwnedSemaphorePermit>);

impl BodyBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Bytes free now (for metrics and tests).
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Take `n` more bytes into `hold`, or refuse at once when the budget has no room.
    fn take(&self, hold: &mut BudgetHold, n: usize) -> Result<(), Problem> {
        if n == 0 {
            return Ok(());
        }
        let permit = u32::try_from(n)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| busy(self.total))?;
        match &mut hold.0 {
            Some(held) => held.merge(permit),
            None => hold.0 = Some(permit),
        }
        Ok(())
    }
}

fn busy(total: usize) -> Problem {
    metrics::counter!(ferry_metrics::INGRESS_BODY_BUDGET_EXHAUSTED_TOTAL).increment(1);
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_busy",
        "Server busy",
        format!(
            "request bodies in flight already hold the server's body memory budget \
             ({total} bytes, settings.server.body_memory); retry later"
        ),
    )
    .retry_after(1)
}

fn too_large(what: String) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "Body too large",
        what,
    )
}

fn too_slow(detail: String) -> Problem {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "Body too slow",
        detail,
    )
}

/// Read `body` whole, refusing it when it is over `limit` bytes (by `Content-Length` first,
/// then while reading, so a lying or absent length cannot get past the limit), when it does
/// not arrive in time or fast enough, or when the memory budget has no room for it. The
/// returned hold keeps the body's bytes in the budget until it is dropped: keep it as long
/// as the body is in memory.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    limits: &BodyLimits,
) -> Result<(Bytes, BudgetHold), Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        return Err(too_large(format!(
            "the body is {len} bytes; this flow accepts at most {limit}"
        )));
    }
    let mut hold = BudgetHold(None);
    // With a declared length, the whole body is reserved before a byte is read.
    let reserved = declared.map_or(0, |len| len as usize);
    limits.budget.take(&mut hold, reserved)?;

    let started = Instant::now();
    let hard_deadline = started + limits.timeout;
    let mut buf = BytesMut::with_capacity(reserved.min(limit));
    let mut body = body;
    loop {
        // The bytes so far plus the next one must keep to the minimum rate after the grace.
        let wanted = buf.len() as u64 + 1;
        let rate_deadline =
            started + RATE_GRACE + Duration::from_secs_f64(wanted as f64 / limits.min_rate as f64);
        let deadline = hard_deadline.min(rate_deadline);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    "Body unreadable",
                    format!("reading the body failed: {e}"),
                ));
            }
            Err(_) => {
                metrics::counter!(ferry_metrics::INGRESS_BODY_TIMEOUTS_TOTAL).increment(1);
                return Err(too_slow(if deadline == hard_deadline {
                    format!(
                        "the body did not arrive within {}s (settings.server.body_timeout); \
                         {} bytes came",
                        limits.timeout.as_secs_f64(),
                        buf.len()
                    )
                } else {
                    format!(
                        "the body arrived slower than {} bytes/s \
                         (settings.server.min_body_rate); {} bytes came",
                        limits.min_rate,
                        buf.len()
                    )
                }));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing Ferry reads
        };
        if buf.len() + data.len() > limit {
            return Err(too_large(format!(
                "the body exceeds this flow's limit of {limit} bytes"
            )));
        }
        let unreserved = (buf.len() + data.len()).saturating_sub(reserved.max(buf.len()));
        limits.budget.take(&mut hold, unreserved)?;
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), hold))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Chunks sent by hand, as a body stream.
    struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

    impl futures_core::Stream for Chunks {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }

    /// A body fed by hand, chunk by chunk.
    fn channel_body() -> (
        tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
        Body,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        (tx, Body::from_stream(Chunks(rx)))
    }

    fn limits(budget: usize) -> BodyLimits {
        BodyLimits {
            timeout: Duration::from_secs(30),
            min_rate: 1000,
            budget: BodyBudget::new(budget),
        }
    }

    #[tokio::test]
    async fn a_whole_body_is_read_and_its_bytes_held_until_dropped() {
        let limits = limits(1000);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        let (bytes, hold) = read_body(&headers, Body::from("hello"), 100, &limits)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(limits.budget.available(), 995);
        drop(hold);
        assert_eq!(limits.budget.available(), 1000);
    }

    #[tokio::test]
    async fn a_body_that_does_not_fit_the_budget_is_refused_503() {
        let limits = limits(10);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "8".parse().unwrap());
        let (_, _held) = read_body(&headers, Body::from("12345678"), 100, &limits)
            .await
            .unwrap();
        // Without a length, the budget is taken as chunks come, and refused when full.
        let err = read_body(&HeaderMap::new(), Body::from("abcdef"), 100, &limits)
            .await
            .unwrap_err();
        assert_eq!((err.status, err.code), (503, "server_busy"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_refused_408() {
        let limits = limits(1_000_000);
        let (tx, body) = channel_body();
        let feeder = tokio::spawn(async move {
            loop {
                if tx.send(Ok(Bytes::from_static(b"x"))).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let err = read_body(&HeaderMap::new(), body, 1_000_000, &limits)
            .await
            .unwrap_err();
        assert_eq!((err.status, err.code), (408, "body_timeout"));
        assert!(err.detail.contains("bytes/s"), "{}", err.detail);
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_is_refused_408_and_gives_its_budget_back() {
        let limits = limits(1_000_000);
        let (tx, body) = channel_body();
        tx.send(Ok(Bytes::from(vec![b'x'; 100_000]))).await.unwrap();
        let err = read_body(&HeaderMap::new(), body, 1_000_000, &limits)
            .await
            .unwrap_err();
        assert_eq!((err.status, err.code), (408, "body_timeout"));
        assert_eq!(limits.budget.available(), 1_000_000);
        drop(tx);
    }
}
