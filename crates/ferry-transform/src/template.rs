//! String templates (`minijinja`): destination URLs, header values and non-JSON bodies.
//!
//! Bounded: every render has [`TEMPLATE_FUEL`] units of fuel (instructions and output bytes
//! both use it up), so no template runs or writes without end. Strict: a variable or field
//! that does not exist is an error, not an empty string (test with `is defined`). Closed:
//! there is no loader, so `include`, `import` and `extends` find nothing; templates see only
//! their context ([`TemplateContext`]).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use minijinja::{Environment, UndefinedBehavior, Value};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

/// Fuel of one render: enough for any URL, header or form body; a bound on a mistake (a loop
/// over a huge array, a runaway string).
pub const TEMPLATE_FUEL: u64 = 100_000;

/// The variables a template sees.
const VARIABLES: &[&str] = &[
    "event",
    "event_id",
    "event_type",
    "flow",
    "tenant",
    "destination",
    "delivery_id",
];

/// The one template of a template's environment.
const NAME: &str = "template";

/// Characters left as they are when a value is written into a URL: RFC 3986 unreserved.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How a template writes the values it interpolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// As they are (header values, bodies).
    Text,
    /// Percent-encoded (RFC 3986 unreserved characters stay), so a value cannot change the
    /// URL's structure: `{{ event.id }}` with id `a/b?c` writes `a%2Fb%3Fc`. A value marked
    /// `| safe` is written as it is.
    Url,
}

/// What a template sees when a delivery is rendered. `E` is the event's type: a JSON value,
/// or a VRL [`crate::Event`] (a `map`'s output, rendered without a conversion).
#[derive(Debug, Clone, Serialize)]
pub struct TemplateContext<'a, E: Serialize + ?Sized = serde_json::Value> {
    /// The event's payload (after the destination's `map`, when it has one).
    pub event: &'a E,
    /// The event's id (`fev_…`).
    pub event_id: &'a str,
    /// The event's type, when the flow reads one.
    pub event_type: Option<&'a str>,
    /// The flow's name.
    pub flow: &'a str,
    /// The tenant a flow run per tenant runs for (`acme` in `orders@acme`); none otherwise.
    pub tenant: Option<&'a str>,
    /// The destination's name.
    pub destination: &'a str,
    /// The delivery's id (`dlv_…`), also its idempotency key.
    pub delivery_id: &'a str,
}

/// A compiled template.
pub struct Template {
    env: Environment<'static>,
    kind: TemplateKind,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Why a template does not compile or render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// What went wrong, as minijinja says it.
    pub message: String,
    /// 1-based line within the template, when known.
    pub line: Option<usize>,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line} of the template)")?;
        }
        Ok(())
    }
}

impl std::error::Error for TemplateError {}

impl From<minijinja::Error> for TemplateError {
    fn from(err: minijinja::Error) -> Self {
        let mut message = err.kind().to_string();
        if let Some(detail) = err.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        TemplateError {
            message,
            line: err.line(),
        }
    }
}

/// Whether a configured string is a template (holds `{{` or `{%`) rather than a literal.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

impl Template {
    /// Compile a text template (values written as they are).
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        Self::compile_as(source, TemplateKind::Text)
    }

    /// Compile a URL template (values percent-encoded, see [`TemplateKind::Url`]).
    pub fn compile_url(source: &str) -> Result<Template, TemplateError> {
        Self::compile_as(source, TemplateKind::Url)
    }

    /// Compile `source` as a template of `kind`. Syntax errors, and variables other than
    /// the context's (`event`, `event_id`, `event_type`, `flow`, `destination`,
    /// `delivery_id`), are errors.
    pub fn compile_as(source: &str, kind: TemplateKind) -> Result<Template, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        if kind == TemplateKind::Url {
            env.set_formatter(url_formatter);
        }
        env.add_template_owned(NAME, source.to_string())?;
        let template = env.get_template(NAME)?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !VARIABLES.contains(&v.as_str()) && env.globals().all(|(g, _)| g != v))
            .collect();
        unknown.sort();
        if let Some(first) = unknown.first() {
            let line = source
                .lines()
                .position(|l| l.contains(first.as_str()))
                .map(|i| i + 1);
            return Err(TemplateError {
                message: format!(
                    "unknown variable `{first}`: templates see {}",
                    VARIABLES
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                line,
            });
        }
        Ok(Template { env, kind })
    }

    /// How the template writes values.
    pub fn kind(&self) -> TemplateKind {
        self.kind
    }

    /// Render with `ctx` (a [`TemplateContext`], or any serializable map of the same
    /// variables).
    pub fn render<C: Serialize + ?Sized>(&self, ctx: &C) -> Result<String, TemplateError> {
        let template = self.env.get_template(NAME)?;
        // Should minijinja panic, the render fails instead of the task running it.
        catch_unwind(AssertUnwindSafe(|| {
            template.render(Value::from(minijinja::value::Serde(ctx)))
        }))
        .map_err(|_| TemplateError {
            message: "the template failed inside minijinja (a panic)".to_string(),
            line: None,
        })?
        .map_err(TemplateError::from)
    }
}

