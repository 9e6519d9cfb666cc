//! The Kafka destination connector.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use ferry_config::KafkaDestination;
use ferry_delivery::{AttemptResult, BatchCall, Connector, Rendered};
use ferry_store::ClaimedDelivery;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::RecordKey;
use super::context::{BrokerHealth, Context};
use crate::outcome::{Failure, all_or_first_failure, record_body, timed};
use crate::stored_header;

/// Longest back-off between reconnects to a lost broker: a broker back from a restart is
/// used again within this.
const RECONNECT_BACKOFF_MAX_MS: &str = "2000";

/// How long the producer waits for more records before sending a request.
const LINGER_MS: &str = "1";

/// Produces deliveries to one Kafka topic with the idempotent producer, waiting for the
/// acknowledgement of all in-sync replicas.
///
/// The producer is made at the first send (so a hub starts while Kafka is down, and
/// `ferry test` never connects) and kept; librdkafka reconnects by itself. A producer that
/// hit a fatal error (the idempotence state is lost) is replaced at the next send.
pub struct KafkaConnector {
    config: KafkaDestination,
    key: Option<RecordKey>,
    health: Arc<BrokerHealth>,
    producer: Mutex<Option<Arc<FutureProducer<Context>>>>,
}

impl fmt::Debug for KafkaConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConnector")
            .field("brokers", &self.config.brokers)
            .field("topic", &self.config.topic)
            .field("timeout", &self.config.timeout)
            .finish()
    }
}

impl KafkaConnector {
    /// A connector for `config` (not connected yet); fails when its key template does not
    /// compile (`ferry validate` reports that first).
    pub fn new(config: KafkaDestination) -> Result<Self, String> {
        let key = config
            .key
            .as_deref()
            .map(RecordKey::compile)
            .transpose()
            .map_err(|e| format!("the kafka key template does not compile: {e}"))?;
        Ok(Self {
            config,
            key,
            health: Arc::default(),
            producer: Mutex::new(None),
        })
    }

    /// The producer, made first if need be.
    fn producer(&self) -> Result<Arc<FutureProducer<Context>>, Failure> {
        let mut held = self
            .producer
            .lock()
            .map_err(|_| Failure::retry("produce", "the producer lock is poisoned".into()))?;
        if let Some(producer) = held.as_ref() {
            return Ok(producer.clone());
        }
        let timeout_ms = self.config.timeout.as_millis().max(1).to_string();
        let context = Context {
            health: self.health.clone(),
            label: format!("topic {}", self.config.topic),
        };
        let producer: FutureProducer<Context> = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .set("client.id", "ferry")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // One record per produce batch: tansu 0.6 (the Kafka-protocol broker CI runs)
            // acknowledges a multi-record batch and keeps only its first record, measured by
            // the conformance suite. Records stay pipelined (64 in flight per lane); a
            // multi-record batch against Apache Kafka would be faster and is left until it
            // can be measured against one.
            .set("batch.num.messages", "1")
            // Ferry never creates topics: a topic that does not exist is a configuration
            // error, dead-lettered with the reason, whatever the brokers' own default.
            .set("allow.auto.create.topics", "false")
            // A lane awaits each record's acknowledgement, so time spent lingering for a
            // fuller request is pure latency: librdkafka's 5 ms default capped a lane of 64
            // sends in flight near 64 / 5 ms = 12.8k records/s. Records sent together (a
            // batch call, a busy lane) still share requests.
            .set("linger.ms", LINGER_MS)
            // A record is acknowledged or failed within the timeout, and so is a request,
            // a connection set-up and the wait for an unknown topic to appear.
            .set("message.timeout.ms", &timeout_ms)
            .set("request.timeout.ms", &timeout_ms)
            .set("socket.connection.setup.timeout.ms", &timeout_ms)
            .set(
                "topic.metadata.propagation.max.ms",
                (self.config.timeout.as_millis() / 2).max(1).to_string(),
            )
            .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
            .create_with_context(context)
            .map_err(|e| Failure::permanent("config", format!("Kafka producer: {e}")))?;
        let producer = Arc::new(producer);
        *held = Some(producer.clone());
        Ok(producer)
    }

    /// Forget a producer that hit a fatal error: the next send makes a new one.
    fn drop_producer(&self) {
        if let Ok(mut held) = self.producer.lock() {
            *held = None;
        }
    }

