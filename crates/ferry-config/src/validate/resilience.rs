//! Checks of each destination's resilience settings (breaker, rate limit, batching,
//! ordering, backlog, auto-pause), of egress allow-lists and of owner notifications, and
//! the early egress check: a URL whose host is an address literal or `localhost` that the
//! SSRF guard would refuse at run time.

use super::Checker;
use super::rules;
use crate::egress::{EgressPolicy, EgressRefused};
use crate::locate::Part;
use crate::model::{Destination, HttpAuth};
use crate::resilience::EgressAllow;
use crate::sources::FileId;

/// Most records one batch call may carry.
pub(crate) const MAX_BATCH_ITEMS: usize = 10_000;

pub(super) fn check(c: &mut Checker) {
    if let Some(file) = c.origins.settings {
        let settings = &c.config.settings;
        egress(
            c,
            file,
            &["settings", "delivery", "egress_allow"],
            &settings.delivery.egress_allow,
        );
        if let Some(hook) = &settings.notifications.webhook {
            let path = ["settings", "notifications", "webhook", "url"];
            if let Err((message, help)) = rules::destination_url(&hook.url) {
                c.error(file, &path, Part::Value, message, help);
            } else if let Err(refused) = hub_policy(c).static_refusal(&hook.url) {
                let (message, help) = refusal(&refused, false);
                c.error(file, &path, Part::Value, message, help);
            }
        }
    }
    for (flow, def) in &c.config.flows {
        let Some(file) = c.flow_file(flow) else {
            continue;
        };
        for (name, dest) in &def.destinations {
            destination(c, file, flow, name, dest);
        }
    }
}

pub(super) fn egress(c: &mut Checker, file: FileId, base: &[&str], entries: &[String]) {
    for (i, entry) in entries.iter().enumerate() {
        if let Err(message) = entry.parse::<EgressAllow>() {
            let index = i.to_string();
            let path: Vec<&str> = base.iter().copied().chain([index.as_str()]).collect();
            let help = Some(
                "e.g. `127.0.0.0/8`, `::1`, `10.1.2.3` or `hooks.internal.example`".to_string(),
            );
            c.error(file, &path, Part::Value, message, help);
        }
    }
}

/// The hub-wide allow-list; entries that do not parse are reported by [`egress`].
pub(super) fn hub_policy(c: &Checker) -> EgressPolicy {
    lenient_policy(&c.config.settings.delivery.egress_allow)
}

pub(super) fn lenient_policy(entries: &[String]) -> EgressPolicy {
    let mut policy = EgressPolicy::new();
    for entry in entries.iter().filter_map(|e| e.parse::<EgressAllow>().ok()) {
        policy.allow(entry);
    }
    policy
}

/// Message and help for a URL the SSRF guard would refuse.
fn refusal(refused: &EgressRefused, per_destination: bool) -> (String, Option<String>) {
    let place = if per_destination {
        "this destination's `http.egress_allow` (or `settings.delivery.egress_allow`)"
    } else {
        "`settings.delivery.egress_allow`"
    };
    refusal_at(refused, place)
}

/// Message and help for a URL the SSRF guard would refuse, naming the allow-list (`place`)
/// that would let it through.
pub(super) fn refusal_at(refused: &EgressRefused, place: &str) -> (String, Option<String>) {
    let message = format!("calls to this URL would be refused: {refused}");
    let entry = refused.suggestion();
    let or = if refused.literal {
        "or a network containing it"
    } else {
        "or the network of its addresses"
    };
    let help = format!(
        "Ferry refuses loopback, private, link-local, CGNAT and cloud-metadata addresses (SSRF guard); if this endpoint is meant to be internal, add `{entry}` ({or}) to {place}"
    );
    (message, Some(help))
}

