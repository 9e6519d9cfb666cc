//! A full disk: the real binary runs with its data dir on a small tmpfs that a filler file
//! fills. Ingress must refuse with `503 store_unavailable`, `/readyz` must say 503 with the
//! reason, nothing acknowledged may be lost, and once a few MiB are free again the hub must
//! recover by itself: ready, accepting and delivering; with the disk emptied, it writes its
//! disk reserve again.
//!
//! Needs root (to mount the tmpfs); elsewhere it prints why and passes without running.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

/// Size of the tmpfs the data dir lives on: small, but with room for the hub's 8 MiB disk
/// reserve twice over beside its data, which it needs to write the reserve (again).
const DISK: &str = "32m";
/// One filler file (the last one is cut short by the full disk).
const FILLER_BYTES: usize = 1024 * 1024;
/// Filler files deleted to give the hub room again: 4 MiB, a small part of the disk.
const FREED_FILES: usize = 4;

/// A tmpfs mounted for the test; unmounted on drop, also when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of [`DISK`] on `dir`, or says why it cannot.
    fn mount(dir: &Path) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("umount")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Still busy: detach it, so nothing stays mounted after the test.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The hub process; killed on drop (before the tmpfs is unmounted: declared after it).
struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes filler files into `dir` until the disk is full; returns how many bytes fit.
fn fill(dir: &Path, fillers: &mut Vec<PathBuf>) -> u64 {
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut total = 0;
    loop {
        let path = dir.join(format!("filler-{}", fillers.len()));
        let Ok(mut file) = std::fs::File::create(&path) else {
            return total;
        };
        fillers.push(path);
        let mut written = 0;
        while written < FILLER_BYTES {
            if file.write_all(&chunk).is_err() {
                return total + written as u64;
            }
            written += chunk.len();
        }
        if file.sync_all().is_err() {
            return total + written as u64;
        }
        total += written as u64;
    }
}

/// An event body with a sender id and some padding.
fn body(sid: &str) -> String {
    format!(
        "{{\"type\":\"disk\",\"sid\":\"{sid}\",\"pad\":\"{}\"}}",
        "p".repeat(2000)
    )
}

/// POSTs a signed event; its status and problem code (if any). `None` if no answer came.
async fn ingest(hub: SocketAddr, sid: &str) -> Option<(u16, String)> {
    let body = body(sid);
    let mut req = client()
        .post(format!("http://{hub}/ingest/orders"))
        .timeout(Duration::from_secs(30))
        .body(body.clone());
    for (k, v) in signed(sid, &body) {
        req = req.header(k, v);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    let json: serde_json::Value = resp.json().await.unwrap_or_default();
    Some((status, json["code"].as_str().unwrap_or_default().to_owned()))
}

/// `/readyz`: status and body.
async fn readyz(hub: SocketAddr) -> (u16, String) {
    let resp = client()
        .get(format!("http://{hub}/readyz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("readyz answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn delivered_sids(rx: &TestReceiver) -> HashSet<String> {
    rx.received()
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter_map(|v| v["sid"].as_str().map(str::to_string))
        .collect()
}

/// Sizes of the files in `dir`, for the failure message and the record.
fn listing(dir: &Path) -> String {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        out.push(format!("{}={len}", entry.file_name().to_string_lossy()));
    }
    out.sort();
    out.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disk_makes_the_hub_unready_and_a_little_free_space_brings_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let _tmpfs = match Tmpfs::mount(&disk) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root): {why}");
            return;
        }
    };
    let rx = TestReceiver::start().await;
    let cfg = tmp.path().join("cfg");
    write_config(&cfg, &http_destination("sink", &rx.url("/in"), 50));
    let data = disk.join("data");
    let log = tmp.path().join("ferry.log");
    let (child, addr) = spawn_ferry(&cfg, &data, &log);
    let _hub = Hub(child);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut acked = Vec::new();
    for i in 0..20 {
        let sid = format!("before-{i}");
        let got = ingest(addr, &sid).await;
        assert!(matches!(got, Some((202, _))), "{sid}: {got:?}");
        acked.push(sid);
    }
    assert_eq!(readyz(addr).await.0, 200);

    // Fill the disk until the hub is not ready. It may find room a few times first (its
    // WAL, its reserve), so: fill, send until refused, ask `/readyz`, and again.
    let mut fillers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut refused = 0;
    let mut n = 0;
    let not_ready = loop {
        assert!(
            Instant::now() < deadline,
            "the hub never became unready; data: {}\nlog:\n{}",
            listing(&data),
            logs()
        );
        fill(&disk, &mut fillers);
        for _ in 0..200 {
            n += 1;
            let sid = format!("filling-{n}");
            match ingest(addr, &sid).await {
                Some((202, _)) => acked.push(sid),
                Some((503, code)) => {
                    assert_eq!(code, "store_unavailable", "{sid}");
                    refused += 1;
                    break;
                }
                // No answer in time: not acknowledged, so not owed.
                None => {}
                other => panic!("{sid}: unexpected answer {other:?}"),
            }
        }
        let (status, body) = readyz(addr).await;
        if status == 503 {
            break body;
        }
    };
    assert!(refused > 0, "ingress never refused an event");
    assert!(
        not_ready.contains("store cannot commit"),
        "/readyz must say why: {not_ready}"
    );
    eprintln!(
        "full: {refused} refused, {} acknowledged; /readyz: {}data: {}",
        acked.len(),
        not_ready,
        listing(&data)
    );
    // Still full: still not ready, still refusing, however often asked.
    for _ in 0..3 {
        assert_eq!(readyz(addr).await.0, 503);
    }
    let got = ingest(addr, "while-full").await;
    assert!(
        matches!(&got, Some((503, c)) if c == "store_unavailable"),
        "{got:?}"
    );

    // Free a little: a few filler files, not the whole disk.
    let freed = fillers.len().min(FREED_FILES);
    for path in fillers.drain(..freed) {
        std::fs::remove_file(path).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readyz(addr).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready {freed} MiB after freeing space: {body}data: {}\nlog:\n{}",
            listing(&data),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // New events are accepted (a sender retries a refusal) and delivered.
    for i in 0..20 {
        let sid = format!("after-{i}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((202, _)) = ingest(addr, &sid).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{sid} refused after recovery; data: {}\nlog:\n{}",
                listing(&data),
                logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        acked.push(sid);
    }
    let expected: HashSet<String> = acked.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing: Vec<String> = expected.difference(&delivered_sids(&rx)).cloned().collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged events never delivered, e.g. {:?}\nlog:\n{}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(5)],
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "recovered: {} acknowledged events all delivered; data: {}",
        expected.len(),
        listing(&data)
    );

    // With the disk roomy again, the hub writes its reserve again (it looks after writes).
    for path in fillers.drain(..) {
        std::fs::remove_file(path).unwrap();
    }
    let reserve = data.join("ferry.reserve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while !reserve.exists() {
        assert!(
            Instant::now() < deadline,
            "the reserve was not written again; data: {}\nlog:\n{}",
            listing(&data),
            logs()
        );
        i += 1;
        let _ = ingest(addr, &format!("roomy-{i}")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // For the record: what the store did about the full disk (reserve, checkpoints).
    for line in logs().lines().filter(|l| l.contains("sqlite::space")) {
        eprintln!("{line}");
    }
}
