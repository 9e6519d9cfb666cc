//! Logs (tracing) and metrics (Prometheus exposition at `/metrics`).

use std::sync::OnceLock;

use ferry_config::{LogFormat, LogSettings, LogTarget};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Install the tracing subscriber on stderr: JSON lines when `json`, else human-readable
/// (coloured only on a terminal). Level from `RUST_LOG`, else `default_level`. Safe to call
/// more than once.
pub fn init_logging(json: bool, default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Install the hub's subscriber per `settings.logs` (`json` forces JSON lines): to stderr,
/// stdout, or a rotated file written through a non-blocking writer, whose guard flushes
/// it when dropped (keep it until the process ends). Level from `RUST_LOG`, else `info`.
/// Lines logged while an event is handled carry its `trace_id` (from its span).
pub fn init_hub_logging(
    settings: &LogSettings,
    json: bool,
) -> std::io::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    use std::io::IsTerminal;
    let json = json || settings.format == LogFormat::Json;
    let (writer, guard, ansi) = match (settings.to, &settings.file) {
        (LogTarget::File, Some(file)) => {
            let rotation = crate::logfile::Rotation {
                max_bytes: file.max_bytes,
                max_age: file.max_age,
                keep_files: file.keep_files,
                keep_for: file.keep_for,
            };
            let log = crate::logfile::RotatingFile::open(&file.path, rotation)?;
            // Lossy when the disk cannot keep up: a request never waits for a log line.
            let (writer, guard) = tracing_appender::non_blocking(log);
            (BoxMakeWriter::new(writer), Some(guard), false)
        }
        (LogTarget::Stdout, _) => (
            BoxMakeWriter::new(std::io::stdout),
            None,
            std::io::stdout().is_terminal(),
        ),
        _ => (
            BoxMakeWriter::new(std::io::stderr),
            None,
            std::io::stderr().is_terminal(),
        ),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi && !json)
        .with_writer(writer);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    Ok(guard)
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0,
                    ],
                )
                .expect("static bucket list is non-empty")
                // Records per call of a batching lane (`batch.max_items` is at most 10,000).
                .set_buckets_for_metric(
                    Matcher::Full(ferry_metrics::BATCH_SIZE.into()),
                    &[
                        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10000.0,
                    ],
                )
                .expect("static bucket list is non-empty")
                // Accept to delivered spans retries and outages: seconds to a day.
                .set_buckets_for_metric(
                    Matcher::Full(ferry_metrics::DELIVERY_END_TO_END_SECONDS.into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                        300.0, 900.0, 3600.0, 21600.0, 86400.0,
                    ],
                )
                .expect("static bucket list is non-empty");
            let recorder = builder.build_recorder();
            // Every family's HELP text, told to this recorder itself (not to whatever is
            // installed globally), so `/metrics` carries it in any case.
            ferry_metrics::describe(&recorder);
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding test); then our
            // handle still renders the metrics recorded through it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
