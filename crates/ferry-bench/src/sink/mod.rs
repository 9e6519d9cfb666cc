//! `ferry-bench sink`: how fast a hub delivers to a destination of another kind than HTTP
//! (NATS JetStream, RabbitMQ, PostgreSQL), per event or batched.
//!
//! The hub gets the bench flow with one destination `sink` of that kind, its lane paused.
//! The tool posts the events (signed, like `run`), resumes the lane and times the drain:
//! from the resume until the hub's admin API counts every accepted event delivered. Then it
//! checks at the broker or database that each one arrived (messages in the stream or the
//! queue, rows in the table), and removes what it created.
//!
//! HTTP's own figure comes from `ferry-bench run --deliver-after-load`, which times the same
//! drain at its receiver.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use ferry_signature::SigningKey;
use serde::Deserialize;
use tokio::task::JoinSet;

use crate::cli::{RabbitmqQueue, SinkArgs, SinkKind};
use crate::clock::Clock;
use crate::hub::{self, Hub, SinkSpec};
use crate::metrics;
use crate::payload::{self, Template};
use crate::sender::{self, Plan, Shared, Target};
use lapin::types::AMQPValue;

/// How long the drain may make no progress before the run is given up.
const STALL: Duration = Duration::from_secs(30);

mod direct;

