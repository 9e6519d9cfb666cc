//! Shared test harness: config directories, a scriptable HTTP receiver on loopback, signed
//! senders, and an in-process hub.
#![allow(dead_code)]

pub mod pages;
pub mod pg;
pub mod queues;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry::hub::{HubOptions, RunningHub};
use ferry_signature::SigningKey;

pub const ADMIN_TOKEN: &str = "test-admin-token-0f1e2d3c4b5a69788796a5b4";
pub const SOURCE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request as a receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path and query, as requested.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<&'static str>,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct ReceiverInner {
    script: VecDeque<Answer>,
    default: Option<Answer>,
    received: Vec<Received>,
}

/// An HTTP receiver on 127.0.0.1 that answers from a script (then 200) and records requests.
#[derive(Clone)]
pub struct TestReceiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<ReceiverInner>>,
}

impl TestReceiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(ReceiverInner::default()));
        let app = Router::new().fallback(answer).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answer the next requests with these, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// Answer with this once the script is used up (default 200).
    pub fn set_default(&self, a: Answer) {
        self.inner.lock().unwrap().default = Some(a);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().received.len()
    }
}

async fn answer(
    State(inner): State<Arc<Mutex<ReceiverInner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let a = {
        let mut g = inner.lock().unwrap();
        g.received.push(Received {
            path: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers,
            body,
            at: Instant::now(),
        });
        g.script
            .pop_front()
            .or_else(|| g.default.clone())
            .unwrap_or(Answer::status(200))
    };
    if !a.delay.is_zero() {
        tokio::time::sleep(a.delay).await;
    }
    let mut resp = (
        StatusCode::from_u16(a.status).unwrap(),
        format!("answer {}", a.status),
    )
        .into_response();
    if let Some(ra) = a.retry_after {
        resp.headers_mut()
            .insert("retry-after", ra.parse().unwrap());
    }
    resp
}

/// Write a config directory: settings with the admin token and loopback allow-listed for
/// egress (the receivers listen on 127.0.0.1), systems `src` and `dst`, and one flow
/// `orders` whose source verifies Standard Webhooks and whose destinations are given as YAML
/// (indented under `destinations:`).
pub fn write_config(dir: &Path, destinations_yaml: &str) {
    write_config_with(dir, Some("/type"), "", destinations_yaml);
}

/// [`write_config`] with the source's `event_type` pointer (`None`: none) and more of the
/// flow (`flow_yaml`, indented by four spaces, e.g. `    steps:\n      - validate: {}\n`).
pub fn write_config_with(
    dir: &Path,
    event_type: Option<&str>,
    flow_yaml: &str,
    destinations_yaml: &str,
) {
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.join("source-secret"), SOURCE_SECRET).unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        "settings:\n  listen: 127.0.0.1:0\n  admin:\n    token: { file: admin-token }\n  ingress:\n    max_body_bytes: 4096\n  delivery:\n    shutdown_grace: 2s\n    egress_allow: [127.0.0.0/8]\nsystems:\n  src: { owner: team-a }\n  dst: { owner: team-b, policy: { data_use: essential.service, receives: [user, system] } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("flows/orders.yaml"),
        format!(
            "flows:\n  orders:\n    source:\n      webhook:\n        system: src\n        signature:\n          standard_webhooks: {{ secret: {{ file: source-secret }} }}\n{}{flow_yaml}    destinations:\n{destinations_yaml}",
            event_type
                .map(|p| format!("        event_type: {p}\n"))
                .unwrap_or_default()
        ),
    )
    .unwrap();
}

/// Declare `schemas` (name, file, JSON text) in `schemas.yaml` and write their files.
pub fn write_schemas(dir: &Path, schemas: &[(&str, &str, &str)]) {
    let mut yaml = String::from("schemas:\n");
    for (name, file, text) in schemas {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        yaml.push_str(&format!("  {name}: {{ file: {file} }}\n"));
    }
    std::fs::write(dir.join("schemas.yaml"), yaml).unwrap();
}

/// A destination block for `write_config` with fast retries.
pub fn http_destination(name: &str, url: &str, max_attempts: u32) -> String {
    format!(
        "      {name}:\n        system: dst\n        http:\n          url: {url}\n          timeout: 2s\n          connect_timeout: 1s\n        retry:\n          max_attempts: {max_attempts}\n          initial_backoff: 20ms\n          max_backoff: 100ms\n"
    )
}

/// Start a hub in this process on the config in `config_dir` and the store in `data_dir`.
pub async fn start_hub(config_dir: &Path, data_dir: &Path) -> RunningHub {
    let loaded = ferry_config::load_dir(
        config_dir,
        &ferry_config::LoadOptions {
            resolve_secrets: true,
        },
    )
    .unwrap_or_else(|e| panic!("config: {e}"));
    RunningHub::start(HubOptions {
        config: loaded.config,
        data_dir: data_dir.to_path_buf(),
        store_url: None,
        listen: None,
        role: Default::default(),
        region: None,
    })
    .await
    .unwrap()
}

