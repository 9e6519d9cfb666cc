//! PostgreSQL. A destination upserts each delivery's (mapped) record into a table: reverse
//! ETL into an app database, or a load into a warehouse. The record's top-level fields are
//! the columns, typed by the table itself (`jsonb_populate_record`), and a row with the same
//! conflict key is updated: a retry or replay never duplicates a row, and a replay after a
//! mapping fix updates it. A [`source`] reads a table incrementally by a cursor column (the
//! hub's pullers schedule it and commit each page with its cursor).

mod destination;
mod group;
pub mod source;
mod upsert;

pub use destination::PostgresConnector;
pub use source::{TableCursor, TableRow, TableSource};
