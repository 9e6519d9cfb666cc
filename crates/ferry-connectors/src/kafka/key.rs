//! The record key of a Kafka destination: a literal, or a template rendered per record.

use ferry_store::ClaimedDelivery;
use ferry_transform::{Template, TemplateContext, TemplateError, is_template};
use serde_json::Value;

/// A destination's record key, compiled.
#[derive(Debug)]
pub enum RecordKey {
    /// The same key for every record.
    Literal(String),
    /// Rendered from each record (as sent, after `map`) and its delivery.
    Template(Box<Template>),
}

impl RecordKey {
    /// Compile `text`: a template when it holds `{{` or `{%`, else a literal.
    pub fn compile(text: &str) -> Result<RecordKey, TemplateError> {
        if is_template(text) {
            Template::compile(text).map(|t| RecordKey::Template(Box::new(t)))
        } else {
            Ok(RecordKey::Literal(text.to_string()))
        }
    }

    /// The key of `body`, sent for `delivery`, or why it has none (the template failed, or
    /// the record is not JSON).
    pub fn render(&self, delivery: &ClaimedDelivery, body: &[u8]) -> Result<String, String> {
        let template = match self {
            RecordKey::Literal(key) => return Ok(key.clone()),
            RecordKey::Template(template) => template,
        };
        let event: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the key template needs a JSON record: {e}"))?;
        let ids = (delivery.event_id.to_string(), delivery.id.to_string());
        let ctx = TemplateContext {
            event: &event,
            event_id: &ids.0,
            event_type: delivery.event_type.as_deref(),
            flow: &delivery.lane.flow,
            tenant: ferry_config::tenants::tenant_of(&delivery.lane.flow),
            destination: &delivery.lane.destination,
            delivery_id: &ids.1,
        };
        template
            .render(&ctx)
            .map_err(|e| format!("the key template failed: {e}"))
    }
}
