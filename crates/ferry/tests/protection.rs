//! Data protection end to end, on the real binary and real receivers on loopback: each
//! destination receives a customer's emails (top level, nested, in an array) as its
//! system's policy says — hashed, redacted, dropped, encrypted (decrypted here with the
//! system's key) or as they are — and never otherwise; a system without a policy gets no
//! classified field (fail closed, counted); `unclassified: deny`; `ferry validate` (and
//! `ferry test`) refuse a flow that sends a category nowhere allowed, unknown taxonomy keys
//! and custom keys without a parent, each at its file and line; `ferry datamap` and the
//! admin API answer "which systems receive user.contact.email"; and a hub logging at
//! `debug` writes none of the classified values.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use ferry_protect::{FieldCipher, KeyedHasher};
use serde_json::{Value, json};

/// The hub's hash key (40 bytes of text).
const HASH_KEY: &str = "9c1f4e7a2b8d3f6a0e5c9b2d7f1a4c8e3b6d0f2a";
/// The `encrypts` system's key: 32 bytes, base64.
const ENCRYPTS_KEY: &str = "S2V5LW9mLXRoZS1lbmNyeXB0cy1zeXN0ZW0tMzJieXQ=";

const EMAIL: &str = "ada.lovelace@example.com";
const WORK_EMAIL: &str = "ada@analytical-engine.example";
const CONTACT_EMAIL: &str = "charles.babbage@example.org";

const CUSTOMER_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "type", "email"],
  "properties": {
    "id": { "type": "string" },
    "type": { "type": "string" },
    "email": { "type": "string", "format": "email",
               "x-ferry-category": "user.contact.email", "x-ferry-subject": true },
    "customer": {
      "type": "object",
      "properties": { "work_email": { "type": "string", "x-ferry-category": "user.contact.email" } }
    },
    "contacts": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "email": { "type": "string", "x-ferry-category": "user.contact.email" },
          "role": { "type": "string" }
        }
      }
    },
    "plan": { "type": "string" }
  }
}"#;

/// The CRM's contract: short emails only (so that a delivery breaks it and `warn` logs).
const CRM_CONTRACT: &str = r#"{
  "type": "object",
  "properties": { "email": { "type": "string", "maxLength": 5 } }
}"#;

fn customer_event(id: &str) -> Value {
    json!({
        "id": id,
        "type": "customer.updated",
        "email": EMAIL,
        "customer": { "work_email": WORK_EMAIL },
        "contacts": [ { "email": CONTACT_EMAIL, "role": "cofounder" } ],
        "plan": "pro"
    })
}

/// Write a config directory: settings (admin token, hash key, loopback egress), `systems`
/// (YAML under `systems:`), the customer schema, and flow `orders` (Standard Webhooks from
/// `shop`, validated against the schema, with `steps` after that) to `destinations`.
fn write(dir: &Path, systems: &str, steps: &str, destinations: &str) {
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.join("source-secret"), SOURCE_SECRET).unwrap();
    std::fs::write(dir.join("hash-key"), HASH_KEY).unwrap();
    std::fs::write(dir.join("encrypts-key"), ENCRYPTS_KEY).unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        "settings:
  listen: 127.0.0.1:0
  admin: { token: { file: admin-token } }
  delivery: { shutdown_grace: 2s, egress_allow: [127.0.0.0/8] }
  protection:
    hash_key: { file: hash-key }
",
    )
    .unwrap();
    std::fs::write(
        dir.join("systems.yaml"),
        format!("systems:\n  shop: {{ owner: team-shop }}\n{systems}"),
    )
    .unwrap();
    std::fs::write(dir.join("schemas/customer.json"), CUSTOMER_SCHEMA).unwrap();
    std::fs::write(dir.join("schemas/crm.contract.json"), CRM_CONTRACT).unwrap();
    std::fs::write(
        dir.join("schemas.yaml"),
        "schemas:\n  customer.updated: { file: schemas/customer.json }\n  crm.contract: { file: schemas/crm.contract.json }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("flows/orders.yaml"),
        format!(
            "flows:
  orders:
    source:
      webhook:
        system: shop
        signature:
          standard_webhooks: {{ secret: {{ file: source-secret }} }}
        event_type: /type
    steps:
      - validate: {{ schema: customer.updated }}
{steps}    destinations:
{destinations}"
        ),
    )
    .unwrap();
}

