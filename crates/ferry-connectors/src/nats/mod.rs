//! NATS JetStream. A destination publishes each delivery to a subject a stream captures and
//! counts it delivered only once the stream acknowledged it. The delivery id travels as
//! `Nats-Msg-Id`, so JetStream's duplicate window keeps a retried or replayed delivery once
//! (effectively once), and as `webhook-id`, like every Ferry delivery.
//!
//! The source ([`NatsSourceConnector`]) reads a stream through a durable pull consumer and
//! acknowledges each message only after Ferry committed it.

mod destination;
mod source;

pub use destination::NatsConnector;
pub use source::NatsSourceConnector;
