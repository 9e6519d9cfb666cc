//! The flow steps written in VRL that run at ingress: `filter`, `route` and `split`.
//!
//! They run after authentication, the body checks and the `validate` steps, in the order
//! the flow lists them, and before the commit. They run before the `2xx` because they
//! decide *which* deliveries exist: whether the event is stored at all (`filter`), which
//! destinations get a delivery (`route`), and how many events there are (`split`). What a
//! destination receives is shaped later, when the delivery is sent (`map`, templates: see
//! [`crate::render`]).
//!
//! - `filter`: a condition; `false` (or `abort`) drops the event. When every event is
//!   dropped the request is answered `200` with `"dropped": true`, nothing is stored, and
//!   `ferry_ingress_dropped_total{flow}` counts it.
//! - `route`: destination → condition. A destination named there gets a delivery only when
//!   its condition is `true`; destinations not named always get one.
//! - `split`: an expression returning an array; each element becomes an event of its own
//!   (with its own deliveries), all stored atomically in one append. An element's dedupe
//!   key is its parent's with `#<index>` appended, so a re-sent parent is a duplicate
//!   element by element. Steps after a split run on each element.
//!
//! A step that fails at run time (a VRL error, a condition that is not a boolean) refuses
//! the request with `422 step_failed` naming the step and VRL's message; nothing is stored.

use axum::http::StatusCode;
use ferry_config::{Flow, Step};
use ferry_transform::{Event, Program, Returns};
use serde_json::{Value, json};

use crate::assembly::RouteLane;
use crate::problem::Problem;
use crate::transforms::{Failure, path};

/// Most events one request may become through `split` steps.
pub const MAX_SPLIT_EVENTS: usize = 1000;

/// One compiled step.
#[derive(Debug)]
enum Compiled {
    Filter(Program),
    /// (destination, condition), in the destination order of the config.
    Route(Vec<(String, Program)>),
    Split(Program),
}

impl Compiled {
    fn kind(&self) -> &'static str {
        match self {
            Compiled::Filter(_) => "filter",
            Compiled::Route(_) => "route",
            Compiled::Split(_) => "split",
        }
    }
}

/// The `filter`, `route` and `split` steps of a flow, compiled, in order. (`validate` and
/// `dedupe` steps run elsewhere.)
#[derive(Debug, Default)]
pub struct IngressSteps {
    /// (index among the flow's steps, step).
    steps: Vec<(usize, Compiled)>,
}

/// One event that passed the steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The event, when a `split` made it; `None`: the request's payload as it came.
    pub value: Option<Value>,
    /// Appended to the request's dedupe key: `""`, or `#<index>` per split.
    pub suffix: String,
    /// Per lane of the route (in its order): whether it gets a delivery.
    pub lanes: Vec<bool>,
}

/// What the steps made of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Stepped {
    /// Every event was dropped, by the step at this index.
    Dropped {
        /// Index of the step among the flow's steps.
        step: usize,
    },
    /// The events to store (at least one).
    Pieces(Vec<Piece>),
}

/// A step failed at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailed {
    /// Index of the step among the flow's steps.
    pub step: usize,
    /// `filter`, `route` or `split`.
    pub kind: &'static str,
    /// For a `route`, the destination whose condition failed.
    pub destination: Option<String>,
    /// VRL's message.
    pub message: String,
}

impl StepFailed {
    /// The answer: `422 step_failed`, naming the step (`step`: index, kind, destination).
    pub fn problem(&self) -> Problem {
        let which = match &self.destination {
            Some(d) => format!("step {} (`{}`, destination `{d}`)", self.step, self.kind),
            None => format!("step {} (`{}`)", self.step, self.kind),
        };
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "step_failed",
            "Step failed",
            format!("{which} failed: {}", self.message),
        )
        .with_extension(
            "step",
            json!({"index": self.step, "kind": self.kind, "destination": self.destination}),
        )
    }
}

