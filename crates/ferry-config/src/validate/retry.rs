//! A warning when a destination's retries run out too soon: before its circuit breaker has
//! had a chance to open and probe (the attempts went out while the breaker's window still
//! held earlier successes), or before the outage its system's tier should ride out. A
//! delivery then dies inside one outage, and someone must replay it by hand.

use std::time::Duration;

use super::Checker;
use crate::locate::Part;
use crate::model::{Destination, RetryConfig};
use crate::sources::FileId;

/// Most attempts a suggestion proposes; beyond it, longer backoffs are the better advice.
const MAX_SUGGESTED_ATTEMPTS: u32 = 30;

pub(super) fn check(c: &mut Checker) {
    for (flow, def) in &c.config.flows {
        let Some(file) = c.flow_file(flow) else {
            continue;
        };
        for (name, dest) in &def.destinations {
            destination(c, file, flow, name, dest);
        }
    }
}

fn destination(c: &mut Checker, file: FileId, flow: &str, name: &str, dest: &Destination) {
    let retry = &dest.retry;
    // Broken policies are errors of their own (see `destinations`).
    if retry.max_attempts == 0
        || retry.initial_backoff.is_zero()
        || retry.initial_backoff > retry.max_backoff
    {
        return;
    }
    let span = retry.span();
    let mut short_of: Vec<String> = Vec::new();
    let mut why: Vec<&str> = Vec::new();
    let mut needed = Duration::ZERO;
    let cb = &dest.circuit_breaker;
    if cb.enabled {
        let cycle = cb.window.saturating_add(cb.cool_down);
        if span.expected < cycle {
            short_of.push(format!(
                "the circuit breaker's window + cool_down ({})",
                human(cycle)
            ));
            why.push(
                "attempts that all go out while the breaker's window still holds earlier \
                 successes never let it open, so one outage uses up the whole budget",
            );
            needed = needed.max(cycle);
        }
    }
    // An undeclared system is an error of its own.
    if let Some(system) = c.config.systems.get(&dest.system) {
        let tier = system.tier;
        let min = tier.min_retry_span();
        if span.expected < min {
            short_of.push(format!(
                "the {} a `{}`-tier system (`{}`) should be retried through",
                human(min),
                tier.as_str(),
                dest.system
            ));
            needed = needed.max(min);
        }
    }
    if short_of.is_empty() {
        return;
    }
    let message = format!(
        "retries run out too soon: {} attempts span about {} on average ({} at most, with \
         full jitter), less than {}",
        retry.max_attempts,
        human(span.expected),
        human(span.longest),
        short_of.join(" and less than ")
    );
    let mut help = why.join("; ");
    if !help.is_empty() {
        help.push_str("; ");
    }
    help.push_str(&advice(retry, needed));
    let field = ["flows", flow, "destinations", name, "retry"];
    c.warning(file, &field, Part::Key, message, Some(help));
}

/// What would make the retries last `needed`: more attempts with these backoffs when a few
/// more do, else a longer `max_backoff`; and a `max_age` that does not end them first.
fn advice(retry: &RetryConfig, needed: Duration) -> String {
    let mut parts = Vec::new();
    let more = (retry.max_attempts..=MAX_SUGGESTED_ATTEMPTS).find(|&n| {
        RetryConfig {
            max_attempts: n,
            max_age: Duration::MAX,
            ..retry.clone()
        }
        .span()
        .expected
            >= needed
    });
    match more {
        Some(n) => parts.push(format!("raise `max_attempts` to {n} or more")),
        None => parts.push(format!(
            "raise `max_backoff` (now {}) and `max_attempts`",
            human(retry.max_backoff)
        )),
    }
    if retry.max_age < needed {
        parts.push(format!(
            "raise `max_age` (now {}), which ends every round sooner",
            human(retry.max_age)
        ));
    }
    format!(
        "{}, so the retries last at least {} (see \"Sizing retries\" in docs/config.md)",
        parts.join(", and "),
        human(needed)
    )
}

fn human(d: Duration) -> String {
    // Whole seconds: "1m 30s" rather than "1m 30s 250ms".
    let secs = if d.subsec_nanos() > 0 && d.as_secs() > 0 {
        Duration::from_secs(d.as_secs())
    } else {
        d
    };
    humantime::format_duration(secs).to_string()
}
