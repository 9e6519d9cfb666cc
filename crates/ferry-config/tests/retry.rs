//! Retries that run out inside one outage: `ferry validate` warns (never refuses) when a
//! destination's retries span less than its circuit breaker's window + cool_down, or less
//! than its system's tier asks (critical 1h, high 15m, low 5m), at the `retry` field.

mod common;

use common::{SYSTEMS, deduped_flow, dir, load};
use ferry_config::{Diagnostic, Severity};

/// The flow `f` delivering to system `system` with `extra` (indented 8 spaces) on the
/// destination.
fn flow_with(system: &str, extra: &str) -> String {
    deduped_flow("f", "http://hook.test/x").replace(
        "        system: crm\n",
        &format!("        system: {system}\n"),
    ) + extra
}

fn warnings(system: &str, extra: &str) -> Vec<Diagnostic> {
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("f.yaml", &flow_with(system, extra)),
    ]);
    load(tmp.path())
        .unwrap_or_else(|e| panic!("a warning, never an error: {e}"))
        .warnings
}

#[test]
fn a_budget_spent_in_seconds_is_a_warning_at_the_retry_field() {
    // The kind of schedule: 10 attempts from 100ms doubling up to 5s span about 10s
    // (21.3s at most).
    let w = warnings(
        "crm",
        "        retry: { max_attempts: 10, initial_backoff: 100ms, max_backoff: 5s }\n",
    );
    assert_eq!(w.len(), 1, "{w:#?}");
    let w = &w[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.field, "flows.f.destinations.crm.retry");
    assert_eq!((w.line, w.column), (12, 9));
    assert!(
        w.message.starts_with(
            "retries run out too soon: 10 attempts span about 10s on average (21s at most"
        ),
        "{}",
        w.message
    );
    assert!(
        w.message.contains("window + cool_down (1m 30s)"),
        "{}",
        w.message
    );
    assert!(
        w.message.contains("15m a `high`-tier system (`crm`)"),
        "{}",
        w.message
    );
    let help = w.help.as_deref().unwrap();
    assert!(help.contains("never let it open"), "{help}");
    assert!(help.contains("raise `max_backoff` (now 5s)"), "{help}");
    assert!(help.contains("Sizing retries"), "{help}");
}

#[test]
fn the_default_policy_suits_a_high_tier_system_but_not_a_critical_one() {
    // 12 attempts, 1s doubling up to 1h: about 17m on average.
    assert!(warnings("crm", "").is_empty());
    let w = warnings("billing", "");
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].message
            .contains("the 1h a `critical`-tier system (`billing`)"),
        "{}",
        w[0].message
    );
    assert!(!w[0].message.contains("breaker"), "{}", w[0].message);
    // Without a `retry:` field, the warning is at the destination.
    assert_eq!(w[0].field, "flows.f.destinations.crm.retry");
    assert_eq!(w[0].line, 10);
    let help = w[0].help.as_deref().unwrap();
    assert!(
        help.contains("raise `max_attempts` to 14 or more"),
        "{help}"
    );
    // Enough attempts silence it.
    assert!(warnings("billing", "        retry: { max_attempts: 14 }\n").is_empty());
}

#[test]
fn a_breaker_cycle_longer_than_the_retries_is_a_warning_unless_it_is_off() {
    let breaker = "        circuit_breaker: { window: 20m, cool_down: 1m }\n";
    let w = warnings("crm", breaker);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].message.contains("window + cool_down (21m)"),
        "{}",
        w[0].message
    );
    assert!(!w[0].message.contains("tier"), "{}", w[0].message);
    let off = "        circuit_breaker: { enabled: false, window: 20m, cool_down: 1m }\n";
    assert!(warnings("crm", off).is_empty());
}

#[test]
fn max_age_ends_the_retries_too() {
    let w = warnings("crm", "        retry: { max_age: 10m }\n");
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].message.contains("span about 10m on average"),
        "{}",
        w[0].message
    );
    let help = w[0].help.as_deref().unwrap();
    assert!(help.contains("raise `max_age` (now 10m)"), "{help}");
}
