//! The report: a struct that serialises to JSON and renders as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::destinations::Role;
use crate::faults::{FaultConfig, FaultTally};
use crate::metrics::Timing;
use crate::procfs::ThreadGroup;
use crate::sampler::{self, Sample};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `run` (own hub) or `load` (external hub).
    pub mode: &'static str,
    /// Ingest URL events were posted to.
    pub target: String,
    /// Receiver URL the hub delivered to.
    pub receiver: String,
    pub run_id: String,
    pub started_at_unix: i64,
    pub config: RunConfig,
    pub events: Events,
    pub throughput: Throughput,
    pub latency: Latencies,
    /// Failed requests by kind (`status 503`, `timeout`, `connect: connection refused`...).
    pub errors: BTreeMap<String, u64>,
    /// First response body per failing status.
    pub error_examples: BTreeMap<String, String>,
    /// Faults the receiver injected, if any (summed over the healthy destinations).
    pub receiver_faults: Option<ReceiverFaults>,
    /// Each destination of the flow and what its receiver got. With more than one, the
    /// `events`, `throughput` and end-to-end figures above add up the healthy ones.
    pub destinations: Vec<DestinationReport>,
    /// The timeline (`run --sample-every`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Sample>,
    pub drain: Drain,
    pub hub: Option<HubUsage>,
    pub bench: BenchUsage,
    pub machine: MachineUsage,
}

/// One destination of the bench flow: its receiver's view, and the hub's at the end.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationReport {
    /// Its name in the hub's config.
    pub name: String,
    pub role: Role,
    pub receiver: String,
    /// What its receiver was told to do wrong.
    pub faults: String,
    pub faults_answered: FaultTally,
    /// Distinct events its receiver answered 200.
    pub delivered: u64,
    /// Requests its receiver got, whatever the answer.
    pub receiver_requests: u64,
    /// Accepted events that never reached it.
    pub accepted_not_delivered: u64,
    /// First accept to its last delivery.
    pub delivery_window_secs: f64,
    pub delivered_per_sec: f64,
    /// Send to first arrival at its receiver.
    pub end_to_end: Latency,
    /// `ferry_backlog_depth` just before the hub was stopped.
    pub backlog_at_end: Option<f64>,
    /// `ferry_breaker_state` then: 0 closed, 1 half-open, 2 open.
    pub breaker_at_end: Option<f64>,
    /// `ferry_delivery_attempts_total` by outcome (`delivered`, `retry`, `dead`).
    pub attempts: BTreeMap<String, f64>,
}

/// What the receiver was told to do wrong, and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverFaults {
    pub config: FaultConfig,
    pub seed: u64,
    /// Faulty answers given (none of them counts as a delivery).
    pub answered: FaultTally,
}

