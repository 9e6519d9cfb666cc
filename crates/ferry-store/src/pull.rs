//! The store's vocabulary for scheduled pulls: the resumable cursor of a pull flow and the
//! record of its runs.
//!
//! The cursor is opaque to the store (the puller's own text, e.g. JSON). It only moves with
//! [`Store::append_page`](crate::Store::append_page), in the same transaction as the events
//! of the page it follows, so after a crash the cursor and the stored events always agree:
//! a page is either stored with the cursor after it, or neither.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// The cursor move committed with one page of a pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullCheckpoint {
    /// The cursor the page was fetched from, as read from [`PullState::cursor`]. The page is
    /// refused ([`StoreError::Invalid`](crate::StoreError::Invalid), nothing written) if the
    /// stored cursor is no longer this one: another puller (or a reset) moved it meanwhile.
    pub from: Option<String>,
    /// Where the next page request resumes.
    pub to: Option<String>,
    /// When the page was committed.
    pub at: Millis,
}

/// A change to the run record of a pull flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullRunUpdate {
    /// A run started.
    Started { at: Millis },
    /// The run finished: it fetched up to the last page (or its page limit) and committed
    /// every page. Clears the last error.
    Succeeded { at: Millis },
    /// The run stopped on an error; the cursor stays after the last committed page.
    Failed { at: Millis, error: String },
}

/// Where a pull flow stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullState {
    pub flow: String,
    /// Where the next page request resumes; `None`: from the source's start.
    pub cursor: Option<String>,
    /// When a page (and the cursor) was last committed.
    pub last_page_at: Option<Millis>,
    /// When the last run started.
    pub last_started_at: Option<Millis>,
    /// When the last run ended (successfully or not).
    pub last_finished_at: Option<Millis>,
    /// The last run started has not finished: it is under way, or it was interrupted (a
    /// crash) and should resume from the cursor.
    pub run_unfinished: bool,
    /// When a run last finished successfully.
    pub last_success_at: Option<Millis>,
    /// Why the last finished run failed; `None` if it succeeded.
    pub last_error: Option<String>,
    /// Pages committed, ever.
    pub pages: u64,
    /// Events stored from those pages, ever (duplicates not counted).
    pub records: u64,
}
