//! Pull sources: a valid one loads; every broken field is reported, located at the field.

mod common;

use common::{SYSTEMS, dir, error_at, errors, load};
use ferry_config::{PullCursor, Schedule, Source};

/// A pull flow `p` with the given `source.pull` body (indented 6 spaces).
fn pull_flow(body: &str) -> String {
    format!(
        "\
flows:
  p:
    source:
      pull:
{body}    destinations:
      crm:
        system: crm
        http: {{ url: \"https://crm.example/in\" }}
"
    )
}

const VALID: &str = "        system: billing
        url: https://api.billing.example/v1/invoices
        headers:
          accept: application/json
        schedule: \"*/5 * * * *\"
        records: /data
        record_id: /id
        event_type: /type
        cursor:
          page_token: { next: /next_page, param: page }
        max_pages: 20
        freshness: 30m
";

#[test]
fn a_valid_pull_source_loads() {
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &pull_flow(VALID))]);
    let loaded = load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let Source::Pull(src) = &loaded.config.flows["p"].source else {
        panic!("not a pull source");
    };
    assert!(matches!(&src.cursor, PullCursor::PageToken { param, .. } if param == "page"));
    assert_eq!(src.max_pages, 20);
    assert!(Schedule::parse(&src.schedule).is_ok());
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
}

#[test]
fn each_broken_field_is_located() {
    let cases = [
        (
            "schedule: \"*/5 * * * *\"",
            "schedule: \"every 5 minutes\"",
            "schedule",
            "cron",
        ),
        (
            "schedule: \"*/5 * * * *\"",
            "schedule: \"0 0 30 2 *\"",
            "schedule",
            "never runs",
        ),
        ("records: /data", "records: data", "records", "JSON pointer"),
        (
            "record_id: /id",
            "record_id: id",
            "record_id",
            "JSON pointer",
        ),
        (
            "event_type: /type",
            "event_type: type",
            "event_type",
            "JSON pointer",
        ),
        (
            "page_token: { next: /next_page, param: page }",
            "page_token: { next: next_page, param: page }",
            "cursor.page_token.next",
            "JSON pointer",
        ),
        (
            "page_token: { next: /next_page, param: page }",
            "page_token: { next: /next_page, param: \"\" }",
            "cursor.page_token.param",
            "empty",
        ),
        (
            "page_token: { next: /next_page, param: page }",
            "offset: { param: offset, limit_param: limit, limit: 0 }",
            "cursor.offset.limit",
            "at least 1",
        ),
        (
            "page_token: { next: /next_page, param: page }",
            "updated_since: { field: updated_at, param: since }",
            "cursor.updated_since.field",
            "JSON pointer",
        ),
        ("max_pages: 20", "max_pages: 0", "max_pages", "at least 1"),
        (
            "freshness: 30m",
            "freshness: 0s",
            "freshness",
            "more than zero",
        ),
        (
            "freshness: 30m",
            "freshness: 30m\n        timeout: 0s",
            "timeout",
            "more than zero",
        ),
        (
            "url: https://api.billing.example/v1/invoices",
            "url: api.billing.example",
            "url",
            "invalid URL",
        ),
        (
            "url: https://api.billing.example/v1/invoices",
            "url: http://10.1.2.3/v1/invoices",
            "url",
            "would be refused",
        ),
        (
            "accept: application/json",
            "\"bad header\": x",
            "headers.bad header",
            "header",
        ),
    ];
    for (from, to, field, needle) in cases {
        assert!(VALID.contains(from), "{from}");
        let body = VALID.replace(from, to);
        let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &pull_flow(&body))]);
        let errs = errors(load(tmp.path()));
        let full = format!("flows.p.source.pull.{field}");
        let e = error_at(&errs, &full);
        assert!(e.message.contains(needle), "{field}: {}", e.message);
        assert!(e.line > 1, "{field} is located");
    }
}

#[test]
fn an_allow_listed_internal_api_passes_and_is_told_where() {
    let body = VALID.replace(
        "url: https://api.billing.example/v1/invoices",
        "url: http://10.1.2.3/v1/invoices\n        egress_allow: [10.1.2.3]",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &pull_flow(&body))]);
    load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));

    let refused = VALID.replace(
        "url: https://api.billing.example/v1/invoices",
        "url: http://10.1.2.3/v1/invoices",
    );
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("flows.yaml", &pull_flow(&refused)),
    ]);
    let errs = errors(load(tmp.path()));
    let help = error_at(&errs, "flows.p.source.pull.url")
        .help
        .clone()
        .unwrap_or_default();
    assert!(help.contains("this source's `egress_allow`"), "{help}");
}

#[test]
fn a_cursor_that_rereads_without_record_id_warns() {
    let body = VALID.replace("        record_id: /id\n", "");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &pull_flow(&body))]);
    let loaded = load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let w: Vec<_> = loaded
        .warnings
        .iter()
        .filter(|w| w.field == "flows.p.source.pull.cursor")
        .collect();
    assert_eq!(w.len(), 1, "{:#?}", loaded.warnings);
    assert!(w[0].message.contains("record_id"), "{}", w[0].message);

    // Offsets never re-read: no warning.
    let body = body.replace(
        "page_token: { next: /next_page, param: page }",
        "offset: { param: offset, limit_param: limit, limit: 50 }",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &pull_flow(&body))]);
    let loaded = load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
}

#[test]
fn steps_on_a_pull_flow_load() {
    let flow = pull_flow(VALID).replace(
        "    destinations:",
        "    steps:\n      - validate: {}\n      - filter: \"true\"\n      - route: { crm: .big == true }\n    destinations:",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flow)]);
    let loaded = load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.flows["p"].steps.len(), 3);
    // The source's `event_type` pointer types the records: no warning for `validate: {}`.
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
}

#[test]
fn a_dedupe_window_must_be_positive() {
    let flow = common::flow("f", "https://crm.example/in").replace(
        "    destinations:",
        "    steps:\n      - dedupe: { key: .id, window: 0s }\n    destinations:",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flow)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.steps.0.dedupe.window");
    assert!(e.message.contains("more than zero"), "{}", e.message);
}
