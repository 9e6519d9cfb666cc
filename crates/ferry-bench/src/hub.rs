//! Starting and stopping a `ferry serve` process with a generated bench config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::cli::{Breaker, Protect};

/// The bench flow's Standard Webhooks secret.
pub const SOURCE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The generated config's admin token (`GET /admin/v1/lanes` after a crash run).
pub const ADMIN_TOKEN: &str = "ferry-bench-admin-token-5a3c9e1f7b2d4086";
/// The bench flow's name, hence its ingest path segment.
pub const FLOW: &str = "bench";

const READY_PREFIX: &str = "ferry listening on http://";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the hub may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What to start.
#[derive(Debug, Clone)]
pub struct HubSpec {
    pub ferry: PathBuf,
    /// One receiver per destination of the bench flow, in order (see [`destination_names`]).
    pub receivers: Vec<SocketAddr>,
    pub concurrency: usize,
    pub data_root: Option<PathBuf>,
    pub keep: bool,
    /// `--listen`; port 0 lets the hub pick one.
    pub listen: SocketAddr,
    pub tuning: Tuning,
    /// A destination of another kind in place of the HTTP receivers (`ferry-bench sink`).
    pub sink: Option<SinkSpec>,
}

/// The bench flow's one destination `sink` when it is not HTTP: a broker or a database.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The destination's kind block, one line, e.g. `nats: { url: …, subject: … }`.
    pub kind_yaml: String,
    /// More lines of the destination, each indented by eight spaces (e.g. `batch: …`).
    pub extra_yaml: String,
    /// Files written next to the config (secrets the kind block references): name, content.
    pub files: Vec<(String, String)>,
}

/// How the generated config treats failing deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// The destination's `http.timeout`.
    pub timeout: Duration,
    /// Retry fast and practically for ever (1000 attempts, 50 ms .. 2 s backoff, 24 h), so
    /// that deliberately failing deliveries are delayed, never dead-lettered.
    pub persistent_retry: bool,
    pub breaker: Breaker,
    /// `backlog.max_pending`; `None` leaves the hub's default.
    pub max_pending: Option<u64>,
    /// Classification and encryption at rest of the bench events.
    pub protect: Protect,
    /// Export spans to this OTLP/HTTP sink, recording this many per mille of new traces.
    pub trace: Option<(SocketAddr, u16)>,
}

impl Tuning {
    /// For a receiver that always answers 200: the hub's defaults, a 10 s timeout.
    pub const PLAIN: Tuning = Tuning {
        timeout: Duration::from_secs(10),
        persistent_retry: false,
        breaker: Breaker::Default,
        max_pending: None,
        protect: Protect::Off,
        trace: None,
    };

    /// For a receiver that fails on purpose, or a hub that is killed.
    pub const CHAOS: Tuning = Tuning {
        timeout: Duration::from_secs(2),
        persistent_retry: true,
        breaker: Breaker::Fast,
        max_pending: None,
        protect: Protect::Off,
        trace: None,
    };
}

/// A running hub. It can be killed and started again on the same config, data directory
/// and address.
#[derive(Debug)]
pub struct Hub {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    ferry: PathBuf,
    dir: tempfile::TempDir,
    keep: bool,
}

/// How the hub stopped.
#[derive(Debug, Clone)]
pub struct Stopped {
    /// `exit status: 0`, `killed after 60s`, ...
    pub exit: String,
    pub clean: bool,
    pub stop_secs: f64,
    /// The config and data directory, if kept.
    pub kept_dir: Option<PathBuf>,
}

/// The default `ferry` binary: next to this executable (e.g. `target/release/ferry`).
pub fn default_ferry() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the ferry-bench executable")?;
    let dir = exe
        .parent()
        .context("the ferry-bench executable has no parent directory")?;
    Ok(dir.join(format!("ferry{}", std::env::consts::EXE_SUFFIX)))
}

/// The destination's resilience lines of the bench config.
fn resilience_yaml(t: &Tuning) -> String {
    let mut y = String::new();
    if t.persistent_retry {
        y.push_str(
            "        retry: { max_attempts: 1000, max_age: 24h, initial_backoff: 50ms, max_backoff: 2s }\n",
        );
    }
    match t.breaker {
        Breaker::Default => {}
        Breaker::Off => y.push_str("        circuit_breaker: { enabled: false }\n"),
        Breaker::Fast => y.push_str(
            "        circuit_breaker: { failure_ratio: 0.9, min_requests: 20, window: 10s, cool_down: 1s, half_open_probes: 4 }\n",
        ),
    }
    if let Some(n) = t.max_pending {
        y.push_str(&format!("        backlog: {{ max_pending: {n} }}\n"));
    }
    y
}

