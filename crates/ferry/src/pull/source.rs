//! Where a run's pages come from: an HTTP API ([`super::http`]) or a PostgreSQL table
//! ([`ferry_connectors::postgres::TableSource`]). Either way a page is read from the stored
//! cursor text and gives its records and the cursor text after it; the run commits the two
//! together, so the scheduler, the steps and the commit are the same for every kind.

use anyhow::Result;
use ferry_connectors::postgres::TableSource;
use ferry_delivery::GuardedClient;
use serde_json::Value;

use super::http::HttpPager;
use super::page::PageClient;
use super::spec::{Origin, PullSpec};

/// One page: its records, and where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The records, in source order.
    pub records: Vec<Value>,
    /// The cursor after the page, as stored (`None`: the cursor has not moved from the
    /// start).
    pub next: Option<String>,
    /// No page follows this one in this run.
    pub last: bool,
}

/// Reads the pages of one flow.
#[derive(Debug)]
pub enum Pager {
    /// Pages of an HTTP API.
    Http(HttpPager),
    /// Rows of a PostgreSQL table.
    Table(TableSource),
}

impl Pager {
    /// The pager of `spec`'s origin. No connection is made yet.
    pub fn new(spec: &PullSpec) -> Result<Pager> {
        Ok(match &spec.origin {
            Origin::Http(http) => {
                let client = GuardedClient::new(http.egress.clone(), http.timeout)?;
                let pages = PageClient::new(client, http.url.clone(), http.headers.clone());
                Pager::Http(HttpPager::new(
                    pages,
                    http.cursor.clone(),
                    http.records.clone(),
                ))
            }
            Origin::Postgres(table) => {
                Pager::Table(TableSource::new(table.config.clone(), &table.url))
            }
        })
    }

    /// The page at the `stored` cursor of flow `flow`. A stored cursor that does not fit the
    /// configured source (its kind or columns changed) is logged and the source is read from
    /// its start: records read again are duplicates by their key.
    pub async fn page(&self, flow: &str, stored: Option<&str>) -> Result<Page, String> {
        match self {
            Pager::Http(http) => http.page(flow, stored).await,
            Pager::Table(table) => {
                let after = table.load_cursor(stored).unwrap_or_else(|why| {
                    tracing::warn!(flow = %flow, "{why}; starting from the table's start");
                    None
                });
                let rows = table.page(after.as_ref()).await?;
                let last = table.is_last(rows.len());
                let next = match rows.last() {
                    Some(row) => Some(table.cursor_text(&row.cursor)),
                    None => after.map(|c| table.cursor_text(&c)),
                };
                Ok(Page {
                    records: rows.into_iter().map(|r| r.value).collect(),
                    next,
                    last,
                })
            }
        }
    }
}
