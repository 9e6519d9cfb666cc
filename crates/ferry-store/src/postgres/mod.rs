//! The PostgreSQL backend: several Ferry nodes on one database.
//!
//! - One writer thread per node does group commit: concurrent calls share one transaction
//!   (one commit, one WAL flush on the server), each still atomic on its own (see
//!   `writer`). `synchronous_commit` is never turned off: a caller's `Ok` means committed.
//! - Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`, so nodes claim disjoint
//!   deliveries; a claim is a lease (`next_attempt_at` is the lease end while in flight), so
//!   the deliveries of a node that died are claimed again by the others once it ends.
//! - Per-key ordering holds across nodes: appends of a keyed delivery take a transaction
//!   advisory lock on its (lane, key).
//! - The audit trail is one hash chain for every node (see `audit`).
//! - Reads use a small pool of connections on blocking threads.
//! - A lost connection fails the calls of that moment with [`StoreError::Unavailable`]
//!   (ingress answers 503); the next call connects again.
//! - Every connection plans each statement for its parameters (`plan_cache_mode =
//!   force_custom_plan`, see `SESSION_SETTINGS`): a prepared statement's generic plan,
//!   chosen while a table is small, would otherwise stay cached while it grows.
//!
//! The blocking `postgres` client (over tokio-postgres) runs on the store's own threads,
//! as rusqlite does for the SQLite backend: each backend's SQL stays plain, synchronous code.

mod audit;
mod codec;
mod counts;
mod datakeys;
mod datamap;
mod health;
mod listen;
mod ops;
mod order;
mod pauses;
mod pull;
mod reads;
mod rejected;
mod retention;
mod schema;
mod windows;
mod writer;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use postgres::{Client, NoTls, Transaction};
use tokio::sync::{Semaphore, mpsc};

pub use schema::SCHEMA_VERSION;

use crate::effects::Effects;
use crate::sqlite::CommitStats;
use codec::PgResultExt;
use health::Health;
use writer::{Bounds, Command, Failure, Job, Stats, WriterParts};

use crate::{
    AppendOutcome, AuditEntry, AuditRecord, ClaimedDelivery, DataKeyId, DataKeyRecord,
    DataKeyStats, DeliveryDetail, DeliveryFilter, DeliveryId, DeliveryOutcome, DeliverySummary,
    EventFilter, EventId, EventSummary, LaneBacklog, LaneCounts, LaneKey, LanePause, Millis,
    NewDataKey, NewEvent, NewRejected, ObservedFilter, ObservedFlow, PullCheckpoint, PullRunUpdate,
    PullState, PurgeReport, RejectedId, RejectedRecord, RetentionRules, RewrappedKey, Store,
    StoreError, StoreResult, StoredEvent, SystemHoldings,
};

/// Where and how to reach the database. `Default` is not provided: the URL is required.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgres://user[:password]@host[:port]/database[?…]`, or the key=value form.
    pub url: String,
    /// The schema Ferry's tables live in (created if missing); `None`: the connection's
    /// default (`public`). Lets several hubs, or tests, share one database.
    pub schema: Option<String>,
    /// Connections in the read pool.
    pub read_connections: usize,
    /// Most commands merged into one commit.
    pub max_batch_commands: usize,
    /// About the most payload bytes merged into one commit.
    pub max_batch_bytes: usize,
    /// Commands that may wait for the writer before callers wait to enqueue.
    pub queue_capacity: usize,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
}