/// Systems whose policies hash, redact, drop, encrypt and pass the customer's emails.
const POLICY_SYSTEMS: &str = "  hashes:
    owner: team-data
    policy: { data_use: analytics.reporting, protect: { user.contact.email: hash } }
  redacts:
    owner: team-data
    policy: { data_use: analytics.reporting, protect: { user.contact.email: redact } }
  drops:
    owner: team-data
    policy: { data_use: analytics.reporting, protect: { user.contact.email: drop } }
  encrypts:
    owner: team-support
    policy:
      data_use: essential.service.operations.support
      protect: { user.contact.email: encrypt }
      encryption_key: { file: encrypts-key }
  crm:
    owner: team-growth
    policy: { data_use: marketing.communications.email, receives: [user.contact.email] }
";

/// An HTTP destination of `system` posting to `url`.
fn dest(name: &str, system: &str, url: &str, more: &str) -> String {
    format!(
        "      {name}:\n        system: {system}\n        http: {{ url: \"{url}\", timeout: 2s, connect_timeout: 1s }}\n        retry: {{ max_attempts: 3, initial_backoff: 20ms, max_backoff: 100ms }}\n{more}"
    )
}

fn all_destinations(rx: &TestReceiver) -> String {
    [
        dest("hash", "hashes", &rx.url("/hash"), ""),
        dest("redact", "redacts", &rx.url("/redact"), ""),
        dest("drop", "drops", &rx.url("/drop"), ""),
        dest("encrypt", "encrypts", &rx.url("/encrypt"), ""),
        dest(
            "crm",
            "crm",
            &rx.url("/crm"),
            "        contract: { schema: crm.contract, on_violation: warn }\n",
        ),
        // The policy comes before `map` and templates: they see the hashed value only.
        dest(
            "mapped",
            "hashes",
            &rx.url("/mapped"),
            "        map: '. = {\"who\": .email, \"first_contact\": .contacts[0].email}'\n",
        )
        .replace(
            "timeout: 2s, connect_timeout: 1s }",
            "timeout: 2s, connect_timeout: 1s, headers: { x-who: \"{{ event.who }}\" } }",
        ),
    ]
    .concat()
}

/// A filter that fails at run time, quoting the email, for events with `boom`.
const FAILING_FILTER: &str =
    "      - filter: 'if exists(.boom) { to_int!(.email) > 0 } else { true }'\n";

/// The body `rx` received at `path` (the first one).
fn body_at(rx: &TestReceiver, path: &str) -> (String, Value) {
    let got = rx
        .received()
        .into_iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("nothing received at {path}"));
    let text = String::from_utf8(got.body.to_vec()).unwrap();
    let value = serde_json::from_str(&text).unwrap();
    (text, value)
}

fn ferry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap()
}

