//! The nodes sharing a PostgreSQL store: each one beats every second in `ferry_nodes`, and
//! a delivering node enforces `1 / n` of every destination's rate limit, `n` the delivering
//! nodes alive that serve the lane's flow (for a flow of a tenant with a region: the nodes
//! of that region and those of no region), so together they keep the vendor's limit
//! whatever their number. A node that stops leaves the table at once; one that dies stops
//! counting after [`LIVE_WITHIN`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_delivery::RateShares;
use ferry_store::postgres::{LiveNodes, PgStore};
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
    /// The region this node serves (`None`: every region).
    region: Option<String>,
    /// The region of each flow of a tenant with a region; the others are every node's.
    flow_regions: Arc<HashMap<String, String>>,
}

impl Membership {
    /// Join: the first beat, and the delivering nodes alive now (this one included when it
    /// delivers).
    pub async fn join(
        store: Arc<PgStore>,
        delivers: bool,
        region: Option<String>,
        flow_regions: HashMap<String, String>,
    ) -> anyhow::Result<(Self, LiveNodes)> {
        let node = format!("node-{}", uuid::Uuid::now_v7().simple());
        let live = store
            .heartbeat(
                &node,
                delivers,
                region.as_deref(),
                now_ms(),
                millis(LIVE_WITHIN),
            )
            .await?;
        tracing::info!(%node, delivering_nodes = live.all, "joined the nodes sharing the store");
        Ok((
            Membership {
                store,
                node,
                delivers,
                region,
                flow_regions: Arc::new(flow_regions),
            },
            live,
        ))
    }

    /// Set each lane's share of its limits from `live`.
    pub fn share(&self, shares: &RateShares, live: &LiveNodes) {
        shares.set_each(|lane| live.serving(self.flow_regions.get(&lane.flow).map(String::as_str)));
    }

    /// Beat until `stop`, setting `shares` from each beat's delivering nodes; then leave.
    pub fn spawn(
        self,
        shares: RateShares,
        first: LiveNodes,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        self.share(&shares, &first);
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
                    .heartbeat(
                        &self.node,
                        self.delivers,
                        self.region.as_deref(),
                        now_ms(),
                        millis(LIVE_WITHIN),
                    )
                    .await
                {
                    Ok(live) if live != last => {
                        tracing::info!(
                            delivering_nodes = live.all,
                            "the nodes sharing the store changed; dividing rate limits by them"
                        );
                        self.share(&shares, &live);
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
