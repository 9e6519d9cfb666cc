//! `ferry export prometheus-rules`: the hub's alert rules as a Prometheus rule file, for a
//! team that alerts from Prometheus and Alertmanager instead. One rule per rule kind and
//! lane (or pull flow), with the thresholds of the tier the hub would use, and labels
//! (`tier`, `severity`, `team`, `channel`) an Alertmanager route can match on.
//!
//! The file is written as YAML by hand: every string is a JSON string, which YAML reads
//! as a double-quoted scalar, so no value can break the document.

use std::fmt::Write;
use std::time::Duration;

use ferry_config::Config;
use ferry_config::alerting::AlertRules;

use super::rules::AlertKind;
use super::targets::{Impact, Targets, route};

/// One Prometheus alerting rule.
struct Rule {
    kind: AlertKind,
    expr: String,
    pending_for: Duration,
    summary: String,
}

/// The rule file of `config`'s alert rules.
pub fn rules_file(config: &Config) -> String {
    let settings = &config.settings.alerts;
    let targets = Targets::from_config(config);
    let mut out = String::from(
        "# Ferry's alert rules for Prometheus (`ferry export prometheus-rules`): the rules the\n\
         # hub evaluates itself, with the same thresholds per business-impact tier.\n\
         groups:\n",
    );
    for lane in &targets.lanes {
        let rules = settings.rules(lane.impact.tier);
        let selector = format!(
            "flow={},destination={}",
            promql_string(&lane.key.flow),
            promql_string(&lane.key.destination)
        );
        let group = format!("ferry:{}:{}", lane.key.flow, lane.key.destination);
        let place = format!("{} → {}", lane.key.flow, lane.key.destination);
        let list = lane_rules(&rules, &selector, &place);
        group_yaml(
            &mut out,
            &group,
            &list,
            &rules,
            &lane.impact,
            config,
            &[
                ("flow", &lane.key.flow),
                ("destination", &lane.key.destination),
            ],
        );
    }
    for pull in &targets.pulls {
        let rules = settings.rules(pull.impact.tier);
        let sla = pull_sla(config, &pull.flow);
        let (Some(pending_for), Some(sla)) = (rules.freshness, sla) else {
            continue;
        };
        let rule = Rule {
            kind: AlertKind::Freshness,
            expr: format!(
                "{}{{flow={}}} > {}",
                ferry_metrics::PULL_SECONDS_SINCE_SUCCESS,
                promql_string(&pull.flow),
                sla.as_secs()
            ),
            pending_for,
            summary: format!(
                "pull flow {} has had no successful run for longer than its SLA ({})",
                pull.flow,
                prom_duration(sla)
            ),
        };
        let group = format!("ferry:{}", pull.flow);
        group_yaml(
            &mut out,
            &group,
            &[rule],
            &rules,
            &pull.impact,
            config,
            &[("flow", &pull.flow)],
        );
    }
    if targets.lanes.is_empty() && targets.pulls.is_empty() {
        out = out.replace("groups:\n", "groups: []\n");
    }
    out
}

fn pull_sla(config: &Config, flow: &str) -> Option<Duration> {
    match &config.flows.get(flow)?.source {
        ferry_config::Source::Pull(p) => p.freshness,
        ferry_config::Source::Postgres(t) => t.freshness,
        _ => None,
    }
}

