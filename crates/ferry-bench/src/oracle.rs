//! The crash oracle's verdict: what the senders had acknowledged against what the receiver
//! got, and the report of a `crash` run.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::Breaker;
use crate::faults::{FaultConfig, FaultTally};
use crate::receiver::Seen;
use crate::sender::Sent;

/// How many example event ids a report lists per kind of failure.
pub const EXAMPLES: usize = 10;

/// Sent against delivered, event by event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// Events written to the hub.
    pub sent: u64,
    /// Of those, answered 2xx.
    pub acked: u64,
    /// Written, but no 2xx (reset, timed out, refused with a status).
    pub sent_not_acked: u64,
    /// Distinct events of this run the receiver answered 200.
    pub delivered: u64,
    pub delivered_acked: u64,
    /// Delivered although their ingest request got no 2xx: allowed (stored, then the hub
    /// died before answering).
    pub delivered_not_acked: u64,
    /// Acknowledged, never delivered.
    pub lost: u64,
    /// Sender event ids (`evt_<run>_<seq>`) of the first lost events.
    pub lost_examples: Vec<String>,
    /// Events whose delivered body differs from the body sent, or between deliveries.
    pub corrupted: u64,
    pub corrupted_examples: Vec<String>,
    /// Delivered events that were never written to the hub.
    pub unknown: u64,
    pub unknown_examples: Vec<String>,
    /// Deliveries beyond the first of each event (at-least-once: allowed).
    pub duplicates: u64,
    /// Events delivered more than once.
    pub duplicated_events: u64,
    /// Deliveries under another `webhook-id` than their event's first delivery.
    pub duplicates_mismatched_id: u64,
    /// `evt_…: dlv_a then dlv_b` for the first such events.
    pub mismatch_examples: Vec<String>,
}

fn event_id(run: &str, seq: u64) -> String {
    format!("evt_{run}_{seq}")
}

fn push_example(list: &mut Vec<String>, example: impl FnOnce() -> String) {
    if list.len() < EXAMPLES {
        list.push(example());
    }
}

/// Compare the senders' record with the receiver's, event by event.
pub fn compare(run: &str, sent: &[Sent], delivered: &HashMap<u64, Seen>) -> Comparison {
    let mut sent: Vec<Sent> = sent.to_vec();
    sent.sort_unstable_by_key(|s| s.seq);
    let mut c = Comparison {
        sent: sent.len() as u64,
        delivered: delivered.len() as u64,
        ..Comparison::default()
    };
    for s in &sent {
        if s.acked {
            c.acked += 1;
        } else {
            c.sent_not_acked += 1;
        }
        let Some(seen) = delivered.get(&s.seq) else {
            if s.acked {
                c.lost += 1;
                push_example(&mut c.lost_examples, || event_id(run, s.seq));
            }
            continue;
        };
        if s.acked {
            c.delivered_acked += 1;
        } else {
            c.delivered_not_acked += 1;
        }
        if seen.body_hash != s.body_hash || seen.other_bodies > 0 {
            c.corrupted += 1;
            push_example(&mut c.corrupted_examples, || {
                format!(
                    "{} ({} of {} deliveries differ from the first; first {} the body sent)",
                    event_id(run, s.seq),
                    seen.other_bodies,
                    seen.deliveries,
                    if seen.body_hash == s.body_hash {
                        "matches"
                    } else {
                        "differs from"
                    }
                )
            });
        }
    }
    let mut seqs: Vec<&u64> = delivered.keys().collect();
    seqs.sort_unstable();
    for seq in seqs {
        let seen = &delivered[seq];
        if sent.binary_search_by_key(seq, |s| s.seq).is_err() {
            c.unknown += 1;
            push_example(&mut c.unknown_examples, || event_id(run, *seq));
        }
        if seen.deliveries > 1 {
            c.duplicated_events += 1;
            c.duplicates += u64::from(seen.deliveries - 1);
        }
        if seen.other_ids > 0 {
            c.duplicates_mismatched_id += u64::from(seen.other_ids);
            push_example(&mut c.mismatch_examples, || {
                format!(
                    "{}: first `{}`, then `{}`",
                    event_id(run, *seq),
                    seen.first_id,
                    seen.other_id_example.as_deref().unwrap_or("")
                )
            });
        }
    }
    c
}