/// Names of the bench flow's destinations: `sink` when there is one, else `d1`..`dN`.
pub fn destination_names(n: usize) -> Vec<String> {
    if n == 1 {
        vec!["sink".to_string()]
    } else {
        (1..=n).map(|i| format!("d{i}")).collect()
    }
}

/// The bench config: one flow from a Standard Webhooks source to one destination per
/// receiver, all on loopback and so allowed past the hub's egress (SSRF) guard.
pub fn config_yaml(
    receivers: &[SocketAddr],
    concurrency: usize,
    tuning: &Tuning,
    sink: Option<&SinkSpec>,
) -> String {
    let timeout = humantime::format_duration(tuning.timeout);
    let connect = humantime::format_duration(tuning.timeout.min(Duration::from_secs(1)));
    let resilience = resilience_yaml(tuning);
    let mut destinations = String::new();
    if let Some(sink) = sink {
        destinations.push_str(&format!(
            "      sink:
        system: bench-dst
        {}
        concurrency: {concurrency}
{resilience}{}",
            sink.kind_yaml, sink.extra_yaml
        ));
    }
    for (name, receiver) in destination_names(receivers.len())
        .iter()
        .zip(receivers)
        .filter(|_| sink.is_none())
    {
        destinations.push_str(&format!(
            "      {name}:
        system: bench-dst
        http: {{ url: \"http://{receiver}/sink\", timeout: {timeout}, connect_timeout: {connect} }}
        concurrency: {concurrency}
{resilience}"
        ));
    }
    let (protection, steps) = match tuning.protect {
        Protect::Off => ("", ""),
        Protect::Validated | Protect::Classified => (
            "",
            "    steps:\n      - validate: { schema: bench-event }\n",
        ),
        Protect::Encrypted | Protect::EncryptedNewSubjects => (
            "  protection:\n    hash_key: { file: hash-key }\n    keys:\n      - { id: bench-kek, key: { file: kek } }\n",
            "    steps:\n      - validate: { schema: bench-event }\n",
        ),
    };
    let (schemas, dst_policy) = if tuning.protect == Protect::Off {
        ("", "")
    } else if tuning.protect == Protect::Validated {
        ("schemas:\n  bench-event: { file: bench-event.json }\n", "")
    } else {
        (
            "schemas:\n  bench-event: { file: bench-event.json }\n",
            // The receiver may receive the classified fields: the policy lets them through
            // (and is applied to every delivery, as for any system with classified data).
            ", policy: { data_use: essential.service, receives: [user] }",
        )
    };
    let tracing = match tuning.trace {
        Some((sink, per_mille)) => format!(
            "  tracing: {{ otlp_endpoint: \"http://{sink}/v1/traces\", sample_ratio: {} }}\n",
            f64::from(per_mille) / 1000.0
        ),
        None => String::new(),
    };
    format!(
        "\
# Generated by ferry-bench.
settings:
  listen: 127.0.0.1:0
  admin: {{ token: {{ file: admin-token }} }}
  delivery:
    egress_allow: [\"127.0.0.0/8\", \"::1\"]
{tracing}{protection}{schemas}systems:
  bench-src: {{ owner: bench }}
  bench-dst: {{ owner: bench{dst_policy} }}
flows:
  {FLOW}:
    source:
      webhook:
        system: bench-src
        signature:
          standard_webhooks: {{ secret: {{ file: source-secret }} }}
{steps}    destinations:
{destinations}"
    )
}

/// The bench event's schema for `protect`: `pad` and `run` classified, the subject `run`
/// (one per run) or `seq` (one per event).
fn bench_schema(protect: Protect) -> String {
    let (run_subject, seq_subject) = match protect {
        Protect::EncryptedNewSubjects => ("", ", \"x-ferry-subject\": true"),
        _ => (", \"x-ferry-subject\": true", ""),
    };
    let (run_category, pad_category) = if protect == Protect::Validated {
        ("", "")
    } else {
        (
            ", \"x-ferry-category\": \"user.unique_id\"",
            ", \"x-ferry-category\": \"user.content\"",
        )
    };
    // Unclassified, a schema names no subject either.
    let run_subject = if protect == Protect::Validated {
        ""
    } else {
        run_subject
    };
    format!(
        r#"{{
  "type": "object",
  "required": ["sent_ns", "run", "seq"],
  "properties": {{
    "sent_ns": {{ "type": "integer" }},
    "run": {{ "type": "string"{run_category}{run_subject} }},
    "seq": {{ "type": "integer"{seq_subject} }},
    "type": {{ "type": "string" }},
    "pad": {{ "type": "string"{pad_category} }}
  }}
}}
"#
    )
}

/// Write the bench config directory (YAML and the secret files it references).
pub fn write_config(
    dir: &Path,
    receivers: &[SocketAddr],
    concurrency: usize,
    tuning: &Tuning,
    sink: Option<&SinkSpec>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("ferry.yaml"),
        config_yaml(receivers, concurrency, tuning, sink),
    )?;
    for (name, content) in sink.iter().flat_map(|s| &s.files) {
        std::fs::write(dir.join(name), content)?;
    }
    if tuning.protect != Protect::Off {
        std::fs::write(dir.join("bench-event.json"), bench_schema(tuning.protect))?;
        // Fixed bench keys: the data dir is thrown away after the run.
        std::fs::write(
            dir.join("hash-key"),
            "ferry-bench-hash-key-4c1d8e2f9a7b3065e1d2\n",
        )?;
        std::fs::write(
            dir.join("kek"),
            "ZmVycnktYmVuY2gta2V5LWVuY3J5cHRpb24ta2V5ISE=\n",
        )?;
    }
    std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n"))?;
    std::fs::write(dir.join("source-secret"), format!("{SOURCE_SECRET}\n"))
}

