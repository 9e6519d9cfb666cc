//! A timeline of the run (`run --sample-every`): every interval, the events accepted and
//! delivered so far, the hub's RSS, and each destination's backlog and breaker state from
//! the hub's `/metrics`. It shows whether ingest slows down or memory grows while a
//! destination's backlog piles up.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::receiver::{self, Sink};
use crate::report::{breaker_name, dur, mib};
use crate::sender::{Shared, Target};
use crate::{metrics, procfs};

/// One moment of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_secs: f64,
    /// Events answered 2xx so far.
    pub accepted: u64,
    /// Accepted per second since the previous sample.
    pub accepted_per_sec: f64,
    /// The hub's resident set size (`VmRSS`).
    pub hub_rss_bytes: Option<u64>,
    /// One entry per destination, in the report's order.
    pub destinations: Vec<DestinationSample>,
}

/// One destination at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationSample {
    /// Distinct events its receiver got so far.
    pub delivered: u64,
    /// Delivered per second since the previous sample.
    pub delivered_per_sec: f64,
    /// End-to-end latency of the events delivered since the previous sample: median, 99th
    /// percentile and maximum, µs (none when nothing arrived).
    pub e2e_window_us: Option<[u64; 3]>,
    /// `ferry_backlog_depth`: deliveries waiting (pending, retrying, in flight).
    pub backlog: Option<f64>,
    /// `ferry_breaker_state`: 0 closed, 1 half-open, 2 open.
    pub breaker: Option<f64>,
}

/// What the sampler watches.
pub struct Watched {
    pub shared: Arc<Shared>,
    /// Destination names (as in the hub's config) and their receivers.
    pub destinations: Vec<(String, Arc<Sink>)>,
    pub target: Target,
    pub hub_pid: Option<u32>,
}

/// A running sampler; [`Sampler::finish`] takes a last sample and returns them all.
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Sample now and then every `every` until finished.
    pub fn spawn(every: Duration, watched: Watched) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut samples: Vec<Sample> = Vec::new();
            let mut seen: Vec<Histogram<u64>> = watched
                .destinations
                .iter()
                .map(|_| receiver::new_histogram())
                .collect();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stopped.wait_for(|s| *s) => true,
                };
                let s = take(&watched, samples.last(), &mut seen).await;
                samples.push(s);
                if last {
                    return samples;
                }
            }
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// The latencies recorded since `seen`, which becomes `now`.
fn window(now: Histogram<u64>, seen: &mut Histogram<u64>) -> Option<[u64; 3]> {
    let mut w = now.clone();
    // `seen` is an earlier copy of the same growing histogram: every count is in `now`.
    let ok = w.subtract(&*seen).is_ok();
    *seen = now;
    (ok && !w.is_empty()).then(|| [w.value_at_quantile(0.5), w.value_at_quantile(0.99), w.max()])
}

async fn take(w: &Watched, previous: Option<&Sample>, seen: &mut [Histogram<u64>]) -> Sample {
    let start = w.shared.plan.start;
    let at = Instant::now();
    let t_secs = at.saturating_duration_since(start).as_secs_f64();
    let accepted = w.shared.ok.load(Ordering::Relaxed);
    let delivered: Vec<u64> = w.destinations.iter().map(|(_, s)| s.unique()).collect();
    let rss = w
        .hub_pid
        .and_then(|p| procfs::memory(&p.to_string()))
        .map(|m| m.rss_bytes);
    let text = metrics::text(&w.target).await.unwrap_or_default();
    let backlog = metrics::by_destination(&text, ferry_metrics::BACKLOG_DEPTH, None);
    let breaker = metrics::by_destination(&text, ferry_metrics::BREAKER_STATE, None);
    let rate = |now: u64, before: u64, dt: f64| {
        if dt > 0.0 {
            now.saturating_sub(before) as f64 / dt
        } else {
            0.0
        }
    };
    let dt = previous.map_or(0.0, |p| t_secs - p.t_secs);
    let destinations = w
        .destinations
        .iter()
        .zip(delivered)
        .zip(seen.iter_mut())
        .enumerate()
        .map(|(i, (((name, sink), n), seen))| {
            let before = previous
                .and_then(|p| p.destinations.get(i))
                .map_or(0, |d| d.delivered);
            DestinationSample {
                delivered: n,
                delivered_per_sec: rate(n, before, dt),
                e2e_window_us: window(sink.e2e_us(), seen),
                backlog: backlog.get(name).copied(),
                breaker: breaker.get(name).copied(),
            }
        })
        .collect();
    Sample {
        t_secs,
        accepted,
        accepted_per_sec: rate(accepted, previous.map_or(0, |p| p.accepted), dt),
        hub_rss_bytes: rss,
        destinations,
    }
}

/// The largest backlog of any destination in a sample.
fn largest_backlog(s: &Sample) -> Option<f64> {
    s.destinations
        .iter()
        .filter_map(|d| d.backlog)
        .reduce(f64::max)
}

/// The smallest "round" step (1, 2.5 or 5 × 10^k) not below `x`, at least 1.
fn round_step(x: f64) -> f64 {
    for k in 0..16 {
        let p = 10f64.powi(k);
        for m in [1.0, 2.5, 5.0] {
            if m * p >= x {
                return m * p;
            }
        }
    }
    1e16
}