fn destination(c: &mut Checker, file: FileId, flow: &str, name: &str, dest: &Destination) {
    let base = ["flows", flow, "destinations", name];
    let at = |fields: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(fields.iter().copied()).collect()
    };
    let mut errors: Vec<(Vec<&str>, String, Option<String>)> = Vec::new();

    if let Some(http) = &dest.http {
        egress(c, file, &at(&["http", "egress_allow"]), &http.egress_allow);
        // An invalid URL is reported by the destination checks.
        let policy = hub_policy(c).merged(&lenient_policy(&http.egress_allow));
        if rules::destination_url(&http.url).is_ok()
            && let Err(refused) = policy.static_refusal(&http.url)
        {
            let (message, help) = refusal(&refused, true);
            errors.push((at(&["http", "url"]), message, help));
        }
        // The token endpoint is called through the destination's guard too.
        if let Some(HttpAuth::Oauth2(oauth2)) = &http.auth
            && rules::destination_url(&oauth2.token_url).is_ok()
            && let Err(refused) = policy.static_refusal(&oauth2.token_url)
        {
            let (message, help) = refusal(&refused, true);
            errors.push((at(&["http", "auth", "oauth2", "token_url"]), message, help));
        }
    }

    let cb = &dest.circuit_breaker;
    if !(cb.failure_ratio > 0.0 && cb.failure_ratio <= 1.0) {
        errors.push((
            at(&["circuit_breaker", "failure_ratio"]),
            format!(
                "failure_ratio must be more than 0 and at most 1, not {}",
                cb.failure_ratio
            ),
            Some("e.g. `0.5` opens the breaker when more than half the calls fail".to_string()),
        ));
    }
    if cb.min_requests == 0 {
        errors.push((
            at(&["circuit_breaker", "min_requests"]),
            "min_requests must be at least 1".to_string(),
            None,
        ));
    }
    if cb.half_open_probes == 0 {
        errors.push((
            at(&["circuit_breaker", "half_open_probes"]),
            "half_open_probes must be at least 1".to_string(),
            None,
        ));
    }
    for (field, value) in [("window", cb.window), ("cool_down", cb.cool_down)] {
        if let Err((message, help)) = rules::positive(field, value) {
            errors.push((at(&["circuit_breaker", field]), message, help));
        }
    }

    if let Some(rl) = &dest.rate_limit {
        for (field, message, help) in rate_limit_problems(rl) {
            errors.push((at(&["rate_limit", field]), message, help));
        }
    }

    if let Some(batch) = &dest.batch {
        if !(1..=MAX_BATCH_ITEMS).contains(&batch.max_items) {
            errors.push((
                at(&["batch", "max_items"]),
                format!(
                    "max_items must be between 1 and {MAX_BATCH_ITEMS}, not {}",
                    batch.max_items
                ),
                None,
            ));
        }
        if let Err((_, help)) = rules::body_bytes(batch.max_bytes) {
            errors.push((
                at(&["batch", "max_bytes"]),
                format!(
                    "max_bytes must be between {} (1 KiB) and {} (64 MiB), not {}",
                    rules::MIN_BODY_BYTES,
                    rules::MAX_BODY_BYTES,
                    batch.max_bytes
                ),
                help,
            ));
        }
        if batch.wrap.as_deref().is_some_and(|w| w.trim().is_empty()) {
            errors.push((
                at(&["batch", "wrap"]),
                "wrap is empty".to_string(),
                Some(
                    "leave it out to send a JSON array, or name the field, e.g. `records`"
                        .to_string(),
                ),
            ));
        }
        if let Some(Err((message, help))) = batch.failed_items.as_deref().map(rules::json_pointer) {
            errors.push((at(&["batch", "failed_items"]), message, help));
        }
    }

    if let Some(ordering) = &dest.ordering
        && let Err((message, help)) = rules::json_pointer(&ordering.key)
    {
        errors.push((at(&["ordering", "key"]), message, help));
    }

    if dest.backlog.max_pending == 0 {
        errors.push((
            at(&["backlog", "max_pending"]),
            "max_pending must be at least 1".to_string(),
            None,
        ));
    }
    if let Err((message, help)) = rules::positive("retry_after", dest.backlog.retry_after) {
        errors.push((at(&["backlog", "retry_after"]), message, help));
    }
    if let Err((message, help)) = rules::positive("after", dest.auto_pause.after) {
        errors.push((at(&["auto_pause", "after"]), message, help));
    }

    for (path, message, help) in errors {
        c.error(file, &path, Part::Value, message, help);
    }
}

/// What is wrong with a rate limit, by field (`requests`, `per`, `burst`, `key`).
pub(super) fn rate_limit_problems(
    rl: &crate::resilience::RateLimitConfig,
) -> Vec<(&'static str, String, Option<String>)> {
    let mut out = Vec::new();
    if rl.requests == 0 {
        out.push((
            "requests",
            "requests must be at least 1".to_string(),
            Some("to stop a destination, use `ferry pause`".to_string()),
        ));
    }
    if let Err((message, help)) = rules::positive("per", rl.per) {
        out.push(("per", message, help));
    }
    if rl.burst == Some(0) {
        out.push(("burst", "burst must be at least 1".to_string(), None));
    }
    if let Some(Err((message, help))) = rl.key.as_deref().map(rules::json_pointer) {
        out.push(("key", message, help));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::resilience::EgressAllow;

    #[test]
    fn egress_entries() {
        assert!(matches!(
            "127.0.0.0/8".parse::<EgressAllow>(),
            Ok(EgressAllow::Network(_))
        ));
        assert!(matches!(
            "::1".parse::<EgressAllow>(),
            Ok(EgressAllow::Network(_))
        ));
        assert!(matches!(
            "[fd00::1]".parse::<EgressAllow>(),
            Ok(EgressAllow::Network(_))
        ));
        assert_eq!(
            "Hooks.Internal.example".parse::<EgressAllow>(),
            Ok(EgressAllow::Host("hooks.internal.example".to_string()))
        );
        assert!("10.0.0.0/33".parse::<EgressAllow>().is_err());
        assert!("http://x".parse::<EgressAllow>().is_err());
        assert!("".parse::<EgressAllow>().is_err());
        assert!("a..b".parse::<EgressAllow>().is_err());
    }
}
