//! An HTTP destination's `auth: oauth2`, against a real token endpoint and a real receiver on
//! loopback: the token is fetched once for many deliveries, fetched again when it is due,
//! refreshed once after a `401` however many attempts got one, fetched with the refresh
//! token (and the one the server rotates to), and a token endpoint that is down fails the
//! attempts retryably (`auth_failed`) until it comes back.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use common::*;
use tokio::sync::Notify;

const CLIENT_ID: &str = "ferry client";
const CLIENT_SECRET: &str = "cl1ent-s3cret:&=";
const REFRESH_TOKEN: &str = "rt-initial-0a1b2c";

/// One token request as the endpoint saw it.
#[derive(Debug, Clone)]
struct TokenRequest {
    authorization: String,
    content_type: String,
    form: HashMap<String, String>,
}

#[derive(Default)]
struct Issuer {
    requests: Vec<TokenRequest>,
    /// Answer this status (with an OAuth2 error) instead of a token while set.
    down: Option<u16>,
    expires_in: u64,
    /// Rotate refresh tokens: answer `rt-<n>` with the n-th token.
    rotate: bool,
    /// Hold each answer this long (so attempts pile up behind one fetch).
    delay: Duration,
    /// Tokens the receiver accepts.
    valid: HashSet<String>,
}

/// A token endpoint on loopback (`POST /token`), issuing `tok-1`, `tok-2`, …
#[derive(Clone)]
struct TokenServer {
    url: String,
    issuer: Arc<Mutex<Issuer>>,
}

impl TokenServer {
    async fn start(expires_in: u64) -> Self {
        let issuer = Arc::new(Mutex::new(Issuer {
            expires_in,
            ..Issuer::default()
        }));
        let app = Router::new()
            .route("/token", post(issue))
            .with_state(issuer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, issuer }
    }

    fn requests(&self) -> Vec<TokenRequest> {
        self.issuer.lock().unwrap().requests.clone()
    }

    fn count(&self) -> usize {
        self.issuer.lock().unwrap().requests.len()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Issuer) -> T) -> T {
        f(&mut self.issuer.lock().unwrap())
    }
}

async fn issue(
    State(issuer): State<Arc<Mutex<Issuer>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let form: HashMap<String, String> = form_pairs(&body);
    let (answer, delay) = {
        let mut g = issuer.lock().unwrap();
        g.requests.push(TokenRequest {
            authorization: header("authorization"),
            content_type: header("content-type"),
            form,
        });
        let n = g.requests.len();
        let answer = match g.down {
            Some(status) => Err(status),
            None => {
                let token = format!("tok-{n}");
                g.valid.insert(token.clone());
                let mut json = serde_json::json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": g.expires_in,
                });
                if g.rotate {
                    json["refresh_token"] = format!("rt-{}", n + 1).into();
                }
                Ok(json)
            }
        };
        (answer, g.delay)
    };
    tokio::time::sleep(delay).await;
    match answer {
        Ok(json) => axum::Json(json).into_response(),
        Err(status) => (
            StatusCode::from_u16(status).unwrap(),
            axum::Json(serde_json::json!({"error": "temporarily_unavailable"})),
        )
            .into_response(),
    }
}

/// `a=1&b=2` as pairs (`+` and `%xx` decoded).
fn form_pairs(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

/// What the receiver saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    token: String,
    status: u16,
}

struct Gate {
    seen: Vec<Seen>,
    /// A `401` is held until this many requests carry refused tokens (then all are
    /// answered), so that the attempts that get one overlap.
    hold_401: usize,
    refused: usize,
}

/// A receiver that accepts the token server's valid tokens and answers `401` to others.
#[derive(Clone)]
struct Receiver {
    url: String,
    gate: Arc<Mutex<Gate>>,
    arrived: Arc<Notify>,
    issuer: Arc<Mutex<Issuer>>,
}

impl Receiver {
    async fn start(tokens: &TokenServer) -> Self {
        let receiver = Receiver {
            url: String::new(),
            gate: Arc::new(Mutex::new(Gate {
                seen: Vec::new(),
                hold_401: 0,
                refused: 0,
            })),
            arrived: Arc::new(Notify::new()),
            issuer: tokens.issuer.clone(),
        };
        let app = Router::new().fallback(receive).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, ..receiver }
    }

    fn seen(&self) -> Vec<Seen> {
        self.gate.lock().unwrap().seen.clone()
    }

    fn accepted(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.status == 200)
            .map(|s| s.token)
            .collect()
    }

    fn refused(&self) -> usize {
        self.seen().iter().filter(|s| s.status == 401).count()
    }
}

