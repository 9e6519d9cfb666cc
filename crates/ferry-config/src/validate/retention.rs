//! Checks of retention: `systems.X.retention`, `settings.protection.retention` and
//! `settings.protection.purge_every`. (Which category keys exist is the taxonomy's check.)

use std::time::Duration;

use super::Checker;
use crate::locate::Part;

/// The shortest purge interval: a purge walks the events past retention, so running it
/// more often than this only costs.
pub const MIN_PURGE_EVERY: Duration = Duration::from_secs(1);

pub(super) fn check(c: &mut Checker) {
    systems(c);
    settings(c);
}

fn systems(c: &mut Checker) {
    for (name, system) in &c.config.systems {
        let Some(file) = c.system_file(name) else {
            continue;
        };
        if system.retention.is_some_and(|d| d.is_zero()) {
            c.error(
                file,
                &["systems", name, "retention"],
                Part::Value,
                format!("system `{name}` has a retention of 0: its events would be purged as soon as they are delivered"),
                Some("give a positive duration (`30d`, `12h`), or leave `retention` out to keep its events".into()),
            );
        }
    }
}

fn settings(c: &mut Checker) {
    let Some(file) = c.origins.settings else {
        return;
    };
    let protection = &c.config.settings.protection;
    for (category, keep) in &protection.retention {
        if keep.is_zero() {
            c.error(
                file,
                &["settings", "protection", "retention", category],
                Part::Value,
                format!("the retention of `{category}` is 0: events carrying it would be purged as soon as they are delivered"),
                Some("give a positive duration (`30d`, `12h`), or leave the category out".into()),
            );
        }
    }
    if protection.purge_every < MIN_PURGE_EVERY {
        c.error(
            file,
            &["settings", "protection", "purge_every"],
            Part::Value,
            format!(
                "purge_every is {}: the retention purge runs at most once a second",
                humantime::format_duration(protection.purge_every)
            ),
            Some("use at least `1s`; the default is `1h`".into()),
        );
    }
}
