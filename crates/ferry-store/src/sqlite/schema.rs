//! Connection set-up (pragmas) and versioned schema migrations.
//!
//! Migrations are an ordered list; `PRAGMA user_version` records how many have been applied.
//! All pending migrations run in one `IMMEDIATE` transaction together with the version bump,
//! so a crash mid-migration leaves the previous version intact. A database whose version is
//! newer than this code knows is refused rather than misread.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::SqliteOptions;
use super::codec::SqlResultExt;
use crate::{StoreError, StoreResult};

/// Version 1: events, deliveries, attempts and per-lane state counters.
///
/// - `deliveries.next_attempt_at` is the due time while pending/retrying and the lease end
///   while in flight, so the one partial index `deliveries_due` serves both "due" and "lease
///   expired" claims. It is NULL once delivered or dead.
/// - `deliveries.seq` (the rowid) is insertion order: the tie-breaker for "oldest first" and
///   the listing cursor position, stable across `VACUUM`.
/// - `lane_state_counts` is kept exact by the writer (net changes per batch, see `counts`),
///   so `lane_counts` costs O(lanes), not O(rows); the oldest waiting delivery per lane is one
///   seek in `deliveries_lane_state`.
/// - Indexes are few on purpose: every state change rewrites the index entries that hold
///   `state`, three times per delivered event. Listing and replay use the lane index, the
///   receive-time index, the event index, or the partial index of dead letters (the DLQ).
const V1: &str = r#"
CREATE TABLE events (
    id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    flow        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    dedupe_key  TEXT,
    event_type  TEXT,
    received_at INTEGER NOT NULL,
    headers     TEXT    NOT NULL,
    payload     BLOB    NOT NULL
);
CREATE UNIQUE INDEX events_dedupe ON events (flow, dedupe_key) WHERE dedupe_key IS NOT NULL;

CREATE TABLE deliveries (
    seq              INTEGER PRIMARY KEY,
    id               BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    event_id         BLOB    NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    flow             TEXT    NOT NULL,
    destination      TEXT    NOT NULL,
    state            INTEGER NOT NULL CHECK (state BETWEEN 0 AND 4),
    next_attempt_at  INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    round_attempts   INTEGER NOT NULL DEFAULT 0,
    round_started_at INTEGER NOT NULL,
    replays          INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    CHECK (state NOT IN (0, 1, 3) OR next_attempt_at IS NOT NULL)
);
CREATE INDEX deliveries_due ON deliveries (flow, destination, next_attempt_at)
    WHERE state IN (0, 1, 3);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_received ON deliveries (received_at);
CREATE INDEX deliveries_lane_state ON deliveries (flow, destination, state, received_at);
CREATE INDEX deliveries_dead ON deliveries (received_at) WHERE state = 4;

CREATE TABLE attempts (
    delivery_id      BLOB    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    latency_ms       INTEGER NOT NULL,
    status           INTEGER,
    error_class      TEXT,
    error            TEXT,
    response_excerpt TEXT,
    PRIMARY KEY (delivery_id, seq)
) WITHOUT ROWID;

CREATE TABLE lane_state_counts (
    flow        TEXT    NOT NULL,
    destination TEXT    NOT NULL,
    state       INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (flow, destination, state)
) WITHOUT ROWID;

"#;

/// Version 2: per-key ordering of deliveries and lane pauses.
///
/// - `deliveries.order_key` (NULL: unordered) and `deliveries.held`, a delivery's place in
///   the queue of its (lane, key): 0 for the head (the earliest waiting one, by `seq`), 1
///   for the waiting ones behind it, NULL once delivered or dead (out of the queue). An
///   unordered delivery is always 0. The writer keeps it exact on every change of a queue
///   (see `order`); the CHECK turns a slip into an error rather than a stuck key.
/// - `deliveries_due` is rebuilt without held-back deliveries, so a claim never walks past
///   them, and claims on lanes without keys cost what they did in V1.
/// - `deliveries_order_key` holds the queued deliveries (keyed, not delivered or dead); the
///   rowid (`seq`) trails every entry, so a key's head is the first entry of its range: one
///   seek decides `held` on append and finds the next head when one settles. It is keyed on
///   `held IS NOT NULL` rather than on `state`, so claims, retries and releases, which move
///   a delivery between waiting states, do not touch it: it changes only when a delivery
///   joins or leaves a queue.
/// - `lane_pauses`: one row per paused lane.
///
/// Rows of a V1 file have no key and read as `order_key = NULL, held = 0`: correct as is.
const V2: &str = r#"
ALTER TABLE deliveries ADD COLUMN order_key TEXT;
ALTER TABLE deliveries ADD COLUMN held INTEGER DEFAULT 0 CHECK (CASE
    WHEN order_key IS NULL THEN held IS 0
    WHEN state IN (2, 4) THEN held IS NULL
    ELSE held IS 0 OR held IS 1
END);

DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (flow, destination, next_attempt_at)
    WHERE state IN (0, 1, 3) AND held = 0;
CREATE INDEX deliveries_order_key ON deliveries (flow, destination, order_key)
    WHERE order_key IS NOT NULL AND held IS NOT NULL;

CREATE TABLE lane_pauses (
    flow        TEXT    NOT NULL,
    destination TEXT    NOT NULL,
    since       INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    PRIMARY KEY (flow, destination)
) WITHOUT ROWID;
"#;

/// Version 3: scheduled pulls and `dedupe` step windows.
///
/// - `pull_state`: one row per pull flow, created by its first run or page. `cursor` moves
///   only in the transaction that stores the page it follows (see `pull`); the run columns
///   (`started_at`, `finished_at`, `success_at`, `last_error`, `running`) are written
///   when a run starts and ends.
/// - `dedupe_windows`: the keys `dedupe` steps remember, one row per (flow, key) with the
///   event that recorded it and when the key expires. A key is checked and recorded in the
///   transaction of the append (see `windows`); expired rows are purged a few at a time by
///   later appends through `dedupe_windows_expiry`.
///
/// Both tables are new: a V2 file upgrades with nothing to convert.
const V3: &str = r#"
CREATE TABLE pull_state (
    flow         TEXT    NOT NULL PRIMARY KEY,
    cursor       TEXT,
    last_page_at INTEGER,
    started_at   INTEGER,
    finished_at  INTEGER,
    success_at   INTEGER,
    last_error   TEXT,
    running      INTEGER NOT NULL DEFAULT 0 CHECK (running IN (0, 1)),
    pages        INTEGER NOT NULL DEFAULT 0,
    records      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE dedupe_windows (
    flow       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    event_id   BLOB    NOT NULL CHECK (length(event_id) = 16),
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (flow, key)
) WITHOUT ROWID;
CREATE INDEX dedupe_windows_expiry ON dedupe_windows (expires_at);
"#;

/// Version 4: `store_meta`, facts about the store itself, one row per key.
///
/// Its first key is `ready_probe`: while the store is not ready (a commit failed, say the
/// disk is full), a readiness check writes 1 MiB of random bytes there, replacing the last,
/// to find out whether real commits fit again (see `health`). A rowid table, as the value
/// may be large. A V3 file upgrades with nothing to convert.
const V4: &str = r#"
CREATE TABLE store_meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value
);
"#;

/// Version 5: searching by the sender's id, and replays in a delivery's history.
///
/// - `events_sender_id`: events by their dedupe key (the sender's own event id) across
///   flows, so "where is Stripe's `evt_1Q0…`?" is an index seek. The key's derived forms
///   (`<id>#<n>` of a split, `<id>@<version>` of a pulled record) are two more range seeks
///   in it. `events_dedupe` cannot serve this: it leads with the flow.
/// - `delivery_replays`: one row per replay of a delivery (when, who asked, the state,
///   attempt count and last error it had then); `seq` is the replay count after it. Written
///   by the replay's own statement, so a replay and its record commit together.
///
/// A V4 file upgrades with nothing to convert: its deliveries simply have no replay rows
/// (their `replays` counter still says how many there were).
const V5: &str = r#"
CREATE INDEX events_sender_id ON events (dedupe_key) WHERE dedupe_key IS NOT NULL;

CREATE TABLE delivery_replays (
    delivery_id     BLOB    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    requested_by    TEXT    NOT NULL,
    from_state      INTEGER NOT NULL CHECK (from_state IN (2, 3, 4)),
    attempts_before INTEGER NOT NULL,
    last_error      TEXT,
    PRIMARY KEY (delivery_id, seq)
) WITHOUT ROWID;
"#;

