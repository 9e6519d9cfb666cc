//! Queue sources: flows whose events are read from a broker (NATS JetStream, RabbitMQ).
//!
//! Each queue flow has one task ([`run::flow_loop`]). It asks its connector
//! ([`ferry_connectors::source::QueueSource`]) for a batch, runs each message through the
//! flow's steps like a posted event ([`message`]), commits the batch's events **and** the
//! messages the flow refused (rejected records: malformed JSON, schema violations, failed
//! steps) in one store call ([`ferry_store::Store::append_with_rejected`]), and only then
//! acknowledges the whole batch upstream and wakes the lanes. So a crash at any moment
//! leaves every message either committed or still held by the broker, and a poison message
//! never blocks the queue: it is stored with its reason and acknowledged. A redelivered
//! message is a duplicate by its id (the dedupe key), acknowledged again.
//!
//! While a lane of the flow is at its backlog bound (`backlog.max_pending`), the task stops
//! receiving: the broker keeps the messages until the lane drains.
//!
//! # Metrics
//!
//! - `ferry_source_messages_total{flow,kind,outcome}` (counter): `outcome` `stored`,
//!   `duplicate`, `rejected` or `filtered`;
//! - `ferry_source_errors_total{flow,kind}` (counter): failed receives, commits and acks;
//! - `ferry_source_paused{flow}` (gauge): 1 while backpressure holds the source.

pub mod message;
pub mod run;
pub mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use spec::{QueueConnection, QueueSpec};

use self::run::IntakeCtx;
use crate::backlog::BacklogMonitor;
use crate::ingress::LaneWaker;

/// The queue flows by name (for replays of rejected records).
pub type QueueFlows = BTreeMap<String, Arc<QueueSpec>>;

/// The running queue sources.
pub struct Intakes {
    tasks: Vec<JoinHandle<()>>,
}

impl Intakes {
    /// Start one task per queue flow, until `stop`.
    pub fn start(
        specs: &QueueFlows,
        store: Arc<dyn Store>,
        wake: LaneWaker,
        backlog: Arc<BacklogMonitor>,
        stop: CancellationToken,
    ) -> Intakes {
        let tasks = specs
            .values()
            .map(|spec| {
                metrics::gauge!(ferry_metrics::SOURCE_PAUSED, "flow" => spec.flow.clone()).set(0.0);
                let ctx = IntakeCtx {
                    spec: spec.clone(),
                    store: store.clone(),
                    wake: wake.clone(),
                    backlog: backlog.clone(),
                };
                tokio::spawn(run::flow_loop(ctx, stop.clone()))
            })
            .collect();
        Intakes { tasks }
    }

    /// Wait for every task to end (after `stop` was cancelled): each finishes the batch it
    /// is committing and lets go of what it holds.
    pub async fn join(self) {
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a queue source task failed");
            }
        }
    }
}
