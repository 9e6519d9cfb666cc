//! Where a queue destination publishes (a NATS subject, a RabbitMQ routing key): a literal,
//! or a `minijinja` template rendered per delivery, like an HTTP destination's URL template
//! (`orders.{{ event.region }}`). The template sees the record sent as `event` (the mapped
//! event when the destination has a `map`) and the delivery's ids, flow and destination;
//! it renders with fuel ([`ferry_transform::TEMPLATE_FUEL`]) and strictly (a missing field
//! is an error).
//!
//! A template that fails to render, or renders an address the system cannot take, fails
//! the delivery for good (class `template_failed`): sending again would render the same.
//! The error names the template, never the rendered value (it is made of the event).

use std::borrow::Cow;

use ferry_store::ClaimedDelivery;
use ferry_transform::{Template, TemplateContext, TemplateError, is_template};
use serde_json::Value;

use crate::outcome::Failure;

/// The error class of a delivery whose address template failed.
pub(crate) const TEMPLATE_FAILED: &str = "template_failed";

/// Why a rendered address is unusable (without quoting it), if it is.
pub(crate) type Check = fn(&str) -> Option<&'static str>;

/// A destination's address: literal or template.
pub(crate) struct Address {
    /// What it is, for errors: `subject`, `routing key`.
    what: &'static str,
    /// As configured.
    source: String,
    /// `None` for a literal; the compiled template (or why it does not compile: `ferry
    /// validate` refuses that config, so only a hand-built connector gets here).
    template: Option<Result<Template, TemplateError>>,
    check: Check,
}

impl Address {
    /// The address `source` (a template when it holds `{{` or `{%`), checked after
    /// rendering with `check`.
    pub(crate) fn new(what: &'static str, source: &str, check: Check) -> Self {
        Self {
            what,
            source: source.to_string(),
            template: is_template(source).then(|| Template::compile(source)),
            check,
        }
    }

    /// The address as configured.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The address of `delivery`, sending `body`: the literal, or the template rendered.
    pub(crate) fn resolve(
        &self,
        delivery: &ClaimedDelivery,
        body: &[u8],
    ) -> Result<Cow<'_, str>, Failure> {
        let Some(template) = &self.template else {
            return Ok(Cow::Borrowed(&self.source));
        };
        let failed = |detail: String| {
            Failure::permanent(
                TEMPLATE_FAILED,
                format!("the {} template `{}` {detail}", self.what, self.source),
            )
        };
        let template = template
            .as_ref()
            .map_err(|e| failed(format!("does not compile: {e}")))?;
        // A record that is not JSON has no fields: `event` is null, and reading one fails.
        let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let ids = (delivery.event_id.to_string(), delivery.id.to_string());
        let context = TemplateContext {
            event: &event,
            event_id: &ids.0,
            event_type: delivery.event_type.as_deref(),
            flow: &delivery.lane.flow,
            tenant: ferry_config::tenants::tenant_of(&delivery.lane.flow),
            destination: &delivery.lane.destination,
            delivery_id: &ids.1,
        };
        let text = template
            .render(&context)
            .map_err(|e| failed(format!("failed: {e}")))?;
        if let Some(problem) = (self.check)(&text) {
            return Err(failed(format!(
                "rendered an unusable {}: {problem}",
                self.what
            )));
        }
        Ok(Cow::Owned(text))
    }
}
