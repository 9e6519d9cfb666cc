//! Checks of each flow and its source: names, system references, webhook paths, pointers,
//! signature settings.

use std::collections::HashMap;

use super::Checker;
use super::rules;
use crate::locate::Part;
use crate::model::{EventIdSource, Flow, SignatureConfig, WebhookSource, webhook_path};
use crate::sources::FileId;

pub(super) fn check(c: &mut Checker) {
    // Webhook path -> the flow that took it first.
    let mut paths: HashMap<String, &str> = HashMap::new();
    for (name, flow) in &c.config.flows {
        let Some(file) = c.flow_file(name) else {
            continue;
        };
        if let Err((message, help)) = rules::name("flow", name) {
            c.error(file, &["flows", name], Part::Key, message, help);
        }
        if flow.destinations.is_empty() {
            c.error(
                file,
                &["flows", name, "destinations"],
                Part::Value,
                "a flow needs at least one destination".to_string(),
                None,
            );
        }
        check_owner(c, file, name, flow);
        match &flow.source {
            crate::model::Source::Webhook(src) => webhook(c, file, name, src, &mut paths),
            crate::model::Source::Pull(src) => {
                if !c.origins.system_names.contains(&src.system) {
                    let (message, help) = undeclared_system(c, &src.system);
                    let field = ["flows", name.as_str(), "source", "pull", "system"];
                    c.error(file, &field, Part::Value, message, help);
                }
            }
            crate::model::Source::Postgres(src) => {
                if !c.origins.system_names.contains(&src.system) {
                    let (message, help) = undeclared_system(c, &src.system);
                    let field = ["flows", name.as_str(), "source", "postgres", "system"];
                    c.error(file, &field, Part::Value, message, help);
                }
            }
            // Checked in `queue_sources`.
            crate::model::Source::Nats(_)
            | crate::model::Source::Rabbitmq(_)
            | crate::model::Source::Kafka(_) => {}
        }
    }
}

fn check_owner(c: &mut Checker, file: FileId, name: &str, flow: &Flow) {
    if flow.owner.as_deref().is_some_and(|o| o.trim().is_empty()) {
        c.error(
            file,
            &["flows", name, "owner"],
            Part::Value,
            "owner is empty".to_string(),
            None,
        );
    }
}

fn webhook<'a>(
    c: &mut Checker,
    file: FileId,
    flow: &'a str,
    src: &WebhookSource,
    paths: &mut HashMap<String, &'a str>,
) {
    let at = |field: &'static str| ["flows", flow, "source", "webhook", field];

    if !c.origins.system_names.contains(&src.system) {
        let (message, help) = undeclared_system(c, &src.system);
        c.error(file, &at("system"), Part::Value, message, help);
    }

    let path = webhook_path(flow, src);
    if src.path.is_some()
        && let Err((message, help)) = rules::webhook_path(&path)
    {
        c.error(file, &at("path"), Part::Value, message, help);
    }
    match paths.get(&path) {
        Some(first) => {
            let (field, part) = if src.path.is_some() {
                (
                    vec!["flows", flow, "source", "webhook", "path"],
                    Part::Value,
                )
            } else {
                (vec!["flows", flow], Part::Key)
            };
            let other = c
                .flow_file(first)
                .map(|f| c.sources.describe(f, &["flows", first]));
            let message = format!(
                "webhook path `{path}` is already used by flow `{first}`{}",
                other.map(|o| format!(" ({o})")).unwrap_or_default()
            );
            let help = Some("give one of the flows its own `path:`".to_string());
            c.error(file, &field, part, message, help);
        }
        None => {
            paths.insert(path, flow);
        }
    }

    if let Some(Err((message, help))) = src.event_type.as_deref().map(rules::json_pointer) {
        c.error(file, &at("event_type"), Part::Value, message, help);
    }
    match &src.event_id {
        Some(EventIdSource::Header(header)) => {
            if let Err((message, help)) = rules::header_name(header) {
                let field = ["flows", flow, "source", "webhook", "event_id", "header"];
                c.error(file, &field, Part::Value, message, help);
            }
        }
        Some(EventIdSource::JsonPointer(pointer)) => {
            if let Err((message, help)) = rules::json_pointer(pointer) {
                let field = [
                    "flows",
                    flow,
                    "source",
                    "webhook",
                    "event_id",
                    "json_pointer",
                ];
                c.error(file, &field, Part::Value, message, help);
            }
        }
        None => {}
    }
    if let Some(Err((message, help))) = src.max_body_bytes.map(rules::body_bytes) {
        c.error(file, &at("max_body_bytes"), Part::Value, message, help);
    }
    signature(c, file, flow, &src.signature);
    dedupe_key(c, file, flow, src);
}