/// Stop a spawned hub with SIGTERM and wait for it.
fn stop(mut child: std::process::Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ferry did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn each_system_receives_the_emails_as_its_policy_says_and_debug_logs_hold_none() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    write(&cfg, POLICY_SYSTEMS, FAILING_FILTER, &all_destinations(&rx));
    let log = dir.path().join("ferry.log");
    let (child, hub) = spawn_ferry_env(
        &cfg,
        &dir.path().join("data"),
        &log,
        &[("RUST_LOG", "debug")],
    );

    let event = customer_event("c1").to_string();
    assert_eq!(send(hub, "evt-1", &event).await.status(), 202);
    // Refused at ingress, with classified values in them: a schema violation (the email's
    // format) and a filter failing at run time (VRL's message quotes the value).
    let bad_format =
        json!({"id": "c2", "type": "customer.updated", "email": "ada-at-example.invalid"});
    assert_eq!(
        send(hub, "evt-2", &bad_format.to_string()).await.status(),
        422
    );
    let mut boom = customer_event("c3");
    boom["boom"] = json!(true);
    boom["email"] = json!("grace.hopper@example.net");
    let answer = send(hub, "evt-3", &boom.to_string()).await;
    assert_eq!(answer.status(), 422);
    wait_until(30, "six deliveries", || async { rx.count() >= 6 }).await;

    // As it is, to the system that may receive it.
    let (_, crm) = body_at(&rx, "/crm");
    assert_eq!(crm, customer_event("c1"));

    // Hashed, keyed and stable per system: the value a join on it would use.
    let hasher = KeyedHasher::new(HASH_KEY.as_bytes()).unwrap();
    let hashed = |v: &str| json!(hasher.hash_for_system("hashes", &json!(v)));
    let (text, hash) = body_at(&rx, "/hash");
    assert_eq!(hash["email"], hashed(EMAIL));
    assert_eq!(hash["customer"]["work_email"], hashed(WORK_EMAIL));
    assert_eq!(hash["contacts"][0]["email"], hashed(CONTACT_EMAIL));
    assert_eq!(hash["contacts"][0]["role"], "cofounder");
    assert_eq!(hash["plan"], "pro");
    assert!(!text.contains("example"), "{text}");
    let (text, mapped) = body_at(&rx, "/mapped");
    assert_eq!(
        mapped,
        json!({"who": hashed(EMAIL), "first_contact": hashed(CONTACT_EMAIL)})
    );
    assert!(!text.contains("example"), "{text}");
    let header = rx
        .received()
        .into_iter()
        .find(|r| r.path == "/mapped")
        .unwrap()
        .headers["x-who"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(json!(header), hashed(EMAIL));

    let (text, redact) = body_at(&rx, "/redact");
    assert_eq!(
        redact,
        json!({"id": "c1", "type": "customer.updated", "email": "[redacted]",
               "customer": {"work_email": "[redacted]"},
               "contacts": [{"email": "[redacted]", "role": "cofounder"}], "plan": "pro"})
    );
    assert!(!text.contains("example"), "{text}");

    let (text, dropped) = body_at(&rx, "/drop");
    assert_eq!(
        dropped,
        json!({"id": "c1", "type": "customer.updated", "customer": {},
               "contacts": [{"role": "cofounder"}], "plan": "pro"})
    );
    assert!(!text.contains("example"), "{text}");

    // Encrypted under the system's key, bound to its name: it decrypts them, nobody else.
    let key = base64::engine::general_purpose::STANDARD
        .decode(ENCRYPTS_KEY)
        .unwrap();
    let cipher = FieldCipher::new(&key).unwrap();
    let (text, encrypted) = body_at(&rx, "/encrypt");
    assert!(!text.contains("example"), "{text}");
    for (pointer, original) in [
        ("/email", EMAIL),
        ("/customer/work_email", WORK_EMAIL),
        ("/contacts/0/email", CONTACT_EMAIL),
    ] {
        let sealed = encrypted.pointer(pointer).unwrap().as_str().unwrap();
        assert!(sealed.starts_with("ferry-enc:v1:"), "{sealed}");
        assert_eq!(cipher.decrypt("encrypts", sealed).unwrap(), json!(original));
        assert!(
            cipher.decrypt("crm", sealed).is_err(),
            "bound to the system"
        );
    }
    assert_eq!(encrypted["contacts"][0]["role"], "cofounder");

    // The data map of the running hub, over the admin API.
    let map = admin_get(
        hub,
        "/admin/v1/datamap?category=user.contact.email&system=hashes",
    )
    .await;
    let rows = map["rows"].as_array().unwrap();
    let destinations: Vec<&Value> = rows.iter().map(|r| &r["destination"]).collect();
    assert_eq!(destinations, [&json!("hash"), &json!("mapped")], "{map}");
    assert!(rows.iter().all(|r| r["protection"] == "hash"), "{map}");
    assert_eq!(rows[0]["data_use"], "analytics.reporting");
    assert!(
        rows[0]["fields"]
            .as_array()
            .unwrap()
            .contains(&json!("customer.updated#/contacts/*/email"))
    );

    stop(child);
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("DEBUG") && logs.contains("webhook refused"),
        "the hub logged at debug, refusals included"
    );
    assert!(
        logs.contains("outgoing payload breaks its contract"),
        "the CRM's contract warning was logged"
    );
    for value in [
        EMAIL,
        WORK_EMAIL,
        CONTACT_EMAIL,
        "ada-at-example.invalid",
        "grace.hopper@example.net",
        HASH_KEY,
        ENCRYPTS_KEY,
    ] {
        assert!(
            !logs.contains(value),
            "the logs carry `{value}`:\n{}",
            logs.lines()
                .filter(|l| l.contains(value))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test]
async fn a_system_without_a_policy_receives_no_classified_field() {
    // `ferry validate` refuses this config (see below); a hub assembled from it anyway still
    // fails closed: every classified value is removed, and counted.
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write(
        cfg.path(),
        "  nopolicy: { owner: team-x }\n",
        "",
        &dest("unruled", "nopolicy", &rx.url("/unruled"), ""),
    );
    let hub = start_hub(cfg.path(), data.path()).await;
    let event = customer_event("c9").to_string();
    assert_eq!(send(hub.addr(), "evt-9", &event).await.status(), 202);
    wait_until(30, "the delivery", || async { rx.count() >= 1 }).await;
    let (text, got) = body_at(&rx, "/unruled");
    assert_eq!(
        got,
        json!({"id": "c9", "type": "customer.updated", "customer": {},
               "contacts": [{"role": "cofounder"}], "plan": "pro"})
    );
    assert!(!text.contains("example"), "{text}");
    let metrics = metrics_text(hub.addr()).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferry_protect_refused_total")
                && l.contains("destination=\"unruled\"")
                && l.ends_with(" 3")),
        "{metrics}"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn unclassified_deny_sends_only_classified_fields_and_empty_events_for_unclassified_ones() {
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let systems = "  strict:\n    owner: team-x\n    policy: { data_use: essential.service, receives: [user.contact.email], unclassified: deny }\n";
    write(
        cfg.path(),
        systems,
        "",
        &dest("strict", "strict", &rx.url("/strict"), ""),
    );
    // Without a `validate` schema, an event is classified by the schema of its type: a
    // `ping` has a schema that classifies nothing, so under `deny` it arrives as `{}`.
    let flow = std::fs::read_to_string(cfg.path().join("flows/orders.yaml"))
        .unwrap()
        .replace(
            "      - validate: { schema: customer.updated }\n",
            "      - validate: {}\n",
        );
    std::fs::write(cfg.path().join("flows/orders.yaml"), flow).unwrap();
    std::fs::write(
        cfg.path().join("schemas/ping.json"),
        r#"{"type": "object", "properties": {"type": {"type": "string"}, "note": {"type": "string"}}}"#,
    )
    .unwrap();
    std::fs::write(
        cfg.path().join("schemas.yaml"),
        "schemas:\n  customer.updated: { file: schemas/customer.json }\n  crm.contract: { file: schemas/crm.contract.json }\n  ping: { file: schemas/ping.json }\n",
    )
    .unwrap();
    // Valid: a warning for `ping`, no error.
    let out = ferry(&["validate", cfg.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("schema `ping` classifies no field") && stderr.contains("receives `{}`"),
        "{stderr}"
    );

    let hub = start_hub(cfg.path(), data.path()).await;
    let event = customer_event("c5").to_string();
    assert_eq!(send(hub.addr(), "evt-5", &event).await.status(), 202);
    let ping = json!({"type": "ping", "note": "hello"}).to_string();
    assert_eq!(send(hub.addr(), "evt-6", &ping).await.status(), 202);
    wait_until(30, "two deliveries", || async { rx.count() >= 2 }).await;
    let bodies: Vec<Value> = rx
        .received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(
        bodies.contains(
            &json!({"email": EMAIL, "customer": {"work_email": WORK_EMAIL},
                                "contacts": [{"email": CONTACT_EMAIL}]})
        ),
        "{bodies:?}"
    );
    assert!(bodies.contains(&json!({})), "{bodies:?}");
    let metrics = metrics_text(hub.addr()).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferry_protect_emptied_total")
                && l.contains("destination=\"strict\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    hub.shutdown().await.unwrap();
}

/// The 1-based line of the first line of `file` (in `dir`) holding `text`.
fn line_of_containing(dir: &Path, file: &str, text: &str) -> usize {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no `{text}` in {file}"))
        + 1
}

/// The 1-based line of the first line of `file` (in `dir`) that is `line` once trimmed.
fn line_of(dir: &Path, file: &str, line: &str) -> usize {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .lines()
        .position(|l| l.trim() == line)
        .unwrap_or_else(|| panic!("no `{line}` in {file}"))
        + 1
}

#[test]
fn validate_refuses_a_category_sent_where_no_rule_allows_it_and_test_does_too() {
    let dir = tempfile::tempdir().unwrap();
    let systems = "  crm:\n    owner: team-growth\n    policy: { data_use: marketing.communications.email, receives: [user.name] }\n";
    write(
        dir.path(),
        systems,
        "",
        &dest("crm", "crm", "http://127.0.0.1:9/crm", ""),
    );
    std::fs::write(
        dir.path().join("flows/orders.test.yaml"),
        "tests:\n  anything:\n    input: { \"id\": \"c1\", \"type\": \"customer.updated\", \"email\": \"a@b.example\" }\n    expect: { routes: [crm] }\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let out = ferry(&["validate", path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let at = line_of(dir.path(), "flows/orders.yaml", "crm:") + 1;
    for pointer in ["/email", "/customer/work_email", "/contacts/*/email"] {
        let message = format!(
            "flows/orders.yaml:{at}:9: flows.orders.destinations.crm: flow `orders` sends `user.contact.email` (field `{pointer}` of schema `customer.updated`) to destination `crm`, whose system `crm` may not receive it"
        );
        assert!(stderr.contains(&message), "{message}\n{stderr}");
    }
    assert!(
        stderr.contains("add `user.contact.email` (or a key covering it) to `systems.crm.policy.receives`, or a `protect` rule"),
        "{stderr}"
    );
    // `ferry test` runs the same check: the config is invalid, no test runs.
    let out = ferry(&["test", path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not receive it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A rule that protects it: valid, and the fixture test runs.
    let fixed = "  crm:\n    owner: team-growth\n    policy: { data_use: marketing.communications.email, receives: [user.name], protect: { user.contact: hash } }\n";
    std::fs::write(
        dir.path().join("systems.yaml"),
        format!("systems:\n  shop: {{ owner: team-shop }}\n{fixed}"),
    )
    .unwrap();
    let out = ferry(&["validate", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ferry(&["test", path]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_taxonomy_keys_are_refused_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let systems = "  crm:
    owner: team-growth
    policy:
      data_use: marketing.telepathy
      receives: [user.contact.email, user.contact.emial]
      protect: { user.loyalty.tier: drop }
";
    write(
        dir.path(),
        systems,
        "",
        &dest("crm", "crm", "http://127.0.0.1:9/crm", ""),
    );
    // A custom key without a known parent, and a schema with an unknown category.
    let settings = std::fs::read_to_string(dir.path().join("ferry.yaml")).unwrap()
        + "    taxonomy:\n      data_categories:\n        user.loyalty.tier: Loyalty tier\n        user.contact.email.work: A work address\n    retention:\n      user.contact.emails: 30d\n";
    std::fs::write(dir.path().join("ferry.yaml"), settings).unwrap();
    std::fs::write(
        dir.path().join("schemas/customer.json"),
        CUSTOMER_SCHEMA.replace(
            "\"role\": { \"type\": \"string\" }",
            "\"role\": { \"type\": \"string\", \"x-ferry-category\": \"user.job.role\" }",
        ),
    )
    .unwrap();
    let out = ferry(&["validate", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // (file and line, the field and message), each on one line of the report.
    let expect = [
        (
            format!(
                "systems.yaml:{}:",
                line_of(dir.path(), "systems.yaml", "data_use: marketing.telepathy")
            ),
            "systems.crm.policy.data_use: `marketing.telepathy` is not a known data use",
        ),
        (
            format!(
                "systems.yaml:{}:",
                line_of(
                    dir.path(),
                    "systems.yaml",
                    "receives: [user.contact.email, user.contact.emial]"
                )
            ),
            "systems.crm.policy.receives.1: `user.contact.emial` is not a known data category (known near it:",
        ),
        (
            format!(
                "systems.yaml:{}:",
                line_of(
                    dir.path(),
                    "systems.yaml",
                    "protect: { user.loyalty.tier: drop }"
                )
            ),
            "systems.crm.policy.protect.user.loyalty.tier: `user.loyalty.tier` is not a known data category",
        ),
        (
            format!(
                "ferry.yaml:{}:",
                line_of(dir.path(), "ferry.yaml", "user.loyalty.tier: Loyalty tier")
            ),
            "settings.protection.taxonomy.data_categories.user.loyalty.tier: custom data category `user.loyalty.tier` extends `user.loyalty`, which is not a known data category",
        ),
        (
            format!(
                "ferry.yaml:{}:",
                line_of(dir.path(), "ferry.yaml", "user.contact.emails: 30d")
            ),
            "settings.protection.retention.user.contact.emails: `user.contact.emails` is not a known data category",
        ),
        (
            format!(
                "schemas/customer.json:{}:",
                line_of_containing(dir.path(), "schemas/customer.json", "user.job.role")
            ),
            "schema `customer.updated`: `user.job.role` is not a known data category",
        ),
    ];
    for (place, message) in &expect {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(place.as_str()) && l.contains(message)),
            "missing: {place} {message}\n{stderr}"
        );
    }
    // The custom key under a known parent joined: nothing said about it.
    assert!(!stderr.contains("user.contact.email.work"), "{stderr}");
}

#[test]
fn unclassified_warn_lists_the_fields_sent_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let systems = "  crm:\n    owner: team-growth\n    policy: { data_use: essential.service, receives: [user.contact], unclassified: warn }\n";
    write(
        dir.path(),
        systems,
        "",
        &dest("crm", "crm", "http://127.0.0.1:9/crm", ""),
    );
    let out = ferry(&["validate", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("destination `crm` of flow `orders` receives fields of schema `customer.updated` that carry no data category, as they are (system `crm`, unclassified: warn): `/contacts/*/role`, `/id`, `/plan`, `/type`"),
        "{stderr}"
    );
}

#[test]
fn datamap_answers_which_systems_receive_customer_emails() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        POLICY_SYSTEMS,
        "",
        &all_destinations_at("http://127.0.0.1:9"),
    );
    let path = dir.path().to_str().unwrap();
    let out = ferry(&["datamap", path, "--category", "user.contact.email"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "Systems receiving `user.contact.email`: crm (pass), encrypts (encrypt), hashes (hash), redacts (redact)"
        ),
        "{stdout}"
    );
    let out = ferry(&["datamap", path, "--system", "drops", "--json"]);
    let map: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = map["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{map}");
    assert_eq!(rows[0]["category"], "user.contact.email");
    assert_eq!(rows[0]["flow"], "orders");
    assert_eq!(rows[0]["destination"], "drop");
    assert_eq!(rows[0]["protection"], "drop");
    assert_eq!(rows[0]["rule"], "user.contact.email");
    assert_eq!(rows[0]["source_system"], "shop");
    let out = ferry(&["datamap", path, "--category", "user.name"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No flow carries `user.name`"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn all_destinations_at(base: &str) -> String {
    [
        dest("hash", "hashes", &format!("{base}/hash"), ""),
        dest("redact", "redacts", &format!("{base}/redact"), ""),
        dest("drop", "drops", &format!("{base}/drop"), ""),
        dest("encrypt", "encrypts", &format!("{base}/encrypt"), ""),
        dest("crm", "crm", &format!("{base}/crm"), ""),
    ]
    .concat()
}