/// Signed Standard Webhooks headers for `body`.
pub fn signed(id: &str, body: &str) -> Vec<(&'static str, String)> {
    let key = SigningKey::from_standard_webhooks(SOURCE_SECRET).unwrap();
    let ts = now_secs();
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            ferry_signature::standard_webhooks::sign(&key, id, ts, body.as_bytes()),
        ),
        ("content-type", "application/json".to_string()),
    ]
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// POST a signed webhook to the hub's `orders` flow.
pub async fn send(hub: SocketAddr, id: &str, body: &str) -> reqwest::Response {
    let mut req = client()
        .post(format!("http://{hub}/ingest/orders"))
        .body(body.to_string());
    for (k, v) in signed(id, body) {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

/// POST a signed webhook to the hub's `orders` flow with these headers added (replacing the
/// signed set's `content-type` when given).
pub async fn send_with(
    hub: SocketAddr,
    id: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in signed(id, body) {
        map.insert(k, v.parse().unwrap());
    }
    for (k, v) in headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    client()
        .post(format!("http://{hub}/ingest/orders"))
        .headers(map)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// GET an admin API path with the token, as JSON.
pub async fn admin_get(hub: SocketAddr, path: &str) -> serde_json::Value {
    let resp = client()
        .get(format!("http://{hub}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// POST JSON to an admin API path with the token.
pub async fn admin_post(hub: SocketAddr, path: &str, body: serde_json::Value) -> serde_json::Value {
    let resp = client()
        .post(format!("http://{hub}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// Poll `check` until it is true or `secs` pass; panic with `what` on time-out.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {secs}s waiting for: {what}");
}

/// Deliveries of the hub filtered by a query string, via the admin API.
pub async fn deliveries(hub: SocketAddr, query: &str) -> Vec<serde_json::Value> {
    admin_get(hub, &format!("/admin/v1/deliveries?{query}")).await["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The delivered deliveries once there are at least `n` of them: the receiver sees a call
/// before the lane records its outcome, so a test that counted arrivals waits here for the
/// store to agree (30 s at most).
pub async fn delivered_at_least(hub: SocketAddr, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = deliveries(hub, "state=delivered").await;
        if all.len() >= n {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} deliveries recorded delivered within 30s",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The hub's `/metrics` page as text.
pub async fn metrics_text(hub: std::net::SocketAddr) -> String {
    client()
        .get(format!("http://{hub}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Start the real `ferry serve` binary on `cfg` and `data` (its stderr appended to `log`)
/// and return it with the address it printed. Its stdout keeps being drained, so the child
/// never blocks on a full pipe.
pub fn spawn_ferry(cfg: &Path, data: &Path, log: &Path) -> (std::process::Child, SocketAddr) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["serve", "--config"])
        .arg(cfg)
        .arg("--data-dir")
        .arg(data);
    spawn_serving(cmd, log)
}

/// [`spawn_ferry`] with these environment variables set (e.g. `RUST_LOG=debug`).
pub fn spawn_ferry_env(
    cfg: &Path,
    data: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> (std::process::Child, SocketAddr) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["serve", "--config"])
        .arg(cfg)
        .arg("--data-dir")
        .arg(data);
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_serving(cmd, log)
}

/// [`spawn_ferry`] with the process umask set to `umask` (octal, e.g. `"000"`) by a shell
/// that then `exec`s the binary, so the child is still the hub itself.
pub fn spawn_ferry_with_umask(
    cfg: &Path,
    data: &Path,
    log: &Path,
    umask: &str,
) -> (std::process::Child, SocketAddr) {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--config"])
        .arg(cfg)
        .arg("--data-dir")
        .arg(data);
    spawn_serving(cmd, log)
}

/// Runs `cmd` (a `ferry serve`), its stderr appended to `log`, and returns it with the
/// address it printed; its stdout keeps being drained.
fn spawn_serving(mut cmd: std::process::Command, log: &Path) -> (std::process::Child, SocketAddr) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = cmd.stdout(Stdio::piped()).stderr(log_file).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let Some(line) = lines.next() else {
        let stderr = std::fs::read_to_string(log).unwrap_or_default();
        panic!("ferry printed nothing; its stderr:\n{stderr}");
    };
    let line = line.unwrap();
    let addr = line
        .strip_prefix("ferry listening on http://")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .parse()
        .unwrap();
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// Send signed `body` as event `id` until the hub answers `status` (up to 30 s); its body.
pub async fn wait_for_status(hub: SocketAddr, id: &str, body: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = send(hub, id, body).await;
        let got = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if got == status {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} within 30s; last {got}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Stripe signing secret: Stripe uses the whole `whsec_…` string as the HMAC key.
pub const STRIPE_SECRET: &str = "whsec_9f3k2LmQ8vR1tY6uW0xZ4aB7cD5eF2gH";

/// HMAC-SHA256 of `parts` under `key`, hex.
fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// A `Stripe-Signature` value for `body` signed at unix time `t` with `secret`, as Stripe
/// computes it: `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn stripe_signature(secret: &str, t: i64, body: &str) -> String {
    let ts = t.to_string();
    let tag = hmac_hex(secret.as_bytes(), &[ts.as_bytes(), b".", body.as_bytes()]);
    format!("t={t},v1={tag}")
}

/// An `X-Hub-Signature-256` value for `body`, as GitHub computes it.
pub fn github_signature(secret: &str, body: &str) -> String {
    format!("sha256={}", hmac_hex(secret.as_bytes(), &[body.as_bytes()]))
}

/// POST `body` with `headers` to `/ingest/{path}` of the hub at `hub`.
pub async fn post_to(
    hub: SocketAddr,
    path: &str,
    body: &str,
    headers: &[(&str, String)],
) -> reqwest::Response {
    let mut req = client()
        .post(format!("http://{hub}/ingest/{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

/// The GitHub flow's webhook secret.
pub const GITHUB_SECRET: &str = "gh-webhook-secret-0123456789";

/// A config with a Stripe flow (`/ingest/stripe`) and a GitHub flow (`/ingest/github`),
/// neither setting `event_id`, both delivering to `rx` (at `/stripe`, `/github`) with fast
/// retries.
pub fn write_vendor_config(dir: &Path, rx: &TestReceiver) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.join("stripe-secret"), STRIPE_SECRET).unwrap();
    std::fs::write(dir.join("github-secret"), GITHUB_SECRET).unwrap();
    let dest = |name: &str| {
        format!(
            "    destinations:\n      crm:\n        system: crm\n        http: {{ url: \"{}\" }}\n        retry: {{ max_attempts: 3, initial_backoff: 20ms, max_backoff: 100ms }}\n",
            rx.url(&format!("/{name}"))
        )
    };
    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "settings:
  listen: 127.0.0.1:0
  admin: {{ token: {{ file: admin-token }} }}
  delivery: {{ shutdown_grace: 2s, egress_allow: [127.0.0.0/8] }}
systems:
  stripe: {{ owner: team-billing }}
  github: {{ owner: team-dev }}
  crm: {{ owner: team-crm }}
flows:
  stripe:
    source:
      webhook:
        system: stripe
        signature: {{ stripe: {{ secret: {{ file: stripe-secret }} }} }}
        event_type: /type
{}  github:
    source:
      webhook:
        system: github
        signature: {{ github: {{ secret: {{ file: github-secret }} }} }}
{}",
            dest("stripe"),
            dest("github")
        ),
    )
    .unwrap();
}

/// A child process killed (and reaped) when dropped: a `ferry serve` started by a test that
/// then fails does not outlive it.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Replay every delivered delivery of the `orders` flow through the admin API.
pub async fn replay_delivered(hub: SocketAddr) {
    admin_post(
        hub,
        "/admin/v1/replay",
        serde_json::json!({"flow": "orders", "state": "delivered"}),
    )
    .await;
}

/// [`replay_delivered`], then wait until all `n` are delivered again (2 attempts each).
pub async fn replay_delivered_and_wait(hub: SocketAddr, n: usize) {
    replay_delivered(hub).await;
    wait_until(30, "the replays delivered", || async {
        let all = deliveries(hub, "state=delivered").await;
        all.len() == n && all.iter().all(|d| d["attempts"].as_u64() == Some(2))
    })
    .await;
}

/// Run the real `ferry` binary with `args` then `dir`: its exit code, stdout and stderr.
pub fn ferry_on_dir(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copy `from` into `to`, every file, keeping relative paths (an example config to edit).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Run the real `ferry` binary with `args` and wait: its exit code, stdout and stderr.
pub fn run_ferry(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SIGTERM the hub, then wait (up to 20 s) for it to exit successfully.
pub fn stop_gracefully(child: &mut std::process::Child) {
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "ferry exited {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ferry did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Add `lines` (YAML indented by two spaces, each ending in a newline) at the top of the
/// `settings:` of the config in `cfg`.
pub fn add_settings(cfg: &Path, lines: &str) {
    let path = cfg.join("ferry.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("settings:\n"), "{text}");
    std::fs::write(
        &path,
        text.replacen("settings:\n", &format!("settings:\n{lines}"), 1),
    )
    .unwrap();
}