/// A warning when nothing says where the sender's event id is: neither `event_id` nor a
/// scheme that knows its vendor's id. Re-sends (a sender's retry after a time-out, a
/// "resend" button) are then new events, delivered again, unless the sender happens to add
/// one of the generic headers.
fn dedupe_key(c: &mut Checker, file: FileId, flow: &str, src: &WebhookSource) {
    if src.event_id.is_some() || src.signature.vendor_event_id().is_some() {
        return;
    }
    let scheme = src.signature.scheme();
    let why = match &src.signature {
        SignatureConfig::Stripe { .. } => {
            "a `stripe` scheme with its own `header` is another vendor's, whose event id Ferry              does not know"
                .to_string()
        }
        _ => format!("the `{scheme}` scheme says nothing about the sender's event id"),
    };
    let message = format!(
        "no dedupe key: {why}, so a re-sent event is stored and delivered again (unless the          request carries a `webhook-id`, `svix-id` or `Idempotency-Key` header)"
    );
    let help = Some(
        "set `event_id` to where the sender puts its event id: `{ json_pointer: /id }` for an          id in the body, `{ header: X-Event-Id }` for a header"
            .to_string(),
    );
    let field = ["flows", flow, "source", "webhook", "signature", scheme];
    c.warning(file, &field, Part::Key, message, help);
}

fn signature(c: &mut Checker, file: FileId, flow: &str, sig: &SignatureConfig) {
    let scheme = sig.scheme();
    let at = |field: &'static str| {
        [
            "flows",
            flow,
            "source",
            "webhook",
            "signature",
            scheme,
            field,
        ]
    };
    match sig {
        SignatureConfig::StandardWebhooks { tolerance, .. } => {
            if let Err((message, help)) = rules::positive("tolerance", *tolerance) {
                c.error(file, &at("tolerance"), Part::Value, message, help);
            }
        }
        SignatureConfig::Stripe {
            tolerance, header, ..
        } => {
            if let Err((message, help)) = rules::positive("tolerance", *tolerance) {
                c.error(file, &at("tolerance"), Part::Value, message, help);
            }
            if let Some(Err((message, help))) = header.as_deref().map(rules::header_name) {
                c.error(file, &at("header"), Part::Value, message, help);
            }
        }
        SignatureConfig::Hmac { header, .. } => {
            if let Err((message, help)) = rules::header_name(header) {
                c.error(file, &at("header"), Part::Value, message, help);
            }
        }
        SignatureConfig::Basic { username, .. } => {
            if username.is_empty() || username.contains(':') {
                let message = "a Basic username is not empty and has no `:`".to_string();
                c.error(file, &at("username"), Part::Value, message, None);
            }
        }
        SignatureConfig::Github { .. }
        | SignatureConfig::Bearer { .. }
        | SignatureConfig::None {} => {}
    }
}

/// The message for a reference to a system nobody declared, with a suggestion when a
/// declared name is close.
pub(super) fn undeclared_system(c: &Checker, system: &str) -> (String, Option<String>) {
    let close =
        c.origins.system_names.iter().find(|declared| {
            declared.eq_ignore_ascii_case(system) || one_edit_apart(declared, system)
        });
    let help = match close {
        Some(name) => format!("did you mean `{name}`?"),
        None => format!("declare it: `systems: {{ {system}: {{ owner: ... }} }}`"),
    };
    (
        format!("system `{system}` is not declared under `systems:`"),
        Some(help),
    )
}

fn one_edit_apart(a: &str, b: &str) -> bool {
    a.len() <= 64 && b.len() <= 64 && crate::describe::edit_distance(a, b) <= 1
}
