//! Benchmark: messages per second from a queue source into the store, each batch fsync'd
//! before its acknowledgement.
//!
//! Pre-publishes N messages (distinct ids, ~200-byte JSON) to a fresh NATS JetStream stream
//! or RabbitMQ queue, then starts a hub in this process whose queue flow reads it, its one
//! destination paused (so only intake runs), and measures from the start until every
//! message is stored (the lane's pending count) and acknowledged (the broker holds none).
//!
//! ```text
//! cargo run --release -p ferry --example queue_ingest -- nats 200000 500
//! cargo run --release -p ferry --example queue_ingest -- rabbitmq 200000 500
//! ```
//! Arguments: kind (`nats` | `rabbitmq`), messages (default 200000), batch (default 500).
//! Needs `FERRY_TEST_NATS_URL` / `FERRY_TEST_AMQP_URL`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry::hub::{HubOptions, RunningHub};
use ferry_store::sqlite::{SqliteOptions, SqliteStore};
use ferry_store::{LaneKey, LanePause, Store};

const FLOW: &str = "bench-queue";

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map_or("nats", String::as_str).to_owned();
    let n: usize = args.get(1).map_or(Ok(200_000), |s| s.parse())?;
    let batch: usize = args.get(2).map_or(Ok(500), |s| s.parse())?;
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let body = |i: usize| {
        format!(
            r#"{{"id":"m-{i}","type":"order.created","customer":"cus_{i:08}","amount":{i},"currency":"eur","note":"a benchmark message of about two hundred bytes, padded"}}"#
        )
    };

    let publish_started = Instant::now();
    let source = match kind.as_str() {
        "nats" => {
            let url = std::env::var("FERRY_TEST_NATS_URL").context("FERRY_TEST_NATS_URL")?;
            let js = async_nats::jetstream::new(async_nats::connect(&url).await?);
            let (stream, subject) = (format!("BENCH_{unique}"), format!("bench.{unique}"));
            js.create_stream(async_nats::jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![subject.clone()],
                max_age: Duration::from_secs(3600),
                ..Default::default()
            })
            .await?;
            let mut acks = Vec::with_capacity(4096);
            for i in 0..n {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("m-{i}").as_str());
                acks.push(
                    js.publish_with_headers(subject.clone(), headers, body(i).into())
                        .await?,
                );
                if acks.len() == 4096 {
                    for ack in acks.drain(..) {
                        ack.await?;
                    }
                }
            }
            for ack in acks {
                ack.await?;
            }
            format!(
                "      nats: {{ system: src, url: \"{url}\", stream: {stream}, consumer: bench, batch: {batch} }}\n"
            )
        }
        "rabbitmq" => {
            let url = std::env::var("FERRY_TEST_AMQP_URL").context("FERRY_TEST_AMQP_URL")?;
            let conn =
                lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
            let channel = conn.create_channel().await?;
            channel
                .confirm_select(lapin::options::ConfirmSelectOptions::default())
                .await?;
            let queue = format!("bench-{unique}");
            channel
                .queue_declare(
                    queue.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await?;
            let mut confirms = Vec::with_capacity(4096);
            for i in 0..n {
                confirms.push(
                    channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            lapin::options::BasicPublishOptions::default(),
                            body(i).as_bytes(),
                            lapin::BasicProperties::default()
                                .with_message_id(format!("m-{i}").as_str().into())
                                .with_delivery_mode(2),
                        )
                        .await?,
                );
                if confirms.len() == 4096 {
                    for c in confirms.drain(..) {
                        c.await?;
                    }
                }
            }
            for c in confirms {
                c.await?;
            }
            std::mem::forget(conn);
            let prefetch = (batch * 4).min(65535);
            format!(
                "      rabbitmq: {{ system: src, url: \"{url}\", username: guest, password: {{ file: amqp-password }}, queue: {queue}, prefetch: {prefetch}, batch: {batch} }}\n"
            )
        }
        other => bail!("kind `{other}`: nats or rabbitmq"),
    };
    eprintln!(
        "published {n} messages in {:.1}s",
        publish_started.elapsed().as_secs_f64()
    );

    let cfg = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    std::fs::write(cfg.path().join("amqp-password"), "guest")?;
    std::fs::write(
        cfg.path().join("ferry.yaml"),
        format!(
            "settings:\n  listen: 127.0.0.1:0\n  delivery: {{ egress_allow: [127.0.0.0/8] }}\nsystems:\n  src: {{ owner: bench }}\n  dst: {{ owner: bench }}\nflows:\n  {FLOW}:\n    source:\n{source}    destinations:\n      sink:\n        system: dst\n        http: {{ url: \"http://127.0.0.1:9/\" }}\n        retry: {{ max_attempts: 3, max_age: 10m }}\n"
        ),
    )?;
    // The destination is paused before the hub starts: only intake runs.
    let lane = LaneKey {
        flow: FLOW.into(),
        destination: "sink".into(),
    };
    {
        let store = SqliteStore::open(data.path(), SqliteOptions::default())?;
        let pause = LanePause {
            since: 0,
            reason: "benchmark: intake only".into(),
        };
        store.set_lane_pause(&lane, Some(pause)).await?;
        store.close().await?;
    }
    let loaded = ferry_config::load_dir(
        cfg.path(),
        &ferry_config::LoadOptions {
            resolve_secrets: true,
        },
    )
    .map_err(|e| anyhow::anyhow!("config: {e}"))?;
    let started = Instant::now();
    let hub = RunningHub::start(HubOptions {
        config: loaded.config,
        data_dir: data.path().to_path_buf(),
        store_url: None,
        listen: None,
        role: Default::default(),
        region: None,
    })
    .await?;
    let store = hub.store();
    let mut last_report = Instant::now();
    loop {
        let stored: u64 = store
            .lane_counts()
            .await?
            .iter()
            .filter(|c| c.lane == lane)
            .map(|c| c.pending + c.in_flight)
            .sum();
        if stored >= n as u64 {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "  {stored} stored after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {stored} of {n} stored in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{kind}: {n} messages stored (fsync'd commit before each batch's ack) in {seconds:.2}s = {:.0} msgs/s (batch {batch})",
        n as f64 / seconds
    );
    hub.shutdown().await?;
    Ok(())
}