/// Version 6: rejected records of queue sources (messages a flow refused), stored with the
/// events of their batch so the batch can be acknowledged.
///
/// - `rejected_message` keeps one record per flow and message id: a message redelivered
///   after a crash between the commit and the broker's acknowledgement is not stored twice.
/// - Listing is newest first by id (UUID v7, time-ordered), per flow or over all flows.
const V6: &str = r#"
CREATE TABLE rejected (
    id             BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    flow           TEXT    NOT NULL,
    source_kind    TEXT    NOT NULL,
    message_id     TEXT,
    received_at    INTEGER NOT NULL,
    reason         TEXT    NOT NULL,
    detail         TEXT    NOT NULL,
    headers        TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    replayed_at    INTEGER,
    replayed_event BLOB
);
CREATE UNIQUE INDEX rejected_message ON rejected (flow, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX rejected_flow ON rejected (flow, id);
"#;

/// Version 7: data keys, the per-subject keys that encrypt classified fields at rest.
///
/// - One row per key: the subject reference (a keyed hash, or `-` for the hub-wide key of
///   events without a subject), the id of the key-encryption key that wrapped it, the
///   wrapped key, when it was created and, once shredded, when. `id` is `AUTOINCREMENT`, so
///   an id is never given to another key even after a shred (envelopes name keys by id).
/// - A shredded key keeps its row as a tombstone: `wrapped` is NULL (overwritten with
///   `secure_delete` on), `shredded_at` set.
/// - `data_keys_subject`: at most one live key per subject; a subject erased and seen again
///   gets a new key.
/// - `data_keys_kek`: live keys by key-encryption key, so the start-up check and `ferry keys
///   status` count per KEK, and a rotation pages through the keys of older KEKs, by index.
///
/// A new table: a V6 file upgrades with nothing to convert.
const V7: &str = r#"
CREATE TABLE data_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_ref TEXT    NOT NULL,
    kek_id      TEXT    NOT NULL,
    wrapped     BLOB,
    created_at  INTEGER NOT NULL,
    shredded_at INTEGER,
    CHECK ((wrapped IS NULL) = (shredded_at IS NOT NULL))
);
CREATE UNIQUE INDEX data_keys_subject ON data_keys (subject_ref) WHERE shredded_at IS NULL;
CREATE INDEX data_keys_kek ON data_keys (kek_id, id) WHERE shredded_at IS NULL;
"#;

/// Version 8: the audit trail, retention by system and category, the observed data map.
///
/// - `audit_log`: the hash-chained audit trail (see `crate::audit`), one row per kind of
///   entry per commit, `seq` from 1 without gaps. Written by the writer in the transaction
///   of the changes it records; the triggers refuse any `UPDATE` or `DELETE`, so only
///   someone who drops them first can change it, and `ferry audit verify` then names the
///   first record changed.
/// - `events.categories`: the data categories present in the event (a JSON array; NULL for
///   none), as ingress found them.
/// - `event_retention`: what retention goes by, one row per event and tag: `s:<source
///   system>` and `c:<category>` for each category it carries. Keyed by tag then receive
///   time, so the events of a tag older than a cut-off are one range; the purge looks up a
///   purged event's own tags through `events.categories`. Existing events get their system
///   tag here.
/// - `datamap_observed`: per (category, flow, destination, system, protection), deliveries
///   delivered and when the last was; updated in the transaction of the outcome, beside its
///   `delivered` audit entry.
pub(crate) const V8: &str = r#"
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    entries   TEXT    NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

ALTER TABLE events ADD COLUMN categories TEXT;

CREATE TABLE event_retention (
    tag         TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    event_id    BLOB    NOT NULL CHECK (length(event_id) = 16),
    PRIMARY KEY (tag, received_at, event_id)
) WITHOUT ROWID;
INSERT INTO event_retention (tag, received_at, event_id)
    SELECT 's:' || source, received_at, id FROM events;

CREATE TABLE datamap_observed (
    category          TEXT    NOT NULL,
    flow              TEXT    NOT NULL,
    destination       TEXT    NOT NULL,
    system            TEXT    NOT NULL,
    how               TEXT    NOT NULL,
    delivered         INTEGER NOT NULL,
    last_delivered_at INTEGER NOT NULL,
    PRIMARY KEY (category, flow, destination, system, how)
) WITHOUT ROWID;
"#;

