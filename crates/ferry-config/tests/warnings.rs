//! Warnings: the config loads, and the findings come back with it.

mod common;

use common::{dir, flow, load};
use ferry_config::Severity;

#[test]
fn two_systems_claiming_the_same_records() {
    let systems = "\
systems:
  billing: { owner: a, records: [invoice, customer] }
  crm: { owner: b, records: [customer] }
";
    let tmp = dir(&[
        ("systems.yaml", systems),
        ("f.yaml", &flow("f", "http://hook.test/x")),
    ]);
    let loaded = load(tmp.path()).expect("warnings do not fail the load");
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.field, "systems.crm.records.0");
    assert_eq!((w.line, w.column), (3, 30));
    assert!(
        w.message.contains("`billing`") && w.message.contains("`crm`"),
        "{}",
        w.message
    );
    assert!(w.message.contains("`customer`"), "{}", w.message);
}

#[test]
fn flow_without_any_owner() {
    let systems = "systems:\n  billing: {}\n  crm: { owner: b }\n";
    let tmp = dir(&[
        ("systems.yaml", systems),
        ("f.yaml", &flow("f", "http://hook.test/x")),
    ]);
    let loaded = load(tmp.path()).expect("loads");
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.message, "flow has no owner");
    assert_eq!(w.field, "flows.f");
    assert_eq!((w.line, w.column), (2, 3));

    // An owner on the flow silences it.
    let owned = flow("f", "http://hook.test/x").replace("  f:\n", "  f:\n    owner: team-x\n");
    let tmp = dir(&[("systems.yaml", systems), ("f.yaml", &owned)]);
    assert!(load(tmp.path()).expect("loads").warnings.is_empty());
}

#[test]
fn warnings_come_along_with_errors() {
    let systems = "systems:\n  billing: {}\n  crm: { owner: b }\n";
    let broken = flow("g", "ftp://x");
    let tmp = dir(&[
        ("systems.yaml", systems),
        ("f.yaml", &flow("f", "http://hook.test/x")),
        ("g.yaml", &broken),
    ]);
    let err = load(tmp.path()).expect_err("g is broken");
    assert_eq!(err.errors.len(), 1);
    assert_eq!(err.warnings.len(), 2, "{:#?}", err.warnings);
}

#[test]
fn literal_credential_header() {
    let text = flow("f", "http://hook.test/x").replace(
        "http: { url: \"http://hook.test/x\" }",
        "http: { url: \"http://hook.test/x\", headers: { Authorization: Bearer abc } }",
    );
    let tmp = dir(&[("systems.yaml", common::SYSTEMS), ("f.yaml", &text)]);
    let loaded = load(tmp.path()).expect("a warning, not an error");
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    assert_eq!(
        loaded.warnings[0].field,
        "flows.f.destinations.crm.http.headers.Authorization"
    );
    assert!(loaded.warnings[0].message.contains("credential"));
}
