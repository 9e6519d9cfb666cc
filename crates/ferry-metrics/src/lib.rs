//! Every metric family Ferry exposes on `/metrics`, in one table ([`FAMILIES`]): its name
//! (also a constant per family, which the emitting code uses instead of a string literal),
//! its kind, unit, labels and `# HELP` text. [`describe`] hands the table to a recorder so
//! every family carries its HELP line; `docs/telemetry.md` lists the same families, and a
//! test fails when the two disagree.
#![forbid(unsafe_code)]

mod family;
mod names;

pub use family::{Family, Kind};
pub use names::*;

/// Describe every family of [`FAMILIES`] to `recorder` (kind, unit, HELP text). Call it on
/// the recorder `/metrics` renders before installing it, so the descriptions reach that
/// recorder whatever else is installed globally.
pub fn describe(recorder: &dyn metrics::Recorder) {
    for f in FAMILIES {
        let name = metrics::KeyName::from_const_str(f.name);
        let help = metrics::SharedString::const_str(f.help);
        match f.kind {
            Kind::Counter => recorder.describe_counter(name, f.unit, help),
            Kind::Gauge => recorder.describe_gauge(name, f.unit, help),
            Kind::Histogram => recorder.describe_histogram(name, f.unit, help),
        }
    }
}

/// The family named `name`, if Ferry has one.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}
