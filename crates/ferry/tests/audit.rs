//! The audit trail through the real binary: a webhook accepted and delivered, a replay and
//! admin actions each leave their entry (subject as a keyed hash, categories, flow version,
//! destination system, who asked by token id); `ferry audit verify` passes beside the
//! running hub and prints the head; `ferry audit export` writes JSON lines with no
//! identifier or secret in them; and once the hub is stopped, editing, deleting or swapping
//! rows of a copy of the store with the `sqlite3` CLI makes verify fail naming the record.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const ORDER: &str = r#"{
  "type": "object",
  "required": ["type", "customer"],
  "properties": {
    "type": { "type": "string" },
    "total": { "type": "number" },
    "customer": {
      "type": "object",
      "properties": {
        "email": { "type": "string", "x-ferry-category": "user.contact.email", "x-ferry-subject": true }
      }
    }
  }
}"#;

/// 32 bytes of key for subject references.
const HASH_KEY: &str = "audit-test-hash-key-0123456789abcdef";
const EMAIL: &str = "ada.lovelace@example.com";

/// A config whose `orders` flow (version 3) validates `order.created` events, whose
/// customer email is classified and names the subject, and delivers to `rx`.
fn write_audit_config(cfg: &Path, rx: &TestReceiver) {
    write_config_with(
        cfg,
        Some("/type"),
        "    version: 3\n    steps:\n      - validate: {}\n",
        &http_destination("sink", &rx.url("/in"), 3),
    );
    write_schemas(cfg, &[("order.created", "schemas/order.json", ORDER)]);
    std::fs::write(cfg.join("hash-key"), HASH_KEY).unwrap();
    let settings = std::fs::read_to_string(cfg.join("ferry.yaml")).unwrap();
    let settings = settings
        .replace(
            "  delivery:\n",
            "  protection:\n    hash_key: { file: hash-key }\n  delivery:\n",
        )
        .replace(
            "  dst: { owner: team-b }\n",
            "  dst: { owner: team-b, policy: { data_use: essential.service, receives: [user.contact] } }\n",
        );
    std::fs::write(cfg.join("ferry.yaml"), settings).unwrap();
}

fn verify(data: &Path) -> (Option<i32>, String, String) {
    run_ferry(&["audit", "verify", "--data-dir", data.to_str().unwrap()])
}

/// SIGTERM, then wait for a clean exit.
fn stop(mut hub: KillOnDrop) {
    stop_gracefully(&mut hub.0);
}

/// A copy of the stopped hub's data dir, then `sql` run on it by the `sqlite3` CLI after
/// dropping the triggers that keep the table append-only (as someone editing it would).
fn tampered_copy(data: &Path, sql: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(data).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("ferry.db") {
            std::fs::copy(entry.path(), copy.path().join(&name)).unwrap();
        }
    }
    let script =
        format!("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; {sql}");
    let out = Command::new("sqlite3")
        .arg(copy.path().join("ferry.db"))
        .arg(&script)
        .output()
        .expect("the sqlite3 CLI");
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    copy
}

