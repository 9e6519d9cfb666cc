//! Simulated SaaS vendors on loopback: systems that receive deliveries (sometimes failing on
//! purpose) and systems that send signed webhooks at a steady rate.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_signature::{SignatureScheme, SigningKey, schemes};
use rand::Rng;

/// How a simulated receiving system behaves.
#[derive(Debug, Clone)]
pub struct ReceiverBehaviour {
    /// Share of requests answered 503 (retried by the hub).
    pub fail_ratio: f64,
    /// Share answered 429 with `Retry-After: 1`.
    pub throttle_ratio: f64,
    /// Share answered 422 (permanent: dead-lettered by the hub).
    pub reject_ratio: f64,
    /// Answer every request with this status instead (e.g. 422 to fill the DLQ on purpose).
    pub always_status: Option<u16>,
    /// Added latency range in milliseconds.
    pub latency_ms: (u64, u64),
    /// Verify Standard Webhooks signatures with this key, if set.
    pub verify_key: Option<SigningKey>,
    /// Print one line per request (for `ferry demo --receivers-only`).
    pub print: bool,
}

/// Counters of a simulated receiver.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub failed_on_purpose: AtomicU64,
    /// Requests whose `webhook-id` had been accepted before (a retry after a lost answer or a
    /// replay): an idempotent receiver ignores them.
    pub repeats: AtomicU64,
    pub bad_signatures: AtomicU64,
    seen: Mutex<HashSet<String>>,
}

struct ReceiverState {
    name: String,
    behaviour: ReceiverBehaviour,
    stats: Arc<ReceiverStats>,
}

/// A running simulated receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    pub stats: Arc<ReceiverStats>,
}