impl PgOptions {
    /// The defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            schema: None,
            read_connections: 4,
            max_batch_commands: 2048,
            max_batch_bytes: 8 * 1024 * 1024,
            queue_capacity: 4096,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What every connection sets before its first statement.
///
/// `plan_cache_mode = force_custom_plan`: the store's statements are prepared once per
/// connection and run thousands of times. After five runs PostgreSQL may switch a prepared
/// statement to a *generic* plan, costed with the table's size at that moment, and keeps it
/// until the table is analyzed again. On a new or fast-growing table (every table Ferry
/// writes, on a fresh database and whenever traffic outpaces autovacuum) that plan is a
/// sequential scan, so an outcome call's lookup of 30 deliveries by id read the whole
/// `deliveries` table, more slowly as it grew (docs/benchmarks.md, session 15: 2,018–2,134
/// against 3,987–5,053 events/s over 60,000 events). A custom plan costs a planning of each
/// run (tens of microseconds) and always sees the table's current size.
const SESSION_SETTINGS: &str = "SET plan_cache_mode = force_custom_plan";

/// Makes connections: the parsed URL, the schema to put first on the search path.
pub(crate) struct Connector {
    config: postgres::Config,
    schema: Option<String>,
    /// `host:port` of the URL, for messages (never the password).
    target: String,
}

impl Connector {
    fn new(opts: &PgOptions) -> StoreResult<Self> {
        let mut config: postgres::Config = opts.url.parse().map_err(|e| {
            StoreError::Backend(format!(
                "the PostgreSQL URL is not valid: {e} (expected postgres://user@host:port/database)"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(opts.connect_timeout);
        }
        config.keepalives(true);
        // The server's notices (`schema … already exists, skipping`) are not the hub's news.
        if config.get_options().is_none() {
            config.options("-c client_min_messages=warning");
        }
        if config.get_application_name().is_none() {
            // Names the hub's connections in `pg_stat_activity`, with its schema.
            match &opts.schema {
                Some(schema) => config.application_name(&format!("ferry:{schema}")),
                None => config.application_name("ferry"),
            };
        }
        if let Some(schema) = &opts.schema
            && !valid_schema_name(schema)
        {
            return Err(StoreError::Invalid(format!(
                "schema name `{schema}`: use letters, digits and `_`, starting with a letter or `_`, at most 63"
            )));
        }
        let target = target_of(&config);
        Ok(Connector {
            config,
            schema: opts.schema.clone(),
            target,
        })
    }

    /// A new connection, with the schema (created if missing) first on its search path.
    pub(crate) fn connect(&self) -> StoreResult<Client> {
        let mut client = self.config.connect(NoTls).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {}: {}",
                self.target,
                codec::map_err(e)
                    .to_string()
                    .trim_start_matches("store cannot commit: PostgreSQL: ")
            ))
        })?;
        let setup = match &self.schema {
            // Checked by `valid_schema_name`: a plain identifier, safe to quote.
            Some(schema) => format!(
                "{SESSION_SETTINGS}; CREATE SCHEMA IF NOT EXISTS \"{schema}\"; \
                 SET search_path TO \"{schema}\""
            ),
            None => SESSION_SETTINGS.to_owned(),
        };
        client.batch_execute(&setup).store()?;
        Ok(client)
    }
}

fn valid_schema_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `host:port, …` of a connection config.
fn target_of(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    if hosts.is_empty() {
        "the default host (localhost:5432)".to_owned()
    } else {
        hosts.join(", ")
    }
}

/// A fixed-size pool of connections for reads, used on blocking threads.
struct ReadPool {
    connector: Arc<Connector>,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    /// Runs `f` on a pooled connection (made again if it was lost) in a blocking thread.
    async fn run<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client) -> StoreResult<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .filter(|c| !c.is_closed());
            let mut client = match pooled {
                Some(c) => c,
                None => pool.connector.connect()?,
            };
            let out = f(&mut client);
            if !client.is_closed() {
                pool.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(client);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a store read failed: {e}")))?
    }
}

impl Drop for ReadPool {
    fn drop(&mut self) {
        // Closing a blocking client blocks on its own runtime, which must not happen on an
        // async worker (where the last handle is often dropped): close them on a thread.
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("ferry-store-pg-close".to_owned())
                .spawn(move || drop(idle));
        }
    }
}

