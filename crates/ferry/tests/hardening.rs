//! Holes a hostile client or a careless operator could use, each closed and checked through
//! the real server: empty secrets fail closed, slow or silent connections are closed, the
//! connection count and the memory held by bodies are bounded, signatures are checked before
//! bodies are read, and the admin side can be kept apart and locks out token guessers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `write_config`'s hub with `server` (YAML lines indented under `settings.server:`) and
/// `extra_settings` (lines indented under `settings:`).
fn config_with(dir: &Path, server: &str, extra_settings: &str) {
    write_config(dir, &http_destination("crm", "http://127.0.0.1:9/none", 3));
    let settings = format!(
        "settings:\n  listen: 127.0.0.1:0\n  admin:\n    token: {{ file: admin-token }}\n  ingress:\n    max_body_bytes: 4096\n  delivery:\n    shutdown_grace: 2s\n    egress_allow: [127.0.0.0/8]\n  server:\n{server}{extra_settings}systems:\n  src: {{ owner: team-a }}\n  dst: {{ owner: team-b }}\n"
    );
    std::fs::write(dir.join("ferry.yaml"), settings).unwrap();
}

/// Run `ferry ARGS` to completion: (exit code, stderr).
fn ferry(args: &[&str], cfg: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Read from `stream` until it is closed (or errors), for at most `secs`; true if it closed.
fn closes_within(stream: &mut TcpStream, secs: u64) -> (bool, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(secs)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (true, got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (false, got);
            }
            Err(_) => return (true, got),
        }
    }
}

#[test]
fn empty_secrets_fail_validate_and_serve() {
    for (file, field) in [
        ("admin-token", "settings.admin.token"),
        ("source-secret", "standard_webhooks.secret"),
    ] {
        let cfg = tempfile::tempdir().unwrap();
        write_config(
            cfg.path(),
            &http_destination("crm", "http://127.0.0.1:9/x", 3),
        );
        std::fs::write(cfg.path().join(file), "\n").unwrap();
        let (code, err) = ferry(&["validate"], cfg.path());
        assert_ne!(code, 0, "validate passed with an empty {file}");
        assert!(err.contains("empty"), "{err}");
        assert!(err.contains(file), "the error names the file: {err}");
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["serve", "--config"])
            .arg(cfg.path())
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "serve started with an empty {file}"
        );
        let _ = field;
    }
    // A GitHub secret of one byte is refused too: anyone could brute-force it.
    let cfg = tempfile::tempdir().unwrap();
    write_config(
        cfg.path(),
        &http_destination("crm", "http://127.0.0.1:9/x", 3),
    );
    std::fs::write(cfg.path().join("gh"), "x").unwrap();
    let flow = std::fs::read_to_string(cfg.path().join("flows/orders.yaml"))
        .unwrap()
        .replace(
            "standard_webhooks: { secret: { file: source-secret } }",
            "github: { secret: { file: gh } }",
        );
    std::fs::write(cfg.path().join("flows/orders.yaml"), flow).unwrap();
    let (code, err) = ferry(&["validate"], cfg.path());
    assert_ne!(code, 0);
    assert!(err.contains("at least 16 bytes"), "{err}");
}