async fn receive(State(rx): State<Receiver>, headers: HeaderMap) -> StatusCode {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let valid = rx.issuer.lock().unwrap().valid.contains(&token);
    let status = if valid { 200 } else { 401 };
    if !valid {
        let hold = {
            let mut g = rx.gate.lock().unwrap();
            g.refused += 1;
            g.hold_401
        };
        rx.arrived.notify_waiters();
        // Generous: the attempts arrive within milliseconds of each other.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while rx.gate.lock().unwrap().refused < hold && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.arrived.notified()).await;
        }
    }
    rx.gate.lock().unwrap().seen.push(Seen { token, status });
    StatusCode::from_u16(status).unwrap()
}

/// A destination posting to `receiver` with `auth: oauth2` (`extra`: more oauth2 fields).
fn destination(
    receiver: &Receiver,
    tokens: &TokenServer,
    extra: &str,
    concurrency: usize,
) -> String {
    format!(
        "      crm:\n        system: dst\n        concurrency: {concurrency}\n        http:\n          url: {}\n          timeout: 5s\n          connect_timeout: 1s\n          auth:\n            oauth2:\n              token_url: {}\n              client_id: {CLIENT_ID}\n              client_secret: {{ file: client-secret }}\n{extra}        retry:\n          max_attempts: 50\n          initial_backoff: 20ms\n          max_backoff: 100ms\n",
        receiver.url, tokens.url
    )
}

/// A hub on a fresh config with this destination.
async fn hub(destination: &str) -> (tempfile::TempDir, tempfile::TempDir, ferry::hub::RunningHub) {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_config(cfg.path(), destination);
    std::fs::write(
        cfg.path().join("client-secret"),
        format!("{CLIENT_SECRET}\n"),
    )
    .unwrap();
    std::fs::write(cfg.path().join("refresh-token"), REFRESH_TOKEN).unwrap();
    let hub = start_hub(cfg.path(), data.path()).await;
    (cfg, data, hub)
}

