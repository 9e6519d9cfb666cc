//! Ferry's connectors beyond HTTP: one folder per external system, each with its destination
//! (a [`ferry_delivery::Connector`]), its queue source (a [`source::QueueSource`]) where it
//! has one, and its tests. The lanes apply the gate,
//! batching, bulkhead, retries and the dead-letter queue to every kind alike; a connector
//! only publishes and classifies the outcome.
//!
//! - [`nats`]: NATS JetStream publish, waiting for the stream's acknowledgement.
//!
//! A NATS subject and a RabbitMQ routing key may be templates rendered per delivery
//! (`orders.{{ event.region }}`, see `address`).
//! - [`rabbitmq`]: RabbitMQ publish (persistent, mandatory), waiting for the confirm.
//! - [`postgres`]: upsert into a PostgreSQL table (reverse ETL, warehouse loads).
//! - [`kafka`]: produce with the idempotent producer and `acks=all`, waiting for the
//!   acknowledgement; and a queue source reading topics in a consumer group.
//!
//! # Logs
//!
//! Connection errors at `warn` with the server named (never credentials); nothing per
//! message above `debug`, and never payloads.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod kafka;
pub mod nats;
mod outcome;
pub mod postgres;
pub mod rabbitmq;
pub mod source;
#[cfg(feature = "conformance")]
pub mod source_conformance;

use ferry_store::ClaimedDelivery;
pub(crate) use ferry_store::now_millis;

/// A header kept with the event, if present.
pub(crate) fn stored_header<'a>(delivery: &'a ClaimedDelivery, name: &str) -> Option<&'a str> {
    delivery
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}
