//! The SSRF guard end to end: a destination on loopback without an allow-list is never
//! called, its deliveries are dead-lettered with the guard's reason (visible through the
//! admin API), and allow-listing loopback delivers them; `ferry validate` rejects metadata
//! and private address literals at the URL.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use ferry::hub::{HubOptions, RunningHub};

/// Start a hub on the config in `cfg`, with the hub-wide egress allow-list emptied after
/// validation.
///
/// `ferry validate` already refuses address literals and `localhost` outside the
/// allow-list, so such a config never loads. The guard that matters is the one at connect
/// time (host names are only judged once resolved, and may resolve differently later): this
/// runs the hub as if validation had been skipped, to prove that guard holds on its own.
async fn start_hub_without_allow_list(cfg: &Path, data: &Path) -> RunningHub {
    let mut loaded = ferry_config::load_dir(
        cfg,
        &ferry_config::LoadOptions {
            resolve_secrets: true,
        },
    )
    .unwrap_or_else(|e| panic!("config: {e}"));
    loaded.config.settings.delivery.egress_allow.clear();
    RunningHub::start(HubOptions {
        config: loaded.config,
        data_dir: data.to_path_buf(),
        store_url: None,
        listen: None,
        role: Default::default(),
        region: None,
    })
    .await
    .unwrap()
}

/// `rx`'s URL with the host name `localhost` instead of its address.
fn by_name(rx: &TestReceiver, path: &str) -> String {
    format!("http://localhost:{}{path}", rx.addr.port())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loopback_destination_without_an_allow_list_is_dead_lettered_with_the_reason() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    write_config(
        &cfg,
        &(http_destination("literal", &rx.url("/literal"), 5)
            + &http_destination("named", &by_name(&rx, "/named"), 5)),
    );
    let hub = start_hub_without_allow_list(&cfg, &dir.path().join("data")).await;
    assert_eq!(
        send(hub.addr(), "msg_ssrf", "{\"type\":\"x\"}")
            .await
            .status()
            .as_u16(),
        202
    );
    wait_until(10, "both deliveries dead", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 2
    })
    .await;

    for (destination, needle) in [
        (
            "literal",
            "destination address 127.0.0.1 (loopback) is not public",
        ),
        (
            "named",
            "destination host `localhost` resolves only to 127.0.0.1 (loopback)",
        ),
    ] {
        let dead = deliveries(hub.addr(), &format!("state=dead&destination={destination}")).await;
        assert_eq!(dead.len(), 1, "{destination}: {dead:?}");
        let id = dead[0]["id"].as_str().unwrap();
        let detail = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
        let attempts = detail["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "refused once, not retried: {detail}");
        assert_eq!(attempts[0]["error_class"], "egress_refused", "{detail}");
        assert_eq!(attempts[0]["status"], serde_json::Value::Null, "{detail}");
        let error = attempts[0]["error"].as_str().unwrap();
        assert!(error.contains(needle), "{destination}: {error}");
        assert!(error.contains("allow it with `egress_allow`"), "{error}");
        let reason = detail["summary"]["last_error"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("permanent failure: egress refused: "),
            "{destination}: {detail}"
        );
    }
    assert_eq!(rx.count(), 0, "the guard let a request through");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_listed_loopback_destination_is_delivered() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    // `write_config` allow-lists 127.0.0.0/8 hub-wide.
    write_config(
        &cfg,
        &(http_destination("literal", &rx.url("/literal"), 5)
            + &http_destination("named", &by_name(&rx, "/named"), 5)),
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    send(hub.addr(), "msg_ok", "{\"type\":\"x\"}").await;
    wait_until(10, "both delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 2
    })
    .await;
    assert_eq!(rx.count(), 2);
    hub.shutdown().await.unwrap();
}

#[test]
fn validate_rejects_metadata_and_private_literals_at_the_url() {
    for (url, needle) in [
        (
            "http://169.254.169.254/",
            "169.254.169.254 (cloud metadata service)",
        ),
        ("http://10.0.0.1/", "10.0.0.1 (private network)"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &http_destination("internal", url, 3));
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("validate")
            .arg(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{url}: {text}");
        // `http_destination` puts the URL on line 13 of flows/orders.yaml, value at column 16.
        assert!(
            text.contains("orders.yaml:13:16: flows.orders.destinations.internal.http.url"),
            "{url}: not located:\n{text}"
        );
        assert!(text.contains(needle), "{url}: {text}");
        assert!(text.contains("egress_allow"), "{url}: no help:\n{text}");
    }
}
