//! VRL programs: compiled once when the config loads, run per event.
//!
//! VRL programs have no loops, recursion or user-defined functions, so they always
//! terminate; on top of that every run has a budget of [`MAX_STEPS`] evaluated
//! expressions (a closure over a 100 000-element array counts each element), so one run's
//! time is bounded too. Type and fallibility errors are compile errors: a program that
//! compiles can still fail at run time only where the author said it may (`!`, `??`).

use std::fmt;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use vrl::compiler::runtime::{ExecutionControl, Runtime, Terminate};
use vrl::compiler::{
    CompileConfig, ExpressionError, Target, TargetValue, TargetValueRef, TimeZone, TypeState,
};
use vrl::diagnostic::{DiagnosticList, Formatter};
use vrl::value::{Kind, Secrets, Value};

use crate::convert::{Strict, kind_name, to_json, to_vrl};
use crate::functions::{offered, why_not_offered};

/// Most expressions one run of a program may evaluate before it is stopped with a
/// [`RuntimeError`]. Generous for any mapping of a webhook-sized event (a closure over every
/// element of a 100 000-element array of a 1 MiB body stays well below it); a bound on what
/// a mistake can cost.
pub const MAX_STEPS: u64 = 2_000_000;

/// What a program is expected to return, checked at compile time where the types say it
/// can never hold and at run time otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    /// Anything: the program's result is its `.` (a `map`).
    Event,
    /// A boolean (a `filter` or a `route` condition).
    Boolean,
    /// An array (a `split`).
    Array,
}

/// A compiled VRL program. Cheap to share (`Send + Sync`): runs never change it.
pub struct Program {
    program: vrl::compiler::Program,
    returns: Returns,
    warnings: Option<String>,
    /// Whether the program may change `.` (assigns to it, or calls `del`): a condition that
    /// may not runs on the event itself, without a copy.
    mutates: bool,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("returns", &self.returns)
            .finish_non_exhaustive()
    }
}

/// Why a program does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The first error's headline, e.g. `call to undefined function`.
    pub message: String,
    /// 1-based line of the first error within the program.
    pub line: usize,
    /// 1-based column (in characters) of the first error within its line.
    pub column: usize,
    /// VRL's own report of every error, rustc-style, with the program's lines, carets and
    /// notes (no colours); plus why a function Ferry leaves out is not there.
    pub diagnostic: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}, column {} of the program)",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for CompileError {}

/// Why a run failed: VRL's message (for function errors it names the function and the
/// position in the program, e.g. `function call error for "to_int" at (5:23): …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeError {
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuntimeError {}

impl RuntimeError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The program ran to its end (or `return`ed).
    Done {
        /// `.` as the program left it.
        event: serde_json::Value,
        /// The value of the program's last expression (or of its `return`).
        value: serde_json::Value,
    },
    /// The program called `abort`: the event is to be dropped.
    Aborted {
        /// The `abort` message, if it gave one.
        message: Option<String>,
    },
}

/// An event in VRL's representation: converted once for several programs (a flow's filter
/// and route conditions), or read straight from JSON bytes and written straight back (a
/// destination's `map` at delivery time), without a `serde_json::Value` in between.
#[derive(Debug, Clone)]
pub struct Event(Value);

impl Event {
    /// Convert a JSON event.
    pub fn new(json: serde_json::Value) -> Self {
        Self(to_vrl(json))
    }

    /// Read a JSON document.
    pub fn from_slice(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json).map(Self)
    }

    /// The event as JSON text. Fails, naming the path, where it holds bytes that are not
    /// UTF-8 text or an infinite number (JSON has neither).
    pub fn to_json_vec(&self) -> Result<Vec<u8>, RuntimeError> {
        serde_json::to_vec(&Strict(&self.0)).map_err(|e| RuntimeError::new(e.to_string()))
    }

    /// The event as a JSON value (same failures as [`Event::to_json_vec`]).
    pub fn to_json(&self) -> Result<serde_json::Value, RuntimeError> {
        to_json(self.0.clone()).map_err(RuntimeError::new)
    }
}

/// Serialized as JSON, strictly (see [`Event::to_json_vec`]): templates can render it.
impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Strict(&self.0).serialize(serializer)
    }
}

