//! The nodes sharing a PostgreSQL store: each one beats every second in `ferry_nodes`, and
//! a delivering node enforces `1 / n` of every destination's rate limit, `n` the delivering
//! nodes alive, so together they keep the vendor's limit whatever their number. A node that
//! stops leaves the table at once; one that dies stops counting after [`LIVE_WITHIN`].

use std::sync::Arc;
use std::time::Duration;

use ferry_delivery::RateShares;
use ferry_store::postgres::PgStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;

/// How often a node beats.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node whose last beat is older than this no longer counts.
pub const LIVE_WITHIN: Duration = Duration::from_secs(3);

/// This node's membership.
pub struct Membership {
    store: Arc<PgStore>,
    node: String,
    delivers: bool,
}

impl Membership {
    /// Join: the first beat, and the delivering nodes alive now (this one included when it
    /// delivers).
    pub async fn join(store: Arc<PgStore>, delivers: bool) -> anyhow::Result<(Self, u32)> {
        let node = format!("node-{}", uuid::Uuid::now_v7().simple());
        let live = store
            .heartbeat(&node, delivers, now_ms(), millis(LIVE_WITHIN))
            .await?;
        tracing::info!(%node, delivering_nodes = live, "joined the nodes sharing the store");
        Ok((
            Membership {
                store,
                node,
                delivers,
            },
            live,
        ))
    }

    /// Beat until `stop`, setting `shares` to each beat's count of delivering nodes; then
    /// leave.
    pub fn spawn(self, shares: RateShares, first: u32, stop: CancellationToken) -> JoinHandle<()> {
        shares.set(first);
        tokio::spawn(async move {
            let mut last = first;
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match self
                    .store
                    .heartbeat(&self.node, self.delivers, now_ms(), millis(LIVE_WITHIN))
                    .await
                {
                    Ok(live) if live != last => {
                        tracing::info!(
                            delivering_nodes = live,
                            "the nodes sharing the store changed; dividing rate limits by them"
                        );
                        shares.set(live);
                        last = live;
                    }
                    Ok(_) => {}
                    // Missed beats: the others stop counting this node after a few
                    // seconds; it keeps its share until the store answers again.
                    Err(e) => tracing::warn!(error = %e, "heartbeat to the store failed"),
                }
            }
            if let Err(e) = self.store.leave(&self.node).await {
                tracing::warn!(error = %e, "leaving the nodes sharing the store failed");
            }
        })
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
