//! Fault injection at the receiver: answers 500, 429 or 503, hangs, resets, added latency
//! and intermittent outages, so a run shows what the hub does with a misbehaving
//! destination. A faulty answer is never counted as a delivery.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

use crate::cli::FaultOpts;

/// How the receiver behaves during an outage window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageMode {
    /// Stop listening (connections are refused) and reset open connections; listen again
    /// on the same port when the window ends.
    Refuse,
    /// Keep listening and answer 503 to everything.
    Unavailable,
}

/// `--outage every=10s,for=3s[,mode=refuse|503]`: a window of `down` at the end of every
/// `every` (the receiver starts up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outage {
    #[serde(serialize_with = "secs")]
    pub every: Duration,
    #[serde(rename = "for", serialize_with = "secs")]
    pub down: Duration,
    pub mode: OutageMode,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Outage {
    /// How long the receiver is up in each period.
    pub fn up(&self) -> Duration {
        self.every.saturating_sub(self.down)
    }

    /// Whether `since_start` falls in an outage window.
    pub fn is_down(&self, since_start: Duration) -> bool {
        let period = self.every.as_nanos().max(1);
        since_start.as_nanos() % period >= self.up().as_nanos()
    }
}

impl FromStr for Outage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut every, mut down, mut mode) = (None, None, OutageMode::Refuse);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected key=value"))?;
            let dur = || humantime::parse_duration(v).map_err(|e| format!("`{part}`: {e}"));
            match k {
                "every" => every = Some(dur()?),
                "for" => down = Some(dur()?),
                "mode" => {
                    mode = match v {
                        "refuse" => OutageMode::Refuse,
                        "503" => OutageMode::Unavailable,
                        _ => return Err(format!("`{part}`: mode is `refuse` or `503`")),
                    }
                }
                _ => return Err(format!("`{k}`: expected every=, for= or mode=")),
            }
        }
        let every = every.ok_or("missing every=, e.g. every=10s,for=3s")?;
        let down = down.ok_or("missing for=, e.g. every=10s,for=3s")?;
        if down.is_zero() || down >= every {
            return Err("for= must be longer than zero and shorter than every=".into());
        }
        Ok(Self { every, down, mode })
    }
}

/// What the receiver does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200: delivered.
    Ok,
    /// 500.
    Fail,
    /// 429 with `Retry-After: 1`.
    TooMany,
    /// 503 (outage in `503` mode).
    Unavailable,
    /// No answer: hold the connection until the client gives up.
    Hang,
    /// Read the request, then reset the connection without an answer.
    Reset,
}

/// Faulty answers given so far, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub status_500: AtomicU64,
    pub status_429: AtomicU64,
    pub status_503: AtomicU64,
    pub hang: AtomicU64,
    pub reset: AtomicU64,
    /// Outage windows begun (refuse mode).
    pub outages: AtomicU64,
    /// Connections reset because an outage began.
    pub outage_resets: AtomicU64,
    /// Hung requests held right now.
    pub open_hangs: AtomicU64,
}

/// A copy of [`FaultCounts`] for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultTally {
    pub status_500: u64,
    pub status_429: u64,
    pub status_503: u64,
    pub hang: u64,
    pub reset: u64,
    pub outages: u64,
    pub outage_resets: u64,
}

impl FaultTally {
    pub fn total_answers(&self) -> u64 {
        self.status_500 + self.status_429 + self.status_503 + self.hang + self.reset
    }

    /// Add another receiver's tally.
    pub fn add(&mut self, other: &FaultTally) {
        self.status_500 += other.status_500;
        self.status_429 += other.status_429;
        self.status_503 += other.status_503;
        self.hang += other.hang;
        self.reset += other.reset;
        self.outages += other.outages;
        self.outage_resets += other.outage_resets;
    }
}

