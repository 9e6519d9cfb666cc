//! Where a pull stands in its source, per cursor kind: the query a page is asked with, and
//! where the next page starts once a page is in. Pure: no I/O, no clock.
//!
//! The position is stored as JSON text (`{"page_token":"abc"}`, `{"updated_since":"2026-…"}`,
//! `{"offset":120}`), committed with the events of the page it follows.
//!
//! - `page_token`: the token of the next page. After the last page (no next token) the
//!   position stays at the token that fetched it, so the next run reads that page again
//!   (its records are duplicates by `record_id`) and follows any page added since.
//! - `updated_since`: the largest `field` value seen. A page whose records do not move it
//!   (an empty page, or only records at the current value) is the last. The source must
//!   return records in ascending order of `field`.
//! - `offset`: the number of records taken. A page with fewer than `limit` records is the
//!   last; the next run continues after it.

use std::cmp::Ordering;

use ferry_config::PullCursor;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A position in the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// The token of the next page; `None`: the first page.
    PageToken(Option<String>),
    /// The largest value of the cursor field seen; `None`: the configured `initial`.
    UpdatedSince(Option<String>),
    /// Records taken so far.
    Offset(u64),
}

/// What a page moved: the next position, and whether the page was the last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advance {
    pub next: Position,
    pub last: bool,
}

impl Position {
    /// The position before the first page of a source with this cursor.
    pub fn start(cursor: &PullCursor) -> Position {
        match cursor {
            PullCursor::PageToken { .. } => Position::PageToken(None),
            PullCursor::UpdatedSince { .. } => Position::UpdatedSince(None),
            PullCursor::Offset { .. } => Position::Offset(0),
        }
    }

    /// The stored position (`None`: never moved). A position of another kind (the cursor
    /// kind was changed in the config) or unreadable text starts over, which the caller
    /// should log.
    pub fn load(stored: Option<&str>, cursor: &PullCursor) -> Result<Position, String> {
        let Some(text) = stored else {
            return Ok(Position::start(cursor));
        };
        let pos: Position = serde_json::from_str(text)
            .map_err(|e| format!("the stored cursor `{text}` is unreadable: {e}"))?;
        if std::mem::discriminant(&pos) != std::mem::discriminant(&Position::start(cursor)) {
            return Err(format!(
                "the stored cursor `{text}` is of another kind than the configured one"
            ));
        }
        Ok(pos)
    }

