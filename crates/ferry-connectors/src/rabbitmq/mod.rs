//! RabbitMQ (AMQP 0-9-1). A destination publishes each delivery persistent and `mandatory`
//! on a channel in confirm mode, and counts it delivered only when the broker confirmed it.
//! The delivery id is the message's `message_id` and its `webhook-id` header, identical
//! across retries and replays, so a consumer can drop duplicates.
//!
//! The source ([`RabbitmqSourceConnector`]) consumes a queue with manual acknowledgements,
//! sent only after Ferry committed the messages.

mod destination;
mod source;

pub use destination::RabbitmqConnector;
pub use source::RabbitmqSourceConnector;