#[tokio::test]
async fn an_empty_bearer_over_http2_gets_nothing_and_the_scheme_is_case_insensitive() {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    config_with(cfg.path(), "    max_connections: 64\n", "");
    let (child, hub) = spawn_ferry(cfg.path(), data.path(), &data.path().join("log"));
    let _child = Killed(child);
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for path in ["/admin/v1/lanes", "/admin/v1/deliveries"] {
        let resp = h2
            .get(format!("http://{hub}{path}"))
            .header("authorization", "Bearer ")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 401, "{path}");
    }
    let resp = h2
        .post(format!("http://{hub}/admin/v1/replay"))
        .header("authorization", "Bearer ")
        .json(&serde_json::json!({"flow": "orders"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    for scheme in ["bearer", "BEARER"] {
        let resp = h2
            .get(format!("http://{hub}/admin/v1/lanes"))
            .header("authorization", format!("{scheme} {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
}

#[test]
fn silent_and_slow_connections_are_closed() {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    config_with(
        cfg.path(),
        "    header_timeout: 1s\n    idle_timeout: 2s\n",
        "",
    );
    let (child, hub) = spawn_ferry(cfg.path(), data.path(), &data.path().join("log"));
    let _child = Killed(child);

    // Never sends a byte.
    let mut silent = TcpStream::connect(hub).unwrap();
    // Sends headers a line at a time, never finishing them.
    let mut slow = TcpStream::connect(hub).unwrap();
    slow.write_all(b"POST /ingest/orders HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    // A kept-alive connection after one answered request.
    let mut kept = TcpStream::connect(hub).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();

    for (name, stream) in [
        ("silent", &mut silent),
        ("slow headers", &mut slow),
        ("idle keep-alive", &mut kept),
    ] {
        let (closed, _) = closes_within(stream, 30);
        assert!(closed, "the {name} connection was left open");
    }
}

#[test]
fn connections_beyond_the_cap_are_refused_with_503() {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    config_with(cfg.path(), "    max_connections: 4\n", "");
    let (child, hub) = spawn_ferry(cfg.path(), data.path(), &data.path().join("log"));
    let _child = Killed(child);

    // Four open connections hold every slot (each proves it is served).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(hub).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut fifth = TcpStream::connect(hub).unwrap();
    let (closed, answer) = closes_within(&mut fifth, 30);
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed, "the connection over the cap was not closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");

    // A slot freed is a slot served again.
    drop(held.pop());
    let healthy = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        let Ok(mut s) = TcpStream::connect(hub) else {
            return false;
        };
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let (_, got) = closes_within(&mut s, 10);
        got.starts_with(b"HTTP/1.1 200")
    });
    assert!(healthy, "no connection was served after one was closed");
}

/// Raw signed request headers for `body` (a Content-Length of `len`), as a sender writes them.
fn signed_head(id: &str, body: &str, len: usize) -> String {
    let mut head = format!("POST /ingest/orders HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\n");
    for (k, v) in signed(id, body) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

#[test]
fn unsigned_requests_are_refused_before_their_body_is_read() {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // A long body timeout: an answer that waited for the body would not come in the test.
    config_with(cfg.path(), "    body_timeout: 300s\n", "");
    let (child, hub) = spawn_ferry(cfg.path(), data.path(), &data.path().join("log"));
    let _child = Killed(child);
    let mut s = TcpStream::connect(hub).unwrap();
    s.write_all(b"POST /ingest/orders HTTP/1.1\r\nhost: x\r\ncontent-length: 4000\r\n\r\n{\"a\":")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("signature_missing"), "{answer}");
}

#[tokio::test]
async fn half_sent_bodies_are_bounded_in_memory_and_time() {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // Room for four bodies of the largest size; half-sent bodies time out after 15 s, long
    // enough that a busy machine still sees the budget full before they do.
    config_with(
        cfg.path(),
        "    body_memory: 16384\n    body_timeout: 15s\n    min_body_rate: 1\n",
        "",
    );
    let (child, hub) = spawn_ferry(cfg.path(), data.path(), &data.path().join("log"));
    let _child = Killed(child);

    let body = format!("{{\"type\":\"t\",\"pad\":\"{}\"}}", "x".repeat(4000));
    assert!(body.len() <= 4096);
    let mut stalled = Vec::new();
    for i in 0..4 {
        let mut s = TcpStream::connect(hub).unwrap();
        s.write_all(signed_head(&format!("half-{i}"), &body, body.len()).as_bytes())
            .unwrap();
        s.write_all(&body.as_bytes()[..body.len() - 1]).unwrap();
        stalled.push(s);
    }
    // A probe sent before the hub has taken every stalled request could take a stalled
    // body's place in the budget. A request is counted as received just before its body's
    // bytes are reserved, so wait for all four to be counted.
    wait_until(30, "the hub to take the four stalled requests", || async {
        received_total(&metrics_text(hub).await) >= 4
    })
    .await;
    // Every byte of the budget is held: a whole new body is refused, not buffered.
    let busy = common::wait_for_status(hub, "busy-1", &body, 503).await;
    assert!(busy.contains("server_busy"), "{busy}");

    // Each stalled body ends with 408 when its time is up, and gives its bytes back.
    for mut s in stalled {
        let (_, answer) = closes_within(&mut s, 60);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"), "{answer}");
    }
    let resp = send(hub, "after-1", &body).await;
    assert_eq!(resp.status(), 202);
    let text = metrics_text(hub).await;
    assert!(
        text.contains("ferry_ingress_body_timeouts_total 4"),
        "timeouts are counted"
    );
}

/// `ferry_ingress_received_total`, summed over flows, from a `/metrics` text.
fn received_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("ferry_ingress_received_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn the_admin_side_can_listen_apart_and_metrics_can_need_a_token() {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    config_with(cfg.path(), "    max_connections: 64\n", "");
    let token = "metrics-token-7c1e9a3b5d2f4086a1c3e5b7";
    std::fs::write(cfg.path().join("metrics-token"), token).unwrap();
    let settings = std::fs::read_to_string(cfg.path().join("ferry.yaml"))
        .unwrap()
        .replace(
            "    token: { file: admin-token }\n",
            "    token: { file: admin-token }\n    listen: 127.0.0.1:0\n",
        )
        .replace(
            "systems:\n",
            "  metrics:\n    token: { file: metrics-token }\nsystems:\n",
        );
    std::fs::write(cfg.path().join("ferry.yaml"), settings).unwrap();
    let hub = start_hub(cfg.path(), data.path()).await;
    let (public, admin) = (hub.addr(), hub.admin_addr());
    assert_ne!(public, admin);
    let c = client();

    // The public side serves ingress and health, not the operator's routes.
    let get = |addr: SocketAddr, path: &str, bearer: Option<&str>| {
        let mut req = c.get(format!("http://{addr}{path}"));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    assert_eq!(get(public, "/healthz", None).await.unwrap().status(), 200);
    let on_public = get(public, "/admin/v1/lanes", Some(ADMIN_TOKEN))
        .await
        .unwrap();
    assert_eq!(on_public.status(), 404);
    assert_eq!(
        get(public, "/metrics", Some(token)).await.unwrap().status(),
        404
    );
    assert_eq!(send(public, "evt-1", r#"{"type":"t"}"#).await.status(), 202);

    // The admin side serves the admin API and `/metrics`, the latter with its own token.
    let lanes = get(admin, "/admin/v1/lanes", Some(ADMIN_TOKEN))
        .await
        .unwrap();
    assert_eq!(lanes.status(), 200);
    assert_eq!(get(admin, "/metrics", None).await.unwrap().status(), 401);
    assert_eq!(
        get(admin, "/metrics", Some(ADMIN_TOKEN))
            .await
            .unwrap()
            .status(),
        401
    );
    let metrics = get(admin, "/metrics", Some(token)).await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("ferry_ingress"));
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_guessing_admin_tokens_is_locked_out() {
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    config_with(cfg.path(), "    max_connections: 64\n", "");
    let (child, hub) = spawn_ferry(cfg.path(), data.path(), &data.path().join("log"));
    let _child = Killed(child);
    let c = client();
    let lanes = |token: String| {
        c.get(format!("http://{hub}/admin/v1/lanes"))
            .bearer_auth(token)
            .send()
    };
    for i in 0..10 {
        let resp = lanes(format!("guess-{i}")).await.unwrap();
        assert_eq!(resp.status(), 401);
    }
    // Now even the right token is refused from this address, until the lockout ends.
    let resp = lanes(ADMIN_TOKEN.to_string()).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let text = metrics_text(hub).await;
    assert!(
        text.contains("ferry_admin_rejected_total{reason=\"locked_out\"} 1"),
        "lockouts are counted"
    );
}

/// Start `ferry serve` under `ulimit -n {nofile}`: the child, its main and admin addresses.
fn spawn_limited(cfg: &Path, data: &Path, nofile: u32) -> (Killed, SocketAddr, SocketAddr) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {nofile} && exec \"$0\" serve --config \"$1\" --data-dir \"$2\""
        ))
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .arg(cfg)
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.join("log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = |prefix: &str| -> SocketAddr {
        let line = lines.next().expect("ferry printed nothing").unwrap();
        let rest = line
            .split_once(prefix)
            .unwrap_or_else(|| panic!("{line}"))
            .1;
        rest.parse().unwrap()
    };
    let public = addr("listening on http://");
    let admin = addr("/metrics on http://");
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), public, admin)
}

/// More connections than the process has file descriptors: the cap (fitted to the limit)
/// refuses the excess cleanly, and deliveries and the admin side keep working.
#[tokio::test]
async fn a_connection_flood_beyond_the_fd_limit_does_not_starve_deliveries() {
    let receiver = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_config(
        cfg.path(),
        &http_destination("crm", &receiver.url("/crm"), 5),
    );
    let settings = std::fs::read_to_string(cfg.path().join("ferry.yaml"))
        .unwrap()
        .replace(
            "    token: { file: admin-token }\n",
            "    token: { file: admin-token }\n    listen: 127.0.0.1:0\n",
        );
    std::fs::write(cfg.path().join("ferry.yaml"), settings).unwrap();
    let (_child, hub, admin) = spawn_limited(cfg.path(), data.path(), 300);

    admin_post(
        admin,
        "/admin/v1/lanes/orders/crm/pause",
        serde_json::json!({}),
    )
    .await;
    assert_eq!(
        send(hub, "before-flood", r#"{"type":"t"}"#).await.status(),
        202
    );

    // 400 connections against a limit of 300 descriptors.
    let mut flood = Vec::new();
    for _ in 0..400 {
        flood.push(TcpStream::connect(hub).unwrap());
    }
    let (closed, answer) = closes_within(flood.last_mut().unwrap(), 30);
    assert!(closed);
    assert!(
        String::from_utf8_lossy(&answer).contains("too_many_connections"),
        "the excess is refused with a reason"
    );

    // The delivery held back during the flood goes out once resumed: the hub still had
    // descriptors for its outbound call and its store.
    admin_post(
        admin,
        "/admin/v1/lanes/orders/crm/resume",
        serde_json::json!({}),
    )
    .await;
    wait_until(30, "the delivery reaches the receiver", || async {
        receiver.count() == 1
    })
    .await;
    let log = std::fs::read_to_string(data.path().join("log")).unwrap();
    assert!(log.contains("max_connections lowered"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
    drop(flood);
}
