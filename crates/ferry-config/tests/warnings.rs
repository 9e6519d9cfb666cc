//! Warnings: the config loads, and the findings come back with it.

mod common;

use common::{deduped_flow, dir, flow, load};
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
        ("f.yaml", &deduped_flow("f", "http://hook.test/x")),
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
        ("f.yaml", &deduped_flow("f", "http://hook.test/x")),
    ]);
    let loaded = load(tmp.path()).expect("loads");
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.message, "flow has no owner");
    assert_eq!(w.field, "flows.f");
    assert_eq!((w.line, w.column), (2, 3));

    // An owner on the flow silences it.
    let owned =
        deduped_flow("f", "http://hook.test/x").replace("  f:\n", "  f:\n    owner: team-x\n");
    let tmp = dir(&[("systems.yaml", systems), ("f.yaml", &owned)]);
    assert!(load(tmp.path()).expect("loads").warnings.is_empty());
}

#[test]
fn warnings_come_along_with_errors() {
    let systems = "systems:\n  billing: {}\n  crm: { owner: b }\n";
    let broken = deduped_flow("g", "ftp://x");
    let tmp = dir(&[
        ("systems.yaml", systems),
        ("f.yaml", &deduped_flow("f", "http://hook.test/x")),
        ("g.yaml", &broken),
    ]);
    let err = load(tmp.path()).expect_err("g is broken");
    assert_eq!(err.errors.len(), 1);
    assert_eq!(err.warnings.len(), 2, "{:#?}", err.warnings);
}

#[test]
fn literal_credential_header() {
    let text = deduped_flow("f", "http://hook.test/x").replace(
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

#[test]
fn a_source_without_any_dedupe_key() {
    // `none`, `hmac`, `bearer`, `basic` and a Stripe-style scheme under another header say
    // nothing about the sender's event id: without `event_id`, a warning at the scheme.
    let schemes = [
        ("none", "{ none: {} }"),
        ("hmac", "{ hmac: { secret: { env: HOME }, header: X-Sig } }"),
        ("bearer", "{ bearer: { token: { env: HOME } } }"),
        (
            "basic",
            "{ basic: { username: u, password: { env: HOME } } }",
        ),
        (
            "stripe",
            "{ stripe: { secret: { env: HOME }, header: X-Acme-Signature } }",
        ),
    ];
    for (scheme, yaml) in schemes {
        let text = flow("f", "http://hook.test/x")
            .replace("signature: { none: {} }", &format!("signature: {yaml}"));
        let tmp = dir(&[("systems.yaml", common::SYSTEMS), ("f.yaml", &text)]);
        let loaded = common::load_unresolved(tmp.path()).expect("a warning, not an error");
        assert_eq!(loaded.warnings.len(), 1, "{scheme}: {:#?}", loaded.warnings);
        let w = &loaded.warnings[0];
        assert_eq!(w.severity, Severity::Warning);
        assert_eq!(
            w.field,
            format!("flows.f.source.webhook.signature.{scheme}")
        );
        assert_eq!((w.line, w.column), (6, 22), "{scheme}");
        assert!(w.message.starts_with("no dedupe key"), "{}", w.message);
        assert!(w.help.as_deref().unwrap().contains("json_pointer"));

        // `event_id` silences it.
        let with_id = text.replace(
            &format!("signature: {yaml}\n"),
            &format!("signature: {yaml}\n        event_id: {{ json_pointer: /id }}\n"),
        );
        let tmp = dir(&[("systems.yaml", common::SYSTEMS), ("f.yaml", &with_id)]);
        let loaded = common::load_unresolved(tmp.path()).expect("loads");
        assert!(
            loaded.warnings.is_empty(),
            "{scheme}: {:#?}",
            loaded.warnings
        );
    }
}

#[test]
fn vendor_schemes_know_their_dedupe_key() {
    // Stripe (the body's `/id`), GitHub (`X-GitHub-Delivery`), Standard Webhooks
    // (`webhook-id`): no `event_id` needed, no warning.
    for yaml in [
        "{ stripe: { secret: { env: HOME } } }",
        "{ stripe: { secret: { env: HOME }, header: Stripe-Signature } }",
        "{ github: { secret: { env: HOME } } }",
        "{ standard_webhooks: { secret: { env: HOME } } }",
    ] {
        let text = flow("f", "http://hook.test/x")
            .replace("signature: { none: {} }", &format!("signature: {yaml}"));
        let tmp = dir(&[("systems.yaml", common::SYSTEMS), ("f.yaml", &text)]);
        let loaded = common::load_unresolved(tmp.path()).expect("loads");
        assert!(loaded.warnings.is_empty(), "{yaml}: {:#?}", loaded.warnings);
        let src = match &loaded.config.flows["f"].source {
            ferry_config::Source::Webhook(w) => w,
            other => panic!("{other:?}"),
        };
        assert!(src.signature.vendor_event_id().is_some(), "{yaml}");
    }
}