/// What [`Program::apply`] made of an event.
#[derive(Debug, Clone)]
pub enum Applied {
    /// The program ran to its end: `.` as it left it.
    Done(Event),
    /// The program called `abort`, with this message, if any.
    Aborted(Option<String>),
}

impl Program {
    /// Compile `source`, whose result is its `.` (a `map`).
    pub fn compile(source: &str) -> Result<Program, CompileError> {
        Self::compile_returning(source, Returns::Event)
    }

    /// Compile `source`, expecting it to return `returns`. A program whose type can never be
    /// that is a compile error; one that may be something else is checked at each run.
    pub fn compile_returning(source: &str, returns: Returns) -> Result<Program, CompileError> {
        let state = TypeState::default();
        let result =
            vrl::compiler::compile_with_state(source, offered(), &state, CompileConfig::default())
                .map_err(|diagnostics| compile_error(source, diagnostics))?;
        let program = result.program;
        let kind = program.final_type_info().result.kind().clone();
        if let Some(wanted) = mismatch(returns, &kind) {
            return Err(CompileError {
                message: format!("the program must return {wanted}, but it returns {kind}"),
                line: last_line(source),
                column: 1,
                diagnostic: format!(
                    "error: the program must return {wanted}, but its last expression is {kind}\n  = help: end it with an expression that is {wanted}, e.g. `.status == \"paid\"`{}",
                    if returns == Returns::Array {
                        " or `array!(.items)`"
                    } else {
                        ""
                    }
                ),
            });
        }
        let mut warnings = (!result.warnings.is_empty()).then(|| {
            Formatter::new(source, result.warnings)
                .to_string()
                .trim()
                .to_string()
        });
        if let Some(wanted) = maybe_not(returns, &kind) {
            // E.g. `to_float(.x) ?? 0.0 > 1.0`, which is `to_float(.x) ?? (0.0 > 1.0)`.
            let note = format!(
                "warning: the program should return {wanted}, but it may return {kind}: anything but {wanted} fails the step at run time\n  = help: `??` binds loosest: write `(to_float(.x) ?? 0.0) > 1.0`, not `to_float(.x) ?? 0.0 > 1.0`"
            );
            warnings = Some(match warnings {
                Some(w) => format!("{w}\n\n{note}"),
                None => note,
            });
        }
        // `del` is the one function that changes the target; the text test is conservative.
        let mutates = !program.info().target_assignments.is_empty() || source.contains("del");
        Ok(Program {
            program,
            returns,
            warnings,
            mutates,
        })
    }

    /// VRL's warnings about the program (e.g. an expression whose result is unused), rendered
    /// rustc-style, if it had any.
    pub fn warnings(&self) -> Option<&str> {
        self.warnings.as_deref()
    }

    /// Run the program on `event`.
    pub fn run(&self, event: serde_json::Value) -> Result<Outcome, RuntimeError> {
        self.run_on(to_vrl(event))
    }

    /// Run the program on `event` (a `map`): `.` as the program leaves it, without
    /// converting to or from `serde_json::Value`.
    pub fn apply(&self, event: Event) -> Result<Applied, RuntimeError> {
        Ok(match self.resolve(event.0)? {
            Resolved::Done { event, .. } => Applied::Done(Event(event)),
            Resolved::Aborted(message) => Applied::Aborted(message),
        })
    }

    /// Run the program on a copy of `event` (`.` as it leaves it is returned, `event` is not
    /// changed).
    pub fn run_event(&self, event: &Event) -> Result<Outcome, RuntimeError> {
        self.run_on(event.0.clone())
    }

    /// Run a condition: `true` or `false`. A program that `abort`s counts as `false`; one
    /// that returns anything but a boolean is an error (`expected a boolean, got string`).
    /// `event` is left as it was (it is borrowed mutably so that a program that cannot
    /// change it runs on it directly, without a copy).
    pub fn condition(&self, event: &mut Event) -> Result<bool, RuntimeError> {
        match self.resolve_on(event)? {
            None => Ok(false),
            Some(value) => match value {
                Value::Boolean(b) => Ok(b),
                other => Err(RuntimeError::new(format!(
                    "expected a boolean, got {}",
                    kind_name(&other)
                ))),
            },
        }
    }

