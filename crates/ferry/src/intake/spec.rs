//! A queue flow as the hub runs it: its source's settings, secrets resolved once at
//! start-up, and the flow's steps compiled, which every message goes through like a posted
//! event.

use std::time::Duration;

use anyhow::Result;
use ferry_config::{KafkaSource, NatsSource, RabbitmqSource, SecretRef, Source};
use ferry_connectors::kafka::{KafkaSource as KafkaSourceConnector, KafkaSourceConfig};
use ferry_connectors::nats::NatsSourceConnector;
use ferry_connectors::rabbitmq::RabbitmqSourceConnector;
use ferry_connectors::source::QueueSource;
use secrecy::SecretString;

use crate::assembly::RouteLane;
use crate::ingress::pipeline::FlowSteps;
use crate::pull::PullSteps;

/// Which broker a queue flow reads, with what the connector needs.
#[derive(Debug, Clone)]
pub enum QueueConnection {
    /// A NATS JetStream stream.
    Nats(NatsSource),
    /// A RabbitMQ queue, with its password resolved.
    Rabbitmq(RabbitmqSource, Option<SecretString>),
    /// Kafka topics in a consumer group.
    Kafka(KafkaSource),
}

/// One queue flow, ready to run.
#[derive(Debug)]
pub struct QueueSpec {
    pub flow: String,
    /// The source's kind (`nats`, `rabbitmq`, `kafka`): the `kind` label of the metrics.
    pub kind: &'static str,
    /// The sending system (the events' source).
    pub source_system: String,
    /// JSON pointer to the event id in the payload (else the message id is the dedupe key).
    pub event_id: Option<String>,
    /// JSON pointer to the event type in the payload.
    pub event_type: Option<String>,
    /// Most messages per commit.
    pub batch: usize,
    /// Longest wait for a batch to fill.
    pub linger: Duration,
    /// The lanes every message fans out to (a `route` step picks among them).
    pub lanes: Vec<RouteLane>,
    /// The flow's steps.
    pub steps: PullSteps,
    pub connection: QueueConnection,
}

impl QueueSpec {
    /// The spec of queue flow `flow` from its source (`None` for a webhook or pull source),
    /// resolving the password with `secret`.
    pub fn build(
        flow: &str,
        source: &Source,
        lanes: Vec<RouteLane>,
        steps: PullSteps,
        secret: &dyn Fn(&SecretRef) -> Result<SecretString>,
    ) -> Result<Option<QueueSpec>> {
        let (event_id, event_type, batch, linger, connection) = match source {
            Source::Nats(src) => (
                src.event_id.clone(),
                src.event_type.clone(),
                src.batch,
                src.linger,
                QueueConnection::Nats(src.clone()),
            ),
            Source::Rabbitmq(src) => {
                let password = src.password.as_ref().map(secret).transpose()?;
                (
                    src.event_id.clone(),
                    src.event_type.clone(),
                    src.batch,
                    src.linger,
                    QueueConnection::Rabbitmq(src.clone(), password),
                )
            }
            Source::Kafka(src) => (
                src.event_id.clone(),
                src.event_type.clone(),
                src.batch,
                src.linger,
                QueueConnection::Kafka(src.clone()),
            ),
            Source::Webhook(_) | Source::Pull(_) | Source::Postgres(_) => return Ok(None),
        };
        Ok(Some(QueueSpec {
            flow: flow.to_owned(),
            kind: source.kind(),
            source_system: source.system().to_owned(),
            event_id: event_id.filter(|p| !p.is_empty()),
            event_type: event_type.filter(|p| !p.is_empty()),
            batch: batch.max(1),
            linger,
            lanes,
            steps,
            connection,
        }))
    }

    /// A new connector to the flow's broker (not connected yet).
    pub fn connector(&self) -> Box<dyn QueueSource> {
        match &self.connection {
            QueueConnection::Nats(src) => Box::new(NatsSourceConnector::new(src.clone())),
            QueueConnection::Rabbitmq(src, password) => {
                Box::new(RabbitmqSourceConnector::new(src.clone(), password.clone()))
            }
            QueueConnection::Kafka(src) => Box::new(KafkaSourceConnector::new(KafkaSourceConfig {
                brokers: src.brokers.clone(),
                topics: src.topics.clone(),
                group: src.group.clone(),
            })),
        }
    }

    /// The flow's steps and lanes, as the ingress pipeline runs them.
    pub fn flow_steps(&self) -> FlowSteps<'_> {
        FlowSteps {
            flow: &self.flow,
            source_system: &self.source_system,
            lanes: &self.lanes,
            validate: &self.steps.validate,
            schemas: &self.steps.schemas,
            steps: &self.steps.steps,
            dedupe: self.steps.dedupe.as_ref(),
            at_rest: self.steps.at_rest.as_ref(),
            audit: &self.steps.audit,
        }
    }
}