/// `UPDATE` statements swapping every column but `seq` between records `a` and `b`.
fn swap(a: u64, b: u64) -> String {
    let set = |to: u64, from: u64| {
        let cols = ["at", "kind", "entries", "prev_hash", "hash"]
            .map(|c| format!("{c} = (SELECT {c} FROM t WHERE seq = {from})"))
            .join(", ");
        format!("UPDATE audit_log SET {cols} WHERE seq = {to};")
    };
    format!(
        "CREATE TEMP TABLE t AS SELECT * FROM audit_log WHERE seq IN ({a}, {b}); {} {}",
        set(a, b),
        set(b, a)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trail_records_real_traffic_verifies_and_names_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    let rx = TestReceiver::start().await;
    write_audit_config(&cfg, &rx);
    let (child, addr) = spawn_ferry(&cfg, &data, &dir.path().join("ferry.log"));
    let hub = KillOnDrop(child);

    let body = format!(r#"{{"type":"order.created","total":42,"customer":{{"email":"{EMAIL}"}}}}"#);
    assert_eq!(send(addr, "msg_1", &body).await.status(), 202);
    delivered_at_least(addr, 1).await;
    replay_delivered_and_wait(addr, 1).await;
    admin_post(
        addr,
        "/admin/v1/lanes/orders/sink/pause",
        serde_json::json!({"reason": "maintenance window"}),
    )
    .await;
    admin_post(
        addr,
        "/admin/v1/lanes/orders/sink/resume",
        serde_json::json!({}),
    )
    .await;

    // Beside the running hub.
    let (code, out, err) = verify(&data);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("audit trail intact: "), "{out}");
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("head "))
        .unwrap_or_else(|| panic!("no head in {out}"))
        .to_owned();
    assert!(
        head.split_once(':').is_some_and(|(_, h)| h.len() == 64),
        "{head}"
    );

    let (code, export, err) = run_ferry(&["audit", "export", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |kind: &str| -> Vec<&Value> { lines.iter().filter(|l| l["kind"] == kind).collect() };
    let accepted = of("accepted");
    assert_eq!(accepted.len(), 1, "{export}");
    let a = accepted[0];
    let hasher = ferry_protect::KeyedHasher::new(HASH_KEY.as_bytes()).unwrap();
    assert_eq!(a["subject"], hasher.subject_ref(EMAIL));
    assert_eq!(a["categories"], serde_json::json!(["user.contact.email"]));
    assert_eq!(
        (a["flow"].as_str(), a["flow_version"].as_u64()),
        (Some("orders"), Some(3))
    );
    assert_eq!(a["source_system"], "src");
    let event = a["event"].as_str().unwrap();
    let delivered = of("delivered");
    assert_eq!(
        delivered.len(),
        2,
        "first delivery and the replay: {export}"
    );
    for d in &delivered {
        assert_eq!(
            (d["event"].as_str(), d["destination_system"].as_str()),
            (Some(event), Some("dst"))
        );
        // `dst` receives `user.contact`: the event went as stored, its category recorded.
        assert_eq!(
            d["categories_sent"],
            serde_json::json!([{"category": "user.contact.email", "how": "pass"}]),
            "{export}"
        );
    }
    let token_id = ferry::admin::token_id("admin", ADMIN_TOKEN);
    let replayed = of("replayed");
    assert_eq!(replayed.len(), 1, "{export}");
    assert!(
        replayed[0]["by"].as_str().unwrap().contains(&token_id),
        "{export}"
    );
    assert_eq!(replayed[0]["count"], 1);
    let actions: Vec<(&str, &str, &str)> = of("admin")
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap(),
                l["target"].as_str().unwrap(),
                l["by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("pause", "orders/sink", token_id.as_str()),
            ("resume", "orders/sink", token_id.as_str())
        ]
    );
    for l in &lines {
        assert!(l["seq"].as_u64().is_some() && l["hash"].as_str().is_some_and(|h| h.len() == 64));
    }
    // Never the identifier, never a secret.
    for secret in [EMAIL, "ada.lovelace", ADMIN_TOKEN, HASH_KEY] {
        assert!(!export.contains(secret), "the export holds `{secret}`");
    }
    // Only entries since a time.
    let (_, recent, _) = run_ferry(&[
        "audit",
        "export",
        "--data-dir",
        data.to_str().unwrap(),
        "--since",
        &(ferry_store::now_millis() + 60_000).to_string(),
    ]);
    assert_eq!(recent, "", "nothing after a minute from now");

    stop(hub);
    let (code, out, _) = run_ferry(&[
        "audit",
        "verify",
        "--data-dir",
        data.to_str().unwrap(),
        "--anchor",
        &head,
    ]);
    assert_eq!(
        code,
        Some(0),
        "the anchored head is still there after the stop: {out}"
    );

    let (_, out, _) = verify(&data);
    let records: u64 = out
        .strip_prefix("audit trail intact: ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        records >= 6,
        "accepted, 2 delivered, replayed, 2 admin: {out}"
    );

    let edit = "UPDATE audit_log SET entries = replace(entries, 'maintenance window', 'nothing') \
                WHERE kind = 'admin' AND entries LIKE '%pause%';";
    for (what, sql, position, problem) in [
        (
            "one row's entries edited",
            edit.to_owned(),
            None,
            "was modified",
        ),
        (
            "one row deleted",
            "DELETE FROM audit_log WHERE seq = 2;".to_owned(),
            Some(2),
            "is missing",
        ),
        (
            "two rows swapped",
            swap(2, 3),
            Some(2),
            "does not follow record 1",
        ),
    ] {
        let copy = tampered_copy(&data, &sql);
        let (code, out, err) = verify(copy.path());
        assert_eq!(code, Some(1), "{what}: {out}{err}");
        assert!(
            out.starts_with("audit trail BROKEN at record "),
            "{what}: {out}"
        );
        assert!(out.contains(problem), "{what}: {out}");
        if let Some(p) = position {
            assert!(
                out.starts_with(&format!("audit trail BROKEN at record {p}:")),
                "{what}: {out}"
            );
        }
        // The export stops at the same record.
        let (code, _, err) = run_ferry(&[
            "audit",
            "export",
            "--data-dir",
            copy.path().to_str().unwrap(),
        ]);
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(err.contains("BROKEN at record"), "{what}: {err}");
    }
    // The trail's end cut: the anchor tells.
    let copy = tampered_copy(
        &data,
        &format!("DELETE FROM audit_log WHERE seq = {records};"),
    );
    assert_eq!(
        verify(copy.path()).0,
        Some(0),
        "a cut end verifies on its own"
    );
    let (code, out, _) = run_ferry(&[
        "audit",
        "verify",
        "--data-dir",
        copy.path().to_str().unwrap(),
        "--anchor",
        &head,
    ]);
    assert_eq!(code, Some(1), "{out}");
    // No store: exit 2.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(verify(empty.path()).0, Some(2));
}

/// `GET /admin/v1/datamap/observed` answers from the store's observed map: per category
/// (a parent covers its sub-categories), flow, destination, system and protection, the
/// deliveries delivered and the last time; filtered by system; behind the admin token.
#[tokio::test(flavor = "multi_thread")]
async fn the_observed_data_map_is_served_to_admins() {
    use ferry_store::{
        CategorySent, DeliveryAudit, DeliveryId, DeliveryOutcome, EventId, LaneKey, NewDelivery,
        NewEvent, Next,
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let rx = TestReceiver::start().await;
    write_audit_config(&cfg, &rx);
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let store = hub.store();
    // A lane the hub does not run, so nothing else claims its delivery.
    let lane = LaneKey {
        flow: "manual".into(),
        destination: "crm".into(),
    };
    let now = ferry_store::now_millis();
    let delivery = DeliveryId::new();
    store
        .append(vec![NewEvent {
            id: EventId::new(),
            flow: lane.flow.clone(),
            source: "src".into(),
            dedupe_key: None,
            event_type: None,
            received_at: now,
            headers: Vec::new(),
            payload: bytes::Bytes::from_static(b"{}"),
            deliveries: vec![NewDelivery {
                id: delivery,
                destination: lane.destination.clone(),
                due_at: now,
                order_key: None,
                claimed_until: None,
            }],
            dedupe_window: None,
            audit: Default::default(),
        }])
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(&lane, now, 1, now + 60_000)
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .complete(
            vec![DeliveryOutcome {
                claim: None,
                id: delivery,
                attempt: None,
                next: Next::Delivered,
                audit: DeliveryAudit {
                    destination_system: Some("hubspot".into()),
                    categories_sent: vec![CategorySent {
                        category: "user.contact.email".into(),
                        how: "hash".into(),
                    }],
                },
            }],
            now + 1,
        )
        .await
        .unwrap();

    let addr = hub.admin_addr();
    let got = admin_get(addr, "/admin/v1/datamap/observed?category=user.contact").await;
    let rows = got["observed"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{got:#}");
    let row = &rows[0];
    assert_eq!(
        (
            row["category"].as_str(),
            row["flow"].as_str(),
            row["destination"].as_str(),
            row["system"].as_str(),
            row["how"].as_str(),
            row["delivered"].as_u64(),
            row["last_delivered_at"].as_i64()
        ),
        (
            Some("user.contact.email"),
            Some("manual"),
            Some("crm"),
            Some("hubspot"),
            Some("hash"),
            Some(1),
            Some(now + 1)
        )
    );
    let other = admin_get(addr, "/admin/v1/datamap/observed?system=warehouse").await;
    assert_eq!(other["observed"], serde_json::json!([]));
    let unrelated = admin_get(addr, "/admin/v1/datamap/observed?category=user.financial").await;
    assert_eq!(unrelated["observed"], serde_json::json!([]));
    let anonymous = client()
        .get(format!("http://{addr}/admin/v1/datamap/observed"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    hub.shutdown().await.unwrap();
}
