//! Checks of `settings:`.

use super::Checker;
use super::rules;
use crate::locate::Part;

pub(super) fn check(c: &mut Checker) {
    let Some(file) = c.origins.settings else {
        return;
    };
    let settings = &c.config.settings;
    if let Err((message, help)) = rules::body_bytes(settings.ingress.max_body_bytes) {
        c.error(
            file,
            &["settings", "ingress", "max_body_bytes"],
            Part::Value,
            message,
            help,
        );
    }
    if settings
        .data_dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        c.error(
            file,
            &["settings", "data_dir"],
            Part::Value,
            "data_dir is empty".to_string(),
            Some("leave it out for the default `./ferry-data`".to_string()),
        );
    }
}