    /// Run a split: the elements of the array the program returns, as JSON. `None` when the
    /// program `abort`s (the event is dropped); anything but an array is an error. `event`
    /// is left as it was (see [`Program::condition`]).
    pub fn elements(
        &self,
        event: &mut Event,
    ) -> Result<Option<Vec<serde_json::Value>>, RuntimeError> {
        match self.resolve_on(event)? {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| to_json(item).map_err(RuntimeError::new))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(value) => Err(RuntimeError::new(format!(
                "expected an array, got {}",
                kind_name(&value)
            ))),
        }
    }

    fn run_on(&self, event: Value) -> Result<Outcome, RuntimeError> {
        match self.resolve(event)? {
            Resolved::Aborted(message) => Ok(Outcome::Aborted { message }),
            Resolved::Done { event, value } => Ok(Outcome::Done {
                event: to_json(event).map_err(RuntimeError::new)?,
                value: to_json(value).map_err(RuntimeError::new)?,
            }),
        }
    }

    /// The program's value on `event`, leaving `event` as it was (`None`: it aborted).
    fn resolve_on(&self, event: &mut Event) -> Result<Option<Value>, RuntimeError> {
        let mut copy;
        let value = if self.mutates {
            copy = event.0.clone();
            &mut copy
        } else {
            &mut event.0
        };
        let mut metadata = Value::Object(Default::default());
        let mut secrets = Secrets::default();
        let mut target = TargetValueRef {
            value,
            metadata: &mut metadata,
            secrets: &mut secrets,
        };
        Ok(self.resolve_in(&mut target)?.ok())
    }

    fn resolve(&self, event: Value) -> Result<Resolved, RuntimeError> {
        let mut target = TargetValue {
            value: event,
            metadata: Value::Object(Default::default()),
            secrets: Secrets::default(),
        };
        Ok(match self.resolve_in(&mut target)? {
            Ok(value) => Resolved::Done {
                event: target.value,
                value,
            },
            Err(message) => Resolved::Aborted(message),
        })
    }

    /// Run on `target`: the program's value, or `Err` with the `abort` message.
    fn resolve_in(
        &self,
        target: &mut dyn Target,
    ) -> Result<Result<Value, Option<String>>, RuntimeError> {
        let mut budget = Budget { left: MAX_STEPS };
        let mut runtime = Runtime::default();
        // VRL's functions are written not to panic; should one, the event fails instead of
        // the task that runs it (an ingress request, a delivery lane).
        let resolved = catch_unwind(AssertUnwindSafe(|| {
            runtime.resolve_with_control(target, &self.program, &utc(), &mut budget)
        }))
        .map_err(|_| RuntimeError::new("the program failed inside VRL (a panic)"))?;
        match resolved {
            Ok(value) => Ok(Ok(value)),
            Err(Terminate::Abort(ExpressionError::Abort { message, .. })) => Ok(Err(message)),
            Err(Terminate::Interrupted) => Err(RuntimeError::new(format!(
                "the program was stopped after evaluating {MAX_STEPS} expressions"
            ))),
            Err(Terminate::Abort(err) | Terminate::Error(err)) => {
                Err(RuntimeError::new(err.to_string()))
            }
        }
    }
}

/// A run's raw result, before conversion back to JSON.
enum Resolved {
    Done { event: Value, value: Value },
    Aborted(Option<String>),
}

/// The step budget of one run.
struct Budget {
    left: u64,
}

impl ExecutionControl for Budget {
    fn checkpoint(&mut self) -> ControlFlow<()> {
        match self.left.checked_sub(1) {
            Some(left) => {
                self.left = left;
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(()),
        }
    }
}

/// Programs see time in UTC, whatever the host's zone.
fn utc() -> TimeZone {
    TimeZone::parse("UTC").unwrap_or_default()
}

/// What `kind` lacks to be a `returns`, if it can never be one.
fn mismatch(returns: Returns, kind: &Kind) -> Option<&'static str> {
    match returns {
        Returns::Event => None,
        Returns::Boolean => (!kind.contains_boolean()).then_some("a boolean"),
        Returns::Array => (!kind.contains_array()).then_some("an array"),
    }
}

/// What `kind` should be for `returns` when its type is known and may be something else
/// too (a program of unknown type, such as `.flag`, is checked at run time only).
fn maybe_not(returns: Returns, kind: &Kind) -> Option<&'static str> {
    if kind.is_any() || kind.is_never() {
        return None;
    }
    match returns {
        Returns::Event => None,
        Returns::Boolean => (kind.contains_boolean() && !kind.is_boolean()).then_some("a boolean"),
        Returns::Array => (kind.contains_array() && !kind.is_array()).then_some("an array"),
    }
}

