//! PostgreSQL table sources: a valid one loads; every broken field is reported, located at
//! the field.

mod common;

use common::{SYSTEMS, UNSET_VAR, dir, error_at, errors, load};
use ferry_config::Source;

/// A flow `t` with the given `source.postgres` body (indented 8 spaces).
fn table_flow(body: &str) -> String {
    format!(
        "\
flows:
  t:
    source:
      postgres:
{body}    destinations:
      crm:
        system: crm
        http: {{ url: \"https://crm.example/in\" }}
"
    )
}

const VALID: &str = "        system: billing
        url: { file: pg-url }
        table: billing.invoices
        columns: [id, status, kind, updated_at]
        cursor: { column: updated_at, initial: \"2026-01-01T00:00:00Z\" }
        record_id: id
        event_type: kind
        schedule: \"*/5 * * * *\"
        page_size: 500
        max_pages: 20
        freshness: 30m
";

const PG_URL: (&str, &str) = ("pg-url", "postgres://ferry@db.internal/billing");

#[test]
fn a_valid_table_source_loads() {
    let flows = table_flow(VALID);
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flows), PG_URL]);
    let loaded = load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let Source::Postgres(src) = &loaded.config.flows["t"].source else {
        panic!("not a postgres source");
    };
    assert_eq!(src.cursor.column, "updated_at");
    assert_eq!(src.page_size, 500);
    assert_eq!(src.max_pages, 20);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);

    // Defaults: every column, pages of 1000, 100 pages per run.
    let minimal = "        system: billing\n        url: { file: pg-url }\n        table: invoices\n        cursor: { column: id }\n        record_id: id\n        schedule: \"@hourly\"\n";
    let flows = table_flow(minimal);
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flows), PG_URL]);
    let loaded = load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let Source::Postgres(src) = &loaded.config.flows["t"].source else {
        panic!("not a postgres source");
    };
    assert!(src.columns.is_none());
    assert_eq!((src.page_size, src.max_pages), (1000, 100));
}

#[test]
fn each_broken_field_is_located() {
    let cases = [
        ("system: billing", "system: nobody", "system", "nobody"),
        (
            "table: billing.invoices",
            "table: billing.invoices.x",
            "table",
            "more than one",
        ),
        (
            "table: billing.invoices",
            "table: \"invoices; drop\"",
            "table",
            "plain SQL name",
        ),
        (
            "column: updated_at,",
            "column: UpdatedAt,",
            "cursor.column",
            "plain SQL name",
        ),
        (
            "record_id: id",
            "record_id: Id",
            "record_id",
            "plain SQL name",
        ),
        (
            "event_type: kind",
            "event_type: \"kind-x\"",
            "event_type",
            "plain SQL name",
        ),
        (
            "columns: [id, status, kind, updated_at]",
            "columns: [id, status, kind]",
            "columns",
            "leaves out `updated_at`",
        ),
        (
            "columns: [id, status, kind, updated_at]",
            "columns: [id, status, kind, updated_at, id]",
            "columns",
            "listed twice",
        ),
        (
            "columns: [id, status, kind, updated_at]",
            "columns: []",
            "columns",
            "empty",
        ),
        (
            "schedule: \"*/5 * * * *\"",
            "schedule: \"every 5 minutes\"",
            "schedule",
            "cron",
        ),
        ("page_size: 500", "page_size: 0", "page_size", "between 1"),
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
            "url: { file: pg-url }",
            &format!("url: {{ env: {UNSET_VAR} }}"),
            "url",
            "not set",
        ),
        (
            "url: { file: pg-url }",
            "url: { file: not-pg }",
            "url",
            "postgres://",
        ),
    ];
    for (from, to, field, needle) in cases {
        assert!(VALID.contains(from), "{from}");
        let flows = table_flow(&VALID.replace(from, to));
        let tmp = dir(&[
            ("systems.yaml", SYSTEMS),
            ("flows.yaml", &flows),
            PG_URL,
            ("not-pg", "mysql://ferry@db.internal/billing"),
        ]);
        let errs = errors(load(tmp.path()));
        let e = error_at(&errs, &format!("flows.t.source.postgres.{field}"));
        assert!(e.message.contains(needle), "{field}: {}", e.message);
        assert!(e.line > 1, "{field} is located");
    }
}

#[test]
fn unknown_fields_and_an_inline_url_are_refused_where_they_are() {
    for (from, to, needle) in [
        (
            "page_size: 500",
            "page_size: 500\n        colour: blue",
            "colour",
        ),
        (
            "url: { file: pg-url }",
            "url: postgres://ferry:hunter2@db/billing",
            "secret",
        ),
    ] {
        let flows = table_flow(&VALID.replace(from, to));
        let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flows), PG_URL]);
        let errs = errors(load(tmp.path()));
        let text = format!("{errs:#?}");
        assert!(text.contains(needle), "{needle} not in {text}");
        assert!(errs.iter().all(|e| e.line > 1), "located: {text}");
    }
}