/// How a crash run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct CrashConfig {
    pub kills: u32,
    pub uptime_min_secs: f64,
    pub uptime_max_secs: f64,
    pub tail_secs: f64,
    pub connections: u64,
    /// Fixed rate in events/s; `None` = closed loop.
    pub rate: Option<f64>,
    /// Cap on the events sent, if any.
    pub events: Option<u64>,
    pub body_bytes: usize,
    pub request_timeout_secs: f64,
    pub drain_timeout_secs: f64,
    pub hub_concurrency: usize,
    /// The destination's `http.timeout` in the generated config.
    pub hub_timeout_secs: f64,
    pub breaker: Breaker,
    pub faults: FaultConfig,
    pub cpus: usize,
}

/// One SIGKILL and the restart after it.
#[derive(Debug, Clone, Serialize)]
pub struct Kill {
    /// 1-based.
    pub n: u32,
    /// Seconds since the load started.
    pub at_secs: f64,
    /// How long this hub process had been ready when it was killed.
    pub uptime_secs: f64,
    /// Events acknowledged (all processes so far) when the kill was sent.
    pub acked_before: u64,
    /// The killed process's exit status.
    pub exit: String,
    /// SIGKILL sent → the new process printed its ready line.
    pub restart_secs: f64,
}

/// Min, median and max.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        Self {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Kills {
    pub requested: u32,
    pub done: u32,
    pub restart_secs: Spread,
    /// Times the hub was found dead without having been killed (a crash of its own).
    pub unexpected_exits: Vec<String>,
    /// Why a restart failed, if one did (the run stops there).
    pub restart_failure: Option<String>,
    pub each: Vec<Kill>,
}

/// What the senders did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    /// Event numbers used: sent, or failed before sending.
    pub attempted: u64,
    /// Requests written to the hub.
    pub sent: u64,
    /// Answered 2xx.
    pub acked: u64,
    /// `attempted - acked`.
    pub not_acked: u64,
    /// Of those, never written: no connection (the hub was down).
    pub connect_failed: u64,
    /// First send → load stopped.
    pub secs: f64,
    pub acked_per_sec: f64,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, u64>,
}

