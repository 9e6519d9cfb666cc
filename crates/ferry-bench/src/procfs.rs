//! Resource use of a process from `/proc` (Linux; elsewhere every reading is `None`).

use std::collections::BTreeMap;

use serde::Serialize;

/// `/proc` reports CPU times in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SEC: f64 = 100.0;

/// Memory of a process, in bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// Peak resident set size (`VmHWM`).
    pub peak_rss_bytes: u64,
    /// Resident set size now (`VmRSS`).
    pub rss_bytes: u64,
}

/// `VmHWM` and `VmRSS` of `pid` (`"self"` works too).
pub fn memory(pid: &str) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some(Memory {
        peak_rss_bytes: field("VmHWM:")?,
        rss_bytes: field("VmRSS:")?,
    })
}

/// Name and user+system CPU seconds from a `stat` file's contents.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split at the
    // last ')'. After it, utime and stime are the 12th and 13th fields.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_ascii_whitespace().skip(11);
    let utime: f64 = rest.next()?.parse().ok()?;
    let stime: f64 = rest.next()?.parse().ok()?;
    Some((name, (utime + stime) / TICKS_PER_SEC))
}

/// User+system CPU seconds used so far by `pid` (all its threads, live or exited).
pub fn cpu_secs(pid: &str) -> Option<f64> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|(_, s)| s)
}

/// Busy CPU seconds of the whole machine since boot (all CPUs; idle and iowait excluded).
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<f64> = line
        .split_ascii_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is included in user).
    let busy =
        f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7).unwrap_or(&0.0);
    Some(busy / TICKS_PER_SEC)
}

/// The 1-minute load average.
pub fn loadavg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU seconds used so far by the live threads of `pid`, summed per thread name.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadGroup {
    pub threads: u32,
    pub cpu_secs: f64,
    /// Time spent runnable but waiting for a CPU (`schedstat`): CPU contention.
    pub runqueue_wait_secs: f64,
}

pub fn thread_cpu(pid: &str) -> BTreeMap<String, ThreadGroup> {
    let mut out: BTreeMap<String, ThreadGroup> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((name, secs)) = parse_stat(&stat) {
            let wait = std::fs::read_to_string(entry.path().join("schedstat"))
                .ok()
                .and_then(|s| runqueue_wait_secs(&s))
                .unwrap_or(0.0);
            let g = out.entry(name).or_insert(ThreadGroup {
                threads: 0,
                cpu_secs: 0.0,
                runqueue_wait_secs: 0.0,
            });
            g.threads += 1;
            g.cpu_secs += secs;
            g.runqueue_wait_secs += wait;
        }
    }
    out
}

/// Second field of `schedstat` (`on-cpu-ns runqueue-wait-ns timeslices`), in seconds.
fn runqueue_wait_secs(schedstat: &str) -> Option<f64> {
    let ns: f64 = schedstat.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(ns / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_wait() {
        assert_eq!(runqueue_wait_secs("123 2500000000 7\n"), Some(2.5));
        assert_eq!(runqueue_wait_secs("123"), None);
    }

    #[test]
    fn stat_with_odd_name() {
        let stat = "1234 (tokio (w) 1) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        let (name, secs) = parse_stat(stat).unwrap();
        assert_eq!(name, "tokio (w) 1");
        assert!((secs - 3.0).abs() < 1e-9);
    }

    #[test]
    fn own_process_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(memory("self").unwrap().peak_rss_bytes > 0);
            assert!(cpu_secs("self").is_some());
            assert!(!thread_cpu("self").is_empty());
            assert!(machine_busy_secs().is_some_and(|s| s > 0.0));
            assert!(loadavg_1m().is_some());
        }
    }
}