    /// The position as stored.
    pub fn to_text(&self) -> String {
        // Serialising an enum of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The query parameters that ask for the page at this position.
    pub fn query(&self, cursor: &PullCursor) -> Vec<(String, String)> {
        match (self, cursor) {
            (Position::PageToken(Some(token)), PullCursor::PageToken { param, .. }) => {
                vec![(param.clone(), token.clone())]
            }
            (Position::UpdatedSince(since), PullCursor::UpdatedSince { param, initial, .. }) => {
                since
                    .as_ref()
                    .or(initial.as_ref())
                    .map(|s| vec![(param.clone(), s.clone())])
                    .unwrap_or_default()
            }
            (
                Position::Offset(n),
                PullCursor::Offset {
                    param,
                    limit_param,
                    limit,
                },
            ) => vec![
                (param.clone(), n.to_string()),
                (limit_param.clone(), limit.to_string()),
            ],
            _ => Vec::new(),
        }
    }

    /// Where the next page starts after the page `body` holding `records` at this position.
    pub fn advance(&self, cursor: &PullCursor, body: &Value, records: &[Value]) -> Advance {
        match (self, cursor) {
            (Position::PageToken(current), PullCursor::PageToken { next, .. }) => {
                match body.pointer(next).and_then(scalar_text) {
                    // A token that does not move would loop forever: treat it as the end.
                    Some(token) if !token.is_empty() && current.as_ref() != Some(&token) => {
                        Advance {
                            next: Position::PageToken(Some(token)),
                            last: false,
                        }
                    }
                    _ => Advance {
                        next: self.clone(),
                        last: true,
                    },
                }
            }
            (Position::UpdatedSince(current), PullCursor::UpdatedSince { field, initial, .. }) => {
                let floor = current.as_ref().or(initial.as_ref());
                let top = records
                    .iter()
                    .filter_map(|r| r.pointer(field).and_then(scalar_text))
                    .max_by(|a, b| compare(a, b));
                match top {
                    Some(top) if floor.is_none_or(|f| compare(&top, f) == Ordering::Greater) => {
                        Advance {
                            next: Position::UpdatedSince(Some(top)),
                            last: false,
                        }
                    }
                    _ => Advance {
                        next: self.clone(),
                        last: true,
                    },
                }
            }
            (Position::Offset(n), PullCursor::Offset { limit, .. }) => {
                let taken = records.len() as u64;
                Advance {
                    next: Position::Offset(n + taken),
                    last: taken < u64::from(*limit) || taken == 0,
                }
            }
            // A position of another kind never reaches here (see `load`); stop.
            _ => Advance {
                next: self.clone(),
                last: true,
            },
        }
    }
}

/// A string as it is, a number as its decimal text; anything else has no text.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Cursor values compare as numbers when both are numbers, else as text (so RFC 3339
/// timestamps in one format compare in time order).
fn compare(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token() -> PullCursor {
        PullCursor::PageToken {
            next: "/next".into(),
            param: "page".into(),
        }
    }
    fn since(initial: Option<&str>) -> PullCursor {
        PullCursor::UpdatedSince {
            field: "/updated".into(),
            param: "since".into(),
            initial: initial.map(str::to_owned),
        }
    }
    fn offset() -> PullCursor {
        PullCursor::Offset {
            param: "offset".into(),
            limit_param: "limit".into(),
            limit: 2,
        }
    }

    #[test]
    fn page_tokens_follow_next_and_stay_on_the_last_page() {
        let c = token();
        let start = Position::start(&c);
        assert!(start.query(&c).is_empty());
        let a = start.advance(&c, &json!({"next": "p2"}), &[]);
        assert_eq!(
            a,
            Advance {
                next: Position::PageToken(Some("p2".into())),
                last: false
            }
        );
        assert_eq!(a.next.query(&c), vec![("page".to_owned(), "p2".to_owned())]);
        for end in [
            json!({"next": null}),
            json!({}),
            json!({"next": ""}),
            json!({"next": "p2"}),
        ] {
            let b = a.next.advance(&c, &end, &[]);
            assert_eq!(
                b,
                Advance {
                    next: a.next.clone(),
                    last: true
                },
                "{end}"
            );
        }
        let numeric = start.advance(&c, &json!({"next": 3}), &[]);
        assert_eq!(numeric.next, Position::PageToken(Some("3".into())));
    }

    #[test]
    fn updated_since_moves_to_the_largest_value_seen() {
        let c = since(Some("2026-01-01T00:00:00Z"));
        let start = Position::start(&c);
        assert_eq!(
            start.query(&c),
            vec![("since".to_owned(), "2026-01-01T00:00:00Z".to_owned())]
        );
        let recs = [
            json!({"updated": "2026-01-02T00:00:00Z"}),
            json!({"updated": "2026-01-03T00:00:00Z"}),
            json!({"no": "field"}),
        ];
        let a = start.advance(&c, &json!({}), &recs);
        assert_eq!(
            a,
            Advance {
                next: Position::UpdatedSince(Some("2026-01-03T00:00:00Z".into())),
                last: false
            }
        );
        // Only the boundary record again: the end.
        let b = a.next.advance(&c, &json!({}), &recs[1..2]);
        assert!(b.last);
        assert_eq!(b.next, a.next);
        assert!(
            a.next.advance(&c, &json!({}), &[]).last,
            "an empty page ends the run"
        );
        // Numbers compare as numbers.
        let n = since(None);
        let a = Position::start(&n).advance(
            &n,
            &json!({}),
            &[json!({"updated": 9}), json!({"updated": 10})],
        );
        assert_eq!(a.next, Position::UpdatedSince(Some("10".into())));
        assert!(!a.last);
    }

    #[test]
    fn offsets_count_records_and_a_short_page_is_the_last() {
        let c = offset();
        let start = Position::start(&c);
        assert_eq!(
            start.query(&c),
            vec![
                ("offset".to_owned(), "0".to_owned()),
                ("limit".to_owned(), "2".to_owned())
            ]
        );
        let full = start.advance(&c, &json!({}), &[json!(1), json!(2)]);
        assert_eq!(
            full,
            Advance {
                next: Position::Offset(2),
                last: false
            }
        );
        let short = full.next.advance(&c, &json!({}), &[json!(3)]);
        assert_eq!(
            short,
            Advance {
                next: Position::Offset(3),
                last: true
            }
        );
        let empty = short.next.advance(&c, &json!({}), &[]);
        assert_eq!(
            empty,
            Advance {
                next: Position::Offset(3),
                last: true
            }
        );
    }

    #[test]
    fn stored_positions_round_trip_and_other_kinds_are_refused() {
        let p = Position::Offset(42);
        assert_eq!(p.to_text(), r#"{"offset":42}"#);
        assert_eq!(Position::load(Some(&p.to_text()), &offset()), Ok(p.clone()));
        assert_eq!(Position::load(None, &offset()), Ok(Position::Offset(0)));
        assert!(Position::load(Some(&p.to_text()), &token()).is_err());
        assert!(Position::load(Some("not json"), &token()).is_err());
        let t = Position::PageToken(None);
        assert_eq!(Position::load(Some(&t.to_text()), &token()), Ok(t));
    }
}
