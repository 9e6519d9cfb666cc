//! `docs/telemetry.md` and the code's table of metric families agree: the same families,
//! each with the same type, labels and unit. A family added to one and not the other, or
//! changed in one only, fails here by name.

use std::collections::BTreeMap;

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/telemetry.md");

/// One row of the doc's tables: type, labels, unit.
#[derive(Debug, PartialEq)]
struct Row {
    kind: String,
    labels: Vec<String>,
    unit: String,
}

/// The rows of every table in the doc whose first cell is a `ferry_` metric name, by name;
/// a name listed twice is an error.
fn doc_rows(doc: &str) -> Result<BTreeMap<String, Row>, String> {
    let mut rows = BTreeMap::new();
    for line in doc.lines() {
        let Some(rest) = line.trim().strip_prefix("| `ferry_") else {
            continue;
        };
        let cells: Vec<&str> = rest.split('|').map(str::trim).collect();
        let [name, kind, labels, unit, ..] = cells.as_slice() else {
            return Err(format!("a table row with fewer than 4 cells: {line}"));
        };
        let name = format!("ferry_{}", name.trim_matches('`'));
        let labels = match *labels {
            "-" => Vec::new(),
            list => list
                .split(',')
                .map(|l| l.trim().trim_matches('`').to_owned())
                .collect(),
        };
        let row = Row {
            kind: (*kind).to_owned(),
            labels,
            unit: (*unit).to_owned(),
        };
        if rows.insert(name.clone(), row).is_some() {
            return Err(format!("`{name}` is listed twice in docs/telemetry.md"));
        }
    }
    Ok(rows)
}

/// The code's table in the doc's terms, by name.
fn code_rows() -> BTreeMap<String, Row> {
    ferry_metrics::FAMILIES
        .iter()
        .map(|f| {
            (
                f.name.to_owned(),
                Row {
                    kind: f.kind.as_str().to_owned(),
                    labels: f.labels.iter().map(|l| (*l).to_owned()).collect(),
                    unit: f.unit_str().to_owned(),
                },
            )
        })
        .collect()
}

/// Every way `doc` and `code` differ, one line each.
fn differences(doc: &BTreeMap<String, Row>, code: &BTreeMap<String, Row>) -> Vec<String> {
    let mut out = Vec::new();
    for name in code.keys().filter(|n| !doc.contains_key(*n)) {
        out.push(format!(
            "`{name}` is in the code but not in docs/telemetry.md"
        ));
    }
    for name in doc.keys().filter(|n| !code.contains_key(*n)) {
        out.push(format!(
            "`{name}` is in docs/telemetry.md but not in the code"
        ));
    }
    for (name, c) in code {
        if let Some(d) = doc.get(name)
            && d != c
        {
            out.push(format!(
                "`{name}`: docs/telemetry.md says {d:?}, the code {c:?}"
            ));
        }
    }
    out
}

#[test]
fn the_doc_lists_every_family_of_the_code_and_no_other() {
    let doc = std::fs::read_to_string(DOC_PATH).expect("docs/telemetry.md");
    let rows = doc_rows(&doc).unwrap_or_else(|e| panic!("{e}"));
    let diff = differences(&rows, &code_rows());
    assert!(
        diff.is_empty(),
        "docs/telemetry.md and crates/ferry-metrics/src/names.rs disagree:\n{}",
        diff.join("\n")
    );
}

#[test]
fn a_difference_either_way_is_named() {
    let doc = "| name | type | labels | unit | meaning |\n| --- | --- | --- | --- | --- |\n\
               | `ferry_only_in_doc_total` | counter | `flow` | count | x |\n\
               | `ferry_backlog_depth` | gauge | `flow` | count | x |\n";
    let mut code = code_rows();
    code.retain(|n, _| n == "ferry_backlog_depth" || n == "ferry_replayed_total");
    let diff = differences(&doc_rows(doc).unwrap(), &code);
    assert_eq!(diff.len(), 3, "{diff:#?}");
    assert!(diff[0].contains("`ferry_replayed_total` is in the code but not"));
    assert!(diff[1].contains("`ferry_only_in_doc_total` is in docs/telemetry.md but not"));
    assert!(diff[2].contains("`ferry_backlog_depth`: docs/telemetry.md says"));
    let twice = format!("{doc}| `ferry_backlog_depth` | gauge | - | count | x |\n");
    assert!(doc_rows(&twice).unwrap_err().contains("listed twice"));
}
