//! What the table says of one metric family.

use metrics::Unit;

/// The kind of a metric family, as Prometheus' `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The `# TYPE` word: `counter`, `gauge`, `histogram`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: everything `/metrics` and `docs/telemetry.md` say of it.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The full name, e.g. `ferry_delivery_attempts_total`.
    pub name: &'static str,
    pub kind: Kind,
    /// What one unit of a value is; `None` for a state or a flag (e.g. breaker state 0/1/2).
    pub unit: Option<Unit>,
    /// The labels of its series, in the order the table lists them.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

impl Family {
    /// The unit as `docs/telemetry.md` writes it: `seconds`, `count`, ... or `-` for none.
    pub fn unit_str(&self) -> &'static str {
        self.unit.map_or("-", |u| u.as_str())
    }
}
