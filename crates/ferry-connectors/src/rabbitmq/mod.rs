//! RabbitMQ (AMQP 0-9-1). A destination publishes each delivery persistent and `mandatory`
//! on a channel in confirm mode, and counts it delivered only when the broker confirmed it.
//! The delivery id is the message's `message_id` and its `webhook-id` header, identical
//! across retries and replays, so a consumer can drop duplicates.

mod destination;

pub use destination::RabbitmqConnector;
