//! Kafka. A destination produces each delivery to a topic with the idempotent producer
//! (`enable.idempotence=true`, `acks=all`) and counts it delivered only once every in-sync
//! replica has it; its key (a template) keeps one key's records on one partition, in order.
//! A queue source reads topics in a consumer group and commits an offset only once Ferry
//! committed every message below it.
//!
//! # Why librdkafka (`rdkafka`)
//!
//! Kafka's own client semantics are what Ferry's guarantees stand on: consumer groups with
//! manual offset commits (so a message counts as read only after Ferry's commit), and the
//! idempotent producer with `acks=all` (so the producer's internal retries neither duplicate
//! nor reorder a partition's records). `rdkafka` wraps librdkafka, which has all three and is
//! the client most Kafka deployments run. The pure-Rust `rskafka` has no consumer groups.
//! rdkafka-sys builds librdkafka from source with only a C compiler and `make` (default
//! features: zlib, no TLS or SASL libraries), so no system package is needed.

mod context;
mod destination;
mod key;
pub mod source;

pub use destination::KafkaConnector;
pub use key::RecordKey;
pub use source::{KafkaSource, KafkaSourceConfig};