/// Run `ferry-bench sink`.
pub async fn run(args: SinkArgs) -> anyhow::Result<ExitCode> {
    if args.rabbitmq_queue.is_some() && args.kind != SinkKind::Rabbitmq {
        bail!("--rabbitmq-queue is for --kind rabbitmq");
    }
    if args.direct && args.kind == SinkKind::Postgres {
        bail!("--direct measures a broker alone: it is for --kind nats or rabbitmq");
    }
    let run_id = payload::new_run_id();
    let target_sink = Sink::prepare(&args, &run_id).await?;
    if args.direct {
        return run_direct(&args, &run_id, target_sink).await;
    }
    let result = measure(&args, &run_id, &target_sink).await;
    let arrived = target_sink.count().await;
    target_sink.remove().await;
    let m = result?;
    let arrived = arrived?;
    let secs = m.drain.as_secs_f64();
    let rate = if secs > 0.0 {
        m.delivered as f64 / secs
    } else {
        0.0
    };
    let batch = args
        .batch
        .map_or_else(|| "per event".to_string(), |n| format!("batches of {n}"));
    // Little's law: attempts in flight on average = attempts per second × their mean time.
    let in_flight = match (m.attempt_mean, args.batch) {
        (Some(mean), None) => format!(
            "; mean attempt {:.2} ms, {:.1} in flight on average",
            mean.as_secs_f64() * 1e3,
            rate * mean.as_secs_f64()
        ),
        (Some(mean), Some(_)) => format!("; mean call {:.2} ms", mean.as_secs_f64() * 1e3),
        (None, _) => String::new(),
    };
    println!(
        "sink {} ({batch}, concurrency {}): {} accepted in {:.2}s ({:.0}/s); {} delivered in \
         {secs:.2}s after the resume = {rate:.0} deliveries/s{in_flight}; {arrived} at the {}",
        args.kind.name(),
        args.hub_concurrency,
        m.accepted,
        m.load.as_secs_f64(),
        m.accepted as f64 / m.load.as_secs_f64().max(f64::EPSILON),
        m.delivered,
        target_sink.holder(),
    );
    if m.delivered != m.accepted || arrived < m.accepted {
        eprintln!(
            "ferry-bench: {} accepted, {} delivered, {arrived} arrived: the drain is incomplete",
            m.accepted, m.delivered
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--direct`: publish from this tool with no hub, then check what arrived.
async fn run_direct(args: &SinkArgs, run_id: &str, sink: Sink) -> anyhow::Result<ExitCode> {
    let result = direct::publish_all(args, run_id, &sink).await;
    let arrived = sink.count().await;
    sink.remove().await;
    let took = result?;
    let arrived = arrived?;
    let secs = took.as_secs_f64();
    println!(
        "sink {} direct, no hub (per event, {} in flight): {} published and confirmed in \
         {secs:.2}s = {:.0}/s; {arrived} at the {}",
        args.kind.name(),
        args.hub_concurrency,
        args.events,
        args.events as f64 / secs.max(f64::EPSILON),
        sink.holder(),
    );
    if arrived < args.events {
        eprintln!(
            "ferry-bench: {} published, {arrived} arrived: some are missing",
            args.events
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// A connection to the RabbitMQ broker at `url`.
async fn amqp_connection(url: &str) -> anyhow::Result<lapin::Connection> {
    lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .with_context(|| format!("cannot connect to RabbitMQ at {url}"))
}

/// What one run measured.
struct Measured {
    accepted: u64,
    delivered: u64,
    load: Duration,
    drain: Duration,
    /// The mean time of a delivery attempt, from the hub's metrics after the drain.
    attempt_mean: Option<Duration>,
}

/// Start the hub, load it with the lane paused, resume and time the drain.
async fn measure(args: &SinkArgs, run_id: &str, sink: &Sink) -> anyhow::Result<Measured> {
    let spec = hub::HubSpec {
        ferry: match &args.ferry {
            Some(f) => f.clone(),
            None => hub::default_ferry()?,
        },
        receivers: Vec::new(),
        concurrency: args.hub_concurrency,
        data_root: None,
        keep: false,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tuning: hub::Tuning {
            max_pending: Some(args.events.max(1_000_000)),
            ..hub::Tuning::PLAIN
        },
        sink: Some(sink.spec(args)),
    };
    let hub = Hub::start(&spec).await?;
    let target = Target::local(hub.addr, hub::FLOW)?;
    let result = load_and_drain(args, run_id, &target).await;
    let stopped = hub.stop().await;
    if !stopped.clean {
        eprintln!(
            "ferry-bench: the hub did not stop cleanly: {}",
            stopped.exit
        );
    }
    result
}

async fn load_and_drain(
    args: &SinkArgs,
    run_id: &str,
    target: &Target,
) -> anyhow::Result<Measured> {
    let lane = format!("/admin/v1/lanes/{}/sink", hub::FLOW);
    metrics::post(target, &format!("{lane}/pause"), Some(hub::ADMIN_TOKEN))
        .await
        .context("could not pause the sink's lane")?;
    let key = SigningKey::from_standard_webhooks(hub::SOURCE_SECRET)
        .context("the bench secret is not a valid Standard Webhooks secret")?;
    let start = Instant::now();
    let shared = Arc::new(Shared::new(
        Plan {
            start,
            limit: Some(args.events),
            deadline: None,
            rate: None,
            request_timeout: Duration::from_secs(30),
        },
        target.clone(),
        Template::new(run_id, args.body_bytes)?,
        key,
        run_id.to_string(),
        Clock::new(),
    ));
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        tasks.spawn(sender::worker(shared.clone()));
    }
    while let Some(r) = tasks.join_next().await {
        r.context("a sender task failed")?;
    }
    let load = start.elapsed();
    let accepted = shared.ok.load(std::sync::atomic::Ordering::Relaxed);
    metrics::post(target, &format!("{lane}/resume"), Some(hub::ADMIN_TOKEN))
        .await
        .context("could not resume the sink's lane")?;
    let resumed = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let counts = lane_counts(target).await;
        if let Some(c) = &counts {
            if c.dead > 0 {
                bail!(
                    "{} deliveries went to the dead-letter queue: see the hub's log",
                    c.dead
                );
            }
            if c.delivered >= accepted {
                return Ok(Measured {
                    accepted,
                    delivered: c.delivered,
                    load,
                    drain: resumed.elapsed(),
                    attempt_mean: attempt_mean(target).await,
                });
            }
            if c.delivered != last.0 {
                last = (c.delivered, Instant::now());
            }
        }
        if last.1.elapsed() > STALL {
            bail!(
                "no delivery for {}s ({} of {accepted} delivered)",
                STALL.as_secs(),
                last.0
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The mean of the hub's `ferry_delivery_attempt_duration_seconds`.
async fn attempt_mean(target: &Target) -> Option<Duration> {
    let text = metrics::text(target).await?;
    let timing = metrics::timings(&text)
        .get("ferry_delivery_attempt_duration_seconds")
        .copied()?;
    (timing.count > 0.0).then(|| Duration::from_secs_f64(timing.mean_us / 1e6))
}

/// The sink lane's counts from `GET /admin/v1/lanes`.
async fn lane_counts(target: &Target) -> Option<LaneCounts> {
    #[derive(Deserialize)]
    struct Lanes {
        lanes: Vec<LaneCounts>,
    }
    let text = metrics::get(target, "/admin/v1/lanes", Some(hub::ADMIN_TOKEN)).await?;
    let lanes: Lanes = serde_json::from_str(&text).ok()?;
    lanes
        .lanes
        .into_iter()
        .find(|l| l.lane.flow == hub::FLOW && l.lane.destination == "sink")
}

#[derive(Deserialize)]
struct LaneCounts {
    lane: LaneName,
    delivered: u64,
    dead: u64,
}

#[derive(Deserialize)]
struct LaneName {
    flow: String,
    destination: String,
}

/// Where the deliveries go, created for the run and removed after it.
enum Sink {
    Nats {
        js: async_nats::jetstream::Context,
        url: String,
        stream: String,
        subject: String,
    },
    Rabbitmq {
        channel: lapin::Channel,
        url: String,
        queue: String,
    },
    Postgres {
        client: tokio_postgres::Client,
        url: String,
        table: String,
    },
}

impl Sink {
    /// Create the stream, queue or table of this run.
    async fn prepare(args: &SinkArgs, run: &str) -> anyhow::Result<Sink> {
        match args.kind {
            SinkKind::Nats => {
                let client = async_nats::connect(&args.nats_url)
                    .await
                    .with_context(|| format!("cannot connect to NATS at {}", args.nats_url))?;
                let js = async_nats::jetstream::new(client);
                let stream = format!("FERRY_BENCH_{run}");
                let subject = format!("ferry-bench.{run}");
                js.create_stream(async_nats::jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![subject.clone()],
                    ..Default::default()
                })
                .await
                .with_context(|| format!("cannot create the JetStream stream {stream}"))?;
                Ok(Sink::Nats {
                    js,
                    url: args.nats_url.clone(),
                    stream,
                    subject,
                })
            }
            SinkKind::Rabbitmq => {
                let conn = amqp_connection(&args.amqp_url).await?;
                let channel = conn.create_channel().await?;
                let queue = format!("ferry-bench-{run}");
                let mut arguments = lapin::types::FieldTable::default();
                match args.rabbitmq_queue.unwrap_or(RabbitmqQueue::Classic) {
                    RabbitmqQueue::Classic => {}
                    RabbitmqQueue::ClassicV2 => {
                        arguments.insert("x-queue-version".into(), AMQPValue::LongInt(2));
                    }
                    RabbitmqQueue::Quorum => {
                        arguments.insert(
                            "x-queue-type".into(),
                            AMQPValue::LongString("quorum".into()),
                        );
                    }
                }
                channel
                    .queue_declare(
                        queue.as_str().into(),
                        lapin::options::QueueDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        arguments,
                    )
                    .await
                    .with_context(|| format!("cannot declare the queue {queue}"))?;
                Ok(Sink::Rabbitmq {
                    channel,
                    url: args.amqp_url.clone(),
                    queue,
                })
            }
            SinkKind::Postgres => {
                let (client, conn) =
                    tokio_postgres::connect(&args.postgres_url, tokio_postgres::NoTls)
                        .await
                        .context("cannot connect to PostgreSQL")?;
                tokio::spawn(conn);
                let table = format!("ferry_bench_{run}");
                client
                    .batch_execute(&format!(
                        "CREATE TABLE {table} (seq bigint PRIMARY KEY, run text NOT NULL, \
                         sent_ns bigint, type text, pad text)"
                    ))
                    .await
                    .with_context(|| format!("cannot create the table {table}"))?;
                Ok(Sink::Postgres {
                    client,
                    url: args.postgres_url.clone(),
                    table,
                })
            }
        }
    }

    /// The bench flow's destination for this sink.
    fn spec(&self, args: &SinkArgs) -> SinkSpec {
        let mut extra = String::new();
        if let Some(n) = args.batch {
            extra.push_str(&format!(
                "        batch: {{ max_items: {n}, linger: 5ms }}\n"
            ));
        }
        let (kind_yaml, files) = match self {
            Sink::Nats { url, subject, .. } => (
                format!("nats: {{ url: \"{url}\", subject: \"{subject}\" }}"),
                Vec::new(),
            ),
            Sink::Rabbitmq { url, queue, .. } => {
                let parsed = url::Url::parse(url).ok();
                let user = parsed
                    .as_ref()
                    .map(|u| u.username().to_string())
                    .filter(|u| !u.is_empty());
                let password = parsed
                    .as_ref()
                    .and_then(|u| u.password().map(str::to_string));
                let mut bare = parsed.clone();
                if let Some(b) = bare.as_mut() {
                    let _ = b.set_username("");
                    let _ = b.set_password(None);
                }
                let bare = bare.map_or_else(|| url.clone(), |b| b.to_string());
                let creds = match (user, password) {
                    (Some(u), Some(_)) => {
                        format!(", username: \"{u}\", password: {{ file: amqp-password }}")
                    }
                    _ => String::new(),
                };
                let files = parsed
                    .and_then(|u| {
                        u.password()
                            .map(|p| ("amqp-password".to_string(), p.into()))
                    })
                    .into_iter()
                    .collect();
                (
                    format!("rabbitmq: {{ url: \"{bare}\", routing_key: \"{queue}\"{creds} }}"),
                    files,
                )
            }
            Sink::Postgres { url, table, .. } => (
                format!(
                    "postgres: {{ url: {{ file: postgres-url }}, table: {table}, key: [seq] }}"
                ),
                vec![("postgres-url".to_string(), url.clone())],
            ),
        };
        SinkSpec {
            kind_yaml,
            extra_yaml: extra,
            files,
        }
    }

    /// Where the events arrive, for the report.
    fn holder(&self) -> String {
        match self {
            Sink::Nats { stream, .. } => format!("stream {stream}"),
            Sink::Rabbitmq { queue, .. } => format!("queue {queue}"),
            Sink::Postgres { table, .. } => format!("table {table}"),
        }
    }

    /// How many events arrived.
    async fn count(&self) -> anyhow::Result<u64> {
        Ok(match self {
            Sink::Nats { js, stream, .. } => {
                let mut s = js.get_stream(stream.as_str()).await?;
                s.info().await?.state.messages
            }
            Sink::Rabbitmq { channel, queue, .. } => {
                let q = channel
                    .queue_declare(
                        queue.as_str().into(),
                        lapin::options::QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        lapin::types::FieldTable::default(),
                    )
                    .await?;
                u64::from(q.message_count())
            }
            Sink::Postgres { client, table, .. } => {
                let row = client
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .await?;
                u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)
            }
        })
    }

    /// Remove the stream, queue or table.
    async fn remove(&self) {
        let removed: anyhow::Result<()> = async {
            match self {
                Sink::Nats { js, stream, .. } => {
                    js.delete_stream(stream.as_str()).await?;
                }
                Sink::Rabbitmq { channel, queue, .. } => {
                    channel
                        .queue_delete(queue.as_str().into(), Default::default())
                        .await?;
                }
                Sink::Postgres { client, table, .. } => {
                    client.batch_execute(&format!("DROP TABLE {table}")).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = removed {
            eprintln!("ferry-bench: could not remove {}: {e:#}", self.holder());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_kind_lines_make_a_valid_config() {
        let sink = SinkSpec {
            kind_yaml: "nats: { url: \"nats://127.0.0.1:4222\", subject: \"ferry-bench.x\" }"
                .to_string(),
            extra_yaml: "        batch: { max_items: 100, linger: 5ms }\n".to_string(),
            files: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        hub::write_config(dir.path(), &[], 16, &hub::Tuning::PLAIN, Some(&sink)).unwrap();
        let opts = ferry_config::LoadOptions {
            resolve_secrets: true,
        };
        let loaded = match ferry_config::load_dir(dir.path(), &opts) {
            Ok(l) => l,
            Err(e) => panic!("bench config rejected: {:?}", e.errors),
        };
        let d = &loaded.config.flows[hub::FLOW].destinations["sink"];
        assert_eq!(d.kind(), Some("nats"));
        assert_eq!(d.batch.as_ref().map(|b| b.max_items), Some(100));
        assert_eq!(d.concurrency, 16);
    }
}
