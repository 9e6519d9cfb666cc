//! Checks of `settings.alerts`, `settings.oncall` and `settings.tracing`: thresholds that
//! can fire, channel URLs the egress guard lets through, routes to channels that exist,
//! owners no team hears, and a trace endpoint and ratio that make sense.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Checker;
use super::resilience::{hub_policy, refusal_at};
use super::rules;
use crate::alerting::OncallTeam;
use crate::locate::Part;
use crate::model::Tier;
use crate::sources::FileId;

/// The fastest evaluation the hub allows.
const MIN_EVALUATE_EVERY: Duration = Duration::from_millis(100);

pub(super) fn check(c: &mut Checker) {
    let Some(file) = c.origins.settings else {
        return;
    };
    let alerts = &c.config.settings.alerts;
    if alerts.evaluate_every < MIN_EVALUATE_EVERY {
        c.error(
            file,
            &["settings", "alerts", "evaluate_every"],
            Part::Value,
            format!(
                "evaluate_every is {:?}: the hub evaluates at most every 100ms",
                alerts.evaluate_every
            ),
            None,
        );
    }
    if alerts.runbooks.trim().is_empty() {
        c.error(
            file,
            &["settings", "alerts", "runbooks"],
            Part::Value,
            "runbooks is empty: every alert links to its runbook".to_string(),
            Some("leave it out for `docs/runbooks.md`".to_string()),
        );
    }
    for tier in [Tier::Critical, Tier::High, Tier::Low] {
        thresholds(c, file, tier);
    }
    let teams = c.config.settings.oncall.clone();
    for (name, team) in &teams {
        channels(c, file, name, team);
    }
    unheard_owners(c, file);
    tracing(c, file);
    logs(c, file);
}

/// `settings.logs`: a file when lines go to one, limits that let a line through.
fn logs(c: &mut Checker, file: FileId) {
    let logs = c.config.settings.logs.clone();
    match (&logs.to, &logs.file) {
        (crate::model::LogTarget::File, None) => c.error(
            file,
            &["settings", "logs", "to"],
            Part::Value,
            "logs go to a file, but `settings.logs.file` names none".to_string(),
            Some("add `file: { path: /var/log/ferry/ferry.log }`".to_string()),
        ),
        (crate::model::LogTarget::File, Some(_)) | (_, None) => {}
        (_, Some(_)) => c.warning(
            file,
            &["settings", "logs", "file"],
            Part::Key,
            "`settings.logs.file` is ignored: logs go to the terminal".to_string(),
            Some("set `to: file`, or remove `file`".to_string()),
        ),
    }
    let Some(f) = &logs.file else { return };
    let at = |field: &'static str| ["settings", "logs", "file", field];
    if f.path.as_os_str().is_empty() || f.path.file_name().is_none() {
        c.error(
            file,
            &at("path"),
            Part::Value,
            "the log file's path names no file".to_string(),
            None,
        );
    }
    if f.max_bytes < 4096 {
        c.error(
            file,
            &at("max_bytes"),
            Part::Value,
            format!(
                "max_bytes is {}: a log file must hold at least 4096 bytes",
                f.max_bytes
            ),
            None,
        );
    }
    if f.max_age < Duration::from_secs(1) {
        c.error(
            file,
            &at("max_age"),
            Part::Value,
            "max_age is under 1s".to_string(),
            None,
        );
    }
    if f.keep_files == 0 {
        c.error(
            file,
            &at("keep_files"),
            Part::Value,
            "keep_files is 0: every rotated file would be deleted at once".to_string(),
            Some("keep at least 1".to_string()),
        );
    }
}

/// `settings.tracing`: an endpoint that is a URL, a ratio that is a share, a queue.
fn tracing(c: &mut Checker, file: FileId) {
    let t = c.config.settings.tracing.clone();
    if let Some(url) = &t.otlp_endpoint
        && let Err((message, help)) = rules::destination_url(url)
    {
        c.error(
            file,
            &["settings", "tracing", "otlp_endpoint"],
            Part::Value,
            message,
            help,
        );
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        c.error(
            file,
            &["settings", "tracing", "sample_ratio"],
            Part::Value,
            format!(
                "sample_ratio is {}: it is a share of traces, from 0 to 1",
                t.sample_ratio
            ),
            None,
        );
    }
    if t.max_queue == 0 {
        c.error(
            file,
            &["settings", "tracing", "max_queue"],
            Part::Value,
            "max_queue is 0: no span could wait for export".to_string(),
            None,
        );
    }
}

