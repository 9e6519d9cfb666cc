//! The binary as a user runs it: `validate`, `serve` on a bad config, `demo`, and `--help`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart")
}

#[test]
fn validate_accepts_the_example() {
    let out = ferry().arg("validate").arg(examples()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(stdout.contains("2 flows"), "{stdout}");
    // Nothing to warn about: the example is what a user copies.
    assert!(stdout.contains(", 0 warnings"), "{stdout}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn broken_config() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("systems.yaml"),
        "systems:\n  crm:\n    owner: team\n    colour: blue\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("flows.yaml"),
        "flows:\n  f:\n    source:\n      webhook:\n        system: nowhere\n        signature:\n          github: { secret: inline-secret }\n    destinations:\n      d:\n        system: crm\n        http: { url: \"not a url\" }\n",
    )
    .unwrap();
    dir
}

#[test]
fn validate_reports_every_error_with_file_line_and_field() {
    let dir = broken_config();
    let out = ferry().arg("validate").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("systems.yaml:4"),
        "unknown field not located:\n{text}"
    );
    assert!(text.contains("colour"), "{text}");
    assert!(text.contains("flows.yaml"), "{text}");
    assert!(
        text.contains("by reference"),
        "inline secret not refused:\n{text}"
    );
}

#[test]
fn serve_refuses_an_invalid_config() {
    let dir = broken_config();
    let data = tempfile::tempdir().unwrap();
    let out = ferry()
        .args(["serve", "--config"])
        .arg(dir.path())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to start"));
}

#[test]
fn every_command_has_help_with_examples() {
    for cmd in [
        vec!["serve"],
        vec!["validate"],
        vec!["test"],
        vec!["dlq", "list"],
        vec!["events"],
        vec!["deliveries"],
        vec!["dlq", "replay"],
        vec!["replay"],
        vec!["status"],
        vec!["pause"],
        vec!["resume"],
        vec!["demo"],
    ] {
        let out = ferry().args(&cmd).arg("--help").output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples:"),
            "{cmd:?} --help has no examples"
        );
    }
}

#[test]
fn demo_runs_by_itself_and_delivers() {
    let out = ferry()
        .args(["demo", "--duration", "6s", "--rate", "30"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Summary"), "{stdout}");
    // Plain lines (not a TTY) with per-destination figures.
    assert!(stdout.contains("billing-events -> crm"), "{stdout}");
    let delivered: u64 = stdout
        .lines()
        .rfind(|l| l.contains("billing-events -> crm"))
        .and_then(|l| l.split("delivered").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        delivered > 50,
        "the demo delivered only {delivered} events to the CRM:\n{stdout}"
    );
}