/// Last `n` lines of a log file, for error messages.
fn log_tail(path: &Path, n: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::from("(no log)");
    };
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..].join("\n")
}

/// Lines of the hub's log that report a panic (with the line after each: the message).
pub fn panics(log: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("panicked at"))
        .map(|(i, l)| match lines.get(i + 1) {
            Some(next) => format!("{} {}", l.trim(), next.trim()),
            None => l.trim().to_string(),
        })
        .collect()
}

/// Spawn `ferry serve` and wait for its ready line; the child and the address it printed.
async fn spawn(
    ferry: &Path,
    dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<(Child, u32, SocketAddr)> {
    let log_path = dir.join("hub.log");
    // Append: the log of a hub that is restarted keeps every run's lines.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut child = Command::new(ferry)
        .arg("serve")
        .arg("--config")
        .arg(dir.join("config"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(listen.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", ferry.display()))?;
    let pid = child.id().context("the hub exited at once")?;
    let stdout = child.stdout.take().context("no stdout pipe to the hub")?;
    let mut lines = BufReader::new(stdout).lines();

    let ready = tokio::time::timeout(READY_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.trim().strip_prefix(READY_PREFIX) {
                return Ok(Some(rest.trim_end_matches('/').to_string()));
            }
        }
        Ok::<_, std::io::Error>(None)
    })
    .await;
    let addr = match ready {
        Ok(Ok(Some(addr))) => addr,
        other => {
            let why = match other {
                Err(_) => format!("no ready line within {}s", READY_TIMEOUT.as_secs()),
                Ok(Err(e)) => format!("reading its stdout failed: {e}"),
                _ => "it closed stdout without printing the ready line".to_string(),
            };
            let _ = child.start_kill();
            let status = child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_default();
            bail!(
                "the hub did not start: {why} ({status}). Last lines of {}:\n{}",
                log_path.display(),
                log_tail(&log_path, 30)
            );
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("unexpected hub address `{addr}`"))?;
    // Keep reading stdout so the hub never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, pid, addr))
}

impl Hub {
    /// Write the config, spawn `ferry serve` and wait for its ready line.
    pub async fn start(spec: &HubSpec) -> anyhow::Result<Self> {
        if !spec.ferry.is_file() {
            bail!(
                "no ferry binary at {} (build it with `cargo build --release -p ferry`, or pass --ferry)",
                spec.ferry.display()
            );
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("ferry-bench-");
        let dir = match &spec.data_root {
            Some(root) => builder.tempdir_in(root),
            None => builder.tempdir(),
        }
        .context("cannot create the hub's temporary directory")?;
        let config = dir.path().join("config");
        write_config(
            &config,
            &spec.receivers,
            spec.concurrency,
            &spec.tuning,
            spec.sink.as_ref(),
        )
        .with_context(|| format!("cannot write the hub config to {}", config.display()))?;
        let (child, pid, addr) = match spawn(&spec.ferry, dir.path(), spec.listen).await {
            Ok(started) => started,
            Err(e) => {
                // Keep the config and the whole log for a look at what went wrong.
                let kept = dir.keep();
                bail!(
                    "{e:#}\n(the hub's config and log are kept in {})",
                    kept.display()
                );
            }
        };
        Ok(Self {
            child,
            pid,
            addr,
            ferry: spec.ferry.clone(),
            dir,
            keep: spec.keep,
        })
    }

    /// SIGKILL the hub and reap it; its exit status (`signal: 9 (SIGKILL)`).
    pub async fn kill(&mut self) -> String {
        let _ = self.child.start_kill();
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("wait failed: {e}"),
        }
    }

    /// Start the hub again on the same config, data directory and address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let (child, pid, addr) = spawn(&self.ferry, self.dir.path(), self.addr).await?;
        anyhow::ensure!(
            addr == self.addr,
            "the restarted hub listens on {addr}, not on {}",
            self.addr
        );
        self.child = child;
        self.pid = pid;
        Ok(())
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }

    /// Keep the config and data directory after [`Hub::stop`] whatever was asked.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The last `n` lines of the hub's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log_path(), n)
    }

    /// Path of the hub's log (its stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("hub.log")
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM the hub and wait for it to exit (killing it after a minute).
    pub async fn stop(mut self) -> Stopped {
        let t0 = Instant::now();
        let (exit, clean) = if let Ok(Some(status)) = self.child.try_wait() {
            (format!("had already exited ({status})"), false)
        } else {
            let term = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if !matches!(term, Ok(s) if s.success()) {
                let _ = self.child.start_kill();
            }
            match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
                Ok(Ok(status)) => (status.to_string(), status.success()),
                Ok(Err(e)) => (format!("wait failed: {e}"), false),
                Err(_) => {
                    let _ = self.child.kill().await;
                    (
                        format!(
                            "killed: still running {}s after SIGTERM",
                            STOP_TIMEOUT.as_secs()
                        ),
                        false,
                    )
                }
            }
        };
        let stop_secs = t0.elapsed().as_secs_f64();
        let kept_dir = if self.keep {
            Some(self.dir.keep())
        } else {
            None
        };
        Stopped {
            exit,
            clean,
            stop_secs,
            kept_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_receiver() {
        let y = config_yaml(
            &["127.0.0.1:4321".parse().unwrap()],
            64,
            &Tuning::PLAIN,
            None,
        );
        assert!(y.contains("      sink:\n"));
        assert!(y.contains("url: \"http://127.0.0.1:4321/sink\""));
        assert!(y.contains("egress_allow: [\"127.0.0.0/8\", \"::1\"]"));
        assert!(!y.contains("retry:") && !y.contains("circuit_breaker") && !y.contains("backlog"));
        assert!(y.contains("concurrency: 64"));
        assert!(y.contains("standard_webhooks: { secret: { file: source-secret } }"));
    }

    #[test]
    fn several_destinations_each_with_its_receiver() {
        assert_eq!(destination_names(1), ["sink"]);
        assert_eq!(destination_names(3), ["d1", "d2", "d3"]);
        let receivers: Vec<SocketAddr> = (1..=3)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 4320 + i)))
            .collect();
        let tuning = Tuning {
            breaker: Breaker::Off,
            max_pending: Some(2_000_000),
            ..Tuning::PLAIN
        };
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &receivers, 32, &tuning, None).unwrap();
        let opts = ferry_config::LoadOptions {
            resolve_secrets: true,
        };
        let loaded = match ferry_config::load_dir(dir.path(), &opts) {
            Ok(l) => l,
            Err(e) => panic!("bench config rejected: {:?}", e.errors),
        };
        let flow = &loaded.config.flows[FLOW];
        assert_eq!(flow.destinations.len(), 3);
        for (i, name) in ["d1", "d2", "d3"].into_iter().enumerate() {
            let d = &flow.destinations[name];
            assert_eq!(
                d.http.as_ref().unwrap().url,
                format!("http://127.0.0.1:{}/sink", 4321 + i)
            );
            assert_eq!(d.concurrency, 32);
            assert_eq!(d.backlog.max_pending, 2_000_000);
            assert!(!d.circuit_breaker.enabled);
        }
    }

    #[test]
    fn config_is_valid_for_ferry() {
        let off = Tuning {
            breaker: Breaker::Off,
            ..Tuning::CHAOS
        };
        let encrypted = Tuning {
            protect: Protect::EncryptedNewSubjects,
            ..Tuning::PLAIN
        };
        let classified = Tuning {
            protect: Protect::Classified,
            ..Tuning::PLAIN
        };
        let shared = Tuning {
            protect: Protect::Encrypted,
            ..Tuning::PLAIN
        };
        let validated = Tuning {
            protect: Protect::Validated,
            ..Tuning::PLAIN
        };
        for tuning in [
            Tuning::PLAIN,
            Tuning::CHAOS,
            off,
            validated,
            classified,
            shared,
            encrypted,
        ] {
            let dir = tempfile::tempdir().unwrap();
            write_config(
                dir.path(),
                &["127.0.0.1:4321".parse().unwrap()],
                48,
                &tuning,
                None,
            )
            .unwrap();
            let opts = ferry_config::LoadOptions {
                resolve_secrets: true,
            };
            let loaded = match ferry_config::load_dir(dir.path(), &opts) {
                Ok(l) => l,
                Err(e) => panic!("bench config rejected: {:?}", e.errors),
            };
            assert_eq!(
                loaded.config.settings.delivery.egress_allow,
                ["127.0.0.0/8", "::1"]
            );
            let protection = &loaded.config.settings.protection;
            let encrypts = matches!(
                tuning.protect,
                Protect::Encrypted | Protect::EncryptedNewSubjects
            );
            assert_eq!(protection.keys.len(), usize::from(encrypts));
            assert_eq!(protection.hash_key.is_some(), encrypts);
            if tuning.protect == Protect::Validated {
                let registry = ferry_schema::SchemaRegistry::load(&loaded.config).unwrap();
                assert!(registry.categories("bench-event").is_empty());
                assert!(registry.subject_fields("bench-event").is_empty());
                assert!(loaded.config.systems["bench-dst"].policy.is_none());
            } else if tuning.protect != Protect::Off {
                let registry = ferry_schema::SchemaRegistry::load(&loaded.config).unwrap();
                let mut categories = registry.categories("bench-event");
                categories.sort();
                assert_eq!(
                    categories,
                    [
                        ("/pad".to_string(), "user.content".to_string()),
                        ("/run".to_string(), "user.unique_id".to_string())
                    ]
                );
                let subject = if tuning.protect == Protect::EncryptedNewSubjects {
                    "/seq"
                } else {
                    "/run"
                };
                assert_eq!(registry.subject_fields("bench-event"), [subject]);
                // The hub refuses to start on a flow its policies do not allow.
                let refused: Vec<String> =
                    ferry_protect::check::flows(&loaded.config, &registry, &loaded.sources)
                        .iter()
                        .filter(|d| d.severity == ferry_config::Severity::Error)
                        .map(ToString::to_string)
                        .collect();
                assert!(refused.is_empty(), "{refused:?}");
                let kek = std::fs::read_to_string(dir.path().join("kek")).unwrap();
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(kek.trim())
                    .unwrap();
                assert_eq!(bytes.len(), 32);
            }
            let sink = &loaded.config.flows[FLOW].destinations["sink"];
            assert_eq!(sink.concurrency, 48);
            assert_eq!(
                sink.http.as_ref().unwrap().url,
                "http://127.0.0.1:4321/sink"
            );
            assert_eq!(sink.http.as_ref().unwrap().timeout, tuning.timeout);
            let http = sink.http.as_ref().unwrap();
            assert!(http.connect_timeout <= http.timeout);
            let retry = &sink.retry;
            if tuning.persistent_retry {
                assert_eq!(retry.max_attempts, 1000);
                assert_eq!(retry.initial_backoff, Duration::from_millis(50));
                assert_eq!(retry.max_backoff, Duration::from_secs(2));
            } else {
                assert_eq!(retry.max_attempts, 12);
            }
            let cb = &sink.circuit_breaker;
            match tuning.breaker {
                Breaker::Off => assert!(!cb.enabled),
                Breaker::Fast => {
                    assert!(cb.enabled);
                    assert_eq!(cb.cool_down, Duration::from_secs(1));
                    assert_eq!(cb.min_requests, 20);
                }
                Breaker::Default => assert_eq!(cb.cool_down, Duration::from_secs(30)),
            }
        }
    }

    #[test]
    fn panics_are_found_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("hub.log");
        std::fs::write(
            &log,
            "INFO ok\nthread 'tokio-runtime-worker' panicked at crates/x.rs:1:2:\nboom\nINFO more\n",
        )
        .unwrap();
        assert_eq!(
            panics(&log),
            ["thread 'tokio-runtime-worker' panicked at crates/x.rs:1:2: boom"]
        );
        assert!(panics(&dir.path().join("none")).is_empty());
    }
}
