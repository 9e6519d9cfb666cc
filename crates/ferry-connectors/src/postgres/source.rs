//! Reading a PostgreSQL table incrementally: a page is the rows after a cursor, in cursor
//! order, each as a JSON object rendered by PostgreSQL (`row_to_json`, or
//! `json_build_object` over the configured columns), so every column type becomes JSON the
//! way PostgreSQL writes it.
//!
//! The cursor is the last row's cursor column, and its `record_id` when that is another
//! column: a non-unique cursor (`updated_at`) is read in `(cursor, record_id)` order and
//! resumed with a row comparison, `(cursor, id) > ($1, $2)`, so rows sharing a timestamp
//! across a page boundary are neither lost nor read again and again. Cursor values travel as
//! PostgreSQL's own text form of the column (sent back as text-format parameters, which the
//! server parses as the column's type), so any orderable type works and compares exactly.
//! Sessions run with `TimeZone=UTC` and `DateStyle=ISO`, so timestamps read the same from
//! run to run.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ferry_config::PostgresSource;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio_postgres::NoTls;
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};

/// Where a table source stands: the last row read's cursor value, and its id when the
/// cursor column is not unique (the tie-break), both as PostgreSQL's text of the column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCursor {
    /// The cursor column's value.
    pub value: String,
    /// The `record_id` column's value, when it is another column than the cursor.
    pub id: Option<String>,
}

/// One row read.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRow {
    /// The row as a JSON object.
    pub value: Value,
    /// The cursor after this row.
    pub cursor: TableCursor,
}

/// Reads one table, through one connection kept between pages and runs.
pub struct TableSource {
    config: PostgresSource,
    /// The pool (one connection), or why the URL cannot make one.
    pool: Result<Pool, String>,
    /// The tie-break column, when the cursor column is not the record id.
    tie_break: Option<String>,
    queries: Queries,
}

impl fmt::Debug for TableSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableSource")
            .field("table", &self.config.table)
            .field("cursor", &self.config.cursor.column)
            .field("record_id", &self.config.record_id)
            .finish()
    }
}

/// The three statements a source runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Queries {
    /// From the start of the table.
    start: String,
    /// From `initial` on (inclusive).
    initial: String,
    /// After a cursor.
    after: String,
}

impl TableSource {
    /// A source of `config` with its connection URL resolved. No connection is made until
    /// the first page; a URL that is not a connection string fails every page (`ferry
    /// validate` refuses it first).
    pub fn new(config: PostgresSource, url: &SecretString) -> Self {
        let tie_break =
            (config.record_id != config.cursor.column).then(|| config.record_id.clone());
        let queries = queries(&config);
        let pool = pool(url, config.timeout);
        TableSource {
            config,
            pool,
            tie_break,
            queries,
        }
    }

