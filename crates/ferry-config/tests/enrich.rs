//! A destination's `enrich`: a valid one loads with its defaults; every broken field is
//! reported, located at the field.

mod common;

use std::time::Duration;

use common::{SYSTEMS, UNSET_VAR, dir, error_at, errors, flow, load};

/// The flow `f` with `enrich` (indented 10 spaces under it) on destination `crm`.
fn with_enrich(body: &str) -> String {
    flow("f", "https://crm.example/in").replace(
        "        http: { url: \"https://crm.example/in\" }\n",
        &format!("        http: {{ url: \"https://crm.example/in\" }}\n        enrich:\n{body}"),
    )
}

#[test]
fn a_valid_enrich_loads_with_its_defaults() {
    let body = "          url: \"https://billing.example/customers/{{ event.customer.id }}\"
          into: customer
          headers:
            accept: application/json
";
    let flows = with_enrich(body).replace(
        "        signature: { none: {} }\n",
        "        signature: { none: {} }\n        event_id: { header: X-Event-Id }\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flows)]);
    let loaded = load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let enrich = loaded.config.flows["f"].destinations["crm"]
        .enrich
        .clone()
        .expect("enrich");
    assert_eq!(enrich.into, "customer");
    assert_eq!(enrich.timeout, Duration::from_secs(2));
    assert_eq!(enrich.cache, Duration::from_secs(300));
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
}

#[test]
fn each_broken_field_is_located() {
    let body = format!(
        "          url: \"https://{{{{ event.host }}}}/customers\"
          into: .customer
          timeout: 0s
          headers:
            \"bad header\": x
            x-token: {{ env: {UNSET_VAR} }}
"
    );
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("flows.yaml", &with_enrich(&body)),
    ]);
    let errs = errors(load(tmp.path()));
    let at = |field: &str| format!("flows.f.destinations.crm.enrich.{field}");
    let url = error_at(&errs, &at("url"));
    assert!(url.message.contains("scheme and host"), "{}", url.message);
    let into = error_at(&errs, &at("into"));
    assert!(
        into.message.contains("not a field name"),
        "{}",
        into.message
    );
    assert!(
        into.help
            .as_deref()
            .is_some_and(|h| h.contains("`customer`")),
        "{:?}",
        into.help
    );
    error_at(&errs, &at("timeout"));
    error_at(&errs, &at("headers.bad header"));
    let secret = error_at(&errs, &at("headers.x-token"));
    assert!(secret.message.contains(UNSET_VAR), "{}", secret.message);
}

#[test]
fn a_lookup_the_egress_guard_would_refuse_is_an_error_unless_allowed() {
    let body = "          url: \"http://127.0.0.1:9000/customers/{{ event.id }}\"\n          into: customer\n";
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("flows.yaml", &with_enrich(body)),
    ]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations.crm.enrich.url");
    assert!(e.message.contains("refused"), "{}", e.message);
    assert!(
        e.help
            .as_deref()
            .is_some_and(|h| h.contains("egress_allow")),
        "{:?}",
        e.help
    );

    // The destination's own allow-list lets the lookup through.
    let allowed = with_enrich(body).replace(
        "http: { url: \"https://crm.example/in\" }",
        "http: { url: \"https://crm.example/in\", egress_allow: [127.0.0.1] }",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &allowed)]);
    load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
}