async fn send_events(hub: std::net::SocketAddr, prefix: &str, n: usize) {
    for i in 0..n {
        let body = format!(r#"{{"type":"t","n":{i}}}"#);
        let status = send(hub, &format!("{prefix}-{i}"), &body).await.status();
        assert_eq!(status, 202);
    }
}

async fn wait_accepted(receiver: &Receiver, n: usize) {
    wait_until(30, &format!("{n} deliveries accepted"), || async {
        receiver.accepted().len() >= n
    })
    .await;
}

#[tokio::test]
async fn one_token_serves_many_deliveries() {
    let tokens = TokenServer::start(3600).await;
    let receiver = Receiver::start(&tokens).await;
    let extra = "              scope: orders:write crm.read\n              audience: https://api.crm.example\n";
    let (_cfg, _data, hub) = hub(&destination(&receiver, &tokens, extra, 4)).await;

    send_events(hub.addr(), "many", 20).await;
    wait_accepted(&receiver, 20).await;

    assert_eq!(tokens.count(), 1, "one token request for 20 deliveries");
    assert!(receiver.accepted().iter().all(|t| t == "tok-1"));
    assert_eq!(receiver.refused(), 0);
    let request = &tokens.requests()[0];
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
    let basic =
        base64::engine::general_purpose::STANDARD.encode("ferry+client:cl1ent-s3cret%3A%26%3D");
    assert_eq!(request.authorization, format!("Basic {basic}"));
    assert_eq!(request.content_type, "application/x-www-form-urlencoded");
    assert_eq!(request.form["grant_type"], "client_credentials");
    assert_eq!(request.form["scope"], "orders:write crm.read");
    assert_eq!(request.form["audience"], "https://api.crm.example");
    assert!(
        !request.form.contains_key("client_secret"),
        "the secret goes in Basic only"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_token_due_for_refresh_is_fetched_again_before_it_expires() {
    // 2 s tokens are refreshed at 80 % of their life: after 1.6 s.
    let tokens = TokenServer::start(2).await;
    let receiver = Receiver::start(&tokens).await;
    let (_cfg, _data, hub) = hub(&destination(&receiver, &tokens, "", 1)).await;

    send_events(hub.addr(), "first", 1).await;
    wait_accepted(&receiver, 1).await;
    assert_eq!(tokens.count(), 1);
    // Let the token come due (not a timed assertion: nothing is measured).
    tokio::time::sleep(Duration::from_millis(1800)).await;
    send_events(hub.addr(), "second", 1).await;
    wait_accepted(&receiver, 2).await;

    assert_eq!(tokens.count(), 2, "the due token was replaced");
    assert_eq!(receiver.accepted(), vec!["tok-1", "tok-2"]);
    assert_eq!(
        receiver.refused(),
        0,
        "refreshed before the receiver refused it"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_401_refreshes_once_for_all_concurrent_attempts() {
    const N: usize = 8;
    let tokens = TokenServer::start(3600).await;
    let receiver = Receiver::start(&tokens).await;
    let (_cfg, _data, hub) = hub(&destination(&receiver, &tokens, "", N)).await;

    send_events(hub.addr(), "warm", 1).await;
    wait_accepted(&receiver, 1).await;
    // The receiver stops accepting tok-1 (revoked); N attempts get their 401s together,
    // and the new token comes slowly, so they all wait for the same fetch.
    tokens.with(|issuer| {
        issuer.valid.remove("tok-1");
        issuer.delay = Duration::from_millis(300);
    });
    receiver.gate.lock().unwrap().hold_401 = N;
    send_events(hub.addr(), "burst", N).await;
    wait_accepted(&receiver, 1 + N).await;

    assert_eq!(
        receiver.refused(),
        N,
        "every attempt of the burst sent tok-1 once"
    );
    assert_eq!(tokens.count(), 2, "one refresh for {N} refused attempts");
    assert!(receiver.accepted()[1..].iter().all(|t| t == "tok-2"));
    // Retried at once, within the attempt: one attempt per delivery.
    let all = delivered_at_least(hub.addr(), 1 + N).await;
    assert_eq!(all.len(), 1 + N);
    assert!(all.iter().all(|d| d["attempts"] == 1), "{all:?}");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_refresh_token_grant_sends_the_refresh_token_and_keeps_the_rotated_one() {
    let tokens = TokenServer::start(3600).await;
    tokens.with(|issuer| issuer.rotate = true);
    let receiver = Receiver::start(&tokens).await;
    let extra = "              refresh_token: { file: refresh-token }\n";
    let (_cfg, _data, hub) = hub(&destination(&receiver, &tokens, extra, 1)).await;

    send_events(hub.addr(), "one", 1).await;
    wait_accepted(&receiver, 1).await;
    tokens.with(|issuer| issuer.valid.remove("tok-1"));
    send_events(hub.addr(), "two", 1).await;
    wait_accepted(&receiver, 2).await;

    let requests = tokens.requests();
    assert_eq!(requests.len(), 2);
    let grants: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| {
            (
                r.form["grant_type"].as_str(),
                r.form["refresh_token"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        grants,
        vec![("refresh_token", REFRESH_TOKEN), ("refresh_token", "rt-2")],
        "the configured refresh token, then the one the server rotated to"
    );
    assert_eq!(receiver.accepted(), vec!["tok-1", "tok-2"]);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_token_endpoint_that_is_down_is_retried_and_the_delivery_arrives_when_it_returns() {
    let tokens = TokenServer::start(3600).await;
    tokens.with(|issuer| issuer.down = Some(503));
    let receiver = Receiver::start(&tokens).await;
    let (_cfg, _data, hub) = hub(&destination(&receiver, &tokens, "", 1)).await;

    send_events(hub.addr(), "down", 1).await;
    wait_until(30, "a few failed token requests", || async {
        tokens.count() >= 3
    })
    .await;
    assert!(receiver.seen().is_empty(), "no call without a token");
    tokens.with(|issuer| issuer.down = None);
    wait_accepted(&receiver, 1).await;

    let all = delivered_at_least(hub.addr(), 1).await;
    let id = all[0]["id"].as_str().unwrap();
    let detail = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 3, "{detail}");
    let failed = &attempts[0];
    assert_eq!(failed["error_class"], "auth_failed", "{detail}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("HTTP 503"), "{error}");
    assert!(!detail.to_string().contains(CLIENT_SECRET), "{detail}");
    assert!(
        !detail.to_string().contains("tok-"),
        "no token in the record: {detail}"
    );
    hub.shutdown().await.unwrap();
}
