//! The pages of an HTTP API: the stored position ([`super::cursor`]) turned into the page's
//! query, the page fetched ([`super::page`]), its records taken from the body and the
//! position moved past them.

use ferry_config::PullCursor;
use serde_json::Value;

use super::cursor::Position;
use super::page::PageClient;
use super::source::Page;

/// Reads the pages of one API.
#[derive(Debug)]
pub struct HttpPager {
    pages: PageClient,
    cursor: PullCursor,
    /// JSON pointer to the page's array of records.
    records: String,
}

impl HttpPager {
    /// A pager fetching with `pages`, following `cursor`, the records at `records`.
    pub fn new(pages: PageClient, cursor: PullCursor, records: String) -> Self {
        HttpPager {
            pages,
            cursor,
            records,
        }
    }

    /// The page at the `stored` position of flow `flow` (unreadable, or of another cursor
    /// kind: logged, and the API is read from its first page).
    pub async fn page(&self, flow: &str, stored: Option<&str>) -> Result<Page, String> {
        let position = Position::load(stored, &self.cursor).unwrap_or_else(|why| {
            tracing::warn!(flow = %flow, "{why}; starting from the source's start");
            Position::start(&self.cursor)
        });
        let body = self
            .pages
            .fetch(&position.query(&self.cursor))
            .await
            .map_err(|e| e.message)?;
        let records = records(&body, &self.records)?;
        let advance = position.advance(&self.cursor, &body, &records);
        Ok(Page {
            records,
            next: Some(advance.next.to_text()),
            last: advance.last,
        })
    }
}

/// The records of a page: the array at `pointer` (absent or `null`: none).
fn records(body: &Value, pointer: &str) -> Result<Vec<Value>, String> {
    match body.pointer(pointer) {
        Some(Value::Array(items)) => Ok(items.clone()),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err(format!("the page has no array of records at `{pointer}`")),
    }
}