/// The rules of one lane whose metrics `selector` (`flow="…",destination="…"`) selects.
fn lane_rules(rules: &AlertRules, selector: &str, place: &str) -> Vec<Rule> {
    let mut out = Vec::new();
    if let Some(r) = &rules.failure_ratio {
        let w = prom_duration(r.window);
        let attempts = ferry_metrics::DELIVERY_ATTEMPTS_TOTAL;
        out.push(Rule {
            kind: AlertKind::FailureRatio,
            expr: format!(
                "(sum(rate({attempts}{{{selector},outcome!=\"delivered\"}}[{w}])) / sum(rate({attempts}{{{selector}}}[{w}])) > {}) and sum(increase({attempts}{{{selector}}}[{w}])) >= {}",
                r.above, r.min_attempts
            ),
            pending_for: r.pending_for,
            summary: format!(
                "more than {:.0}% of the attempts to {place} failed over {w}",
                r.above * 100.0
            ),
        });
    }
    if let Some(r) = &rules.attempt_latency_p99 {
        let w = prom_duration(r.window);
        out.push(Rule {
            kind: AlertKind::AttemptLatencyP99,
            expr: format!(
                "histogram_quantile(0.99, sum by (le) (rate({}_bucket{{{selector}}}[{w}]))) > {}",
                ferry_metrics::DELIVERY_ATTEMPT_DURATION_SECONDS,
                r.above.as_secs_f64()
            ),
            pending_for: r.pending_for,
            summary: format!(
                "p99 attempt latency to {place} is above {}",
                prom_duration(r.above)
            ),
        });
    }
    if let Some(r) = &rules.backlog_age {
        out.push(Rule {
            kind: AlertKind::BacklogAge,
            expr: format!(
                "{}{{{selector}}} > {}",
                ferry_metrics::BACKLOG_OLDEST_AGE_SECONDS,
                r.above.as_secs_f64()
            ),
            pending_for: r.pending_for,
            summary: format!(
                "the oldest delivery waiting for {place} is older than {}",
                prom_duration(r.above)
            ),
        });
    }
    if let Some(held) = rules.breaker_open {
        out.push(Rule {
            kind: AlertKind::BreakerOpen,
            expr: format!("{}{{{selector}}} > 0", ferry_metrics::BREAKER_STATE),
            pending_for: held,
            summary: format!(
                "the circuit breaker of {place} has been open for {}",
                prom_duration(held)
            ),
        });
    }
    if let Some(r) = &rules.dead_letters_growing {
        let w = prom_duration(r.window);
        out.push(Rule {
            kind: AlertKind::DeadLettersGrowing,
            expr: format!(
                "delta({}{{{selector}}}[{w}]) > 0",
                ferry_metrics::DEAD_LETTER_DEPTH
            ),
            pending_for: r.pending_for,
            summary: format!("the dead-letter queue of {place} grew over {w}"),
        });
    }
    out
}

/// Append one group of `list` to `out`.
fn group_yaml(
    out: &mut String,
    name: &str,
    list: &[Rule],
    rules: &AlertRules,
    impact: &Impact,
    config: &Config,
    place: &[(&str, &str)],
) {
    if list.is_empty() {
        return;
    }
    let (team, channel) = route(&config.settings.oncall, impact);
    let severity = match impact.tier {
        ferry_config::Tier::Critical => "critical",
        ferry_config::Tier::High => "error",
        ferry_config::Tier::Low => "warning",
    };
    let _ = writeln!(out, "  - name: {}", json(name));
    let _ = writeln!(out, "    rules:");
    for rule in list {
        let _ = writeln!(out, "      - alert: {}", json(&alert_name(rule.kind)));
        let _ = writeln!(out, "        expr: {}", json(&rule.expr));
        let _ = writeln!(
            out,
            "        for: {}",
            json(&prom_duration(rule.pending_for))
        );
        let _ = writeln!(
            out,
            "        keep_firing_for: {}",
            json(&prom_duration(rules.keep_firing_for))
        );
        let _ = writeln!(out, "        labels:");
        let mut labels: Vec<(&str, &str)> = vec![
            ("severity", severity),
            ("tier", impact.tier.as_str()),
            ("system", &impact.system),
        ];
        labels.extend(place.iter().copied());
        if let Some(owner) = &impact.owner {
            labels.push(("owner", owner));
        }
        if let Some(team) = team {
            labels.push(("team", team));
        }
        if let Some(channel) = channel {
            labels.push(("channel", channel.as_str()));
        }
        for (k, v) in labels {
            let _ = writeln!(out, "          {k}: {}", json(v));
        }
        let _ = writeln!(out, "        annotations:");
        let _ = writeln!(out, "          summary: {}", json(&rule.summary));
        let _ = writeln!(
            out,
            "          runbook_url: {}",
            json(&format!(
                "{}#{}",
                config.settings.alerts.runbooks,
                rule.kind.anchor()
            ))
        );
    }
}

/// `FerryFailureRatio`.
fn alert_name(kind: AlertKind) -> String {
    let camel: String = kind
        .as_str()
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect();
    format!("Ferry{camel}")
}

/// A YAML double-quoted scalar (a JSON string).
fn json(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A PromQL string literal.
fn promql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A Prometheus duration: `90s` as `1m30s`, `0s`, `250ms`.
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_prometheus_writes_them() {
        assert_eq!(prom_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(prom_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(prom_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(prom_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn names_and_strings_are_safe() {
        assert_eq!(
            alert_name(AlertKind::AttemptLatencyP99),
            "FerryAttemptLatencyP99"
        );
        assert_eq!(promql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json("x: y\n"), r#""x: y\n""#);
    }
}