impl IngressSteps {
    /// Compile the `filter`, `route` and `split` steps of `flow`. Every program that does
    /// not compile is reported; VRL's warnings go to `warnings`.
    pub fn compile(
        flow_name: &str,
        flow: &Flow,
        warnings: &mut Vec<Failure>,
    ) -> Result<IngressSteps, Vec<Failure>> {
        let mut steps = Vec::new();
        let mut failures = Vec::new();
        for (i, step) in flow.steps.iter().enumerate() {
            let index = i.to_string();
            let at = |field: &str, key: Option<&str>| {
                let mut p = path(&["flows", flow_name, "steps", &index, field]);
                p.extend(key.map(str::to_string));
                p
            };
            let mut compile = |source: &str, returns: Returns, at: Vec<String>, what: &str| {
                match Program::compile_returning(source, returns) {
                    Ok(program) => {
                        if let Some(report) = program.warnings() {
                            warnings.push(Failure::warning(at, what, report));
                        }
                        Some(program)
                    }
                    Err(e) => {
                        failures.push(Failure::program(at, what, e));
                        None
                    }
                }
            };
            let compiled = match step {
                Step::Filter(source) => compile(
                    source,
                    Returns::Boolean,
                    at("filter", None),
                    "the `filter` condition",
                )
                .map(Compiled::Filter),
                Step::Split(source) => compile(
                    source,
                    Returns::Array,
                    at("split", None),
                    "the `split` expression",
                )
                .map(Compiled::Split),
                Step::Route(routes) => {
                    let mut conditions = Vec::new();
                    for (dest, source) in routes {
                        let what = format!("the `route` condition of `{dest}`");
                        if let Some(p) =
                            compile(source, Returns::Boolean, at("route", Some(dest)), &what)
                        {
                            conditions.push((dest.clone(), p));
                        }
                    }
                    Some(Compiled::Route(conditions))
                }
                Step::Validate(_) | Step::Dedupe(_) => None,
            };
            if let Some(compiled) = compiled {
                steps.push((i, compiled));
            }
        }
        if failures.is_empty() {
            Ok(IngressSteps { steps })
        } else {
            Err(failures)
        }
    }

    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Run the steps on `payload` (the request's parsed body) for a route with `lanes`.
    pub fn run(&self, payload: &Value, lanes: &[RouteLane]) -> Result<Stepped, StepFailed> {
        let mut pieces = vec![Working {
            value: None,
            event: None,
            suffix: String::new(),
            lanes: vec![true; lanes.len()],
        }];
        for (index, step) in &self.steps {
            let failed = |destination: Option<&str>, message: String| StepFailed {
                step: *index,
                kind: step.kind(),
                destination: destination.map(str::to_string),
                message,
            };
            match step {
                Compiled::Filter(program) => {
                    let mut kept = Vec::with_capacity(pieces.len());
                    for mut piece in pieces {
                        let keep = program
                            .condition(piece.event(payload))
                            .map_err(|e| failed(None, e.message))?;
                        if keep {
                            kept.push(piece);
                        }
                    }
                    pieces = kept;
                }
                Compiled::Route(conditions) => {
                    for piece in &mut pieces {
                        for (dest, program) in conditions {
                            let Some(lane) = lanes.iter().position(|l| &l.key.destination == dest)
                            else {
                                continue;
                            };
                            if !piece.lanes[lane] {
                                continue;
                            }
                            let chosen = program
                                .condition(piece.event(payload))
                                .map_err(|e| failed(Some(dest), e.message))?;
                            piece.lanes[lane] = chosen;
                        }
                    }
                }
                Compiled::Split(program) => {
                    let mut out = Vec::new();
                    for mut piece in pieces {
                        let Some(elements) = program
                            .elements(piece.event(payload))
                            .map_err(|e| failed(None, e.message))?
                        else {
                            continue;
                        };
                        if out.len() + elements.len() > MAX_SPLIT_EVENTS {
                            return Err(failed(
                                None,
                                format!(
                                    "the split makes more than {MAX_SPLIT_EVENTS} events from one request"
                                ),
                            ));
                        }
                        for (i, element) in elements.into_iter().enumerate() {
                            out.push(Working {
                                value: Some(element),
                                event: None,
                                suffix: format!("{}#{i}", piece.suffix),
                                lanes: piece.lanes.clone(),
                            });
                        }
                    }
                    pieces = out;
                }
            }
            if pieces.is_empty() {
                return Ok(Stepped::Dropped { step: *index });
            }
        }
        Ok(Stepped::Pieces(
            pieces
                .into_iter()
                .map(|w| Piece {
                    value: w.value,
                    suffix: w.suffix,
                    lanes: w.lanes,
                })
                .collect(),
        ))
    }
}

/// An event between steps, converted for VRL when a step first needs it.
struct Working {
    value: Option<Value>,
    event: Option<Event>,
    suffix: String,
    lanes: Vec<bool>,
}

impl Working {
    fn event(&mut self, payload: &Value) -> &mut Event {
        let value = self.value.as_ref().unwrap_or(payload);
        self.event.get_or_insert_with(|| Event::new(value.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::LaneKey;

    fn lanes(names: &[&str]) -> Vec<RouteLane> {
        names
            .iter()
            .map(|d| RouteLane {
                key: LaneKey {
                    flow: "f".into(),
                    destination: (*d).into(),
                },
                order_key: None,
                max_pending: 1000,
                backlog_retry_after: std::time::Duration::from_secs(1),
            })
            .collect()
    }

    fn steps(yaml_steps: Vec<Step>) -> IngressSteps {
        let flow: Flow = serde_json::from_value(json!({
            "source": {"webhook": {"system": "s", "signature": {"none": {}}}},
            "destinations": {},
        }))
        .map(|mut f: Flow| {
            f.steps = yaml_steps;
            f
        })
        .unwrap();
        IngressSteps::compile("f", &flow, &mut Vec::new()).unwrap()
    }

    #[test]
    fn filter_drops_and_keeps() {
        let s = steps(vec![Step::Filter(".total > 10 ?? false".into())]);
        let l = lanes(&["a"]);
        assert_eq!(
            s.run(&json!({"total": 3}), &l).unwrap(),
            Stepped::Dropped { step: 0 }
        );
        let Stepped::Pieces(p) = s.run(&json!({"total": 30}), &l).unwrap() else {
            panic!()
        };
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].value, None, "an unsplit event is stored as it came");
    }

    #[test]
    fn route_chooses_named_destinations_only() {
        let mut routes = std::collections::BTreeMap::new();
        routes.insert("big".to_string(), ".total > 100 ?? false".to_string());
        let s = steps(vec![Step::Route(routes)]);
        let l = lanes(&["audit", "big"]);
        let Stepped::Pieces(p) = s.run(&json!({"total": 5}), &l).unwrap() else {
            panic!()
        };
        assert_eq!(p[0].lanes, vec![true, false]);
        let Stepped::Pieces(p) = s.run(&json!({"total": 500}), &l).unwrap() else {
            panic!()
        };
        assert_eq!(p[0].lanes, vec![true, true]);
    }

    #[test]
    fn split_then_filter_per_element() {
        let s = steps(vec![
            Step::Split("array!(.items)".into()),
            Step::Filter(".qty > 0 ?? false".into()),
        ]);
        let l = lanes(&["a"]);
        let payload = json!({"items": [{"qty": 1}, {"qty": 0}, {"qty": 2}]});
        let Stepped::Pieces(p) = s.run(&payload, &l).unwrap() else {
            panic!()
        };
        let got: Vec<(&str, Value)> = p
            .iter()
            .map(|p| (p.suffix.as_str(), p.value.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![("#0", json!({"qty": 1})), ("#2", json!({"qty": 2}))]
        );
        assert_eq!(
            s.run(&json!({"items": []}), &l).unwrap(),
            Stepped::Dropped { step: 0 }
        );
    }

    #[test]
    fn runtime_errors_name_the_step() {
        let s = steps(vec![
            Step::Filter("true".into()),
            Step::Filter("to_int!(.n) > 1".into()),
        ]);
        let err = s.run(&json!({"n": "x"}), &lanes(&["a"])).unwrap_err();
        assert_eq!((err.step, err.kind), (1, "filter"));
        assert!(err.message.contains("to_int"), "{}", err.message);
        let problem = err.problem();
        assert_eq!((problem.status, problem.code), (422, "step_failed"));
    }

    #[test]
    fn compile_errors_are_located_per_step() {
        let flow: Flow = serde_json::from_value(json!({
            "source": {"webhook": {"system": "s", "signature": {"none": {}}}},
            "destinations": {},
            "steps": [{"filter": "true"}, {"route": {"a": ".x ==", "b": "true"}}],
        }))
        .unwrap();
        let err = IngressSteps::compile("f", &flow, &mut Vec::new()).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].path, ["flows", "f", "steps", "1", "route", "a"]);
    }
}