/// The PostgreSQL store. See the [module docs](self).
pub struct PgStore {
    tx: Option<mpsc::Sender<Box<dyn Command>>>,
    thread: Option<JoinHandle<()>>,
    connector: Arc<Connector>,
    /// The channel other nodes' wake-ups come on, and its listener once asked for.
    channel: String,
    listener: Mutex<Option<listen::Listener>>,
    reads: Arc<ReadPool>,
    stats: Arc<Stats>,
    health: Arc<Health>,
    target: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, applies the migrations and starts the writer thread. Blocking: call it
    /// from a blocking context (or use [`PgStore::open`]).
    pub fn open_blocking(opts: PgOptions) -> StoreResult<PgStore> {
        let connector = Arc::new(Connector::new(&opts)?);
        let mut client = connector.connect()?;
        schema::migrate(&mut client)?;
        let stats = Arc::new(Stats::default());
        let health = Arc::new(Health::default());
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let channel = listen::channel(opts.schema.as_deref());
        let parts = WriterParts {
            channel: channel.clone(),
            connector: Arc::clone(&connector),
            client,
            stats: Arc::clone(&stats),
            health: Arc::clone(&health),
            bounds: Bounds {
                max_commands: opts.max_batch_commands,
                max_bytes: opts.max_batch_bytes,
            },
        };
        let thread = std::thread::Builder::new()
            .name("ferry-store-pg-writer".to_owned())
            .spawn(move || writer::run(rx, parts))
            .map_err(|e| StoreError::Backend(format!("cannot start the store writer: {e}")))?;
        let size = opts.read_connections.max(1);
        let reads = Arc::new(ReadPool {
            connector: Arc::clone(&connector),
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
        });
        Ok(PgStore {
            tx: Some(tx),
            thread: Some(thread),
            connector: Arc::clone(&connector),
            channel,
            listener: Mutex::new(None),
            reads,
            stats,
            health,
            target: connector.target.clone(),
        })
    }

    /// [`PgStore::open_blocking`] on a blocking thread.
    pub async fn open(opts: PgOptions) -> StoreResult<PgStore> {
        tokio::task::spawn_blocking(move || PgStore::open_blocking(opts))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the store failed: {e}")))?
    }

    /// Connects and applies the migrations, then disconnects: `ferry migrate`. Returns the
    /// version found and the version now.
    pub fn migrate_blocking(opts: &PgOptions) -> StoreResult<(i64, i64)> {
        let connector = Connector::new(opts)?;
        let mut client = connector.connect()?;
        schema::migrate(&mut client)
    }

