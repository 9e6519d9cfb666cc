//! The `validate` step at ingress: the payload is checked against a schema before anything is
//! stored. A violation is answered `422 schema_violation` with every violation's JSON pointer
//! (extension member `violations`); an event whose type has no schema is accepted, or
//! answered `422 unknown_event_type` when the step says `unknown_type: reject`.

use axum::http::StatusCode;
use ferry_config::{Step, UnknownType};
use ferry_schema::SchemaRegistry;
use serde_json::Value;

use crate::problem::Problem;

/// Most violations listed in one answer (the detail says how many there were).
pub const MAX_VIOLATIONS_SHOWN: usize = 100;

/// One `validate` step of a flow, as ingress runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateRule {
    /// Which schema the payload is checked against.
    pub schema: SchemaChoice,
    /// What to do when the event's type has no schema (only for [`SchemaChoice::ByEventType`]).
    pub unknown_type: UnknownType,
}

/// Which schema a `validate` step checks against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChoice {
    /// The schema of this name (`validate: { schema: ... }`).
    Named(String),
    /// The schema named like the event's type (from the flow's `event_type` pointer, or the
    /// CloudEvents `type`).
    ByEventType,
}

/// The `validate` steps among a flow's steps, in order.
pub fn rules(steps: &[Step]) -> Vec<ValidateRule> {
    steps
        .iter()
        .filter_map(|step| match step {
            Step::Validate(v) => Some(ValidateRule {
                schema: v
                    .schema
                    .clone()
                    .map_or(SchemaChoice::ByEventType, SchemaChoice::Named),
                unknown_type: v.unknown_type,
            }),
            _ => None,
        })
        .collect()
}

/// Run every rule on `payload` (an event of type `event_type`). The first failing rule
/// decides the answer.
pub fn check(
    rules: &[ValidateRule],
    schemas: &SchemaRegistry,
    event_type: Option<&str>,
    payload: &Value,
) -> Result<(), Problem> {
    for rule in rules {
        let name = match (&rule.schema, event_type) {
            (SchemaChoice::Named(name), _) => name.as_str(),
            (SchemaChoice::ByEventType, Some(t)) if schemas.contains(t) => t,
            (SchemaChoice::ByEventType, found) => match rule.unknown_type {
                UnknownType::Accept => continue,
                UnknownType::Reject => return Err(unknown_type(found)),
            },
        };
        if let Err(violations) = schemas.validate(name, payload) {
            return Err(violation(name, violations));
        }
    }
    Ok(())
}

fn unknown_type(found: Option<&str>) -> Problem {
    let detail = match found {
        Some(t) => format!(
            "no schema is declared for event type `{}`; this flow refuses events of unknown types",
            t.chars().take(128).collect::<String>()
        ),
        None => "the event has no type, so no schema applies; this flow refuses events of \
                 unknown types"
            .to_string(),
    };
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_event_type",
        "Unknown event type",
        detail,
    )
}

fn violation(schema: &str, violations: Vec<ferry_schema::Violation>) -> Problem {
    let total = violations.len();
    let shown: Vec<_> = violations.into_iter().take(MAX_VIOLATIONS_SHOWN).collect();
    let plural = if total == 1 { "" } else { "s" };
    let mut detail = format!("the event breaks schema `{schema}`: {total} violation{plural}");
    if total > shown.len() {
        detail.push_str(&format!(" (the first {} are listed)", shown.len()));
    }
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "schema_violation",
        "Schema violation",
        detail,
    )
    .with_extension(
        "violations",
        serde_json::to_value(shown).unwrap_or(Value::Null),
    )
}