fn thresholds(c: &mut Checker, file: FileId, tier: Tier) {
    let o = c.config.settings.alerts.tiers.of(tier).clone();
    let base = ["settings", "alerts", "tiers", tier.as_str()];
    let at = |fields: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(fields.iter().copied()).collect()
    };
    if let Some(r) = &o.failure_ratio {
        if let Some(above) = r.above
            && !(above > 0.0 && above < 1.0)
        {
            c.error(
                file,
                &at(&["failure_ratio", "above"]),
                Part::Value,
                format!("failure_ratio.above is {above}: it is a share of attempts, between 0 and 1 (exclusive)"),
                Some("e.g. `0.05` fires when more than 5% of attempts fail".to_string()),
            );
        }
        if r.window == Some(Duration::ZERO) {
            c.error(
                file,
                &at(&["failure_ratio", "window"]),
                Part::Value,
                "failure_ratio.window is 0: no attempt would ever be counted".to_string(),
                None,
            );
        }
    }
    if let Some(r) = &o.attempt_latency_p99
        && r.window == Some(Duration::ZERO)
    {
        c.error(
            file,
            &at(&["attempt_latency_p99", "window"]),
            Part::Value,
            "attempt_latency_p99.window is 0: no attempt would ever be measured".to_string(),
            None,
        );
    }
    if let Some(r) = &o.dead_letters_growing
        && r.window == Some(Duration::ZERO)
    {
        c.error(
            file,
            &at(&["dead_letters_growing", "window"]),
            Part::Value,
            "dead_letters_growing.window is 0: no growth could be seen".to_string(),
            None,
        );
    }
}

fn channels(c: &mut Checker, file: FileId, name: &str, team: &OncallTeam) {
    let urls = [
        ("pager", team.pager.as_ref().map(|p| p.url.as_str())),
        ("chat", team.chat.as_ref().map(|h| h.url.as_str())),
        ("digest", team.digest.as_ref().map(|d| d.url.as_str())),
    ];
    let mut configured = 0;
    for (channel, url) in urls {
        let Some(url) = url else { continue };
        configured += 1;
        let path = ["settings", "oncall", name, channel, "url"];
        if let Err((message, help)) = rules::destination_url(url) {
            c.error(file, &path, Part::Value, message, help);
        } else if let Err(refused) = hub_policy(c).static_refusal(url) {
            let (message, help) = refusal_at(&refused, "`settings.delivery.egress_allow`");
            c.error(file, &path, Part::Value, message, help);
        }
    }
    if configured == 0 {
        c.error(
            file,
            &["settings", "oncall", name],
            Part::Key,
            format!("team `{name}` has no channel: its alerts would go nowhere"),
            Some("give it a `pager`, a `chat` or a `digest`".to_string()),
        );
    }
    if team.digest.as_ref().is_some_and(|d| d.every.is_zero()) {
        c.error(
            file,
            &["settings", "oncall", name, "digest", "every"],
            Part::Value,
            "digest.every is 0".to_string(),
            Some("e.g. `24h` for a daily digest".to_string()),
        );
    }
    for (tier, chosen) in [
        (Tier::Critical, team.route.critical),
        (Tier::High, team.route.high),
        (Tier::Low, team.route.low),
    ] {
        if let Some(channel) = chosen
            && !team.has(channel)
        {
            c.error(
                file,
                &["settings", "oncall", name, "route", tier.as_str()],
                Part::Value,
                format!(
                    "team `{name}` routes {} alerts to its {} but has no `{}`",
                    tier.as_str(),
                    channel.as_str(),
                    channel.as_str()
                ),
                Some(format!(
                    "add `settings.oncall.{name}.{}`, or route {} alerts to a channel it has",
                    channel.as_str(),
                    tier.as_str()
                )),
            );
        }
    }
}

/// When teams are configured, warn about each owner whose alerts no team would hear.
fn unheard_owners(c: &mut Checker, settings_file: FileId) {
    let oncall = &c.config.settings.oncall;
    if oncall.is_empty() || oncall.contains_key("default") {
        return;
    }
    let mut owners: BTreeSet<(String, String)> = BTreeSet::new();
    for (name, system) in &c.config.systems {
        if let Some(owner) = &system.owner
            && !oncall.contains_key(owner)
        {
            owners.insert((name.clone(), owner.clone()));
        }
    }
    for (system, owner) in owners {
        let file = c.system_file(&system).unwrap_or(settings_file);
        c.warning(
            file,
            &["systems", &system, "owner"],
            Part::Value,
            format!("owner `{owner}` of system `{system}` has no team under `settings.oncall`: its alerts are only listed by `ferry alerts`"),
            Some(format!("add `settings.oncall.{owner}`, or a `default` team")),
        );
    }
}