/// Start a receiver called `name` on `bind` (port 0 for any free port).
pub async fn start_receiver(
    name: &str,
    bind: SocketAddr,
    behaviour: ReceiverBehaviour,
) -> anyhow::Result<Receiver> {
    let stats = Arc::new(ReceiverStats::default());
    let state = Arc::new(ReceiverState {
        name: name.to_string(),
        behaviour,
        stats: stats.clone(),
    });
    let app = Router::new().fallback(receive).with_state(state);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("the simulated {name} cannot listen on {bind}: {e}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Receiver { addr, stats })
}

async fn receive(
    State(st): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let b = &st.behaviour;
    st.stats.requests.fetch_add(1, Relaxed);
    let (delay, roll) = {
        let mut rng = rand::rng();
        let (lo, hi) = b.latency_ms;
        (
            if hi > lo {
                rng.random_range(lo..=hi)
            } else {
                lo
            },
            rng.random::<f64>(),
        )
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(key) = &b.verify_key {
        let verifier = schemes::StandardWebhooks::new(key.clone(), 300);
        let now = crate::clock::now_ms() / 1000;
        if verifier.verify(&headers, &body, now).is_err() {
            st.stats.bad_signatures.fetch_add(1, Relaxed);
            return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
        }
    }
    let status = if let Some(s) = b.always_status {
        StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else if roll < b.reject_ratio {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if roll < b.reject_ratio + b.throttle_ratio {
        StatusCode::TOO_MANY_REQUESTS
    } else if roll < b.reject_ratio + b.throttle_ratio + b.fail_ratio {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    if b.print {
        println!(
            "[{}] {} webhook-id={} {} bytes",
            st.name,
            status.as_u16(),
            id,
            body.len()
        );
    }
    if status.is_success() {
        st.stats.accepted.fetch_add(1, Relaxed);
        let first_time = st
            .stats
            .seen
            .lock()
            .map(|mut s| s.insert(id))
            .unwrap_or(true);
        if !first_time {
            st.stats.repeats.fetch_add(1, Relaxed);
        }
        return (StatusCode::OK, "ok").into_response();
    }
    st.stats.failed_on_purpose.fetch_add(1, Relaxed);
    let mut resp = match status {
        StatusCode::UNPROCESSABLE_ENTITY => {
            (status, "{\"error\":\"customer_id is not known here\"}").into_response()
        }
        StatusCode::TOO_MANY_REQUESTS => (status, "{\"error\":\"slow down\"}").into_response(),
        _ => (status, "{\"error\":\"temporarily unavailable\"}").into_response(),
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    resp
}

/// Counters of a simulated sender.
#[derive(Debug, Default)]
pub struct SenderStats {
    pub sent: AtomicU64,
    /// Answered 202: stored durably by the hub.
    pub accepted: AtomicU64,
    /// Answered 200 `duplicate: true`: the hub already had this event.
    pub duplicates: AtomicU64,
    /// Answered 4xx (e.g. a deliberately bad signature).
    pub rejected: AtomicU64,
    pub errors: AtomicU64,
}

/// How a simulated sender signs its webhooks.
#[derive(Debug, Clone)]
pub enum SenderSigning {
    StandardWebhooks(SigningKey),
    GitHub(Vec<u8>),
}

/// Send signed webhooks to `url` at `rate` per second until `stop` fires. Every 25th event is
/// sent twice (a vendor retry: the hub dedupes it) and every 100th with a wrong signature (the
/// hub refuses it).
pub async fn run_sender(
    url: String,
    signing: SenderSigning,
    rate: f64,
    stats: Arc<SenderStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    make_body: fn(u64) -> (String, String),
) {
    let client = match reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        n += 1;
        let (event_id, body) = make_body(n);
        let sends = if n.is_multiple_of(25) { 2 } else { 1 };
        for _ in 0..sends {
            let req = sign(
                client.post(&url),
                &signing,
                &event_id,
                &body,
                n.is_multiple_of(100),
            );
            let client_stats = stats.clone();
            tokio::spawn(async move {
                client_stats.sent.fetch_add(1, Relaxed);
                match req.send().await {
                    Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                        client_stats.accepted.fetch_add(1, Relaxed);
                    }
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        client_stats.duplicates.fetch_add(1, Relaxed);
                    }
                    Ok(_) => {
                        client_stats.rejected.fetch_add(1, Relaxed);
                    }
                    Err(_) => {
                        client_stats.errors.fetch_add(1, Relaxed);
                    }
                }
            });
        }
    }
}

fn sign(
    req: reqwest::RequestBuilder,
    signing: &SenderSigning,
    event_id: &str,
    body: &str,
    tamper: bool,
) -> reqwest::RequestBuilder {
    let req = req.header("content-type", "application/json");
    let signed_body = if tamper {
        format!("{body} ")
    } else {
        body.to_string()
    };
    let req = match signing {
        SenderSigning::StandardWebhooks(key) => {
            let ts = crate::clock::now_ms() / 1000;
            let sig =
                ferry_signature::standard_webhooks::sign(key, event_id, ts, signed_body.as_bytes());
            req.header("webhook-id", event_id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig)
        }
        SenderSigning::GitHub(secret) => req.header(
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(secret, signed_body.as_bytes())),
        ),
    };
    req.body(body.to_string())
}

/// HMAC-SHA256 of `body`, hex — what a GitHub-style sender computes.
fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A billing event: (sender event id, JSON body).
pub fn billing_event(n: u64) -> (String, String) {
    let kinds = [
        "invoice.paid",
        "invoice.created",
        "subscription.updated",
        "invoice.payment_failed",
    ];
    let kind = kinds[(n % kinds.len() as u64) as usize];
    let id = format!("msg_demo_{n:08}");
    let body = serde_json::json!({
        "type": kind,
        "id": id,
        "created": crate::clock::now_ms() / 1000,
        "data": {
            "invoice_id": format!("in_{n:06}"),
            "customer": {"id": format!("cus_{:04}", n % 997), "email": format!("customer{}@example.com", n % 997)},
            "amount": 1000 + (n * 37) % 90_000,
            "currency": "eur",
            "lines": [{"sku": "plan-pro", "quantity": 1 + n % 5}],
        }
    });
    (id, body.to_string())
}

/// A shop order event: (sender event id, JSON body).
pub fn shop_order(n: u64) -> (String, String) {
    let id = format!("ord_evt_{n:08}");
    let body = serde_json::json!({
        "id": id,
        "type": "order.created",
        "order": {"number": 10_000 + n, "total": 2500 + (n * 91) % 40_000, "currency": "eur", "items": 1 + n % 4},
    });
    (id, body.to_string())
}
