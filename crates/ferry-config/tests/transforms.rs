//! Checks of steps and destination transforms that need no compiler: route keys, URL
//! templates, and settings that exclude each other. And the source map that locates what
//! Ferry's compilers find later.

mod common;

use common::*;
use ferry_config::Severity;

const FLOW: &str = "\
flows:
  orders:
    source:
      webhook:
        system: billing
        signature: { none: {} }
    steps:
      - route:
          crn: \"true\"
          crm: .vip == true
    destinations:
      crm:
        system: crm
        http:
          url: \"https://{{ event.host }}/x\"
      bulk:
        system: crm
        batch: { max_items: 10 }
        http:
          url: \"https://bulk.example.com/{{ event.id }}\"
          headers:
            x-id: \"{{ event.id }}\"
          body: \"id={{ event.id }}\"
      ce:
        system: crm
        http:
          url: https://ce.example.com/in
          format: cloudevents
          body: \"id={{ event.id }}\"
";

#[test]
fn route_keys_url_templates_and_exclusive_settings_are_checked() {
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", FLOW)]);
    let errors = errors(load_unresolved(tmp.path()));
    let route = error_at(&errors, "flows.orders.steps.0.route.crn");
    assert!(route.message.contains("not a destination"), "{route:?}");
    assert_eq!(route.help.as_deref(), Some("did you mean `crm`?"));
    assert_eq!(route.line, 9);

    let host = error_at(&errors, "flows.orders.destinations.crm.http.url");
    assert!(host.message.contains("scheme and host"), "{host:?}");

    let bulk_url = error_at(&errors, "flows.orders.destinations.bulk.http.url");
    assert!(bulk_url.message.contains("batching"), "{bulk_url:?}");
    error_at(&errors, "flows.orders.destinations.bulk.http.headers.x-id");
    error_at(&errors, "flows.orders.destinations.bulk.http.body");
    let ce = error_at(&errors, "flows.orders.destinations.ce.http.body");
    assert!(ce.message.contains("cloudevents"), "{ce:?}");
}

#[test]
fn the_source_map_locates_strings_and_places_in_them() {
    let flow = "\
flows:
  orders:
    source:
      webhook:
        system: billing
        signature: { none: {} }
    destinations:
      crm:
        system: crm
        http: { url: \"https://crm.example.com/in\" }
        map: |
          .a = 1
          .b = to_int(.c)
";
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", flow)]);
    let loaded = load_unresolved(tmp.path()).expect("valid config");
    let path = ["flows", "orders", "destinations", "crm", "map"];
    let d = loaded
        .sources
        .diagnostic_in_string(Severity::Error, &path, 2, 6, "no", None);
    assert_eq!((d.line, d.column), (13, 16), "{d:?}");
    assert!(d.file.ends_with("flows.yaml"));
    assert_eq!(d.field, "flows.orders.destinations.crm.map");
    let d = loaded
        .sources
        .diagnostic(Severity::Warning, &["flows", "orders"], "w", None);
    assert_eq!(d.line, 3, "at the value (the flow's mapping)");
    // Not declared anywhere: the config directory, unpositioned.
    let d = loaded
        .sources
        .diagnostic(Severity::Error, &["flows", "nope"], "x", None);
    assert_eq!((d.line, d.column), (0, 0));
}
