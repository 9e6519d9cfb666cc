//! The `dedupe` step: drop an event whose key was already seen within a window.
//!
//! The key is a VRL expression evaluated at ingress; the store checks and records it in the
//! same transaction as the append ([`ferry_store::DedupeWindow`]), so the window survives
//! restarts and a crash can never record a key without its event. An event within the
//! window is answered like a duplicate (`200`, nothing stored) and counted by
//! `ferry_ingress_accepted_total{outcome="duplicate"}`.
//!
//! - The key: a string as it is; a number, boolean, object or array as its JSON text; `null`
//!   (or an `abort`) means "no key": the event is not deduplicated. Keys longer than
//!   [`MAX_KEY_BYTES`] are remembered by their SHA-256.
//! - With `split`: a `dedupe` step before any `split` computes its key on the event as it
//!   came, and each element remembers that key with its element suffix (`#0`, `#1`…), so a
//!   re-sent parent is deduplicated element by element. After a `split` it runs on each
//!   element (as the flow's steps leave it).
//! - A flow has at most one `dedupe` step (`ferry validate` says so).

use std::time::Duration;

use ferry_config::{Flow, Severity, Step};
use ferry_store::{DedupeWindow, Millis};
use ferry_transform::{Outcome, Program, Returns};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::steps::{Piece, StepFailed};
use crate::transforms::{Failure, path};

/// Longest key remembered as written; longer ones are remembered by their SHA-256.
pub const MAX_KEY_BYTES: usize = 256;

/// A flow's compiled `dedupe` step.
#[derive(Debug)]
pub struct DedupeRule {
    /// Index of the step among the flow's steps.
    step: usize,
    program: Program,
    window: Duration,
    /// A `split` runs before this step: the key is computed per element.
    after_split: bool,
}

impl DedupeRule {
    /// Compile the flow's `dedupe` step, if it has one. VRL's warnings go to `warnings`.
    pub fn compile(
        flow_name: &str,
        flow: &Flow,
        warnings: &mut Vec<Failure>,
    ) -> Result<Option<DedupeRule>, Vec<Failure>> {
        let mut found = flow.steps.iter().enumerate().filter_map(|(i, s)| match s {
            Step::Dedupe(d) => Some((i, d)),
            _ => None,
        });
        let Some((step, dedupe)) = found.next() else {
            return Ok(None);
        };
        let index = step.to_string();
        let at = path(&["flows", flow_name, "steps", &index, "dedupe", "key"]);
        let what = "the `dedupe` key";
        let program = Program::compile_returning(&dedupe.key, Returns::Event)
            .map_err(|e| vec![Failure::program(at.clone(), what, e)])?;
        if let Some(report) = program.warnings() {
            warnings.push(Failure::warning(at.clone(), what, report));
        }
        if let Some((second, _)) = found.next() {
            let second = second.to_string();
            return Err(vec![Failure {
                path: path(&["flows", flow_name, "steps", &second, "dedupe"]),
                line: 1,
                column: 1,
                message: format!(
                    "a flow has at most one `dedupe` step (step {step} is one already)"
                ),
                report: None,
                severity: Severity::Error,
            }]);
        }
        let after_split = flow.steps[..step]
            .iter()
            .any(|s| matches!(s, Step::Split(_)));
        Ok(Some(DedupeRule {
            step,
            program,
            window: dedupe.window,
            after_split,
        }))
    }

    /// The window of `piece`, one of the events the steps made of `payload` (the request's
    /// parsed body) received at `now`; `None` when its key is `null`.
    pub fn window(
        &self,
        payload: &Value,
        piece: &Piece,
        now: Millis,
    ) -> Result<Option<DedupeWindow>, StepFailed> {
        let (input, suffix) = match (&piece.value, self.after_split) {
            (Some(element), true) => (element, ""),
            _ => (payload, piece.suffix.as_str()),
        };
        let Some(key) = self.key(input)? else {
            return Ok(None);
        };
        let window = Millis::try_from(self.window.as_millis()).unwrap_or(Millis::MAX);
        Ok(Some(DedupeWindow {
            key: format!("{key}{suffix}"),
            expires_at: now.saturating_add(window),
        }))
    }