/// Version 9: one index of events by dedupe key serves both deduplication and the search by
/// sender id.
///
/// `events_dedupe_key` is keyed on `(dedupe_key, flow)`: unique, so it is the dedupe
/// constraint (`ON CONFLICT (flow, dedupe_key)` matches it, and "is this key already in this
/// flow" is one seek on both columns), and led by the key, so a sender id and its derived
/// forms are range seeks in it, as they were in `events_sender_id`. It replaces
/// `events_dedupe` (led by the flow) and `events_sender_id`: an event with a key now updates
/// one B-tree instead of two. Senders' keys are random, so each of those updates dirtied a
/// page of its own in the commit (docs/benchmarks.md, session 19).
///
/// Building the index reads every event with a key once; nothing else is converted.
const V9: &str = r#"
CREATE UNIQUE INDEX events_dedupe_key ON events (dedupe_key, flow) WHERE dedupe_key IS NOT NULL;
DROP INDEX events_dedupe;
DROP INDEX events_sender_id;
"#;

/// Every migration, in order. Never edit a released entry; append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9];

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the writer connection: WAL, `synchronous=FULL`, foreign keys, migrations applied.
pub(crate) fn open_writer(path: &Path, opts: &SqliteOptions) -> StoreResult<Connection> {
    // The writer alone writes WAL frames: through `wal_gather`, one `pwrite` per commit.
    let mut conn = match super::wal_gather::name() {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs),
        None => Connection::open(path),
    }
    .store()?;
    conn.busy_timeout(opts.busy_timeout).store()?;
    stable_plans(&conn)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .store()?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "could not switch {} to WAL mode (got `{mode}`)",
            path.display()
        )));
    }
    // FULL: a commit returns only after the WAL is fsynced ("accepted means durable").
    conn.pragma_update(None, "synchronous", "FULL").store()?;
    conn.pragma_update(None, "foreign_keys", true).store()?;
    conn.pragma_update(None, "temp_store", "MEMORY").store()?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024_i64)
        .store()?;
    set_cache(&conn, opts.cache_size_kib)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn)?;
    // Refresh planner statistics where they are missing or stale (cheap; see SQLite docs).
    conn.execute_batch("PRAGMA optimize = 0x10002").store()?;
    Ok(conn)
}

/// Opens a read-only connection for the read pool.
pub(crate) fn open_reader(
    path: &Path,
    busy_timeout: Duration,
    cache_kib: u32,
) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).store()?;
    conn.busy_timeout(busy_timeout).store()?;
    stable_plans(&conn)?;
    set_cache(&conn, cache_kib)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Turns on SQLite's query planner stability guarantee: a statement keeps the plan it was
/// prepared with whatever values are bound to it.
///
/// Without it, SQLite (3.54) marks a statement to be parsed and planned again whenever a
/// new value is bound to a parameter the planner looked at: a bound `LIMIT`, and any
/// parameter of a join. Every claim of a lane binds its own time and number of free slots
/// to a join, so each one re-prepared the statement (about 9 % of the writer thread while a
/// lane drained a backlog). The store's plans come from its indexes, not from the values
/// (`hot_queries_use_their_indexes` checks them), so nothing is lost.
fn stable_plans(conn: &Connection) -> StoreResult<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .store()
        .map(drop)
}

fn set_cache(conn: &Connection, kib: u32) -> StoreResult<()> {
    // A negative cache_size is in KiB rather than pages.
    conn.pragma_update(None, "cache_size", -i64::from(kib.max(64)))
        .store()
}

/// The database's schema version.
pub(crate) fn user_version(conn: &Connection) -> StoreResult<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .store()
}

/// Applies the migrations this database has not seen yet; refuses newer databases.
pub(crate) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .store()?;
    let version = user_version(&tx)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the database schema version is {version}, but this Ferry knows only up to \
             {SCHEMA_VERSION}: it was written by a newer Ferry; upgrade Ferry or use another data dir"
        )));
    }
    if version < 0 {
        return Err(StoreError::Backend(format!(
            "the database has an invalid schema version {version}"
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("schema migration {} failed: {e}", i + 1)))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .store()?;
    tx.commit().store()?;
    tracing::info!(from = version, to = SCHEMA_VERSION, "store schema migrated");
    Ok(())
}
