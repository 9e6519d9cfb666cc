//! Ferry's transforms, behind one small API so the rest of Ferry never names VRL or
//! minijinja:
//!
//! - [`Program`]: a VRL program (a `map`, or the condition of a `filter` or `route`, or the
//!   array of a `split`), compiled once when the config loads with the functions listed in
//!   [`function_names`] (VRL's base standard library minus [`EXCLUDED`]), run per event with
//!   a bounded number of steps ([`MAX_STEPS`]).
//! - [`Template`]: a `minijinja` string template (a URL, a header value, a non-JSON body)
//!   with fuel (bounded work per render), strict undefined variables and no file system.
//!
//! ```
//! use ferry_transform::{Outcome, Program};
//!
//! let map = Program::compile(".amount = to_int!(.amount) * 100").unwrap();
//! let out = map.run(serde_json::json!({"amount": "42"})).unwrap();
//! assert_eq!(
//!     out,
//!     Outcome::Done {
//!         event: serde_json::json!({"amount": 4200}),
//!         value: serde_json::json!(4200),
//!     }
//! );
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
mod functions;
mod program;
mod template;

pub use functions::{EXCLUDED, function_names, why_not_offered};
pub use program::{
    Applied, CompileError, Event, MAX_STEPS, Outcome, Program, Returns, RuntimeError,
};
pub use template::{
    TEMPLATE_FUEL, Template, TemplateContext, TemplateError, TemplateKind, is_template,
};
