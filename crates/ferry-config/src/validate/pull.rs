//! Checks of pull sources: the URL (and the early egress check), headers, the cron
//! schedule, every JSON pointer, the cursor's parameters, timeouts and limits. (The polled
//! system is checked with the other flow checks.)

use super::Checker;
use super::destinations::CREDENTIAL_HEADERS;
use super::resilience::{egress, hub_policy, lenient_policy, refusal_at};
use super::rules;
use crate::locate::Part;
use crate::model::{HeaderValue, Source};
use crate::schedule::Schedule;
use crate::sources::FileId;
use crate::steps::{PullCursor, PullSource};

pub(super) fn check(c: &mut Checker) {
    for (name, flow) in &c.config.flows {
        let (Some(file), Source::Pull(src)) = (c.flow_file(name), &flow.source) else {
            continue;
        };
        // Its `steps` run on each record like a webhook flow's on each event: they are
        // checked with every flow's steps.
        source(c, file, name, src);
    }
}

/// A finding: the field path under `source.pull`, the part, message and help.
type Finding = (Vec<String>, Part, String, Option<String>);

fn source(c: &mut Checker, file: FileId, flow: &str, src: &PullSource) {
    let base = ["flows", flow, "source", "pull"];
    egress(
        c,
        file,
        &[&base[..], &["egress_allow"]].concat(),
        &src.egress_allow,
    );
    let mut found: Vec<Finding> = Vec::new();
    let mut error = |field: &[&str], part: Part, (message, help): rules::Broken| {
        found.push((
            field.iter().map(|f| (*f).to_owned()).collect(),
            part,
            message,
            help,
        ));
    };

    match rules::destination_url(&src.url) {
        Err(broken) => error(&["url"], Part::Value, broken),
        Ok(()) => {
            let policy = hub_policy(c).merged(&lenient_policy(&src.egress_allow));
            if let Err(refused) = policy.static_refusal(&src.url) {
                let place = "this source's `egress_allow` (or `settings.delivery.egress_allow`)";
                error(&["url"], Part::Value, refusal_at(&refused, place));
            }
        }
    }
    if let Err(message) = Schedule::parse(&src.schedule) {
        let help = "e.g. `*/15 * * * *` (every 15 minutes) or `0 2 * * *` (02:00 UTC daily)";
        error(&["schedule"], Part::Value, (message, Some(help.to_owned())));
    }
    let pointers = [
        ("records", Some(&src.records)),
        ("record_id", src.record_id.as_ref()),
        ("event_type", src.event_type.as_ref()),
    ];
    for (field, pointer) in pointers {
        if let Some(Err(broken)) = pointer.map(|p| rules::json_pointer(p)) {
            error(&[field], Part::Value, broken);
        }
    }
    cursor(&src.cursor, &mut error);
    if let Err(broken) = rules::positive("timeout", src.timeout) {
        error(&["timeout"], Part::Value, broken);
    }
    if src.max_pages == 0 {
        let broken = ("max_pages must be at least 1".to_owned(), None);
        error(&["max_pages"], Part::Value, broken);
    }
    if let Some(Err(broken)) = src.freshness.map(|f| rules::positive("freshness", f)) {
        error(&["freshness"], Part::Value, broken);
    }
    for (header, value) in &src.headers {
        if let Err(broken) = rules::header_name(header) {
            error(&["headers", header], Part::Key, broken);
        }
        if let HeaderValue::Literal(literal) = value
            && let Err(broken) = rules::header_value(literal)
        {
            error(&["headers", header], Part::Value, broken);
        }
    }
    for (field, part, message, help) in found {
        let path: Vec<&str> = base
            .iter()
            .copied()
            .chain(field.iter().map(String::as_str))
            .collect();
        c.error(file, &path, part, message, help);
    }
    warnings(c, file, &base, src);
}

/// The cursor's pointers and query parameters.
fn cursor(cursor: &PullCursor, error: &mut impl FnMut(&[&str], Part, rules::Broken)) {
    let param = |name: &str| -> Result<(), rules::Broken> {
        if name.trim().is_empty() {
            return Err(("the query parameter name is empty".to_owned(), None));
        }
        Ok(())
    };
    match cursor {
        PullCursor::PageToken { next, param: p } => {
            if let Err(broken) = rules::json_pointer(next) {
                error(&["cursor", "page_token", "next"], Part::Value, broken);
            }
            if let Err(broken) = param(p) {
                error(&["cursor", "page_token", "param"], Part::Value, broken);
            }
        }
        PullCursor::UpdatedSince {
            field, param: p, ..
        } => {
            if let Err(broken) = rules::json_pointer(field) {
                error(&["cursor", "updated_since", "field"], Part::Value, broken);
            }
            if let Err(broken) = param(p) {
                error(&["cursor", "updated_since", "param"], Part::Value, broken);
            }
        }
        PullCursor::Offset {
            param: p,
            limit_param,
            limit,
        } => {
            for (field, name) in [("param", p), ("limit_param", limit_param)] {
                if let Err(broken) = param(name) {
                    error(&["cursor", "offset", field], Part::Value, broken);
                }
            }
            if *limit == 0 {
                let broken = ("limit must be at least 1".to_owned(), None);
                error(&["cursor", "offset", "limit"], Part::Value, broken);
            }
        }
    }
}

fn warnings(c: &mut Checker, file: FileId, base: &[&str], src: &PullSource) {
    for (header, value) in &src.headers {
        if matches!(value, HeaderValue::Literal(_))
            && CREDENTIAL_HEADERS.contains(&header.to_ascii_lowercase().as_str())
        {
            let path: Vec<&str> = base.iter().copied().chain(["headers", header]).collect();
            c.warning(
                file,
                &path,
                Part::Value,
                format!("`{header}` is a credential written inline"),
                Some(format!(
                    "give it by reference: `{header}: {{ env: VAR_NAME }}`"
                )),
            );
        }
    }
    let rereads = match &src.cursor {
        PullCursor::PageToken { .. } => Some("the last page is read again at every run"),
        PullCursor::UpdatedSince { .. } => {
            Some("records updated at the cursor's time are read again at the next run")
        }
        PullCursor::Offset { .. } => None,
    };
    if let (None, Some(why)) = (&src.record_id, rereads) {
        let path: Vec<&str> = base.iter().copied().chain(["cursor"]).collect();
        c.warning(
            file,
            &path,
            Part::Key,
            format!("without `record_id`, records read twice are stored twice: {why}"),
            Some("set `record_id` to a JSON pointer to each record's id, e.g. `/id`".to_owned()),
        );
    }
}