    /// The rows after `after` (`None`: from the start, or from `initial`), at most
    /// `page_size`, in cursor order.
    pub async fn page(&self, after: Option<&TableCursor>) -> Result<Vec<TableRow>, String> {
        let pool = self.pool.as_ref().map_err(Clone::clone)?;
        let table = &self.config.table;
        let work = async {
            let client = pool
                .get()
                .await
                .map_err(|e| format!("no PostgreSQL connection: {}", chain(&e)))?;
            let (sql, params): (&str, Vec<TextParam<'_>>) = match (
                after,
                &self.config.cursor.initial,
            ) {
                (Some(c), _) => {
                    let mut params = vec![TextParam(&c.value)];
                    if self.tie_break.is_some() {
                        let id = c.id.as_deref().ok_or_else(|| {
                            "the cursor has no record id to resume rows of the same cursor value from"
                                .to_owned()
                        })?;
                        params.push(TextParam(id));
                    }
                    (self.queries.after.as_str(), params)
                }
                (None, Some(initial)) => (self.queries.initial.as_str(), vec![TextParam(initial)]),
                (None, None) => (self.queries.start.as_str(), Vec::new()),
            };
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(|e| format!("reading `{table}`: {}", db_error(&e)))?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = client
                .query(&statement, &refs)
                .await
                .map_err(|e| format!("reading `{table}`: {}", db_error(&e)))?;
            rows.iter()
                .map(|row| {
                    let value: Value = row.try_get(0).map_err(|e| e.to_string())?;
                    let cursor = TableCursor {
                        value: row.try_get(1).map_err(|e| e.to_string())?,
                        id: match self.tie_break {
                            Some(_) => Some(row.try_get(2).map_err(|e| e.to_string())?),
                            None => None,
                        },
                    };
                    Ok(TableRow { value, cursor })
                })
                .collect::<Result<Vec<_>, String>>()
        };
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "reading `{table}` did not finish within {:?}",
                self.config.timeout
            )),
        }
    }

    /// Whether a page of `rows` rows is the last of the run (a short page).
    pub fn is_last(&self, rows: usize) -> bool {
        rows < self.config.page_size as usize
    }

    /// The cursor as stored: a JSON object of column to value, e.g.
    /// `{"id":"42","updated_at":"2026-01-02 03:04:05.678+00"}`.
    pub fn cursor_text(&self, cursor: &TableCursor) -> String {
        let mut map = BTreeMap::new();
        map.insert(self.config.cursor.column.as_str(), cursor.value.as_str());
        if let (Some(column), Some(id)) = (&self.tie_break, &cursor.id) {
            map.insert(column.as_str(), id.as_str());
        }
        serde_json::to_string(&map).unwrap_or_default()
    }

    /// The stored cursor (`None`: never moved). A cursor of other columns (the config
    /// changed) or unreadable text is an error, which the caller should log before starting
    /// over.
    pub fn load_cursor(&self, stored: Option<&str>) -> Result<Option<TableCursor>, String> {
        let Some(text) = stored else {
            return Ok(None);
        };
        let map: BTreeMap<String, String> = serde_json::from_str(text)
            .map_err(|e| format!("the stored cursor `{text}` is unreadable: {e}"))?;
        let expected = 1 + usize::from(self.tie_break.is_some());
        let value = map.get(&self.config.cursor.column);
        let id = self.tie_break.as_ref().map(|c| map.get(c));
        match (value, id) {
            (Some(value), None) if map.len() == expected => Ok(Some(TableCursor {
                value: value.clone(),
                id: None,
            })),
            (Some(value), Some(Some(id))) if map.len() == expected => Ok(Some(TableCursor {
                value: value.clone(),
                id: Some(id.clone()),
            })),
            _ => Err(format!(
                "the stored cursor `{text}` is of other columns than the configured ones"
            )),
        }
    }
}

/// A pool of one connection whose sessions read timestamps in UTC and ISO form.
fn pool(url: &SecretString, timeout: Duration) -> Result<Pool, String> {
    // The URL is not echoed: it holds the password.
    let mut pg = tokio_postgres::Config::from_str(url.expose_secret())
        .map_err(|_| "the postgres URL is not a valid connection string".to_owned())?;
    let options = match pg.get_options() {
        Some(own) if !own.trim().is_empty() => format!("{own} {SESSION_OPTIONS}"),
        _ => SESSION_OPTIONS.to_owned(),
    };
    pg.options(&options);
    pg.connect_timeout(timeout);
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(1)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .build()
        .map_err(|e| format!("the PostgreSQL pool could not be made: {e}"))
}

/// Session settings that make values read the same whatever the server's defaults.
const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO,YMD";