    /// Record that node `node` (which delivers or not, serving `region` or every region)
    /// is alive at `now`, and answer which delivering nodes are: those whose heartbeat is
    /// newer than `now - live_within` (this one included when it delivers). Rows of nodes
    /// silent for ten times that are removed.
    pub async fn heartbeat(
        &self,
        node: &str,
        delivers: bool,
        region: Option<&str>,
        now: Millis,
        live_within: Millis,
    ) -> StoreResult<LiveNodes> {
        let node = node.to_owned();
        let region = region.map(str::to_owned);
        let rows = self
            .write(64, move |tx, _| {
                tx.execute(
                    "INSERT INTO ferry_nodes (node_id, delivers, started_at, heartbeat_at, region)
                     VALUES ($1, $2, $3, $3, $4)
                     ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                         delivers = excluded.delivers, region = excluded.region",
                    &[&node, &delivers, &now, &region],
                )?;
                tx.execute(
                    "DELETE FROM ferry_nodes WHERE heartbeat_at < $1",
                    &[&(now - 10 * live_within)],
                )?;
                let rows = tx.query(
                    "SELECT region, count(*) FROM ferry_nodes
                     WHERE delivers AND heartbeat_at > $1 GROUP BY region",
                    &[&(now - live_within)],
                )?;
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    out.push((
                        codec::col::<Option<String>>(row, 0)?,
                        codec::col::<i64>(row, 1)?,
                    ));
                }
                Ok(out)
            })
            .await?;
        let mut live = LiveNodes::default();
        for (region, count) in rows {
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            live.all = live.all.saturating_add(count);
            match region {
                Some(region) => {
                    live.by_region.insert(region, count);
                }
                None => live.any_region = count,
            }
        }
        Ok(live)
    }

    /// Node `node` stops: the others stop counting it at their next heartbeat.
    pub async fn leave(&self, node: &str) -> StoreResult<()> {
        let node = node.to_owned();
        self.write(64, move |tx, _| {
            tx.execute("DELETE FROM ferry_nodes WHERE node_id = $1", &[&node])?;
            Ok(())
        })
        .await
    }

    /// `host:port` of the database (never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Commits and commands so far (group-commit efficiency).
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            commands: self.stats.commands.load(Ordering::Relaxed),
            // Every PostgreSQL commit waits for the server's WAL flush.
            deferred: 0,
        }
    }

    /// Test hook: while `reason` is set, every commit fails with it (as
    /// [`StoreError::Unavailable`]); `None` heals.
    #[doc(hidden)]
    pub fn fail_commits(&self, reason: Option<&str>) {
        self.health.inject(reason.map(str::to_owned));
    }

    /// The lanes in which any node (this one too) just left deliveries waiting: each is
    /// received once its batch has committed. Starts a listening connection on a thread of
    /// its own, connected again when lost; a wake-up missed meanwhile is the lanes' idle
    /// poll's to catch. One receiver per store.
    pub fn lane_work(&self) -> StoreResult<mpsc::UnboundedReceiver<LaneKey>> {
        let mut slot = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Err(StoreError::Invalid(
                "the store's lane wake-ups already have a receiver".to_owned(),
            ));
        }
        let (out, rx) = mpsc::unbounded_channel();
        let listener = listen::spawn(Arc::clone(&self.connector), self.channel.clone(), out)
            .map_err(|e| StoreError::Backend(format!("cannot start the listener: {e}")))?;
        *slot = Some(listener);
        Ok(rx)
    }

    /// Stops the listener, if one runs (it notices within a quarter second).
    fn stop_listening(&self) -> Option<JoinHandle<()>> {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        listener.stop.store(true, Ordering::Relaxed);
        Some(listener.thread)
    }

    /// Finishes queued commands and stops the writer.
    pub async fn close(mut self) -> StoreResult<()> {
        if let Some(listening) = self.stop_listening() {
            let _ = tokio::task::spawn_blocking(move || listening.join()).await;
        }
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| StoreError::Backend(format!("closing the store failed: {e}")))?
                .map_err(|_| StoreError::Backend("the store writer thread panicked".to_owned()))?;
        }
        Ok(())
    }

    /// Sends `work` to the writer and waits for its committed result.
    async fn write<T, F>(&self, cost: usize, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&mut Transaction<'_>, &mut Effects) -> Result<T, Failure> + Send + 'static,
    {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        let (cmd, rx) = Job::boxed(cost, work);
        tx.send(cmd).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(listening) = self.stop_listening() {
            let _ = listening.join();
        }
        self.tx = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

impl PgStore {
    /// Rewrite `data_keys` into new files (`VACUUM FULL`), so the table's files no longer
    /// hold the row versions a shred replaced (PostgreSQL keeps them until vacuumed, and a
    /// plain vacuum leaves their bytes in free space). Best effort, logged: the WAL and
    /// backups keep older pages until they are recycled. The table is small; the rewrite
    /// locks it for a moment.
    async fn rewrite_data_keys(&self) {
        match self
            .reads
            .run(|c| c.batch_execute("VACUUM FULL data_keys").store())
            .await
        {
            Ok(()) => tracing::debug!("store: data_keys rewritten after a shred"),
            Err(e) => tracing::warn!(error = %e, "store: rewriting data_keys after a shred failed"),
        }
    }
}

fn append_cost(events: &[NewEvent]) -> usize {
    events
        .iter()
        .map(|e| {
            256 + e.payload.len()
                + e.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
                + e.deliveries.len() * 64
        })
        .sum()
}

#[async_trait]
impl Store for PgStore {
    async fn append(&self, events: Vec<NewEvent>) -> StoreResult<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let cost = append_cost(&events);
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        let (cmd, rx) = writer::AppendJob::boxed(cost, events);
        tx.send(cmd).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn append_page(
        &self,
        flow: &str,
        events: Vec<NewEvent>,
        checkpoint: PullCheckpoint,
    ) -> StoreResult<Vec<AppendOutcome>> {
        if let Some(other) = events.iter().find(|e| e.flow != flow) {
            return Err(StoreError::Invalid(format!(
                "a page of pull flow `{flow}` holds event {} of flow `{}`",
                other.id, other.flow
            )));
        }
        let cost = append_cost(&events) + 128;
        let flow = flow.to_owned();
        self.write(cost, move |tx, fx| {
            pull::check_from(tx, &flow, &checkpoint)?;
            let outcomes = ops::append(tx, fx, &events)?;
            let stored = outcomes.iter().filter(|o| o.is_stored()).count() as u64;
            pull::advance(tx, &flow, &checkpoint, stored)?;
            Ok(outcomes)
        })
        .await
    }

    async fn append_with_rejected(
        &self,
        events: Vec<NewEvent>,
        rejected: Vec<NewRejected>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        if rejected.is_empty() {
            return self.append(events).await;
        }
        let cost = append_cost(&events)
            + rejected
                .iter()
                .map(|r| 256 + r.payload.len() + r.detail.len())
                .sum::<usize>();
        self.write(cost, move |tx, fx| {
            let outcomes = ops::append(tx, fx, &events)?;
            rejected::insert(tx, &rejected)?;
            Ok(outcomes)
        })
        .await
    }

    async fn list_rejected(
        &self,
        flow: Option<&str>,
        before: Option<RejectedId>,
        limit: usize,
    ) -> StoreResult<Vec<RejectedRecord>> {
        let flow = flow.map(str::to_owned);
        self.reads
            .run(move |c| rejected::list(c, flow.as_deref(), before, limit))
            .await
    }

    async fn rejected(&self, id: RejectedId) -> StoreResult<Option<RejectedRecord>> {
        self.reads.run(move |c| rejected::get(c, id)).await
    }

    async fn replay_rejected(
        &self,
        id: RejectedId,
        events: Vec<NewEvent>,
        at: Millis,
        by: &str,
    ) -> StoreResult<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Err(StoreError::Invalid(format!(
                "replaying rejected record {id} needs at least one event"
            )));
        }
        let cost = append_cost(&events) + 64;
        let by = by.to_owned();
        self.write(cost, move |tx, fx| {
            let flow = rejected::check_replayable(tx, id)?;
            let outcomes = ops::append(tx, fx, &events)?;
            let first = outcomes[0].event_id();
            rejected::mark_replayed(tx, id, at, first)?;
            fx.audit.push(AuditEntry::RejectedReplayed {
                at,
                by: by.clone(),
                rejected: id,
                flow: flow.clone(),
                events: outcomes.iter().map(|o| o.event_id()).collect(),
            });
            Ok(outcomes)
        })
        .await
    }

    async fn pull_state(&self, flow: &str) -> StoreResult<Option<PullState>> {
        let flow = flow.to_owned();
        self.reads.run(move |c| pull::state(c, &flow)).await
    }

    async fn set_pull_run(&self, flow: &str, update: PullRunUpdate) -> StoreResult<()> {
        let flow = flow.to_owned();
        self.write(64, move |tx, _| pull::set_run(tx, &flow, &update))
            .await
    }

    async fn claim(
        &self,
        lane: &LaneKey,
        now: Millis,
        limit: usize,
        lease_until: Millis,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let lane = lane.clone();
        self.write(64, move |tx, fx| {
            ops::claim(tx, fx, &lane, now, limit, lease_until)
        })
        .await
    }

    async fn complete(&self, outcomes: Vec<DeliveryOutcome>, now: Millis) -> StoreResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let cost = outcomes.len() * 256;
        self.write(cost, move |tx, fx| ops::complete(tx, fx, &outcomes, now))
            .await
    }

    async fn release_all_claims(&self, now: Millis) -> StoreResult<u64> {
        self.write(64, move |tx, fx| ops::release_all_claims(tx, fx, now))
            .await
    }

    async fn next_due(&self, lane: &LaneKey) -> StoreResult<Option<Millis>> {
        let lane = lane.clone();
        self.reads.run(move |c| reads::next_due(c, &lane)).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<Vec<DeliverySummary>> {
        let filter = filter.clone();
        self.reads
            .run(move |c| reads::list_deliveries(c, &filter, after, limit))
            .await
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<DeliveryDetail>> {
        self.reads.run(move |c| reads::delivery(c, id)).await
    }

    async fn event(&self, id: EventId) -> StoreResult<Option<StoredEvent>> {
        self.reads.run(move |c| reads::event(c, id)).await
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        after: Option<EventId>,
        limit: usize,
    ) -> StoreResult<Vec<EventSummary>> {
        let filter = filter.clone();
        self.reads
            .run(move |c| reads::list_events(c, &filter, after, limit))
            .await
    }

    async fn replay(&self, filter: &DeliveryFilter, now: Millis, by: &str) -> StoreResult<u64> {
        let filter = filter.clone();
        let by = by.to_owned();
        self.write(64, move |tx, fx| ops::replay(tx, fx, &filter, now, &by))
            .await
    }

    async fn lane_counts(&self) -> StoreResult<Vec<LaneCounts>> {
        self.reads.run(reads::lane_counts).await
    }

    async fn lane_backlog(&self) -> StoreResult<Vec<LaneBacklog>> {
        self.reads.run(reads::lane_backlog).await
    }

    async fn set_lane_pause(&self, lane: &LaneKey, pause: Option<LanePause>) -> StoreResult<()> {
        let lane = lane.clone();
        self.write(64, move |tx, _| pauses::set(tx, &lane, pause.as_ref()))
            .await
    }

    async fn lane_pauses(&self) -> StoreResult<Vec<(LaneKey, LanePause)>> {
        self.reads.run(pauses::list).await
    }

    async fn audit_admin_action(&self, entry: AuditEntry) -> StoreResult<()> {
        if !entry.is_admin_action() {
            return Err(StoreError::Invalid(format!(
                "`{}` audit entries are written by the store with the change they record",
                entry.kind()
            )));
        }
        self.write(256, move |_, fx| {
            fx.audit.push(entry.clone());
            Ok(())
        })
        .await
    }

    async fn audit_records(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<AuditRecord>> {
        self.reads
            .run(move |c| audit::records(c, after, limit))
            .await
    }

    async fn purge_expired(
        &self,
        rules: &RetentionRules,
        now: Millis,
        limit: usize,
    ) -> StoreResult<PurgeReport> {
        let rules = rules.clone();
        self.write(64 * limit.max(1), move |tx, fx| {
            retention::purge(tx, fx, &rules, now, limit)
        })
        .await
    }

    async fn holdings(&self) -> StoreResult<Vec<SystemHoldings>> {
        self.reads.run(retention::holdings).await
    }

    async fn observed_datamap(&self, filter: &ObservedFilter) -> StoreResult<Vec<ObservedFlow>> {
        let filter = filter.clone();
        self.reads.run(move |c| datamap::list(c, &filter)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        match self.health.unready() {
            // The writer answers, and no commit failed since: an empty batch proves the
            // connection.
            None => self.write(0, |_, _| Ok(())).await,
            // A commit failed: only a commit can tell whether the cause is gone.
            Some(reason) => {
                tracing::debug!(%reason, "store: not ready; probing with a write");
                self.write(64, |tx, _| {
                    tx.execute(
                        "INSERT INTO store_meta (key, value) VALUES ('ready_probe', NULL)
                         ON CONFLICT (key) DO UPDATE SET value = NULL",
                        &[],
                    )?;
                    Ok(())
                })
                .await
            }
        }
    }

    async fn data_keys_of(&self, subject_refs: &[String]) -> StoreResult<Vec<DataKeyRecord>> {
        let subjects = subject_refs.to_vec();
        self.reads
            .run(move |c| datakeys::of_subjects(c, &subjects))
            .await
    }

    async fn create_data_keys(&self, keys: Vec<NewDataKey>) -> StoreResult<Vec<DataKeyRecord>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let cost = keys.len() * 128;
        self.write(cost, move |tx, _| datakeys::create(tx, &keys))
            .await
    }

    async fn data_key(&self, id: DataKeyId) -> StoreResult<Option<DataKeyRecord>> {
        self.reads.run(move |c| datakeys::get(c, id)).await
    }

    async fn data_keys_not_wrapped_by(
        &self,
        kek_id: &str,
        after: Option<DataKeyId>,
        limit: usize,
    ) -> StoreResult<Vec<DataKeyRecord>> {
        let kek_id = kek_id.to_owned();
        self.reads
            .run(move |c| datakeys::not_wrapped_by(c, &kek_id, after, limit))
            .await
    }

    async fn rewrap_data_keys(&self, keys: Vec<RewrappedKey>) -> StoreResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let cost = keys.len() * 128;
        self.write(cost, move |tx, _| datakeys::rewrap(tx, &keys))
            .await
    }

    async fn shred_data_keys(&self, subject_ref: &str, at: Millis) -> StoreResult<u64> {
        let subject_ref = subject_ref.to_owned();
        let n = self
            .write(64, move |tx, _| datakeys::shred(tx, &subject_ref, at))
            .await?;
        if n > 0 {
            self.rewrite_data_keys().await;
        }
        Ok(n)
    }

    async fn data_key_stats(&self) -> StoreResult<DataKeyStats> {
        self.reads.run(datakeys::stats).await
    }
}

/// The delivering nodes alive on a shared store, by the data region they serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveNodes {
    /// Every delivering node.
    pub all: u32,
    /// Those started without a region: they serve every region.
    pub any_region: u32,
    /// Those started with `--region`, by region.
    pub by_region: std::collections::BTreeMap<String, u32>,
}

