//! Synthetic events (a flow's `synthetic` transaction, `ferry probe`): marked by a header
//! the event keeps, sent marked `Ferry-Synthetic: true` (or to a destination's sandbox),
//! and left out of the delivery metrics, the alert rules' tallies and the audit of
//! personal data.

use ferry_store::ClaimedDelivery;

/// The header a synthetic event keeps, and sends (HTTP header, message header).
pub const HEADER: &str = "ferry-synthetic";

/// Whether `delivery` is of a synthetic event.
pub fn is_synthetic(delivery: &ClaimedDelivery) -> bool {
    delivery
        .headers
        .iter()
        .any(|(name, value)| name.eq_ignore_ascii_case(HEADER) && value == "true")
}