/// The statements of `config`. Every name is a plain lowercase SQL name (`ferry validate`
/// refuses others), quoted all the same so that reserved words work.
fn queries(config: &PostgresSource) -> Queries {
    let q = |name: &str| format!("\"{name}\"");
    let table = config.table.split('.').map(q).collect::<Vec<_>>().join(".");
    let row = match &config.columns {
        None => "row_to_json(t)".to_owned(),
        Some(columns) => format!(
            "json_build_object({})",
            columns
                .iter()
                .map(|c| format!("'{c}', t.{}", q(c)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let cursor = format!("t.{}", q(&config.cursor.column));
    let id = format!("t.{}", q(&config.record_id));
    let tie_break = config.record_id != config.cursor.column;
    let (select, order, not_null, after) = if tie_break {
        (
            format!("{row}, {cursor}::text, {id}::text"),
            format!("{cursor}, {id}"),
            format!("{cursor} IS NOT NULL AND {id} IS NOT NULL"),
            format!("({cursor}, {id}) > ($1, $2)"),
        )
    } else {
        (
            format!("{row}, {cursor}::text"),
            cursor.clone(),
            format!("{cursor} IS NOT NULL"),
            format!("{cursor} > $1"),
        )
    };
    let limit = config.page_size;
    let statement = |condition: &str| {
        format!(
            "SELECT {select} FROM {table} t WHERE {not_null}{condition} ORDER BY {order} LIMIT {limit}"
        )
    };
    Queries {
        start: statement(""),
        initial: statement(&format!(" AND {cursor} >= $1")),
        after: statement(&format!(" AND {after}")),
    }
}

/// A parameter sent in PostgreSQL's text form, which the server parses as whatever type the
/// statement gives the parameter (here: the cursor column's).
#[derive(Debug)]
struct TextParam<'a>(&'a str);

impl ToSql for TextParam<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// A database error with its SQLSTATE and message, else the error's chain (never the URL).
fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL {}: {}", db.code().code(), db.message()),
        None => chain(e),
    }
}

fn chain(e: &(dyn Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> PostgresSource {
        serde_json::from_str(json).expect("config")
    }

    #[test]
    fn an_updated_at_cursor_is_tie_broken_by_the_record_id() {
        let c = config(
            r#"{"system":"s","url":{"env":"X"},"table":"app.items","cursor":{"column":"updated_at"},
                "record_id":"id","schedule":"* * * * *","page_size":500}"#,
        );
        let q = queries(&c);
        assert_eq!(
            q.after,
            "SELECT row_to_json(t), t.\"updated_at\"::text, t.\"id\"::text FROM \"app\".\"items\" t \
             WHERE t.\"updated_at\" IS NOT NULL AND t.\"id\" IS NOT NULL AND (t.\"updated_at\", t.\"id\") > ($1, $2) \
             ORDER BY t.\"updated_at\", t.\"id\" LIMIT 500"
        );
        assert!(q.initial.contains("AND t.\"updated_at\" >= $1 ORDER BY"));
        assert!(!q.start.contains('$'));
    }

    #[test]
    fn an_id_cursor_orders_by_itself_and_columns_are_picked() {
        let c = config(
            r#"{"system":"s","url":{"env":"X"},"table":"events","cursor":{"column":"id"},
                "record_id":"id","columns":["id","order"],"schedule":"* * * * *"}"#,
        );
        let q = queries(&c);
        assert_eq!(
            q.after,
            "SELECT json_build_object('id', t.\"id\", 'order', t.\"order\"), t.\"id\"::text FROM \"events\" t \
             WHERE t.\"id\" IS NOT NULL AND t.\"id\" > $1 ORDER BY t.\"id\" LIMIT 1000"
        );
    }

    #[test]
    fn cursors_are_stored_by_column_and_other_columns_are_refused() {
        let url = SecretString::from("postgres://u@127.0.0.1/db");
        let c = config(
            r#"{"system":"s","url":{"env":"X"},"table":"t","cursor":{"column":"updated_at"},
                "record_id":"id","schedule":"* * * * *"}"#,
        );
        let source = TableSource::new(c, &url);
        let cursor = TableCursor {
            value: "2026-01-02 03:04:05+00".into(),
            id: Some("7".into()),
        };
        let text = source.cursor_text(&cursor);
        assert_eq!(text, r#"{"id":"7","updated_at":"2026-01-02 03:04:05+00"}"#);
        assert_eq!(source.load_cursor(Some(&text)), Ok(Some(cursor)));
        assert_eq!(source.load_cursor(None), Ok(None));
        assert!(source.load_cursor(Some(r#"{"seq":"7"}"#)).is_err());
        assert!(source.load_cursor(Some(r#"{"updated_at":"x"}"#)).is_err());
        assert!(source.load_cursor(Some("not json")).is_err());
        assert!(source.is_last(999));
        assert!(!source.is_last(1000));
    }
}