impl ReceiverFaults {
    /// `500 ×12 · 429 ×3 · … (outages 2)`.
    pub fn tally_line(&self) -> String {
        let a = &self.answered;
        let mut parts: Vec<String> = [
            ("500", a.status_500),
            ("429", a.status_429),
            ("503", a.status_503),
            ("hang", a.hang),
            ("reset", a.reset),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect();
        if a.outages > 0 {
            parts.push(format!(
                "outages {} ({} connections reset)",
                a.outages, a.outage_resets
            ));
        }
        if parts.is_empty() {
            "none yet".into()
        } else {
            parts.join(" · ")
        }
    }
}

/// The machine around the run: other processes competing for CPU skew every figure.
#[derive(Debug, Clone, Serialize)]
pub struct MachineUsage {
    pub cpus: usize,
    pub loadavg_1m_before: Option<f64>,
    /// Busy CPU cores of the whole machine while sending.
    pub busy_cores_sending: Option<f64>,
    /// Of those, cores used by processes other than the hub and ferry-bench.
    pub other_cores_sending: Option<f64>,
    /// [`crate::probe::cpu`] just before sending and after the drain, in ms: a slower
    /// CPU than usual (busy host) shows here.
    pub cpu_probe_ms: [f64; 2],
}

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub connections: u64,
    pub events: Option<u64>,
    pub duration_secs: Option<f64>,
    /// Fixed rate in events/s; `None` = closed loop (as fast as the hub answers).
    pub rate: Option<f64>,
    pub body_bytes: usize,
    pub request_timeout_secs: f64,
    pub bench_threads: usize,
    /// `concurrency` of the hub's destination (run mode).
    pub hub_concurrency: Option<usize>,
    pub cpus: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Events {
    /// Requests written to the hub.
    pub sent: u64,
    /// Answered with 2xx.
    pub accepted: u64,
    /// Of those, 202 (newly stored).
    pub accepted_new: u64,
    /// Of those, 200 (duplicate of an already stored event).
    pub accepted_duplicate: u64,
    /// Of those, any other 2xx.
    pub accepted_other: u64,
    /// Requests that got no 2xx (see `errors`); includes events that never got a connection.
    pub failed: u64,
    /// Distinct events of this run the receiver got.
    pub delivered: u64,
    /// Requests the receiver got (every delivery attempt, any run).
    pub receiver_requests: u64,
    /// Accepted events the receiver never got (lost, or still queued at the drain timeout).
    pub accepted_not_delivered: u64,
    /// Events delivered although their ingest request failed (e.g. stored, then timed out).
    pub delivered_not_accepted: u64,
    /// Deliveries whose `webhook-id` the receiver had already seen.
    pub duplicate_deliveries: u64,
    /// Events delivered again under a different `webhook-id`.
    pub redelivered_events: u64,
    /// Deliveries without a `webhook-id` header.
    pub deliveries_without_webhook_id: u64,
    /// Requests to the receiver carrying another run's events.
    pub foreign_deliveries: u64,
    /// Requests to the receiver whose body is not a bench event.
    pub unparsable_deliveries: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// First send to last ingest answer.
    pub send_window_secs: f64,
    /// 2xx answers per second over the send window.
    pub accepted_per_sec: f64,
    /// First accept (or the resume of paused lanes) to last delivery.
    pub delivery_window_secs: f64,
    /// Where the delivery window starts: `first accept`, or `resume` with
    /// `--deliver-after-load` (deliveries did not overlap ingest).
    pub delivery_window_from: &'static str,
    /// Distinct delivered events per second over the delivery window.
    pub delivered_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// `actual send` (closed loop) or `intended send` (fixed rate: no coordinated omission).
    pub measured_from: &'static str,
    /// Ingest request to 2xx answer.
    pub accept: Latency,
    /// Send (timestamp in the body) to first arrival at the receiver.
    pub end_to_end: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self {
                count: 0,
                mean_us: 0.0,
                p50_us: 0,
                p90_us: 0,
                p99_us: 0,
                p999_us: 0,
                max_us: 0,
            };
        }
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Drain {
    /// Every accepted event arrived.
    pub complete: bool,
    /// Sending finished to the end of the wait for deliveries.
    pub waited_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HubUsage {
    /// Known in run mode, or with `load --hub-pid`.
    pub pid: Option<u32>,
    /// `VmHWM` just before stopping.
    pub peak_rss_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    /// CPU cores used (CPU seconds / wall seconds) while sending.
    pub cpu_cores_sending: Option<f64>,
    /// CPU cores used from the end of sending to the end of the drain.
    pub cpu_cores_draining: Option<f64>,
    /// CPU seconds over the whole measurement.
    pub cpu_secs: Option<f64>,
    /// CPU seconds since start of its live threads, by thread name.
    pub threads: BTreeMap<String, ThreadGroup>,
    /// Mean of every `*_seconds` histogram of its `/metrics` at the end (if reachable).
    pub metrics: BTreeMap<String, Timing>,
    /// The store's group commit at the end.
    pub store_commits: Option<crate::metrics::StoreCommits>,
    /// How it stopped (run mode).
    pub exit: Option<String>,
    pub stop_secs: Option<f64>,
    /// Its config and data directory, when kept.
    pub data_dir: Option<String>,
    pub log: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchUsage {
    pub cpu_cores_sending: Option<f64>,
    pub cpu_secs: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

pub(crate) fn dur(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

pub(crate) fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn opt_cores(c: Option<f64>) -> String {
    c.map_or_else(|| "?".to_string(), |c| format!("{c:.2}"))
}

/// Thousands separators for the integer part.
fn grouped(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    pub fn render(&self) -> String {
        let mut o = String::new();
        let c = &self.config;
        let amount = match (c.events, c.duration_secs) {
            (Some(n), _) => format!("{n} events"),
            (None, Some(d)) => format!("{d}s"),
            (None, None) => String::new(),
        };
        let shape = c.rate.map_or_else(
            || "closed loop".to_string(),
            |r| format!("fixed rate {r}/s"),
        );
        let _ = writeln!(
            o,
            "ferry-bench {}: {} connections, {amount}, {shape}, {}-byte bodies",
            self.mode, c.connections, c.body_bytes
        );
        let _ = writeln!(o, "  target {}  receiver {}", self.target, self.receiver);
        let _ = writeln!(o);

        let e = &self.events;
        let _ = writeln!(
            o,
            "events      sent {} · accepted {} (202: {}, 200 duplicate: {}, other 2xx: {}) · failed {}",
            e.sent, e.accepted, e.accepted_new, e.accepted_duplicate, e.accepted_other, e.failed
        );
        let _ = writeln!(
            o,
            "            delivered {} ({} requests) · accepted but not delivered {} · delivered but not accepted {}",
            e.delivered, e.receiver_requests, e.accepted_not_delivered, e.delivered_not_accepted
        );
        let _ = writeln!(
            o,
            "            duplicate deliveries (same webhook-id) {} · events re-delivered under a new webhook-id {}",
            e.duplicate_deliveries, e.redelivered_events
        );
        if e.deliveries_without_webhook_id + e.foreign_deliveries + e.unparsable_deliveries > 0 {
            let _ = writeln!(
                o,
                "            deliveries without webhook-id {} · foreign {} · unparsable {}",
                e.deliveries_without_webhook_id, e.foreign_deliveries, e.unparsable_deliveries
            );
        }

        let t = &self.throughput;
        let _ = writeln!(
            o,
            "throughput  accepted  {:>9}/s  over {:.3} s (first send → last answer)",
            grouped(t.accepted_per_sec),
            t.send_window_secs
        );
        let _ = writeln!(
            o,
            "            delivered {:>9}/s  over {:.3} s ({} → last delivery)",
            grouped(t.delivered_per_sec),
            t.delivery_window_secs,
            t.delivery_window_from
        );

        let _ = writeln!(
            o,
            "latency     {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}   (from {})",
            "p50", "p90", "p99", "p99.9", "max", "n", self.latency.measured_from
        );
        for (name, l) in [
            ("accept", &self.latency.accept),
            ("end-to-end", &self.latency.end_to_end),
        ] {
            let _ = writeln!(
                o,
                "  {name:<10}{:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
                dur(l.p50_us),
                dur(l.p90_us),
                dur(l.p99_us),
                dur(l.p999_us),
                dur(l.max_us),
                l.count
            );
        }

        if self.errors.is_empty() {
            let _ = writeln!(o, "errors      none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(o, "errors      {}", list.join(" · "));
            for (k, ex) in &self.error_examples {
                let _ = writeln!(o, "            e.g. {k}: {}", ex.replace('\n', " "));
            }
        }
        if let Some(f) = &self.receiver_faults {
            let _ = writeln!(o, "faults      {} (seed {})", f.config.describe(), f.seed);
            let _ = writeln!(o, "            answered: {}", f.tally_line());
        }
        if self.destinations.len() > 1 {
            render_destinations(&mut o, &self.destinations);
        }
        let names: Vec<String> = self.destinations.iter().map(|d| d.name.clone()).collect();
        sampler::render(&mut o, &names, &self.samples);
        let _ = writeln!(
            o,
            "drain       {} after {:.2} s",
            if self.drain.complete {
                "complete"
            } else {
                "INCOMPLETE (timed out)"
            },
            self.drain.waited_secs
        );

        if let Some(h) = &self.hub {
            let _ = writeln!(
                o,
                "hub         pid {} · peak RSS {} · CPU cores {} sending, {} draining ({} CPU s)",
                h.pid.map_or_else(|| "?".into(), |p| p.to_string()),
                h.peak_rss_bytes.map_or_else(|| "?".into(), mib),
                opt_cores(h.cpu_cores_sending),
                opt_cores(h.cpu_cores_draining),
                h.cpu_secs.map_or_else(|| "?".into(), |s| format!("{s:.2}")),
            );
            if !h.threads.is_empty() {
                let mut groups: Vec<(&String, &ThreadGroup)> = h.threads.iter().collect();
                groups.sort_by(|a, b| b.1.cpu_secs.total_cmp(&a.1.cpu_secs));
                let list: Vec<String> = groups
                    .iter()
                    .filter(|(_, g)| g.cpu_secs > 0.0)
                    .map(|(n, g)| {
                        format!(
                            "{n} ×{} {:.2} (waited {:.2} for a CPU)",
                            g.threads, g.cpu_secs, g.runqueue_wait_secs
                        )
                    })
                    .collect();
                let _ = writeln!(o, "            CPU s by thread: {}", list.join(", "));
            }
            if !h.metrics.is_empty() {
                let list: Vec<String> = h
                    .metrics
                    .iter()
                    .map(|(n, t)| format!("{n} {} (n {})", dur(t.mean_us.round() as u64), t.count))
                    .collect();
                let _ = writeln!(o, "            /metrics means: {}", list.join(", "));
            }
            if let Some(c) = h.store_commits {
                let per = if c.commits > 0.0 {
                    c.commands / c.commits
                } else {
                    0.0
                };
                let _ = writeln!(
                    o,
                    "            store: {:.0} commits carrying {:.0} calls ({per:.1} per commit, {:.0} without an fsync, since the hub started)",
                    c.commits, c.commands, c.deferred
                );
            }
            if let Some(exit) = &h.exit {
                let _ = writeln!(
                    o,
                    "            stopped with SIGTERM: {exit} after {:.2} s",
                    h.stop_secs.unwrap_or(0.0)
                );
            }
            if let Some(d) = &h.data_dir {
                let _ = writeln!(o, "            data kept in {d}");
            }
        }
        let b = &self.bench;
        let _ = writeln!(
            o,
            "bench       CPU cores {} sending · peak RSS {} · {} threads",
            opt_cores(b.cpu_cores_sending),
            b.peak_rss_bytes.map_or_else(|| "?".into(), mib),
            self.config.bench_threads
        );
        let mc = &self.machine;
        let _ = writeln!(
            o,
            "machine     {} CPUs · busy {} cores while sending, {} of them other processes · load {} before",
            mc.cpus,
            opt_cores(mc.busy_cores_sending),
            opt_cores(mc.other_cores_sending),
            mc.loadavg_1m_before
                .map_or_else(|| "?".into(), |l| format!("{l:.2}")),
        );
        let _ = writeln!(
            o,
            "            CPU probe {:.1} ms before, {:.1} ms after (the same work each time: larger = slower CPU)",
            mc.cpu_probe_ms[0], mc.cpu_probe_ms[1]
        );
        if mc.other_cores_sending.is_some_and(|c| c >= 0.1) {
            let _ = writeln!(
                o,
                "            WARNING: other processes used CPU during the run; figures are skewed"
            );
        }
        o
    }
}

pub(crate) fn breaker_name(b: Option<f64>) -> &'static str {
    match b.map(|b| b.round() as i64) {
        Some(0) => "closed",
        Some(1) => "half-open",
        Some(2) => "open",
        _ => "?",
    }
}

/// One line per destination: deliveries, rate, latency, and the hub's backlog and breaker.
fn render_destinations(o: &mut String, dests: &[DestinationReport]) {
    let _ = writeln!(
        o,
        "destination {:>4} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  attempts (delivered/retry/dead)",
        "", "role", "delivered", "dlv/s", "e2e p50", "p99", "max", "backlog", "breaker"
    );
    for d in dests {
        let attempts = |k: &str| d.attempts.get(k).map_or(0.0, |v| *v);
        let lat = |us: u64| {
            if d.end_to_end.count == 0 {
                "-".to_string()
            } else {
                dur(us)
            }
        };
        let _ = writeln!(
            o,
            "            {:>4} {:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {:.0}/{:.0}/{:.0}",
            d.name,
            d.role.as_str(),
            d.delivered,
            grouped(d.delivered_per_sec),
            lat(d.end_to_end.p50_us),
            lat(d.end_to_end.p99_us),
            lat(d.end_to_end.max_us),
            d.backlog_at_end
                .map_or_else(|| "?".to_string(), |b| format!("{b:.0}")),
            breaker_name(d.breaker_at_end),
            attempts("delivered"),
            attempts("retry"),
            attempts("dead"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_helpers() {
        assert_eq!(grouped(1234567.4), "1,234,567");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(dur(999), "999 µs");
        assert_eq!(dur(1500), "1.50 ms");
        assert_eq!(dur(2_500_000), "2.50 s");
    }
}