impl LiveNodes {
    /// How many nodes deliver a flow of `region` (`None`: a flow every node serves), at
    /// least 1: each of them takes `1 /` that of the flow's limits.
    pub fn serving(&self, region: Option<&str>) -> u32 {
        let n = match region {
            None => self.all,
            Some(r) => self
                .any_region
                .saturating_add(self.by_region.get(r).copied().unwrap_or(0)),
        };
        n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outcome update's shape (`UPDATE … FROM unnest($1) … WHERE seq = u.seq`), prepared
    /// and run while its table is empty, then run once the table holds 20,000 rows: on the
    /// store's connections it looks the rows up by key instead of scanning the table with
    /// the generic plan made when it was empty.
    #[test]
    fn a_statement_prepared_on_an_empty_table_follows_its_growth() {
        let Ok(url) = std::env::var("FERRY_TEST_POSTGRES_URL") else {
            eprintln!("skipped: FERRY_TEST_POSTGRES_URL is not set (a PostgreSQL URL)");
            return;
        };
        let connector = Connector::new(&PgOptions::new(url)).expect("connector");
        let mut client = connector.connect().expect("connect");
        let mode: String = client
            .query_one("SHOW plan_cache_mode", &[])
            .expect("show")
            .get(0);
        assert_eq!(mode, "force_custom_plan");

        let keys = |from: usize| {
            let k: Vec<String> = (from..from + 30)
                .map(|i| (i * 613 % 20_000).to_string())
                .collect();
            format!("'{{{}}}'", k.join(","))
        };
        let values = format!("'{{{}}}'", vec!["1"; 30].join(","));
        client
            .batch_execute(
                "CREATE TEMP TABLE grows (seq bigint PRIMARY KEY, id uuid NOT NULL UNIQUE,
                     n integer NOT NULL DEFAULT 0);
                 PREPARE settle(bigint[], integer[]) AS
                     UPDATE grows SET n = u.n FROM unnest($1::bigint[], $2::integer[]) AS u (seq, n)
                     WHERE grows.seq = u.seq",
            )
            .expect("prepare");
        // More than the five runs after which PostgreSQL may settle on a generic plan.
        for i in 0..8 {
            client
                .batch_execute(&format!("EXECUTE settle({}, {values})", keys(i * 30)))
                .expect("execute");
        }
        client
            .batch_execute("INSERT INTO grows (seq, id) SELECT g, gen_random_uuid() FROM generate_series(1, 20000) g")
            .expect("grow");
        let plan: Vec<String> = client
            .query(
                &format!("EXPLAIN EXECUTE settle({}, {values})", keys(7)),
                &[],
            )
            .expect("explain")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("Index Scan"), "{plan}");
        assert!(!plan.contains("Seq Scan on grows"), "{plan}");
    }
}
