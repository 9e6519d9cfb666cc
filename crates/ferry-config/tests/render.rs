//! Rendering for terminals.

mod common;

use common::{SYSTEMS, dir, flow, load};
use ferry_config::render;

#[test]
fn render_shows_place_field_source_and_help() {
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("flows.yaml", &flow("f", "ftp://example.com/x")),
    ]);
    let err = load(tmp.path()).expect_err("bad URL");
    let out = render(&err.errors, false);
    let file = tmp.path().join("flows.yaml");
    assert!(
        out.starts_with(&format!(
            "error: {}:10:22: flows.f.destinations.crm.http.url: URL scheme must be",
            file.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("10 |         http: { url: \"ftp://example.com/x\" }\n"),
        "{out}"
    );
    assert!(
        out.contains("   |                      ^^^^^^^^^^^^^^^^^^^^^\n"),
        "{out}"
    );
    assert!(out.ends_with("1 error, 0 warnings\n"), "{out}");
    assert!(!out.contains('\x1b'), "no colour when not asked");

    let coloured = render(&err.errors, true);
    assert!(coloured.contains("\x1b[1;31merror\x1b[0m"), "{coloured}");

    // Display of the error type lists the same diagnostics.
    let shown = err.to_string();
    assert!(shown.contains(&format!(
        "{}:10:22: flows.f.destinations.crm.http.url",
        file.display()
    )));
}

#[test]
fn render_neutralises_control_characters() {
    let tmp = dir(&[("a.yaml", "systems:\n  a: { \"own\\e[31mer\": x }\n")]);
    let err = load(tmp.path()).expect_err("unknown field");
    let out = render(&err.errors, false);
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(out.contains("systems.a.own\u{fffd}[31mer"), "{out}");
}

#[test]
fn render_of_whole_file_problems_and_warnings() {
    let tmp = dir(&[]);
    let err = load(tmp.path()).expect_err("empty dir");
    let out = render(&err.errors, false);
    assert_eq!(
        out,
        format!(
            "error: {}: the config directory has no `.yaml` or `.yml` files\n  = help: declare \
             `settings:`, `systems:` and `flows:` in YAML files there\n\n1 error, 0 warnings\n",
            tmp.path().display()
        )
    );
}

#[test]
fn render_survives_positions_outside_the_file() {
    let tmp = dir(&[("a.yaml", "systems: {}\n")]);
    let d = ferry_config::Diagnostic {
        severity: ferry_config::Severity::Warning,
        file: tmp.path().join("a.yaml"),
        line: 1,
        column: usize::MAX,
        field: "systems".into(),
        message: "m".into(),
        help: None,
    };
    let out = render(
        &[d.clone(), ferry_config::Diagnostic { line: 99, ..d }],
        false,
    );
    assert!(out.ends_with("0 errors, 2 warnings\n"), "{out}");
}
