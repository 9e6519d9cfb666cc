//! `examples/stripe`, the config docs/connect-stripe.md walks through: it validates with no
//! warning and its fixture tests pass, through the real `ferry validate` and `ferry test`;
//! and the walkthrough's steps hold against the real `ferry serve` on a copy of it (signed
//! with its secret, a re-send stored once, the CRM getting the mapped and signed update,
//! the event found by Stripe's id, a replay kept in the history).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ferry_signature::{SignatureScheme, SigningKey, schemes::StandardWebhooks};
use serde_json::Value;

const STRIPE_EVENT_ID: &str = "evt_1Q0bqYLkdIwHu7ix";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/stripe")
}

#[test]
fn the_stripe_example_validates_without_a_warning() {
    let (code, stdout, stderr) = ferry_on_dir(&["validate"], &example());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("valid — 3 systems, 1 flow, 2 destinations, 0 warnings"),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn the_stripe_example_fixture_tests_pass() {
    let (code, stdout, stderr) = ferry_on_dir(&["test"], &example());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
    // One of them reads its input and expected output from files.
    assert!(stdout.contains("ok      flows/stripe.test.yaml: paid-invoice-reaches-the-crm"));
}

fn cli(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--url", &format!("http://{addr}"), "--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ferry {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_walkthrough_holds_against_the_real_hub() {
    let crm = TestReceiver::start().await;
    let warehouse = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("stripe");
    copy_dir(&example(), &cfg);
    // The tests' admin token, any free port, and the test's receivers in place of
    // `ferry demo --receivers-only`.
    std::fs::write(cfg.join("secrets/admin-token"), ADMIN_TOKEN).unwrap();
    let settings = std::fs::read_to_string(cfg.join("ferry.yaml")).unwrap();
    std::fs::write(
        cfg.join("ferry.yaml"),
        settings.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0"),
    )
    .unwrap();
    let flow = std::fs::read_to_string(cfg.join("flows/stripe.yaml")).unwrap();
    std::fs::write(
        cfg.join("flows/stripe.yaml"),
        flow.replace("http://127.0.0.1:9101", &crm.url(""))
            .replace("http://127.0.0.1:9102", &warehouse.url("")),
    )
    .unwrap();
    let (child, addr) = spawn_ferry(&cfg, &dir.path().join("data"), &dir.path().join("log"));
    let _child = KillOnDrop(child);

    // 1. Signed as Stripe signs: HMAC-SHA256 of "{t}.{body}" under the whole whsec_ string.
    let secret = std::fs::read_to_string(cfg.join("secrets/stripe-webhook-secret")).unwrap();
    let body = std::fs::read_to_string(cfg.join("flows/fixtures/invoice.paid.json")).unwrap();
    let signed = |t: i64| {
        vec![(
            "stripe-signature",
            stripe_signature(secret.trim(), t, &body),
        )]
    };
    let resp = post_to(addr, "stripe", &body, &signed(now_secs())).await;
    assert_eq!(resp.status().as_u16(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let ferry_id = accepted["event_id"].as_str().unwrap().to_string();
    assert!(ferry_id.starts_with("fev_"), "{accepted}");
    assert_eq!(accepted["deliveries"], 2);

    // 2. Stripe re-sends it: stored once.
    let resp = post_to(addr, "stripe", &body, &signed(now_secs() + 1)).await;
    assert_eq!(resp.status().as_u16(), 200);
    let again: Value = resp.json().await.unwrap();
    assert_eq!(
        (&again["duplicate"], &again["event_id"]),
        (&Value::Bool(true), &accepted["event_id"])
    );

    // 3. The CRM gets the mapped update, signed for it; the warehouse the event as sent.
    wait_until(30, "the CRM and the warehouse are called", || async {
        crm.count() >= 1 && warehouse.count() >= 1
    })
    .await;
    let got = &crm.received()[0];
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(cfg.join("flows/fixtures/crm.invoice.paid.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&got.body).unwrap(),
        expected
    );
    let crm_key = SigningKey::from_standard_webhooks(
        std::fs::read_to_string(cfg.join("secrets/crm-signing-secret"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    StandardWebhooks::new(crm_key, 300)
        .verify(&got.headers, &got.body, now_secs())
        .expect("the CRM can verify the hub's signature");
    let sent: Value = serde_json::from_slice(&warehouse.received()[0].body).unwrap();
    assert_eq!(sent["id"], STRIPE_EVENT_ID);

    // 4. Found by Stripe's id, with both deliveries.
    wait_until(30, "both deliveries delivered", || async {
        deliveries(addr, "state=delivered").await.len() == 2
    })
    .await;
    let out = cli(addr, &["events", "--sender-id", STRIPE_EVENT_ID]);
    assert!(
        out.contains(&ferry_id) && out.matches("delivered").count() >= 2,
        "{out}"
    );

    // 5. Replayed by Stripe's id: the same webhook-id again, and the replay in the history.
    let out = cli(addr, &["replay", "--sender-id", STRIPE_EVENT_ID]);
    assert!(out.contains("replayed 2 deliveries"), "{out}");
    wait_until(30, "the CRM is called again", || async { crm.count() >= 2 }).await;
    let calls = crm.received();
    assert_eq!(
        calls[1].headers["webhook-id"],
        calls[0].headers["webhook-id"]
    );
    let crm_delivery = deliveries(
        addr,
        &format!("sender_id={STRIPE_EVENT_ID}&destination=crm"),
    )
    .await;
    let id = crm_delivery[0]["id"].as_str().unwrap();
    let out = cli(addr, &["dlq", "show", id]);
    assert!(
        out.contains("replay") && out.contains("by admin API: ferry replay"),
        "{out}"
    );
}
