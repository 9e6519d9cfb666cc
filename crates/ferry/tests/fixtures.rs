//! `ferry test` as a user runs it: fixture files beside a config, run by the binary —
//! passing, and failing on purpose (a wrong output, drop, route, refusal, split, contract),
//! with the exit codes (0 all passed, 1 a failure, 2 an invalid config).

use std::path::Path;
use std::process::{Command, Output};

/// A config with one flow per feature under test (no secrets, no network).
const CONFIG: &str = r#"
systems:
  shop: { owner: team-commerce }
  crm: { owner: team-growth }
  wh: { owner: team-data }
schemas:
  order: { file: schemas/order.json }
  crm.customer: { file: schemas/crm.customer.json }
flows:
  orders:
    source: { webhook: { system: shop, signature: { none: {} }, event_type: /type } }
    steps:
      - validate: { schema: order }
      - filter: .test != true
      - route:
          crm: .total > 100 ?? false
    destinations:
      crm:
        system: crm
        http: { url: "https://api.crm.example/customers/{{ event.customer_id }}" }
        map: |
          . = { "customer_id": .customer.id, "total": .total }
        contract: { schema: crm.customer, on_violation: dlq }
      warehouse:
        system: wh
        http: { url: https://wh.example/orders }
  lines:
    source: { webhook: { system: shop, signature: { none: {} } } }
    steps:
      - split: array!(.items)
      - route:
          big: .qty > 5 ?? false
    destinations:
      all:
        system: wh
        http: { url: https://wh.example/lines }
        map: '.sku = upcase!(.sku)'
      big:
        system: wh
        http: { url: https://wh.example/big }
  warned:
    source: { webhook: { system: shop, signature: { none: {} } } }
    destinations:
      crm:
        system: crm
        http: { url: https://api.crm.example/loose }
        contract: { schema: crm.customer, on_violation: warn }
  cloud:
    source: { webhook: { system: shop, signature: { none: {} } } }
    destinations:
      wh: { system: wh, http: { url: https://wh.example/cloud } }
  enriched:
    source: { webhook: { system: shop, signature: { none: {} } } }
    destinations:
      crm:
        system: crm
        http: { url: https://api.crm.example/orders }
        enrich: { url: "https://api.crm.example/customers/{{ event.customer.id }}", into: customer }
        map: '. = { "id": .id, "tier": .customer.tier }'
  invoices:
    source:
      pull:
        system: shop
        url: https://api.shop.example/invoices
        schedule: "*/15 * * * *"
        records: /data
        record_id: /id
        cursor: { page_token: { next: /next, param: page } }
    destinations:
      wh:
        system: wh
        http: { url: https://wh.example/invoices }
        map: '.pulled = true'
  queued:
    source:
      nats: { system: shop, url: "nats://127.0.0.1:4222", stream: ORDERS, consumer: ferry, event_id: /id, event_type: /type }
    steps:
      - validate: { schema: order }
    destinations:
      wh:
        system: wh
        http: { url: https://wh.example/orders }
        map: '.queued = true'
"#;

const ORDER_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["id", "total"],
  "properties": {
    "id": { "type": "string" },
    "total": { "type": "number", "minimum": 0 },
    "customer": { "type": "object" }
  }
}"#;

const CRM_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["customer_id", "total"],
  "additionalProperties": false,
  "properties": {
    "customer_id": { "type": "string" },
    "total": { "type": "number" }
  }
}"#;

/// Tests that pass: every kind of expectation.
const PASSING_ORDERS: &str = r#"
tests:
  big-order-goes-to-crm:
    input: { "id": "o1", "type": "order.created", "total": 250, "customer": { "id": "c1" } }
    expect:
      events: 1
      event_type: order.created
      routes: [crm, warehouse]
      outputs:
        crm: { "customer_id": "c1", "total": 250.0 }
        warehouse: { assert: [".total == 250", "exists(.customer.id)"] }
      url: { crm: "https://api.crm.example/customers/c1" }
  small-order-skips-crm:
    input: { "id": "o2", "total": 20 }
    expect:
      routes: [warehouse]
      outputs:
        warehouse: { equals: { "id": "o2", "total": 20 } }
  test-orders-are-dropped:
    input: { "id": "o3", "total": 500, "test": true }
    expect: { dropped: true }
  order-without-total-is-refused:
    input: { "id": "o4" }
    expect: { rejected: schema_violation }
  order-without-customer-breaks-the-crm-contract:
    input: { "id": "o5", "total": 300 }
    expect:
      dead: { crm: contract_violation }
      outputs: { warehouse: { "id": "o5", "total": 300 } }
"#;

const PASSING_LINES: &str = r#"
tests:
  lines-are-split:
    input: { "items": [ { "sku": "a", "qty": 1 }, { "sku": "b", "qty": 9 } ] }
    expect:
      events: 2
      routes: [[all], [all, big]]
      outputs:
        all: [ { "sku": "A", "qty": 1 }, { "sku": "B", "qty": 9 } ]
        big: [ { "sku": "b", "qty": 9 } ]
  empty-order-is-dropped:
    input: { "items": [] }
    expect: { dropped: true }
"#;

const PASSING_OTHERS: &str = r#"
tests:
  loose-contract-warns-but-sends:
    flow: warned
    input: { "customer_id": 7 }
    expect:
      outputs: { crm: { "customer_id": 7 } }
  cloudevent-binary-mode:
    flow: cloud
    headers:
      ce-specversion: "1.0"
      ce-id: evt-1
      ce-source: /shop
      ce-type: order.created
    input: { "id": "o9" }
    expect:
      event_type: order.created
      outputs: { wh: { "id": "o9" } }
  pulled-record-is-mapped:
    flow: invoices
    input: { "id": "in_1", "amount": 5 }
    expect:
      outputs: { wh: { "id": "in_1", "amount": 5, "pulled": true } }
  pulled-record-without-its-id-fails-the-run:
    flow: invoices
    input: { "amount": 5 }
    expect: { rejected: record_invalid }
  queued-message-is-mapped:
    flow: queued
    input: { "id": "q1", "total": 3, "type": "order.created" }
    expect:
      event_type: order.created
      outputs: { wh: { "id": "q1", "total": 3, "type": "order.created", "queued": true } }
  queued-message-without-its-id-is-rejected:
    flow: queued
    input: { "total": 3 }
    expect: { rejected: event_id_invalid }
  lookup-answer-comes-from-the-fixture:
    flow: enriched
    input: { "id": "o7", "customer": { "id": "c7" } }
    enrich:
      crm: { "tier": "gold" }
    expect:
      outputs: { crm: { "id": "o7", "tier": "gold" } }
"#;

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// A config directory with `CONFIG`, its schemas and the given fixture files.
fn config_dir(fixtures: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("config.yaml", CONFIG);
    write("schemas/order.json", ORDER_SCHEMA);
    write("schemas/crm.customer.json", CRM_SCHEMA);
    for (rel, text) in fixtures {
        write(rel, text);
    }
    dir
}

fn run_tests(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = ferry().arg("test").arg(dir).args(extra).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn passing_fixtures_exit_0_with_an_ok_line_each() {
    let dir = config_dir(&[
        ("flows/orders.test.yaml", PASSING_ORDERS),
        ("flows/lines.test.yml", PASSING_LINES),
        ("more.test.yaml", PASSING_OTHERS),
    ]);
    let (code, stdout, stderr) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for name in [
        "big-order-goes-to-crm",
        "small-order-skips-crm",
        "test-orders-are-dropped",
        "order-without-total-is-refused",
        "order-without-customer-breaks-the-crm-contract",
        "lines-are-split",
        "empty-order-is-dropped",
        "loose-contract-warns-but-sends",
        "cloudevent-binary-mode",
        "lookup-answer-comes-from-the-fixture",
        "pulled-record-is-mapped",
        "pulled-record-without-its-id-fails-the-run",
        "queued-message-is-mapped",
        "queued-message-without-its-id-is-rejected",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.ends_with(name)),
            "no ok line for {name}:\n{stdout}"
        );
    }
    assert!(stdout.contains("14 passed, 0 failed"), "{stdout}");
    // The `warn` contract's violation is shown, and the test still passes.
    assert!(
        stdout.contains("warning: `crm`: the output breaks contract `crm.customer`"),
        "{stdout}"
    );
    // The config loader does not read fixture files as config.
    let out = ferry().arg("validate").arg(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_wrong_output_exits_1_with_a_diff_naming_the_field() {
    let wrong = PASSING_ORDERS.replace(
        r#"crm: { "customer_id": "c1", "total": 250.0 }"#,
        r#"crm: { "customer_id": "c2", "total": 250 }"#,
    );
    let dir = config_dir(&[("flows/orders.test.yaml", &wrong)]);
    let (code, stdout, stderr) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("FAILED  flows/orders.test.yaml: big-order-goes-to-crm"),
        "{stdout}"
    );
    assert!(
        stdout.contains("`crm`: output differs at /customer_id"),
        "{stdout}"
    );
    assert!(stdout.contains(r#"-   "customer_id": "c2","#), "{stdout}");
    assert!(stdout.contains(r#"+   "customer_id": "c1","#), "{stdout}");
    assert!(stdout.contains("4 passed, 1 failed"), "{stdout}");
}

#[test]
fn wrong_drop_route_refusal_and_assertion_expectations_fail() {
    let fixtures = r#"
tests:
  stored-not-dropped:
    input: { "id": "o1", "total": 250, "customer": { "id": "c1" } }
    expect: { dropped: true }
  wrong-routes:
    input: { "id": "o2", "total": 20 }
    expect: { routes: [crm, warehouse] }
  accepted-not-refused:
    input: { "id": "o3", "total": 20 }
    expect: { rejected: schema_violation }
  dropped-not-stored:
    input: { "id": "o4", "total": 20, "test": true }
    expect: { routes: [warehouse] }
  false-assertion:
    input: { "id": "o5", "total": 20 }
    expect:
      outputs: { warehouse: { assert: [".total == 21"] } }
  unknown-destination:
    input: { "id": "o6", "total": 20 }
    expect:
      outputs: { erp: {} }
"#;
    let dir = config_dir(&[("flows/orders.test.yaml", fixtures)]);
    let (code, stdout, stderr) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    for expected in [
        "expected dropped, but it was stored: 1 event with deliveries to [crm, warehouse]",
        "routes: expected [crm, warehouse], got [warehouse]",
        "expected rejected `schema_violation`, but it was accepted",
        "the input was not stored: it was dropped by step 1 (`filter`)",
        "`warehouse`: assertion `.total == 21` is false",
        "flow `orders` has no destination `erp`",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}`:\n{stdout}");
    }
    assert!(stdout.contains("0 passed, 6 failed"), "{stdout}");
}

#[test]
fn split_outputs_are_checked_per_delivery() {
    let wrong = PASSING_LINES.replace(
        r#"{ "sku": "B", "qty": 9 } ]"#,
        r#"{ "sku": "B", "qty": 8 } ]"#,
    );
    let dir = config_dir(&[("flows/lines.test.yaml", &wrong)]);
    let (code, stdout, _) = run_tests(dir.path(), &["--filter", "split"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("`all` (delivery 2 of 2): output differs at /qty"),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");

    let not_a_list = PASSING_LINES.replace(
        r#"big: [ { "sku": "b", "qty": 9 } ]"#,
        r#"big: { "sku": "b", "qty": 9 }"#,
    );
    let dir = config_dir(&[("flows/lines.test.yaml", &not_a_list)]);
    let (code, stdout, _) = run_tests(dir.path(), &["--filter", "split"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("`expect.outputs.big` must be a list"),
        "{stdout}"
    );
}

#[test]
fn a_contract_violation_is_caught() {
    let fixtures = r#"
tests:
  crm-output-breaks-its-contract:
    input: { "id": "o1", "total": 300, "customer": { "id": 42 } }
    expect:
      outputs: { crm: { "customer_id": 42, "total": 300 } }
"#;
    let dir = config_dir(&[("flows/orders.test.yaml", fixtures)]);
    let (code, stdout, _) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "`crm`: the delivery would be dead-lettered (contract_violation): the payload \
             breaks contract `crm.customer`: /customer_id"
        ),
        "{stdout}"
    );
}

#[test]
fn enrich_without_a_fixture_response_is_an_error() {
    let fixtures = r#"
tests:
  no-lookup-answer:
    flow: enriched
    input: { "id": "o7", "customer": { "id": "c7" } }
"#;
    let dir = config_dir(&[("e.test.yaml", fixtures)]);
    let (code, stdout, _) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("error: destination `crm` looks data up with `enrich`"),
        "{stdout}"
    );
}

#[test]
fn json_output_lists_every_test() {
    let dir = config_dir(&[("flows/orders.test.yaml", PASSING_ORDERS)]);
    let (code, stdout, _) = run_tests(dir.path(), &["--json", "--filter", "big-order"]);
    assert_eq!(code, Some(0), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["passed"], 1);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["tests"][0]["name"], "big-order-goes-to-crm");
    assert_eq!(report["tests"][0]["flow"], "orders");
}

#[test]
fn unreadable_fixtures_and_no_tests_fail() {
    let dir = config_dir(&[("flows/orders.test.yaml", "tests:\n  t:\n    inptu: {}\n")]);
    let (code, stdout, stderr) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stderr.contains("orders.test.yaml:3"), "{stderr}");
    assert!(stderr.contains("inptu"), "{stderr}");

    let dir = config_dir(&[]);
    let (code, stdout, _) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("no test found"), "{stdout}");
}

#[test]
fn an_invalid_config_exits_2() {
    let dir = config_dir(&[("flows/orders.test.yaml", PASSING_ORDERS)]);
    std::fs::write(
        dir.path().join("broken.yaml"),
        "flows:\n  bad:\n    source: { webhook: { system: nowhere, signature: { none: {} } } }\n    destinations: {}\n",
    )
    .unwrap();
    let (code, _, stderr) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no test was run"), "{stderr}");
}

#[test]
fn the_example_tests_pass() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    let (code, stdout, stderr) = run_tests(&examples, &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// Inputs, `before` requests, lookup answers and expected outputs may live in JSON files,
/// relative to the fixture file.
const FILE_FIXTURES: &str = r#"
tests:
  order-from-a-file:
    input: { file: fixtures/big-order.json }
    expect:
      routes: [crm, warehouse]
      outputs:
        crm: { file: fixtures/crm-customer.json }
        warehouse: { file: ../shared/whole-order.json }
  resent-order-from-files-is-dropped:
    before: [ { file: fixtures/big-order.json } ]
    input: { file: fixtures/big-order.json }
    expect: { dropped: true }
  lookup-answer-from-a-file:
    flow: enriched
    input: { "id": "o7", "customer": { "id": "c7" } }
    enrich:
      crm: { file: fixtures/gold.json }
    expect:
      outputs: { crm: { "id": "o7", "tier": "gold" } }
"#;

const BIG_ORDER: &str =
    r#"{"id": "o1", "type": "order.created", "total": 250, "customer": {"id": "c1"}}"#;

#[test]
fn fixture_values_can_live_in_files() {
    let dir = config_dir(&[
        ("flows/orders.test.yaml", FILE_FIXTURES),
        ("flows/fixtures/big-order.json", BIG_ORDER),
        (
            "flows/fixtures/crm-customer.json",
            r#"{"customer_id": "c1", "total": 250}"#,
        ),
        ("shared/whole-order.json", BIG_ORDER),
        ("flows/fixtures/gold.json", r#"{"tier": "gold"}"#),
    ]);
    // The re-sent order is a duplicate by its `/id` (`none` knows no sender id of its own).
    let config = std::fs::read_to_string(dir.path().join("config.yaml")).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        config.replacen(
            "signature: { none: {} }, event_type: /type",
            "signature: { none: {} }, event_type: /type, event_id: { json_pointer: /id }",
            1,
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");

    // A file that differs from the output fails the test with the usual diff.
    std::fs::write(
        dir.path().join("flows/fixtures/crm-customer.json"),
        r#"{"customer_id": "c2", "total": 250}"#,
    )
    .unwrap();
    let (code, stdout, _) = run_tests(dir.path(), &["--filter", "order-from-a-file"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("output differs at /customer_id"),
        "{stdout}"
    );
}

#[test]
fn a_fixture_file_that_cannot_be_read_fails_its_test_at_the_field() {
    let broken = r#"
tests:
  missing-file:
    input: { file: fixtures/nope.json }
  bad-json:
    input: { "id": "o1", "total": 5 }
    expect:
      outputs:
        warehouse: { file: fixtures/bad.json }
  outside:
    input: { file: OUTSIDE }
  linked-outside:
    input: { file: fixtures/link.json }
  fine:
    input: { "id": "o2", "total": 5 }
"#;
    // A real JSON file next to the config directory: reachable by `..` or a link, never read.
    let elsewhere = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let secret = elsewhere.path().join("secret.json");
    std::fs::write(&secret, r#"{"secret": true}"#).unwrap();
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let outside = format!(
        "../../{}/secret.json",
        elsewhere.path().file_name().unwrap().to_str().unwrap()
    );
    let dir = {
        let fixtures = config_dir(&[
            (
                "flows/orders.test.yaml",
                &broken.replace("OUTSIDE", &outside),
            ),
            ("flows/fixtures/bad.json", "{\"id\": "),
        ]);
        // Same files, in a directory beside `elsewhere`.
        copy_dir(fixtures.path(), dir.path());
        dir
    };
    std::os::unix::fs::symlink(&secret, dir.path().join("flows/fixtures/link.json")).unwrap();
    let (code, stdout, stderr) = run_tests(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed, 4 failed"), "{stdout}");
    let line = |name: &str| -> String {
        let mut lines = stdout
            .lines()
            .skip_while(|l| !l.ends_with(&format!(": {name}")));
        lines.next();
        lines.next().unwrap_or_default().trim().to_string()
    };
    let missing = line("missing-file");
    assert!(
        missing.starts_with(
            "error: flows/orders.test.yaml:4:20: tests.missing-file.input.file: cannot read `fixtures/nope.json`"
        ),
        "{missing}"
    );
    let bad = line("bad-json");
    assert!(
        bad.starts_with("error: flows/orders.test.yaml:9:28: tests.bad-json.expect.outputs.warehouse.file: `fixtures/bad.json` is not one JSON document"),
        "{bad}"
    );
    for name in ["outside", "linked-outside"] {
        let error = line(name);
        assert!(
            error.contains(&format!("tests.{name}.input.file"))
                && error.contains("leads out of the config directory"),
            "{error}"
        );
    }
    // The JSON report carries the same located error.
    let (_, json, _) = run_tests(dir.path(), &["--json", "--filter", "missing-file"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        report["tests"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("flows/orders.test.yaml:4:20: tests.missing-file.input.file"),
        "{report}"
    );
}

/// Copy the files under `from` into `to`, keeping their relative paths.
fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