impl FaultCounts {
    pub fn count(&self, answer: Answer) {
        let c = match answer {
            Answer::Ok => return,
            Answer::Fail => &self.status_500,
            Answer::TooMany => &self.status_429,
            Answer::Unavailable => &self.status_503,
            Answer::Hang => &self.hang,
            Answer::Reset => &self.reset,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tally(&self) -> FaultTally {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultTally {
            status_500: g(&self.status_500),
            status_429: g(&self.status_429),
            status_503: g(&self.status_503),
            hang: g(&self.hang),
            reset: g(&self.reset),
            outages: g(&self.outages),
            outage_resets: g(&self.outage_resets),
        }
    }
}

/// The configured faults, as reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FaultConfig {
    pub fail_ratio: f64,
    pub too_many_ratio: f64,
    pub hang_ratio: f64,
    pub reset_ratio: f64,
    pub latency_ms: f64,
    pub latency_jitter_ms: f64,
    pub outage: Option<Outage>,
}

impl FaultConfig {
    /// `none`, or e.g. `500 20% · reset 2% · latency 5 ms + 0..10 ms · outage 3s every 10s`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, r) in [
            ("500", self.fail_ratio),
            ("429", self.too_many_ratio),
            ("hang", self.hang_ratio),
            ("reset", self.reset_ratio),
        ] {
            if r > 0.0 {
                parts.push(format!("{name} {}%", r * 100.0));
            }
        }
        if self.latency_ms > 0.0 || self.latency_jitter_ms > 0.0 {
            parts.push(format!(
                "latency {} ms + 0..{} ms",
                self.latency_ms, self.latency_jitter_ms
            ));
        }
        if let Some(o) = &self.outage {
            let how = match o.mode {
                OutageMode::Refuse => "refused",
                OutageMode::Unavailable => "503",
            };
            parts.push(format!(
                "outage {} every {} ({how})",
                humantime::format_duration(o.down),
                humantime::format_duration(o.every)
            ));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" · ")
        }
    }
}

/// The receiver's fault plan and its dice.
#[derive(Debug)]
pub struct Faults {
    config: FaultConfig,
    latency: Duration,
    jitter: Duration,
    epoch: Instant,
    rng: Mutex<StdRng>,
    pub counts: FaultCounts,
}

impl Faults {
    /// No faults: every request is answered 200 at once.
    pub fn none() -> Self {
        Self::build(FaultConfig::default(), Duration::ZERO, Duration::ZERO, 0)
    }

    /// A receiver that never answers: every request hangs until the client gives up.
    pub fn hanging() -> Self {
        let config = FaultConfig {
            hang_ratio: 1.0,
            ..FaultConfig::default()
        };
        Self::build(config, Duration::ZERO, Duration::ZERO, 0)
    }

    /// Validate `opts`; `seed` makes the draws repeatable.
    pub fn new(opts: &FaultOpts, seed: u64) -> anyhow::Result<Self> {
        let ratios = [
            ("--fail-ratio", opts.fail_ratio),
            ("--429-ratio", opts.too_many_ratio),
            ("--hang-ratio", opts.hang_ratio),
            ("--reset-ratio", opts.reset_ratio),
        ];
        for (name, r) in ratios {
            anyhow::ensure!(
                r.is_finite() && (0.0..=1.0).contains(&r),
                "{name} must be between 0 and 1"
            );
        }
        let sum: f64 = ratios.iter().map(|(_, r)| r).sum();
        anyhow::ensure!(
            sum < 1.0,
            "the fault ratios add up to {sum}: nothing would ever be delivered"
        );
        let latency = opts.latency.unwrap_or_default();
        let jitter = opts.latency_jitter.unwrap_or_default();
        let config = FaultConfig {
            fail_ratio: opts.fail_ratio,
            too_many_ratio: opts.too_many_ratio,
            hang_ratio: opts.hang_ratio,
            reset_ratio: opts.reset_ratio,
            latency_ms: latency.as_secs_f64() * 1e3,
            latency_jitter_ms: jitter.as_secs_f64() * 1e3,
            outage: opts.outage,
        };
        Ok(Self::build(config, latency, jitter, seed))
    }

