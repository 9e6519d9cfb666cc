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
    server(c, file);
    // Port 0 asks for any free port, which is never the same one twice.
    if settings.admin.listen == Some(settings.listen) && settings.listen.port() != 0 {
        c.error(
            file,
            &["settings", "admin", "listen"],
            Part::Value,
            format!(
                "admin.listen is the same address as listen ({})",
                settings.listen
            ),
            Some("give the admin API another address, or leave admin.listen out".to_string()),
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

/// `settings.server`: every limit must let a request through, and a body of the largest
/// accepted size must fit in the body memory budget.
fn server(c: &mut Checker, file: crate::sources::FileId) {
    let server = &c.config.settings.server;
    let max_body = c.config.settings.ingress.max_body_bytes;
    let mut broken: Vec<(&str, String, Option<String>)> = Vec::new();
    if server.max_connections == 0 {
        broken.push((
            "max_connections",
            "max_connections is 0: no connection would be served".into(),
            None,
        ));
    }
    for (field, value) in [
        ("header_timeout", server.header_timeout),
        ("body_timeout", server.body_timeout),
        ("idle_timeout", server.idle_timeout),
    ] {
        if value.is_zero() {
            broken.push((
                field,
                format!("{field} is 0: every request would time out"),
                None,
            ));
        }
    }
    if server.min_body_rate == 0 {
        broken.push((
            "min_body_rate",
            "min_body_rate is 0: a body could trickle in for the whole body_timeout".into(),
            Some("use at least 1 (bytes per second); the default is 4096".into()),
        ));
    }
    if server.body_memory < max_body {
        broken.push((
            "body_memory",
            format!(
                "body_memory ({}) is smaller than ingress.max_body_bytes ({max_body}): the largest \
                 accepted body could never be read",
                server.body_memory
            ),
            Some("raise body_memory (default 64 MiB) or lower max_body_bytes".into()),
        ));
    }
    for (field, message, help) in broken {
        c.error(
            file,
            &["settings", "server", field],
            Part::Value,
            message,
            help,
        );
    }
}