    /// The key of `event`, bounded in length; `None` for `null` or an `abort`.
    pub fn key(&self, event: &Value) -> Result<Option<String>, StepFailed> {
        let outcome = self.program.run(event.clone()).map_err(|e| StepFailed {
            step: self.step,
            kind: "dedupe",
            destination: None,
            message: e.message,
        })?;
        let key = match outcome {
            Outcome::Aborted { .. } => return Ok(None),
            Outcome::Done { value, .. } => match value {
                Value::Null => return Ok(None),
                Value::String(s) => s,
                other => other.to_string(),
            },
        };
        if key.len() <= MAX_KEY_BYTES {
            return Ok(Some(key));
        }
        Ok(Some(format!(
            "sha256:{}",
            hex::encode(Sha256::digest(&key))
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flow(steps: Value) -> Flow {
        serde_json::from_value(json!({
            "source": {"webhook": {"system": "s", "signature": {"none": {}}}},
            "destinations": {},
            "steps": steps,
        }))
        .expect("flow")
    }

    fn rule(steps: Value) -> DedupeRule {
        DedupeRule::compile("f", &flow(steps), &mut Vec::new())
            .expect("compiles")
            .expect("has a dedupe step")
    }

    fn piece(value: Option<Value>, suffix: &str) -> Piece {
        Piece {
            value,
            suffix: suffix.into(),
            lanes: vec![true],
        }
    }

    #[test]
    fn keys_and_windows() {
        let r = rule(json!([{"dedupe": {"key": ".order_id", "window": "10m"}}]));
        let body = json!({"order_id": "o-1"});
        let w = r.window(&body, &piece(None, ""), 1_000).expect("key");
        assert_eq!(
            w,
            Some(DedupeWindow {
                key: "o-1".into(),
                expires_at: 1_000 + 600_000
            })
        );
        assert_eq!(
            r.key(&json!({"order_id": 7})).expect("key").as_deref(),
            Some("7")
        );
        assert_eq!(r.key(&json!({})).expect("key"), None, "null: no key");
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        let hashed = r
            .key(&json!({"order_id": long}))
            .expect("key")
            .expect("some");
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 7 + 64,
            "{hashed}"
        );
    }

    #[test]
    fn before_a_split_the_parent_key_gets_the_element_suffix() {
        let r = rule(json!([
            {"dedupe": {"key": ".order_id", "window": "1m"}},
            {"split": ".items"},
        ]));
        let body = json!({"order_id": "o-1", "items": [{"sku": "a"}]});
        let w = r
            .window(&body, &piece(Some(json!({"sku": "a"})), "#0"), 0)
            .expect("key")
            .expect("some");
        assert_eq!(w.key, "o-1#0");
    }

    #[test]
    fn after_a_split_each_element_has_its_own_key() {
        let r = rule(json!([
            {"split": ".items"},
            {"dedupe": {"key": ".sku", "window": "1m"}},
        ]));
        let body = json!({"items": [{"sku": "a"}]});
        let w = r
            .window(&body, &piece(Some(json!({"sku": "a"})), "#0"), 0)
            .expect("key")
            .expect("some");
        assert_eq!(w.key, "a");
    }

    #[test]
    fn failures_name_the_step() {
        let r = rule(json!([
            {"filter": "true"},
            {"dedupe": {"key": "to_int!(.n)", "window": "1m"}},
        ]));
        let err = r.key(&json!({"n": "x"})).expect_err("runtime error");
        assert_eq!((err.step, err.kind), (1, "dedupe"));

        let err = DedupeRule::compile(
            "f",
            &flow(json!([{"dedupe": {"key": ".x ==", "window": "1m"}}])),
            &mut Vec::new(),
        )
        .expect_err("does not compile");
        assert_eq!(err[0].path, ["flows", "f", "steps", "0", "dedupe", "key"]);

        let err = DedupeRule::compile(
            "f",
            &flow(json!([
                {"dedupe": {"key": ".a", "window": "1m"}},
                {"dedupe": {"key": ".b", "window": "1m"}},
            ])),
            &mut Vec::new(),
        )
        .expect_err("two dedupe steps");
        assert_eq!(err[0].path, ["flows", "f", "steps", "1", "dedupe"]);
    }

    #[test]
    fn a_flow_without_the_step_has_no_rule() {
        let none = DedupeRule::compile("f", &flow(json!([{"filter": "true"}])), &mut Vec::new());
        assert!(none.expect("compiles").is_none());
    }
}
