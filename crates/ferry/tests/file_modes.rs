//! The store holds payloads with personal data: through the real binary, under a umask that
//! would let anyone read, the data dir is 0700 and every file in it 0600, and a data dir
//! left with looser modes is tightened when the hub opens it.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;

use common::*;

/// The hub process; killed on drop, also when the test fails.
struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every entry of `data` with its mode, e.g. `ferry.db 600`.
fn modes(data: &Path) -> Vec<(String, u32)> {
    let mut all: Vec<(String, u32)> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                mode(&e.path()),
            )
        })
        .collect();
    all.sort();
    all
}

/// `modes` for a message: `ferry.db=600 ...`.
fn show(all: &[(String, u32)]) -> String {
    let shown: Vec<String> = all.iter().map(|(n, m)| format!("{n}={m:o}")).collect();
    shown.join(" ")
}

/// The data dir is 0700, every file in it 0600, and the store's files are all there.
fn assert_private(data: &Path, when: &str) {
    assert_eq!(mode(data), 0o700, "{when}: data dir mode {:o}", mode(data));
    let all = modes(data);
    for (name, m) in &all {
        assert_eq!(*m, 0o600, "{when}: {name} is {m:o}; all: {}", show(&all));
    }
    for name in [
        "ferry.db",
        "ferry.db-wal",
        "ferry.db-shm",
        "ferry.lock",
        "ferry.reserve",
    ] {
        assert!(
            all.iter().any(|(n, _)| n == name),
            "{when}: {name} missing; all: {}",
            show(&all)
        );
    }
}

/// Sends 5 events with ids `prefix-i` and waits until the receiver has `total` in all.
async fn ingest_and_deliver(
    hub: std::net::SocketAddr,
    rx: &TestReceiver,
    prefix: &str,
    total: usize,
) {
    for i in 0..5 {
        let id = format!("{prefix}-{i}");
        let body = format!("{{\"type\":\"order.created\",\"email\":\"{id}@example.com\"}}");
        let resp = send(hub, &id, &body).await;
        assert_eq!(resp.status(), 202, "{id}");
    }
    wait_until(60, "events delivered", || async { rx.count() >= total }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_files_are_private_whatever_the_umask_and_are_tightened_at_open() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    write_config(&cfg, &http_destination("sink", &rx.url("/in"), 5));
    let data = dir.path().join("data");
    let log = dir.path().join("ferry.log");

    // A fresh data dir, created by a hub whose umask would leave everything world-readable.
    let (child, addr) = spawn_ferry_with_umask(&cfg, &data, &log, "000");
    let mut hub = Hub(child);
    ingest_and_deliver(addr, &rx, "first", 5).await;
    assert_private(&data, "created under umask 000");

    // A hub killed (WAL and shm stay), then everything loosened, as an older Ferry or a
    // careless copy would leave it: the next start tightens it all.
    hub.0.kill().unwrap();
    hub.0.wait().unwrap();
    chmod(&data, 0o777);
    for (name, _) in modes(&data) {
        chmod(&data.join(name), 0o666);
    }
    let (child, addr) = spawn_ferry_with_umask(&cfg, &data, &log, "000");
    let _hub = Hub(child);
    ingest_and_deliver(addr, &rx, "second", 10).await;
    assert_private(&data, "loosened, then opened again");
}
