//! Retention: how long the store keeps the events of a source system or carrying a data
//! category, the purge that deletes what is past it, and the data map of what was
//! delivered where.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// The retention rules in force: an event's retention is the shortest that applies to it
/// (its source system's, and those of the categories it carries).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRules {
    /// Source system → how long its events are kept (ms).
    pub systems: Vec<(String, Millis)>,
    /// Data category → how long events carrying it (or one of its sub-categories) are kept
    /// (ms).
    pub categories: Vec<(String, Millis)>,
}

impl RetentionRules {
    /// Whether no rule applies to anything.
    pub fn is_empty(&self) -> bool {
        self.systems.is_empty() && self.categories.is_empty()
    }
}

/// What one purge call did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Events deleted.
    pub events: u64,
    /// Their deliveries, deleted with them.
    pub deliveries: u64,
    /// Their deliveries' attempts (with their response excerpts), deleted with them.
    pub attempts: u64,
    /// Events past their retention that are kept because a delivery of theirs is still
    /// waiting (pending, in flight or retrying): they go once it is delivered or dead.
    pub held: u64,
}

/// What the store keeps of one source system's events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemHoldings {
    /// The source system.
    pub system: String,
    /// Events stored.
    pub events: u64,
    /// When the oldest was received.
    pub oldest_received_at: Option<Millis>,
}

/// One row of the observed data map: a data category delivered to a destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedFlow {
    pub category: String,
    pub flow: String,
    pub destination: String,
    /// The destination's system.
    pub system: Option<String>,
    /// How the category was protected on the way (`pass`, `hash`, `redact`, `encrypt`,
    /// `drop`).
    pub how: String,
    /// Deliveries delivered carrying it.
    pub delivered: u64,
    /// When the last of them was delivered.
    pub last_delivered_at: Millis,
}

/// Select rows of the observed data map. All set fields must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedFilter {
    /// This category or one of its sub-categories.
    pub category: Option<String>,
    /// Delivered to this system.
    pub system: Option<String>,
}

/// Whether `category` is `key` or one of its sub-categories (`user.contact.email` is under
/// `user.contact`).
pub fn category_under(category: &str, key: &str) -> bool {
    category == key
        || category
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_categories_are_under_their_parent_only() {
        assert!(category_under("user.contact.email", "user.contact"));
        assert!(category_under("user.contact", "user.contact"));
        assert!(!category_under("user.contactless", "user.contact"));
        assert!(!category_under("user", "user.contact"));
    }
}

/// How the backends tag events for retention (`event_retention.tag`): `s:<source system>`
/// and `c:<category>` for each category the event carries.
pub(crate) mod tagging {
    use crate::{StoreError, StoreResult};

    /// Prefix of a source system's tag.
    pub(crate) const SYSTEM: &str = "s:";
    /// Prefix of a data category's tag.
    pub(crate) const CATEGORY: &str = "c:";

    /// The `events.categories` value of an event: a JSON array, or NULL for none.
    pub(crate) fn encode_categories(categories: &[String]) -> Option<String> {
        (!categories.is_empty()).then(|| serde_json::to_string(categories).unwrap_or_default())
    }

    /// The categories of an event, from its `events.categories` value.
    pub(crate) fn decode_categories(text: Option<String>) -> StoreResult<Vec<String>> {
        match text {
            None => Ok(Vec::new()),
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| StoreError::Backend(format!("unreadable event categories: {e}"))),
        }
    }

    /// The tags of an event of `source` carrying `categories`.
    pub(crate) fn tags<'a>(
        source: &str,
        categories: &'a [String],
    ) -> impl Iterator<Item = String> + 'a {
        std::iter::once(format!("{SYSTEM}{source}"))
            .chain(categories.iter().map(|c| format!("{CATEGORY}{c}")))
    }
}