    /// The headers of one record: the delivery id as `webhook-id` and `idempotency-key`, the
    /// content type, and the event's trace context.
    fn headers(delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> OwnedHeaders {
        let id = delivery.id.to_string();
        let content_type = rendered
            .and_then(|r| r.content_type.as_ref())
            .and_then(|v| v.to_str().ok())
            .or_else(|| stored_header(delivery, "content-type"))
            .unwrap_or("application/json");
        let mut headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: "webhook-id",
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: "idempotency-key",
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: "content-type",
                value: Some(content_type),
            });
        for name in [
            "traceparent",
            "tracestate",
            ferry_delivery::synthetic::HEADER,
        ] {
            if let Some(value) = stored_header(delivery, name) {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
        }
        headers
    }

    /// Produce one record and wait for the brokers' acknowledgement.
    async fn produce(
        &self,
        delivery: &ClaimedDelivery,
        headers: OwnedHeaders,
        body: Bytes,
    ) -> Result<(), Failure> {
        let key = match &self.key {
            None => None,
            Some(key) => Some(
                key.render(delivery, &body)
                    .map_err(|e| Failure::permanent("template_failed", e))?,
            ),
        };
        let producer = self.producer()?;
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.config.topic)
            .payload(&body[..])
            .headers(headers);
        if let Some(key) = &key {
            record = record.key(key.as_str());
        }
        // librdkafka ends every record within `message.timeout.ms`; this bounds the wait
        // for room in its queue too.
        let sent = tokio::time::timeout(
            self.config.timeout.saturating_mul(2),
            producer.send(record, self.config.timeout),
        )
        .await
        .map_err(|_| Failure::retry("timeout", "no acknowledgement from Kafka in time".into()))?;
        match sent {
            Ok(_) => {
                self.health.reached();
                Ok(())
            }
            Err((e, _)) => {
                if matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
                    self.drop_producer();
                }
                Err(failure(&e, self.health.lost()))
            }
        }
    }
}

/// How a failed produce is judged: what the broker refused for this record (too large, no
/// such topic, not authorized, an invalid record) is dead, with the broker's reason; a
/// broker that cannot be reached, a time-out or anything else is retried.
fn failure(e: &KafkaError, lost: Option<String>) -> Failure {
    use RDKafkaErrorCode as C;
    let Some(code) = e.rdkafka_error_code() else {
        return Failure::retry("produce", format!("Kafka produce failed: {e}"));
    };
    let refused = |class| Failure::permanent(class, format!("Kafka refused the record: {code}"));
    match code {
        C::MessageSizeTooLarge | C::MessageBatchTooLarge => refused("too_large"),
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition | C::InvalidTopic => {
            refused("unknown_topic")
        }
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::Authentication => refused("unauthorized"),
        C::InvalidRecord | C::PolicyViolation | C::InvalidMessage | C::InvalidRequiredAcks => {
            refused("rejected")
        }
        C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve => Failure::retry(
            "connect",
            format!(
                "cannot reach Kafka: {}",
                lost.unwrap_or_else(|| code.to_string())
            ),
        ),
        C::MessageTimedOut | C::RequestTimedOut => match lost {
            Some(reason) => Failure::retry("connect", format!("cannot reach Kafka: {reason}")),
            None => Failure::retry("timeout", format!("Kafka did not acknowledge: {code}")),
        },
        _ => Failure::retry("produce", format!("Kafka produce failed: {code}")),
    }
}

#[async_trait]
impl Connector for KafkaConnector {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn timeout(&self) -> Duration {
        // Room in the producer's queue, then the acknowledgement: each bounded by the timeout.
        self.config.timeout.saturating_mul(2)
    }

    async fn send(&self, delivery: &ClaimedDelivery, rendered: Option<&Rendered>) -> AttemptResult {
        let body = record_body(delivery, rendered);
        timed(self.produce(delivery, Self::headers(delivery, rendered), body)).await
    }

    /// Every record is produced at once (librdkafka batches them per partition) and the call
    /// succeeds when the brokers acknowledged them all. When some fail, the whole call is
    /// retried; the records already written are written again under the same `webhook-id`.
    async fn send_batch(&self, call: BatchCall<'_>) -> (AttemptResult, Option<Bytes>) {
        let produces = call.records.iter().map(|(delivery, body)| {
            self.produce(delivery, Self::headers(delivery, None), body.clone())
        });
        (timed(all_or_first_failure(produces)).await, None)
    }
}
