//! Checks of PostgreSQL table sources: the table and every column name (plain SQL names, so
//! nothing needs quoting and nothing can be injected), the `columns` list holding what the
//! source reads from each row, the cron schedule and the limits. The system is checked with
//! the other flow checks, the connection URL with the other secrets.

use super::Checker;
use super::rules;
use crate::connectors::{MAX_SOURCE_COLUMNS, PostgresSource, identifier_problem, table_problem};
use crate::locate::Part;
use crate::model::Source;
use crate::schedule::Schedule;
use crate::sources::FileId;

/// Most rows per page: a page is one query and one commit, held in memory.
pub const MAX_PAGE_SIZE: u32 = 50_000;

pub(super) fn check(c: &mut Checker) {
    for (name, flow) in &c.config.flows {
        let (Some(file), Source::Postgres(src)) = (c.flow_file(name), &flow.source) else {
            continue;
        };
        source(c, file, name, src);
    }
}

fn source(c: &mut Checker, file: FileId, flow: &str, src: &PostgresSource) {
    let base = ["flows", flow, "source", "postgres"];
    let mut found: Vec<(Vec<&str>, String, Option<String>)> = Vec::new();
    let mut error = |field: &[&'static str], message: String, help: Option<String>| {
        found.push((field.to_vec(), message, help));
    };

    if let Some(message) = table_problem(&src.table) {
        error(&["table"], message, None);
    }
    let named = [
        (&["cursor", "column"][..], Some(&src.cursor.column)),
        (&["record_id"][..], Some(&src.record_id)),
        (&["event_type"][..], src.event_type.as_ref()),
    ];
    for (field, column) in named {
        if let Some(message) = column.and_then(|c| identifier_problem(c)) {
            error(field, message, None);
        }
    }
    if let Some(columns) = &src.columns {
        columns_list(columns, src, &mut error);
    }
    if let Err(message) = Schedule::parse(&src.schedule) {
        let help = "e.g. `*/15 * * * *` (every 15 minutes) or `0 2 * * *` (02:00 UTC daily)";
        error(&["schedule"], message, Some(help.to_owned()));
    }
    if !(1..=MAX_PAGE_SIZE).contains(&src.page_size) {
        let message = format!(
            "page_size must be between 1 and {MAX_PAGE_SIZE}, not {}",
            src.page_size
        );
        error(&["page_size"], message, None);
    }
    if src.max_pages == 0 {
        error(
            &["max_pages"],
            "max_pages must be at least 1".to_owned(),
            None,
        );
    }
    if let Err((message, help)) = rules::positive("timeout", src.timeout) {
        error(&["timeout"], message, help);
    }
    if let Some(Err((message, help))) = src.freshness.map(|f| rules::positive("freshness", f)) {
        error(&["freshness"], message, help);
    }
    for (field, message, help) in found {
        let path: Vec<&str> = base.iter().copied().chain(field).collect();
        c.error(file, &path, Part::Value, message, help);
    }
}

/// A `columns` list: plain names, no repeats, at most [`MAX_SOURCE_COLUMNS`], and holding
/// the columns the source itself reads from each row.
fn columns_list(
    columns: &[String],
    src: &PostgresSource,
    error: &mut impl FnMut(&[&'static str], String, Option<String>),
) {
    if columns.is_empty() {
        let help = "leave `columns` out to read every column".to_owned();
        error(
            &["columns"],
            "the column list is empty".to_owned(),
            Some(help),
        );
        return;
    }
    if columns.len() > MAX_SOURCE_COLUMNS {
        let message = format!(
            "at most {MAX_SOURCE_COLUMNS} columns can be listed, not {}",
            columns.len()
        );
        let help = "leave `columns` out to read every column".to_owned();
        error(&["columns"], message, Some(help));
    }
    if let Some(message) = columns.iter().find_map(|c| identifier_problem(c)) {
        error(&["columns"], message, None);
    }
    if let Some((i, name)) = columns
        .iter()
        .enumerate()
        .find(|(i, c)| columns[..*i].contains(*c))
    {
        let message = format!("column `{name}` is listed twice (again at position {i})");
        error(&["columns"], message, None);
    }
    let needed = [
        ("cursor.column", Some(&src.cursor.column)),
        ("record_id", Some(&src.record_id)),
        ("event_type", src.event_type.as_ref()),
    ];
    for (what, column) in needed {
        if let Some(column) = column
            && !columns.contains(column)
        {
            let message = format!(
                "`columns` leaves out `{column}`, the {what} column: each row's object must hold it"
            );
            let help = format!("add `{column}` to `columns`");
            error(&["columns"], message, Some(help));
        }
    }
}