/// Writes values percent-encoded, except safe strings; undefined values go to the default
/// formatter (which refuses them: strict undefined).
fn url_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if value.is_undefined() || value.is_safe() {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = value.to_string();
    for part in utf8_percent_encode(&text, URL_VALUE) {
        out.write_str(part).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(event: &serde_json::Value) -> TemplateContext<'_> {
        TemplateContext {
            event,
            event_id: "evt_1",
            event_type: Some("order.created"),
            flow: "orders",
            tenant: ferry_config::tenants::tenant_of("orders"),
            destination: "crm",
            delivery_id: "dlv_1",
        }
    }

    #[test]
    fn a_tenant_flow_names_its_tenant() {
        let t = Template::compile("{% if tenant %}tenants/{{ tenant }}{% else %}shared{% endif %}")
            .unwrap();
        let event = json!({});
        assert_eq!(t.render(&ctx(&event)).unwrap(), "shared");
        let tenant_ctx = TemplateContext {
            flow: "orders@acme",
            tenant: ferry_config::tenants::tenant_of("orders@acme"),
            ..ctx(&event)
        };
        assert_eq!(t.render(&tenant_ctx).unwrap(), "tenants/acme");
        let url = Template::compile_url("https://crm.example.com/t/{{ tenant }}/orders").unwrap();
        assert_eq!(
            url.render(&tenant_ctx).unwrap(),
            "https://crm.example.com/t/acme/orders"
        );
    }

    #[test]
    fn renders_the_context() {
        let t = Template::compile("{{ flow }}/{{ destination }}: {{ event.customer.name | upper }} ({{ event_type }}, {{ delivery_id }})").unwrap();
        let event = json!({"customer": {"name": "ada"}});
        assert_eq!(
            t.render(&ctx(&event)).unwrap(),
            "orders/crm: ADA (order.created, dlv_1)"
        );
    }

    #[test]
    fn url_values_are_percent_encoded_unless_safe() {
        let t = Template::compile_url("http://x/customers/{{ event.id }}?q={{ event.q }}").unwrap();
        let event = json!({"id": "a/b?c", "q": "é &"});
        assert_eq!(
            t.render(&ctx(&event)).unwrap(),
            "http://x/customers/a%2Fb%3Fc?q=%C3%A9%20%26"
        );
        let t = Template::compile_url("{{ event.base | safe }}/x").unwrap();
        let event = json!({"base": "http://h/p"});
        assert_eq!(t.render(&ctx(&event)).unwrap(), "http://h/p/x");
    }

    #[test]
    fn missing_fields_are_errors() {
        let t = Template::compile("{{ event.nope }}").unwrap();
        let err = t.render(&ctx(&json!({}))).unwrap_err();
        assert!(err.message.contains("undefined"), "{err}");
        let t = Template::compile("{% if event.nope is defined %}y{% else %}n{% endif %}").unwrap();
        assert_eq!(t.render(&ctx(&json!({}))).unwrap(), "n");
    }

    #[test]
    fn compile_errors_name_the_line_and_unknown_variables() {
        let err = Template::compile("a\n{{ event.x }").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        let err = Template::compile("{{ evnt.x }}").unwrap_err();
        assert!(err.message.contains("unknown variable `evnt`"), "{err}");
        // Globals (such as `range`) are not variables of the context, but are allowed.
        Template::compile("{% for i in range(2) %}{{ i }}{% endfor %}").unwrap();
    }

    #[test]
    fn fuel_bounds_a_render() {
        let t = Template::compile(
            "{% for i in range(1000) %}{% for j in range(1000) %}{{ j }}{% endfor %}{% endfor %}",
        )
        .unwrap();
        let err = t.render(&ctx(&json!({}))).unwrap_err();
        assert!(err.message.contains("fuel"), "{err}");
    }

    #[test]
    fn no_file_system() {
        // Without a loader (or the `multi_template` feature) there is no `include` at all.
        let err = Template::compile("{% include '/etc/passwd' %}").unwrap_err();
        assert!(err.message.contains("include"), "{err}");
    }

    #[test]
    fn loop_variables_are_not_unknown() {
        let t =
            Template::compile("{% for i in event.items %}{{ loop.index }}:{{ i }} {% endfor %}")
                .unwrap();
        let event = json!({"items": ["a", "b"]});
        assert_eq!(t.render(&ctx(&event)).unwrap(), "1:a 2:b ");
    }

    #[test]
    fn detects_templates() {
        assert!(is_template("http://x/{{ event.id }}"));
        assert!(!is_template("http://x/plain"));
    }
}
