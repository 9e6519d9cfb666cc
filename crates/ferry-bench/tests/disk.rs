//! `ferry-bench disk` on a real directory: it reports one row per writer count, leaves
//! nothing behind, and refuses counts it cannot run.

use std::process::Command;

fn disk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry-bench"))
        .arg("disk")
        .args(args)
        .output()
        .expect("ferry-bench runs")
}

fn report(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "--dir",
        dir,
        "--write-kib",
        "4",
        "--duration",
        "150ms",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = disk(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the report is JSON")
}

#[test]
fn one_row_per_writer_count_and_nothing_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let r = report(dir.path(), &["--writers", "1,2,3"]);
    assert_eq!(r["write_bytes"], 4096);
    let rows = r["rows"].as_array().unwrap();
    let writers: Vec<u64> = rows
        .iter()
        .map(|r| r["writers"].as_u64().unwrap())
        .collect();
    assert_eq!(writers, [1, 2, 3]);
    for row in rows {
        assert!(row["syncs"].as_u64().unwrap() > 0, "{row}");
        assert!(row["syncs_per_sec"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["max_us"].as_u64() >= row["p50_us"].as_u64(), "{row}");
        assert_eq!(row["shared_file"], false);
    }
    assert_eq!(rows[0]["speedup"], 1.0);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    let r = report(dir.path(), &["--writers", "2", "--shared"]);
    assert_eq!(r["rows"][0]["shared_file"], true);
    assert!(r["rows"][0]["syncs"].as_u64().unwrap() > 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn refuses_what_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (flag, value) in [
        ("--writers", "1,0"),
        ("--writers", "65"),
        ("--write-kib", "0"),
        ("--write-kib", "4097"),
        ("--duration", "forever"),
    ] {
        let out = disk(&["--dir", d, flag, value]);
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }

    let out = disk(&["--dir", d, "--duration", "0s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration must be longer than zero"));

    let missing = dir.path().join("missing");
    let out = disk(&["--dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot create a directory under"));
}
