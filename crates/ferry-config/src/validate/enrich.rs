//! Checks of each destination's `enrich` lookup that need no compiler: the URL (a literal
//! scheme and host; the early egress check when the host is an address literal or
//! `localhost`), the field the response goes into, the headers and the durations. (The URL
//! template itself is compiled with the other templates, outside this crate.)

use super::Checker;
use super::destinations::CREDENTIAL_HEADERS;
use super::resilience::{hub_policy, lenient_policy, refusal_at};
use super::rules;
use super::transforms::templated_origin;
use crate::locate::Part;
use crate::model::{Destination, HeaderValue};
use crate::sources::FileId;
use crate::steps::EnrichConfig;

/// Longest `into` field name.
const MAX_FIELD_LEN: usize = 128;

pub(super) fn check(c: &mut Checker) {
    for (flow, def) in &c.config.flows {
        let Some(file) = c.flow_file(flow) else {
            continue;
        };
        for (name, dest) in &def.destinations {
            if let Some(enrich) = &dest.enrich {
                destination(
                    c,
                    file,
                    &["flows", flow, "destinations", name],
                    dest,
                    enrich,
                );
            }
        }
    }
}

fn destination(
    c: &mut Checker,
    file: FileId,
    base: &[&str],
    dest: &Destination,
    enrich: &EnrichConfig,
) {
    let mut found: Vec<(Vec<String>, Part, rules::Broken)> = Vec::new();
    let mut error = |field: &[&str], part: Part, broken: rules::Broken| {
        found.push((
            field.iter().map(|f| (*f).to_owned()).collect(),
            part,
            broken,
        ));
    };

    if templated_origin(&enrich.url) {
        let message = "a URL template must write out its scheme and host: templates fill in \
                       the path and query only";
        let help = "e.g. `https://crm.example.com/customers/{{ event.customer_id }}`";
        error(
            &["url"],
            Part::Value,
            (message.to_owned(), Some(help.to_owned())),
        );
    } else if let Err(broken) = rules::destination_url(&enrich.url) {
        error(&["url"], Part::Value, broken);
    } else {
        // The lookup obeys the destination's allow-list, like its deliveries.
        let allow: &[String] = dest.http.as_ref().map_or(&[], |h| &h.egress_allow);
        let policy = hub_policy(c).merged(&lenient_policy(allow));
        if let Err(refused) = policy.static_refusal(&enrich.url) {
            let place =
                "this destination's `http.egress_allow` (or `settings.delivery.egress_allow`)";
            error(&["url"], Part::Value, refusal_at(&refused, place));
        }
    }
    if let Err(broken) = field_name(&enrich.into) {
        error(&["into"], Part::Value, broken);
    }
    if let Err(broken) = rules::positive("timeout", enrich.timeout) {
        error(&["timeout"], Part::Value, broken);
    }
    for (header, value) in &enrich.headers {
        if let Err(broken) = rules::header_name(header) {
            error(&["headers", header.as_str()], Part::Key, broken);
        }
        if let HeaderValue::Literal(literal) = value
            && let Err(broken) = rules::header_value(literal)
        {
            error(&["headers", header.as_str()], Part::Value, broken);
        }
    }
    for (field, part, (message, help)) in found {
        let path = at(base, &field);
        c.error(file, &path, part, message, help);
    }
    for (header, value) in &enrich.headers {
        if matches!(value, HeaderValue::Literal(_))
            && CREDENTIAL_HEADERS.contains(&header.to_ascii_lowercase().as_str())
        {
            let field = ["headers".to_owned(), header.clone()];
            let path = at(base, &field);
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
}

/// `base` + `enrich` + `field`.
fn at<'a>(base: &[&'a str], field: &'a [String]) -> Vec<&'a str> {
    base.iter()
        .copied()
        .chain(["enrich"])
        .chain(field.iter().map(String::as_str))
        .collect()
}

/// The field of the event the response is merged into: one name, `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn field_name(name: &str) -> Result<(), rules::Broken> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok && name.len() <= MAX_FIELD_LEN {
        return Ok(());
    }
    let help = match name.strip_prefix('.') {
        Some(bare) if field_name(bare).is_ok() => format!("write the field's name: `{bare}`"),
        _ => format!(
            "one field of the event's top level: letters, digits and `_`, not starting with a \
             digit, at most {MAX_FIELD_LEN} characters (e.g. `customer`)"
        ),
    };
    let shown: String = name.chars().take(MAX_FIELD_LEN + 1).collect();
    Err((format!("`{shown}` is not a field name"), Some(help)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names() {
        for ok in ["customer", "_x", "a1_b"] {
            assert!(field_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".customer", "1a", "a.b", "a-b", "/a"] {
            assert!(field_name(bad).is_err(), "{bad}");
        }
        let (_, help) = field_name(".customer").unwrap_err();
        assert!(help.unwrap().contains("`customer`"));
    }
}