/// The hub's RSS at the first sample where the largest backlog reached each milestone: 0
/// and round steps of a fifth of the peak backlog or more. `(milestone, backlog, rss)`.
pub fn rss_by_backlog(samples: &[Sample]) -> Vec<(f64, f64, u64)> {
    let peak = samples
        .iter()
        .filter_map(largest_backlog)
        .fold(0.0, f64::max);
    let step = round_step(peak / 5.0);
    let mut out: Vec<(f64, f64, u64)> = Vec::new();
    let mut milestone = 0.0;
    while milestone <= peak {
        let hit = samples.iter().find_map(|s| {
            let b = largest_backlog(s)?;
            (b >= milestone).then_some((b, s.hub_rss_bytes?))
        });
        // A milestone first reached in the same sample as the previous one adds nothing.
        if let Some((b, rss)) = hit
            && out.last().is_none_or(|last| last.1 != b)
        {
            out.push((milestone, b, rss));
        }
        if peak < 1.0 {
            break;
        }
        milestone += step;
    }
    out
}

/// The timeline as a table: one line per sample.
pub fn render(o: &mut String, names: &[String], samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    let mut head = format!(
        "timeline  {:>8} {:>9} {:>8} {:>10}",
        "t", "accepted", "acc/s", "hub RSS"
    );
    for n in names {
        let _ = write!(
            head,
            " │ {:>10} {:>9} {:>9} {:>7}",
            format!("{n} dlv/s"),
            "e2e p99",
            "backlog",
            "breaker"
        );
    }
    let _ = writeln!(o, "{head}");
    for s in samples {
        let mut line = format!(
            "          {:>7.1}s {:>9} {:>8.0} {:>10}",
            s.t_secs,
            s.accepted,
            s.accepted_per_sec,
            s.hub_rss_bytes.map_or_else(|| "?".into(), mib)
        );
        for d in &s.destinations {
            let backlog = d
                .backlog
                .map_or_else(|| "?".to_string(), |b| format!("{b:.0}"));
            let p99 = d
                .e2e_window_us
                .map_or_else(|| "-".to_string(), |[_, p99, _]| dur(p99));
            let _ = write!(
                line,
                " │ {:>10.0} {:>9} {:>9} {:>7}",
                d.delivered_per_sec,
                p99,
                backlog,
                breaker_name(d.breaker)
            );
        }
        let _ = writeln!(o, "{line}");
    }
    let by_backlog = rss_by_backlog(samples);
    if by_backlog.len() > 1 {
        let list: Vec<String> = by_backlog
            .iter()
            .map(|(m, b, rss)| format!("≥{m:.0} ({b:.0}): {}", mib(*rss)))
            .collect();
        let _ = writeln!(
            o,
            "          hub RSS by largest backlog: {}",
            list.join(" · ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, backlog: f64, rss_mib: u64) -> Sample {
        Sample {
            t_secs: t,
            accepted: 0,
            accepted_per_sec: 0.0,
            hub_rss_bytes: Some(rss_mib << 20),
            destinations: vec![
                DestinationSample {
                    delivered: 0,
                    delivered_per_sec: 0.0,
                    e2e_window_us: Some([1_000, 2_500, 3_000]),
                    backlog: Some(3.0),
                    breaker: Some(0.0),
                },
                DestinationSample {
                    delivered: 0,
                    delivered_per_sec: 0.0,
                    e2e_window_us: None,
                    backlog: Some(backlog),
                    breaker: Some(2.0),
                },
            ],
        }
    }

    #[test]
    fn milestones_follow_the_largest_backlog() {
        assert_eq!(round_step(210_000.0), 250_000.0);
        assert_eq!(round_step(250_000.0), 250_000.0);
        assert_eq!(round_step(30.0), 50.0);
        assert_eq!(round_step(0.2), 1.0);
        let samples: Vec<Sample> = (0..=22u32)
            .map(|i| {
                sample(
                    f64::from(i) * 5.0,
                    f64::from(i) * 50_000.0,
                    50 + u64::from(i),
                )
            })
            .collect();
        let m = rss_by_backlog(&samples);
        let milestones: Vec<f64> = m.iter().map(|x| x.0).collect();
        assert_eq!(
            milestones,
            [0.0, 250_000.0, 500_000.0, 750_000.0, 1_000_000.0]
        );
        // backlog 3 (the healthy destination) at t = 0; 250,000 first at sample 5.
        assert_eq!((m[0].1, m[0].2), (3.0, 50 << 20));
        assert_eq!((m[1].1, m[1].2), (250_000.0, 55 << 20));
        let mut o = String::new();
        render(&mut o, &["d1".into(), "d2".into()], &samples);
        assert!(o.contains("open"), "{o}");
        assert!(o.contains("≥1000000 (1000000): 70.0 MiB"), "{o}");
        assert!(o.contains("2.50 ms"), "{o}");
        assert!(rss_by_backlog(&[]).is_empty());
        // Every milestone above 0 first reached in one sample: listed once.
        let jump = [sample(0.0, 0.0, 50), sample(1.0, 4_453.0, 60)];
        let m = rss_by_backlog(&jump);
        let firsts: Vec<(f64, f64)> = m.iter().map(|x| (x.0, x.1)).collect();
        assert_eq!(firsts, [(0.0, 3.0), (1_000.0, 4_453.0)]);
    }

    #[test]
    fn latency_of_each_window() {
        let mut h = receiver::new_histogram();
        let mut seen = receiver::new_histogram();
        assert_eq!(window(h.clone(), &mut seen), None);
        for us in [100, 200, 300] {
            h.record(us).unwrap();
        }
        let [p50, _, max] = window(h.clone(), &mut seen).unwrap();
        assert_eq!((p50, max), (200, 300));
        h.record(50_000).unwrap();
        let [p50, p99, max] = window(h.clone(), &mut seen).unwrap();
        assert!(p50 >= 49_000 && p99 >= 49_000 && max >= 49_000, "{p50}");
        assert_eq!(window(h, &mut seen), None);
    }
}
