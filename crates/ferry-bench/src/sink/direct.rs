//! `ferry-bench sink --direct`: the broker alone. The tool publishes the events itself, the
//! way the hub's destination does (one connection, the same number in flight, persistent
//! messages with a `message_id` or `Nats-Msg-Id`, each waiting for the broker's confirm or
//! ack), with no hub in between: the ceiling a hub's per-event delivery to this broker,
//! on this machine, can approach.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Sink;
use crate::cli::SinkArgs;
use crate::payload::Template;

/// Publish `args.events` events to `sink` with `args.hub_concurrency` in flight; the time
/// from the first publish until the last was confirmed.
pub(super) async fn publish_all(
    args: &SinkArgs,
    run_id: &str,
    sink: &Sink,
) -> anyhow::Result<Duration> {
    let template = Template::new(run_id, args.body_bytes)?;
    let publisher = Publisher::open(args, sink).await?;
    let permits = Arc::new(Semaphore::new(args.hub_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for seq in 0..args.events {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let body = template.body(0, seq);
        let publisher = publisher.clone();
        tasks.spawn(async move {
            let sent = publisher.publish(seq, body).await;
            drop(permit);
            sent
        });
        // Collect what finished, so a failure stops the run early.
        while let Some(done) = tasks.try_join_next() {
            done.context("a publish task failed")??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a publish task failed")??;
    }
    Ok(start.elapsed())
}

/// One broker connection publishing like the hub's destination of that kind.
#[derive(Clone)]
enum Publisher {
    Rabbitmq {
        channel: lapin::Channel,
        queue: Arc<str>,
        /// Kept open for as long as the channel is used.
        _connection: Arc<lapin::Connection>,
    },
    Nats {
        js: async_nats::jetstream::Context,
        subject: Arc<str>,
    },
}

impl Publisher {
    async fn open(args: &SinkArgs, sink: &Sink) -> anyhow::Result<Self> {
        match sink {
            Sink::Rabbitmq { queue, .. } => {
                let connection = super::amqp_connection(&args.amqp_url).await?;
                let channel = connection.create_channel().await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .context("cannot put the channel in confirm mode")?;
                Ok(Self::Rabbitmq {
                    channel,
                    queue: queue.as_str().into(),
                    _connection: Arc::new(connection),
                })
            }
            Sink::Nats { js, subject, .. } => Ok(Self::Nats {
                js: js.clone(),
                subject: subject.as_str().into(),
            }),
            Sink::Postgres { .. } => bail!("--direct is for a broker, not PostgreSQL"),
        }
    }

    /// Publish event `seq` and wait until the broker confirmed it.
    async fn publish(&self, seq: u64, body: Bytes) -> anyhow::Result<()> {
        let id = format!("direct-{seq}");
        match self {
            Self::Rabbitmq { channel, queue, .. } => {
                let mut headers = FieldTable::default();
                headers.insert(
                    "webhook-id".into(),
                    AMQPValue::LongString(LongString::from(id.as_str())),
                );
                let properties = BasicProperties::default()
                    .with_message_id(id.as_str().into())
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_headers(headers);
                let options = BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                };
                let confirmation = channel
                    .basic_publish("".into(), queue.as_ref().into(), options, &body, properties)
                    .await?
                    .await?;
                match confirmation {
                    Confirmation::Ack(None) => Ok(()),
                    other => bail!("RabbitMQ did not confirm event {seq}: {other:?}"),
                }
            }
            Self::Nats { js, subject } => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", id.as_str());
                headers.insert("webhook-id", id.as_str());
                headers.insert("content-type", "application/json");
                js.publish_with_headers(subject.to_string(), headers, body)
                    .await
                    .context("JetStream refused the publish")?
                    .await
                    .context("JetStream did not acknowledge the publish")?;
                Ok(())
            }
        }
    }
}