/// What the receiver saw besides the events of this run.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverSummary {
    /// Requests, whatever the answer.
    pub requests: u64,
    /// Faulty answers given (never counted as deliveries).
    pub faults: FaultTally,
    pub without_webhook_id: u64,
    /// Deliveries of other runs' events.
    pub foreign: u64,
    /// Deliveries whose body is not a bench event at all.
    pub unparsable: u64,
    pub unparsable_example: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrashDrain {
    /// Every acknowledged event arrived.
    pub complete: bool,
    /// Load stopped → last acknowledged event arrived (or the wait gave up).
    pub secs: f64,
    /// Acknowledged events still missing when the wait ended.
    pub missing: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrashHub {
    /// Panic lines in the hub's log (all processes).
    pub panics: Vec<String>,
    /// How the last process stopped after SIGTERM.
    pub final_stop: String,
    pub clean_stop: bool,
    /// `GET /admin/v1/lanes` once the drain ended: deliveries by state (a dead-lettered
    /// delivery is not delivered, so it shows up here as well as in `lost`).
    pub lanes_after_drain: Option<serde_json::Value>,
    /// The config and data directory (with `hub.log`), when kept: always on failure.
    pub data_dir: Option<String>,
}

/// The report of `ferry-bench crash`.
#[derive(Debug, Clone, Serialize)]
pub struct CrashReport {
    pub mode: &'static str,
    pub passed: bool,
    /// Why it did not pass (empty when it did).
    pub failures: Vec<String>,
    pub run_id: String,
    pub seed: u64,
    pub started_at_unix: i64,
    pub target: String,
    pub receiver: String,
    pub config: CrashConfig,
    pub kills: Kills,
    pub load: LoadSummary,
    pub events: Comparison,
    pub receiver_side: ReceiverSummary,
    pub drain: CrashDrain,
    pub hub: CrashHub,
}

/// Everything that makes the oracle fail.
pub fn failures(r: &CrashReport) -> Vec<String> {
    let mut f = Vec::new();
    let e = &r.events;
    let mut add = |cond: bool, what: String| {
        if cond {
            f.push(what);
        }
    };
    add(
        e.lost > 0,
        format!(
            "{} acknowledged events never reached the receiver, e.g. {}",
            e.lost,
            e.lost_examples.join(", ")
        ),
    );
    add(
        e.corrupted > 0,
        format!(
            "{} events arrived with a body other than the one sent, e.g. {}",
            e.corrupted,
            e.corrupted_examples.join("; ")
        ),
    );
    add(
        e.duplicates_mismatched_id > 0,
        format!(
            "{} deliveries carried another webhook-id than their event's first delivery, e.g. {}",
            e.duplicates_mismatched_id,
            e.mismatch_examples.join("; ")
        ),
    );
    add(
        e.unknown > 0,
        format!(
            "{} delivered events were never sent, e.g. {}",
            e.unknown,
            e.unknown_examples.join(", ")
        ),
    );
    let rs = &r.receiver_side;
    add(
        rs.unparsable > 0,
        format!(
            "{} deliveries were not bench events (corrupted?), e.g. `{}`",
            rs.unparsable,
            rs.unparsable_example.as_deref().unwrap_or("")
        ),
    );
    add(
        rs.without_webhook_id > 0,
        format!("{} deliveries had no webhook-id", rs.without_webhook_id),
    );
    add(
        !r.hub.panics.is_empty(),
        format!(
            "the hub panicked {} times: {}",
            r.hub.panics.len(),
            r.hub.panics.first().map_or("", String::as_str)
        ),
    );
    for exit in &r.kills.unexpected_exits {
        add(true, format!("the hub exited without being killed: {exit}"));
    }
    if let Some(why) = &r.kills.restart_failure {
        add(true, format!("the hub could not be restarted: {why}"));
    }
    let k = &r.kills;
    add(
        k.done < k.requested && k.restart_failure.is_none(),
        format!("only {} of {} kills were made", k.done, k.requested),
    );
    add(
        !r.drain.complete && e.lost == 0,
        format!(
            "the drain did not complete ({} acknowledged events missing)",
            r.drain.missing
        ),
    );
    add(
        !r.hub.clean_stop,
        format!(
            "the hub did not stop cleanly on SIGTERM: {}",
            r.hub.final_stop
        ),
    );
    add(
        r.load.acked == 0,
        "no event was acknowledged: the run proves nothing".to_string(),
    );
    f
}

fn n(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl CrashReport {
    pub fn render(&self) -> String {
        let mut o = String::new();
        let c = &self.config;
        let e = &self.events;
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(
            o,
            "ferry-bench crash: {verdict} — {} SIGKILLs, {} acknowledged events, {} lost, {} corrupted, {} webhook-id mismatches",
            self.kills.done,
            n(e.acked),
            n(e.lost),
            n(e.corrupted),
            n(e.duplicates_mismatched_id)
        );
        let shape = c.rate.map_or_else(
            || "closed loop".to_string(),
            |r| format!("fixed rate {r}/s"),
        );
        let _ = writeln!(
            o,
            "  {} connections, {shape}, {}-byte bodies · uptime {:.2}..{:.2} s per kill · seed {} · run {}",
            c.connections,
            c.body_bytes,
            c.uptime_min_secs,
            c.uptime_max_secs,
            self.seed,
            self.run_id
        );
        let _ = writeln!(
            o,
            "  hub destination: timeout {} s, concurrency {}, breaker {:?} · receiver faults: {}",
            c.hub_timeout_secs,
            c.hub_concurrency,
            c.breaker,
            c.faults.describe()
        );
        let _ = writeln!(o);
        let k = &self.kills;
        let _ = writeln!(
            o,
            "kills       {} of {} · restart (SIGKILL → ready) min {:.3} s · median {:.3} s · max {:.3} s",
            k.done, k.requested, k.restart_secs.min, k.restart_secs.median, k.restart_secs.max
        );
        for (i, chunk) in k.each.chunks(20).enumerate() {
            let list: Vec<String> = chunk
                .iter()
                .map(|k| format!("{:.2}", k.restart_secs))
                .collect();
            let label = if i == 0 { "restart s" } else { "" };
            let _ = writeln!(o, "  {label:<10}{}", list.join(" "));
        }
        let l = &self.load;
        let _ = writeln!(
            o,
            "load        {} events attempted · {} sent · {} acked ({:.0}/s over {:.1} s) · {} not acked ({} never sent: no connection)",
            n(l.attempted),
            n(l.sent),
            n(l.acked),
            l.acked_per_sec,
            l.secs,
            n(l.not_acked),
            n(l.connect_failed)
        );
        if !l.errors.is_empty() {
            let list: Vec<String> = l.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(o, "            sender errors: {}", list.join(" · "));
        }
        let _ = writeln!(
            o,
            "delivered   {} distinct events ({} acked, {} not acked) · {} receiver requests",
            n(e.delivered),
            n(e.delivered_acked),
            n(e.delivered_not_acked),
            n(self.receiver_side.requests)
        );
        let _ = writeln!(
            o,
            "oracle      lost {} · corrupted {} · never sent {} · duplicates {} (of {} events), {} under another webhook-id",
            n(e.lost),
            n(e.corrupted),
            n(e.unknown),
            n(e.duplicates),
            n(e.duplicated_events),
            n(e.duplicates_mismatched_id)
        );
        let rs = &self.receiver_side;
        let f = &rs.faults;
        if f.total_answers() + f.outages > 0 {
            let _ = writeln!(
                o,
                "receiver    faulty answers: 500 ×{} · 429 ×{} · 503 ×{} · hang ×{} · reset ×{} · outages {} ({} connections reset)",
                f.status_500,
                f.status_429,
                f.status_503,
                f.hang,
                f.reset,
                f.outages,
                f.outage_resets
            );
        }
        let d = &self.drain;
        let _ = writeln!(
            o,
            "drain       {} after {:.2} s",
            if d.complete {
                "complete".to_string()
            } else {
                format!("INCOMPLETE ({} acknowledged events missing)", d.missing)
            },
            d.secs
        );
        let h = &self.hub;
        let _ = writeln!(
            o,
            "hub         panics {} · final SIGTERM: {}",
            h.panics.len(),
            h.final_stop
        );
        for p in &h.panics {
            let _ = writeln!(o, "            {p}");
        }
        if !self.passed
            && let Some(lanes) = &h.lanes_after_drain
        {
            let _ = writeln!(o, "            lanes after the drain: {lanes}");
        }
        if let Some(dir) = &h.data_dir {
            let _ = writeln!(o, "            config, data and hub.log kept in {dir}");
        }
        if !self.failures.is_empty() {
            let _ = writeln!(o, "failures:");
            for f in &self.failures {
                let _ = writeln!(o, "  - {f}");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, hash: u64, deliveries: u32) -> Seen {
        Seen {
            first_id: id.into(),
            body_hash: hash,
            deliveries,
            other_ids: 0,
            other_bodies: 0,
            other_id_example: None,
        }
    }

    fn sent(seq: u64, acked: bool) -> Sent {
        Sent {
            seq,
            body_hash: seq * 10,
            acked,
        }
    }

    #[test]
    fn compare_finds_loss_corruption_and_mismatched_ids() {
        let log = [
            sent(0, true),
            sent(1, true),
            sent(2, true),
            sent(3, false),
            sent(4, false),
            sent(5, true),
        ];
        let mut got = HashMap::new();
        got.insert(0, seen("dlv_0", 0, 1));
        got.insert(1, seen("dlv_1", 10, 3)); // two duplicates, same id
        got.insert(2, seen("dlv_2", 99, 1)); // corrupted
        got.insert(3, seen("dlv_3", 30, 1)); // not acked, delivered: fine
        let mut m = seen("dlv_5", 50, 2);
        m.other_ids = 1;
        m.other_id_example = Some("dlv_x".into());
        got.insert(5, m);
        got.insert(9, seen("dlv_9", 1, 1)); // never sent
        let c = compare("r", &log, &got);
        assert_eq!((c.sent, c.acked, c.sent_not_acked), (6, 4, 2));
        assert_eq!(
            (c.delivered, c.delivered_acked, c.delivered_not_acked),
            (6, 4, 1)
        );
        assert_eq!((c.lost, c.corrupted, c.unknown), (0, 1, 1));
        assert_eq!(c.corrupted_examples.len(), 1);
        assert!(c.corrupted_examples[0].starts_with("evt_r_2 "));
        assert_eq!(c.unknown_examples, ["evt_r_9"]);
        assert_eq!((c.duplicates, c.duplicated_events), (3, 2));
        assert_eq!(c.duplicates_mismatched_id, 1);
        assert_eq!(
            c.mismatch_examples,
            ["evt_r_5: first `dlv_5`, then `dlv_x`"]
        );

        got.remove(&1);
        let c = compare("r", &log, &got);
        assert_eq!(
            (c.lost, c.lost_examples.clone()),
            (1, vec!["evt_r_1".to_string()])
        );
    }

    #[test]
    fn spread() {
        let s = Spread::of([0.3, 0.1, 0.2]);
        assert_eq!((s.min, s.median, s.max), (0.1, 0.2, 0.3));
        assert_eq!(Spread::of([]), Spread::default());
        assert_eq!(n(1234567), "1,234,567");
    }
}
