//! Checks of the flow steps and destination transforms that need no compiler: a `route`
//! names only destinations of its flow, templates fill in a URL's path and query only, and
//! settings that exclude each other are not combined. (Ferry compiles the VRL programs and
//! templates themselves at load, outside this crate, and locates their errors through
//! [`crate::SourceMap`].)

use super::Checker;
use crate::locate::Part;
use crate::model::{Destination, Flow, HeaderValue};
use crate::sources::FileId;
use crate::steps::{BodyFormat, Step};

/// Whether a configured string is a template (holds `{{` or `{%`).
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

pub(super) fn check(c: &mut Checker) {
    for (name, flow) in &c.config.flows {
        let Some(file) = c.flow_file(name) else {
            continue;
        };
        routes(c, file, name, flow);
        for (dest, def) in &flow.destinations {
            destination(c, file, name, dest, def);
        }
    }
}

fn routes(c: &mut Checker, file: FileId, flow_name: &str, flow: &Flow) {
    for (i, step) in flow.steps.iter().enumerate() {
        let Step::Route(route) = step else {
            continue;
        };
        let index = i.to_string();
        let at = ["flows", flow_name, "steps", index.as_str(), "route"];
        if route.is_empty() {
            c.warning(
                file,
                &at,
                Part::Value,
                "this `route` names no destination: every destination gets every event".to_string(),
                Some(
                    "name destinations with a condition each: `route: { crm: '.total > 100' }`"
                        .to_string(),
                ),
            );
        }
        for dest in route.keys() {
            if flow.destinations.contains_key(dest) {
                continue;
            }
            let names: Vec<String> = flow.destinations.keys().map(|d| format!("`{d}`")).collect();
            let close = flow
                .destinations
                .keys()
                .filter(|d| d.len() <= 64 && dest.len() <= 64)
                .map(|d| (crate::describe::edit_distance(d, dest), d))
                .filter(|(distance, _)| *distance <= 2)
                .min()
                .map(|(_, d)| d);
            let help = match close {
                Some(name) => format!("did you mean `{name}`?"),
                None => format!("this flow's destinations: {}", names.join(", ")),
            };
            let field: Vec<&str> = at.iter().copied().chain([dest.as_str()]).collect();
            c.error(
                file,
                &field,
                Part::Key,
                format!("`route` names `{dest}`, which is not a destination of flow `{flow_name}`"),
                Some(help),
            );
        }
    }
}

fn destination(c: &mut Checker, file: FileId, flow: &str, name: &str, dest: &Destination) {
    let base = ["flows", flow, "destinations", name, "http"];
    let at = |field: &'static str| -> Vec<&str> { base.iter().copied().chain([field]).collect() };
    // Templates belong to HTTP requests (URL, headers, body); other kinds have none.
    let Some(http) = &dest.http else {
        return;
    };
    let url_template = is_template(&http.url);
    if templated_origin(&http.url) {
        c.error(
            file,
            &at("url"),
            Part::Value,
            "a URL template must write out its scheme and host: templates fill in the path and query only".to_string(),
            Some("e.g. `https://crm.example.com/customers/{{ event.customer.id }}`".to_string()),
        );
    }
    let header_templates: Vec<&String> = http
        .headers
        .iter()
        .filter(|(_, v)| matches!(v, HeaderValue::Literal(l) if is_template(l)))
        .map(|(k, _)| k)
        .collect();
    if dest.batch.is_some() {
        let why = "a batching destination sends many events in one call";
        if url_template {
            c.error(
                file,
                &at("url"),
                Part::Value,
                format!("{why}: its URL cannot be a template of one event"),
                Some("write a fixed URL, or turn batching off".to_string()),
            );
        }
        for header in header_templates {
            let field: Vec<&str> = at("headers").into_iter().chain([header.as_str()]).collect();
            c.error(
                file,
                &field,
                Part::Value,
                format!("{why}: its headers cannot be templates of one event"),
                Some("write a fixed value, or turn batching off".to_string()),
            );
        }
        if http.body.is_some() {
            c.error(
                file,
                &at("body"),
                Part::Value,
                format!("{why}: its body is the batch of events, not a template"),
                Some("remove `body`, or turn batching off".to_string()),
            );
        }
    }
    if http.body.is_some() && http.format == BodyFormat::Cloudevents {
        c.error(
            file,
            &at("body"),
            Part::Value,
            "`body` (a template) and `format: cloudevents` each say what the body is: give one"
                .to_string(),
            None,
        );
    }
}

/// Whether `url` is a template whose scheme or host is (partly) templated: an error.
pub(crate) fn templated_origin(url: &str) -> bool {
    is_template(url) && !literal_origin(url)
}

/// Whether the part of a URL template before its first template tag holds the whole
/// `scheme://authority/`, so a rendered URL always goes to the host written.
fn literal_origin(url: &str) -> bool {
    let first_tag = [url.find("{{"), url.find("{%")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(url.len());
    let prefix = &url[..first_tag];
    prefix
        .split_once("://")
        .is_some_and(|(_, rest)| rest.find(['/', '?', '#']).is_some_and(|i| i > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_templates_keep_their_origin() {
        assert!(literal_origin("https://x.example/customers/{{ event.id }}"));
        assert!(literal_origin("https://x.example?id={{ event.id }}"));
        assert!(!literal_origin("https://{{ event.host }}/x"));
        assert!(!literal_origin("https://x{{ event.suffix }}.example/"));
        assert!(!literal_origin("{{ event.url }}"));
        assert!(is_template("a{% if x %}b{% endif %}"));
        assert!(!is_template("https://x.example/{id}"));
    }
}