    fn build(config: FaultConfig, latency: Duration, jitter: Duration, seed: u64) -> Self {
        Self {
            config,
            latency,
            jitter,
            epoch: Instant::now(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counts: FaultCounts::default(),
        }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Whether any fault is configured, i.e. deliveries will fail on purpose.
    pub fn any(&self) -> bool {
        self.config != FaultConfig::default()
    }

    pub fn outage(&self) -> Option<Outage> {
        self.config.outage
    }

    /// Decide the answer to one request and how long to wait before giving it.
    pub fn draw(&self) -> (Answer, Duration) {
        let c = &self.config;
        if let Some(o) = &c.outage
            && o.mode == OutageMode::Unavailable
            && o.is_down(self.epoch.elapsed())
        {
            return (Answer::Unavailable, self.latency);
        }
        if !self.any() {
            return (Answer::Ok, Duration::ZERO);
        }
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let delay = if self.jitter.is_zero() {
            self.latency
        } else {
            self.latency + self.jitter.mul_f64(rng.random::<f64>())
        };
        let x: f64 = rng.random();
        let mut edge = 0.0;
        for (ratio, answer) in [
            (c.hang_ratio, Answer::Hang),
            (c.reset_ratio, Answer::Reset),
            (c.fail_ratio, Answer::Fail),
            (c.too_many_ratio, Answer::TooMany),
        ] {
            edge += ratio;
            if x < edge {
                return (answer, delay);
            }
        }
        (Answer::Ok, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> FaultOpts {
        FaultOpts::default()
    }

    #[test]
    fn outage_spec() {
        let o: Outage = "every=10s,for=3s".parse().unwrap();
        assert_eq!(
            (o.every, o.down, o.mode),
            (
                Duration::from_secs(10),
                Duration::from_secs(3),
                OutageMode::Refuse
            )
        );
        assert_eq!(o.up(), Duration::from_secs(7));
        assert!(!o.is_down(Duration::from_secs(6)));
        assert!(o.is_down(Duration::from_millis(7_500)));
        assert!(!o.is_down(Duration::from_secs(10)));
        let o: Outage = "for=500ms, every=2s, mode=503".parse().unwrap();
        assert_eq!(o.mode, OutageMode::Unavailable);
        for bad in [
            "every=1s",
            "for=1s",
            "every=1s,for=2s",
            "every=1s,for=0s",
            "x=1",
        ] {
            assert!(bad.parse::<Outage>().is_err(), "{bad}");
        }
    }

    #[test]
    fn draws_follow_the_ratios() {
        let mut o = opts();
        o.fail_ratio = 0.2;
        o.reset_ratio = 0.1;
        o.latency = Some(Duration::from_millis(5));
        o.latency_jitter = Some(Duration::from_millis(10));
        let f = Faults::new(&o, 7).unwrap();
        assert!(f.any());
        let (mut ok, mut fail, mut reset) = (0, 0, 0);
        for _ in 0..10_000 {
            let (a, d) = f.draw();
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(15));
            match a {
                Answer::Ok => ok += 1,
                Answer::Fail => fail += 1,
                Answer::Reset => reset += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!((6_600..7_400).contains(&ok), "{ok}");
        assert!((1_700..2_300).contains(&fail), "{fail}");
        assert!((800..1_200).contains(&reset), "{reset}");
        assert!(f.config().describe().contains("500 20%"));
    }

    #[test]
    fn no_faults_and_bad_ratios() {
        let f = Faults::none();
        assert!(!f.any());
        assert_eq!(f.draw(), (Answer::Ok, Duration::ZERO));
        assert_eq!(f.config().describe(), "none");
        let mut o = opts();
        o.fail_ratio = 0.6;
        o.too_many_ratio = 0.4;
        assert!(Faults::new(&o, 1).is_err());
        o.too_many_ratio = -0.1;
        assert!(Faults::new(&o, 1).is_err());
        let h = Faults::hanging();
        assert!(h.any());
        assert!((0..100).all(|_| h.draw() == (Answer::Hang, Duration::ZERO)));
        assert_eq!(h.config().describe(), "hang 100%");
    }
}