fn last_line(source: &str) -> usize {
    source.trim_end().lines().count().max(1)
}

/// The compile error of a failed compilation: the first error's headline and position, and
/// VRL's rendering of them all.
fn compile_error(source: &str, diagnostics: DiagnosticList) -> CompileError {
    let first = diagnostics
        .iter()
        .find(|d| d.severity.is_error() || d.severity.is_bug());
    let message = first.map_or_else(
        || "the program does not compile".to_string(),
        |d| d.message.clone(),
    );
    let offset = first
        .and_then(|d| {
            d.labels
                .iter()
                .find(|l| l.primary)
                .or_else(|| d.labels.first())
        })
        .map_or(0, |l| l.span.start());
    let (line, column) = line_column(source, offset);
    let mut diagnostic = Formatter::new(source, diagnostics)
        .to_string()
        .trim()
        .to_string();
    for (name, why) in left_out_calls(source) {
        diagnostic.push_str(&format!("\n\nnote: Ferry does not offer `{name}`: {why}"));
    }
    CompileError {
        message,
        line,
        column,
        diagnostic,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The functions Ferry leaves out that `source` seems to call (`name(`).
fn left_out_calls(source: &str) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    let bytes = source.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        let ident = b.is_ascii_alphanumeric() || b == b'_';
        match (ident, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                start = None;
                if b == b'(' || b == b'!' {
                    let name = &source[s..i];
                    if let Some(why) = why_not_offered(name)
                        && !found.iter().any(|(n, _)| n == name)
                    {
                        found.push((name.to_string(), why));
                    }
                }
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn done(outcome: Outcome) -> (serde_json::Value, serde_json::Value) {
        match outcome {
            Outcome::Done { event, value } => (event, value),
            Outcome::Aborted { message } => panic!("aborted: {message:?}"),
        }
    }

    #[test]
    fn a_map_reshapes_the_event() {
        let p = Program::compile(
            ".customer_id = .customer.id\ndel(.customer)\n.total = to_int!(.total) * 100\n.tag = upcase(string!(.tag))",
        )
        .unwrap();
        let (event, _) = done(
            p.run(json!({"customer": {"id": "c1"}, "total": "42", "tag": "vip"}))
                .unwrap(),
        );
        assert_eq!(
            event,
            json!({"customer_id": "c1", "total": 4200, "tag": "VIP"})
        );
    }

    #[test]
    fn abort_drops() {
        let p = Program::compile("if .test == true { abort \"test event\" }\n.ok = true").unwrap();
        assert_eq!(
            p.run(json!({"test": true})).unwrap(),
            Outcome::Aborted {
                message: Some("test event".into())
            }
        );
        let (event, _) = done(p.run(json!({"test": false})).unwrap());
        assert_eq!(event["ok"], true);
    }

    #[test]
    fn runtime_errors_carry_vrls_message() {
        let p = Program::compile(".x = to_int!(.not_a_number)").unwrap();
        let err = p.run(json!({"not_a_number": "abc"})).unwrap_err();
        assert!(err.message.contains("to_int"), "{err}");
    }

    #[test]
    fn compile_errors_carry_position_and_vrls_diagnostic() {
        let err = Program::compile(".a = 1\n.b = to_int(.c)").unwrap_err();
        assert_eq!(err.line, 2, "{err:?}");
        assert!(err.column > 1, "{err:?}");
        assert!(err.diagnostic.contains("error[E"), "{}", err.diagnostic);
        assert!(
            err.diagnostic.contains(".b = to_int(.c)"),
            "{}",
            err.diagnostic
        );

        let err = Program::compile(".a = parse_grok!(.m, \"%{WORD}\")").unwrap_err();
        assert!(
            err.diagnostic.contains("Ferry does not offer `parse_grok`"),
            "{}",
            err.diagnostic
        );
        let err = Program::compile("get_env_var!(\"HOME\")").unwrap_err();
        assert!(err.diagnostic.contains("cannot read the environment"));

        let err = Program::compile(".a = ").unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn conditions_must_be_boolean() {
        let err = Program::compile_returning("\"yes\"", Returns::Boolean).unwrap_err();
        assert!(err.message.contains("must return a boolean"), "{err}");

        let p = Program::compile_returning(".flag", Returns::Boolean).unwrap();
        assert!(p.condition(&mut Event::new(json!({"flag": true}))).unwrap());
        assert!(
            !p.condition(&mut Event::new(json!({"flag": false})))
                .unwrap()
        );
        let err = p
            .condition(&mut Event::new(json!({"flag": "x"})))
            .unwrap_err();
        assert_eq!(err.message, "expected a boolean, got string");

        let p = Program::compile_returning("abort", Returns::Boolean).unwrap();
        assert!(!p.condition(&mut Event::new(json!({}))).unwrap());
    }

    #[test]
    fn conditions_that_may_not_be_boolean_draw_a_warning() {
        let p = Program::compile_returning("to_float(.x) ?? 0.0 > 1.0", Returns::Boolean).unwrap();
        let w = p.warnings().unwrap_or_default();
        assert!(w.contains("may return"), "{w}");
        let p = Program::compile_returning(".x == 1", Returns::Boolean).unwrap();
        assert_eq!(p.warnings(), None);
        let p = Program::compile_returning(".flag", Returns::Boolean).unwrap();
        assert_eq!(
            p.warnings(),
            None,
            "unknown types are checked at run time only"
        );
    }

    #[test]
    fn conditions_do_not_change_the_event() {
        let p = Program::compile_returning(".x = 1\ntrue", Returns::Boolean).unwrap();
        let mut event = Event::new(json!({"x": 0}));
        assert!(p.condition(&mut event).unwrap());
        let q = Program::compile_returning(".x == 0", Returns::Boolean).unwrap();
        assert!(q.condition(&mut event).unwrap());
        let d = Program::compile_returning("del(.x)\ntrue", Returns::Boolean).unwrap();
        assert!(d.condition(&mut event).unwrap());
        assert!(q.condition(&mut event).unwrap(), "del on a copy");
    }

    #[test]
    fn split_returns_the_elements() {
        let p = Program::compile_returning("array!(.items)", Returns::Array).unwrap();
        let items = p
            .elements(&mut Event::new(
                json!({"items": [{"sku": "a"}, {"sku": "b"}]}),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(items, vec![json!({"sku": "a"}), json!({"sku": "b"})]);
        let err = p
            .elements(&mut Event::new(json!({"items": 3})))
            .unwrap_err();
        assert!(err.message.contains("array"), "{err}");
        let err = Program::compile_returning("1", Returns::Array).unwrap_err();
        assert!(err.message.contains("must return an array"), "{err}");
    }

    #[test]
    fn the_step_budget_stops_long_runs() {
        // range() makes at most 100 000 elements; nested closures multiply the steps.
        let p = Program::compile(
            "for_each(range!(0, 100000)) -> |_i, _v| { for_each(range!(0, 100)) -> |_j, _w| { .n = 1 } }",
        )
        .unwrap();
        let err = p.run(json!({})).unwrap_err();
        assert!(err.message.contains("stopped after"), "{err}");
    }

    #[test]
    fn apply_reads_and_writes_json_bytes() {
        let p = Program::compile(".n = to_int!(.n) + 1\n.b = decode_base64!(.b)").unwrap();
        let event = Event::from_slice(br#"{"n":"41","b":"aGk="}"#).unwrap();
        let Applied::Done(out) = p.apply(event).unwrap() else {
            panic!("aborted")
        };
        assert_eq!(out.to_json_vec().unwrap(), br#"{"b":"hi","n":42}"#);
        assert_eq!(out.to_json().unwrap(), json!({"b": "hi", "n": 42}));
        // Bytes that are not text cannot be JSON.
        let event = Event::from_slice(br#"{"n":"1","b":"/w=="}"#).unwrap();
        let Applied::Done(out) = p.apply(event).unwrap() else {
            panic!("aborted")
        };
        assert!(out.to_json_vec().unwrap_err().message.contains("UTF-8"));
        assert!(
            out.to_json()
                .unwrap_err()
                .message
                .contains(".b holds bytes")
        );
    }

    #[test]
    fn positions_are_counted_in_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
        assert_eq!(line_column("x", 99), (1, 2));
    }
}
