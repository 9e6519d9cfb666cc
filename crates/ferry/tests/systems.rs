//! The lanes rolled up per system: `GET /admin/v1/systems` and `ferry status --by system`
//! show each receiving system with its owner, on-call and tier from the catalog, the system
//! in the worst state first.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// Two flows into a CRM (`high`) and a warehouse (`low`).
fn systems_config(dir: &Path, rx: &TestReceiver) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.join("source-secret"), SOURCE_SECRET).unwrap();
    let dest = |name: &str, system: &str| {
        format!(
            "      {name}:\n        system: {system}\n        http: {{ url: \"{}\" }}\n",
            rx.url(&format!("/{name}"))
        )
    };
    let flow = |name: &str, dests: &str| {
        format!(
            "  {name}:\n    source:\n      webhook:\n        system: shop\n        signature: {{ standard_webhooks: {{ secret: {{ file: source-secret }} }} }}\n    destinations:\n{dests}"
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
  shop: {{ owner: team-commerce, tier: high }}
  crm: {{ owner: team-growth, oncall: \"#growth-oncall\", tier: high }}
  warehouse: {{ owner: team-data, oncall: \"#data-oncall\", tier: low }}
flows:
{}{}",
            flow(
                "orders",
                &(dest("crm", "crm") + &dest("warehouse", "warehouse"))
            ),
            flow("refunds", &dest("warehouse", "warehouse")),
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn systems_roll_up_their_lanes_with_owner_and_tier_worst_first() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    systems_config(&dir.path().join("cfg"), &rx);
    let hub = start_hub(&dir.path().join("cfg"), &dir.path().join("data")).await;
    let addr = hub.addr();

    let v = admin_get(addr, "/admin/v1/systems").await;
    let names: Vec<&str> = v["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["system"].as_str().unwrap())
        .collect();
    // All healthy: the higher tier first.
    assert_eq!(names, ["crm", "warehouse"], "{v:#}");

    // Pause one of the warehouse's lanes: the warehouse is now the worst.
    admin_post(
        addr,
        "/admin/v1/lanes/refunds/warehouse/pause",
        json!({"reason": "loader migration"}),
    )
    .await;
    let v = admin_get(addr, "/admin/v1/systems").await;
    let wh = &v["systems"][0];
    assert_eq!(wh["system"], "warehouse", "{v:#}");
    assert_eq!(wh["state"], "paused");
    assert_eq!(wh["owner"], "team-data");
    assert_eq!(wh["oncall"], "#data-oncall");
    assert_eq!(wh["tier"], "low");
    let lanes: Vec<(&str, &str)> = wh["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["flow"].as_str().unwrap(), l["state"].as_str().unwrap()))
        .collect();
    assert_eq!(lanes, [("refunds", "paused"), ("orders", "ok")]);
    let crm = &v["systems"][1];
    assert_eq!(
        (&crm["system"], &crm["state"]),
        (&json!("crm"), &json!("ok"))
    );
    assert_eq!(crm["owner"], "team-growth");
    assert_eq!(crm["tier"], "high");

    // Counts are summed over the system's lanes.
    let body = r#"{"type":"refund.created"}"#;
    let mut req = client()
        .post(format!("http://{addr}/ingest/refunds"))
        .body(body);
    for (k, val) in signed("r1", body) {
        req = req.header(k, val);
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 202);
    let v = admin_get(addr, "/admin/v1/systems").await;
    let waiting = |s: &Value| s["pending"].as_u64().unwrap() + s["in_flight"].as_u64().unwrap();
    assert_eq!(waiting(&v["systems"][0]), 1, "{v:#}");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_status_by_system_prints_owner_tier_and_the_worst_first() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    systems_config(&cfg, &rx);
    let (child, addr) = spawn_ferry(&cfg, &dir.path().join("data"), &dir.path().join("log"));
    let _child = KillOnDrop(child);
    admin_post(addr, "/admin/v1/lanes/orders/warehouse/pause", json!({})).await;

    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["status", "--by", "system"])
        .args(["--url", &format!("http://{addr}"), "--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains("team-")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for want in ["warehouse", "low", "team-data", "#data-oncall", "paused"] {
        assert!(rows[0].contains(want), "{want}: {stdout}");
    }
    for want in ["crm", "high", "team-growth", "ok"] {
        assert!(rows[1].contains(want), "{want}: {stdout}");
    }
    assert!(
        stdout.contains("warehouse: orders/warehouse paused"),
        "{stdout}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["status", "--by", "system", "--json"])
        .args(["--url", &format!("http://{addr}"), "--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["system"], "warehouse");
}
