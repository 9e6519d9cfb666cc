//! The table itself is well formed: names unique and in Prometheus' conventions for their
//! kind, HELP text on every family.

use std::collections::HashSet;

use ferry_metrics::{FAMILIES, Kind};

#[test]
fn names_are_unique_and_follow_the_conventions_of_their_kind() {
    let mut seen = HashSet::new();
    for f in FAMILIES {
        assert!(seen.insert(f.name), "{} is listed twice", f.name);
        assert!(f.name.starts_with("ferry_"), "{}", f.name);
        assert!(
            f.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{}",
            f.name
        );
        assert_eq!(
            f.kind == Kind::Counter,
            f.name.ends_with("_total"),
            "{}: counters and only counters end in _total",
            f.name
        );
        if f.name.ends_with("_seconds") {
            assert_eq!(f.unit_str(), "seconds", "{}", f.name);
        }
        let labels: HashSet<_> = f.labels.iter().collect();
        assert_eq!(labels.len(), f.labels.len(), "{}: a label twice", f.name);
    }
}

#[test]
fn every_family_has_help_text() {
    for f in FAMILIES {
        assert!(!f.help.trim().is_empty(), "{} has no HELP text", f.name);
        assert!(!f.help.contains('\n'), "{}: HELP is one line", f.name);
    }
    assert_eq!(
        ferry_metrics::family(ferry_metrics::DELIVERY_END_TO_END_SECONDS).map(|f| f.kind),
        Some(Kind::Histogram)
    );
}
