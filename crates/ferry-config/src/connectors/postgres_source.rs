//! Configuration of the PostgreSQL table source: a table read incrementally by a cursor
//! column on a cron schedule, each page committed with the cursor after it.

use std::time::Duration;

use serde::Deserialize;

/// Read a PostgreSQL table incrementally (batch ETL): on each scheduled run, the rows after
/// the committed cursor, in cursor order, a page at a time. Each row becomes a JSON object
/// (every PostgreSQL type rendered by PostgreSQL's own `row_to_json`) and goes through the
/// flow's steps like a pulled record; each page is committed with the cursor after it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    /// The system read (must be declared under `systems:`).
    pub system: String,
    /// The connection URL (`postgres://user:password@host/db`), by reference: it holds
    /// credentials.
    pub url: crate::SecretRef,
    /// The table, `name` or `schema.name` (lowercase letters, digits and `_`).
    pub table: String,
    /// The columns each row's JSON object holds. Default: every column. When given, it must
    /// hold the `cursor` column, `record_id` and `event_type`.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// The column rows are read in order of.
    pub cursor: PostgresCursor,
    /// The column that identifies a row: the dedupe key. When it is not the cursor column
    /// (an `updated_at` cursor), the key is `id@version` (a row updated again is a new
    /// event) and rows sharing a cursor value are ordered, and resumed, by it.
    pub record_id: String,
    /// The column holding each row's event type (text).
    #[serde(default)]
    pub event_type: Option<String>,
    /// Cron schedule (5 or 6 fields, UTC), e.g. `*/5 * * * *`.
    pub schedule: String,
    /// Rows per page (one query, one commit). Default 1000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Most pages read per run. Default 100.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Longest wait to connect and for one page's query. Default 30s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Freshness SLA: the longest acceptable time since the last successful run.
    #[serde(default, with = "humantime_serde")]
    pub freshness: Option<Duration>,
}

/// The cursor column of a PostgreSQL table source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCursor {
    /// The column: an increasing id, or an `updated_at` timestamp. Rows where it is `NULL`
    /// are not read.
    pub column: String,
    /// The first run reads the rows whose cursor is at or after this value (PostgreSQL's
    /// text form of the column's type, e.g. `2026-01-01T00:00:00Z`). Default: every row.
    #[serde(default)]
    pub initial: Option<String>,
}

const fn default_page_size() -> u32 {
    1000
}
const fn default_max_pages() -> u32 {
    100
}
const fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Most columns a `columns` list may name (each is two arguments of `json_build_object`,
/// which takes at most 100).
pub const MAX_SOURCE_COLUMNS: usize = 50;

/// Why a table reference (`name` or `schema.name`) is refused, if it is.
pub fn table_problem(table: &str) -> Option<String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 {
        return Some(format!(
            "`{table}` has more than one `.`: write `table` or `schema.table`"
        ));
    }
    parts.iter().find_map(|p| super::identifier_problem(p))
}
