//! What the librdkafka client reports beside its calls: lost brokers. A produce that times
//! out while no broker answers is a connection failure (`connect`), not a slow broker.

use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The last broker failure librdkafka reported, until a call succeeds again.
#[derive(Debug, Default)]
pub(crate) struct BrokerHealth {
    lost: Mutex<Option<String>>,
}

impl BrokerHealth {
    /// Why the brokers could not be reached, when that is the latest news.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().map(|l| l.clone()).unwrap_or(None)
    }

    /// A call went through: the brokers are reachable.
    pub fn reached(&self) {
        if let Ok(mut lost) = self.lost.lock() {
            *lost = None;
        }
    }

    fn record(&self, reason: String) {
        if let Ok(mut lost) = self.lost.lock() {
            *lost = Some(reason);
        }
    }
}

/// The client context: records broker failures and logs librdkafka's errors at `warn`
/// (naming the brokers, never credentials or payloads).
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub health: Arc<BrokerHealth>,
    /// What the client is for, in logs (`topic orders`, `group g`).
    pub label: String,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::Resolve
            )
        ) {
            self.health.record(reason.to_string());
        }
        tracing::warn!(client = %self.label, error = %error, reason, "Kafka client error");
    }
}

/// A consumer's rebalances need nothing of Ferry: offsets are committed only for messages
/// acknowledged, so a partition taken away is read again from its committed offset.
impl ConsumerContext for Context {}
