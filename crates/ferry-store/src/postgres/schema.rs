//! Versioned schema migrations of the PostgreSQL store.
//!
//! Migrations are an ordered list; the one-row table `ferry_schema` records how many have
//! been applied. Every pending migration runs in one transaction with the version bump,
//! under an advisory lock, so nodes starting together migrate once and a failed migration
//! leaves the previous version intact. A database whose version is newer than this code
//! knows is refused with both numbers.
//!
//! Every text column is `COLLATE "C"`: byte order, as the SQLite backend compares, so range
//! seeks (`key > 'id#' AND key < 'id$'`) and sorted listings mean the same whatever the
//! database's locale.

use postgres::Client;

use super::codec::PgResultExt;
use crate::{StoreError, StoreResult};

/// Version 1: the whole model, as the SQLite backend's version 8 holds it (see
/// `crate::sqlite` for each table's reasons), plus what several nodes need:
///
/// - `deliveries.seq` is an identity: insertion order, the "oldest first" tie-breaker and
///   the listing cursor.
/// - `deliveries_due` serves claims (`FOR UPDATE SKIP LOCKED`, so nodes claim disjoint
///   rows) and `next_due`; `next_attempt_at` is the due time while pending or retrying and
///   the lease end while in flight, so an expired lease is simply due.
/// - `audit_log` is append-only (triggers refuse `UPDATE` and `DELETE`); a batch takes an
///   `EXCLUSIVE` lock on it before chaining its records, so the nodes' records form one
///   chain.
const V1: &str = r#"
CREATE TABLE events (
    id          uuid    NOT NULL PRIMARY KEY,
    flow        text    COLLATE "C" NOT NULL,
    source      text    COLLATE "C" NOT NULL,
    dedupe_key  text    COLLATE "C",
    event_type  text    COLLATE "C",
    received_at bigint  NOT NULL,
    headers     text    NOT NULL,
    payload     bytea   NOT NULL,
    categories  text
);
CREATE UNIQUE INDEX events_dedupe ON events (flow, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX events_sender_id ON events (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX events_received ON events (received_at);

CREATE TABLE deliveries (
    seq              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               uuid    NOT NULL UNIQUE,
    event_id         uuid    NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    flow             text    COLLATE "C" NOT NULL,
    destination      text    COLLATE "C" NOT NULL,
    state            integer NOT NULL CHECK (state BETWEEN 0 AND 4),
    next_attempt_at  bigint,
    attempts         integer NOT NULL DEFAULT 0,
    round_attempts   integer NOT NULL DEFAULT 0,
    round_started_at bigint  NOT NULL,
    replays          integer NOT NULL DEFAULT 0,
    last_error       text,
    created_at       bigint  NOT NULL,
    updated_at       bigint  NOT NULL,
    received_at      bigint  NOT NULL,
    order_key        text    COLLATE "C",
    held             integer DEFAULT 0,
    CHECK (state NOT IN (0, 1, 3) OR next_attempt_at IS NOT NULL),
    CHECK (CASE
        WHEN order_key IS NULL THEN held IS NOT DISTINCT FROM 0
        WHEN state IN (2, 4) THEN held IS NULL
        ELSE held IN (0, 1)
    END)
);
CREATE INDEX deliveries_due ON deliveries (flow, destination, next_attempt_at, seq)
    WHERE state IN (0, 1, 3) AND held = 0;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_received ON deliveries (received_at, seq);
CREATE INDEX deliveries_lane_state ON deliveries (flow, destination, state, received_at);
CREATE INDEX deliveries_dead ON deliveries (received_at) WHERE state = 4;
CREATE INDEX deliveries_order_key ON deliveries (flow, destination, order_key, seq)
    WHERE order_key IS NOT NULL AND held IS NOT NULL;

CREATE TABLE attempts (
    delivery_id      uuid    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    seq              integer NOT NULL,
    started_at       bigint  NOT NULL,
    latency_ms       bigint  NOT NULL,
    status           integer,
    error_class      text    COLLATE "C",
    error            text,
    response_excerpt text,
    PRIMARY KEY (delivery_id, seq)
);

CREATE TABLE delivery_replays (
    delivery_id     uuid    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    seq             integer NOT NULL,
    at              bigint  NOT NULL,
    requested_by    text    NOT NULL,
    from_state      integer NOT NULL CHECK (from_state IN (2, 3, 4)),
    attempts_before integer NOT NULL,
    last_error      text,
    PRIMARY KEY (delivery_id, seq)
);

CREATE TABLE lane_state_counts (
    flow        text    COLLATE "C" NOT NULL,
    destination text    COLLATE "C" NOT NULL,
    state       integer NOT NULL,
    n           bigint  NOT NULL,
    PRIMARY KEY (flow, destination, state)
);

CREATE TABLE lane_pauses (
    flow        text    COLLATE "C" NOT NULL,
    destination text    COLLATE "C" NOT NULL,
    since       bigint  NOT NULL,
    reason      text    NOT NULL,
    PRIMARY KEY (flow, destination)
);

CREATE TABLE pull_state (
    flow         text    COLLATE "C" NOT NULL PRIMARY KEY,
    cursor       text,
    last_page_at bigint,
    started_at   bigint,
    finished_at  bigint,
    success_at   bigint,
    last_error   text,
    running      boolean NOT NULL DEFAULT false,
    pages        bigint  NOT NULL DEFAULT 0,
    records      bigint  NOT NULL DEFAULT 0
);

CREATE TABLE dedupe_windows (
    flow       text    COLLATE "C" NOT NULL,
    key        text    COLLATE "C" NOT NULL,
    event_id   uuid    NOT NULL,
    expires_at bigint  NOT NULL,
    PRIMARY KEY (flow, key)
);
CREATE INDEX dedupe_windows_expiry ON dedupe_windows (expires_at);

CREATE TABLE store_meta (
    key   text  COLLATE "C" NOT NULL PRIMARY KEY,
    value bytea
);

CREATE TABLE rejected (
    id             uuid    NOT NULL PRIMARY KEY,
    flow           text    COLLATE "C" NOT NULL,
    source_kind    text    NOT NULL,
    message_id     text    COLLATE "C",
    received_at    bigint  NOT NULL,
    reason         text    NOT NULL,
    detail         text    NOT NULL,
    headers        text    NOT NULL,
    payload        bytea   NOT NULL,
    replayed_at    bigint,
    replayed_event uuid
);
CREATE UNIQUE INDEX rejected_message ON rejected (flow, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX rejected_flow ON rejected (flow, id);

CREATE TABLE data_keys (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_ref text    COLLATE "C" NOT NULL,
    kek_id      text    COLLATE "C" NOT NULL,
    wrapped     bytea,
    created_at  bigint  NOT NULL,
    shredded_at bigint,
    CHECK ((wrapped IS NULL) = (shredded_at IS NOT NULL))
);
CREATE UNIQUE INDEX data_keys_subject ON data_keys (subject_ref) WHERE shredded_at IS NULL;
CREATE INDEX data_keys_kek ON data_keys (kek_id, id) WHERE shredded_at IS NULL;

CREATE TABLE audit_log (
    seq       bigint  NOT NULL PRIMARY KEY,
    at        bigint  NOT NULL,
    kind      text    NOT NULL,
    entries   text    NOT NULL,
    prev_hash bytea   NOT NULL,
    hash      bytea   NOT NULL
);
CREATE FUNCTION ferry_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION ferry_audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION ferry_audit_log_append_only();

CREATE TABLE event_retention (
    tag         text    COLLATE "C" NOT NULL,
    received_at bigint  NOT NULL,
    event_id    uuid    NOT NULL,
    PRIMARY KEY (tag, received_at, event_id)
);

CREATE TABLE datamap_observed (
    category          text    COLLATE "C" NOT NULL,
    flow              text    COLLATE "C" NOT NULL,
    destination       text    COLLATE "C" NOT NULL,
    system            text    COLLATE "C" NOT NULL,
    how               text    COLLATE "C" NOT NULL,
    delivered         bigint  NOT NULL,
    last_delivered_at bigint  NOT NULL,
    PRIMARY KEY (category, flow, destination, system, how)
);
"#;

/// Version 2: the nodes sharing the database (`ferry_nodes`), one row per running
/// `ferry serve`, refreshed by its heartbeat: how many deliver, to divide a destination's
/// rate limit among them. A row not refreshed for a few seconds is a node gone.
const V2: &str = r#"
CREATE TABLE ferry_nodes (
    node_id      text    COLLATE "C" NOT NULL PRIMARY KEY,
    delivers     boolean NOT NULL,
    started_at   bigint  NOT NULL,
    heartbeat_at bigint  NOT NULL
);
"#;

/// Version 3: the data region a node serves (`ferry serve --region`; NULL: every region),
/// so a region's rate limits are divided among the nodes that deliver its flows.
const V3: &str = r#"
ALTER TABLE ferry_nodes ADD COLUMN region text COLLATE "C";
"#;

/// Version 4: no foreign keys on the two hot references, `deliveries.event_id` and
/// `attempts.delivery_id`. Each checked row cost a lookup of its parent and a `KEY SHARE`
/// lock written into the parent's tuple (a dirtied page and a WAL record), for every
/// delivery appended and every attempt recorded: about a quarter of the database's CPU per
/// event (docs/benchmarks.md, session 15). The store is their only writer and keeps them
/// whole itself: an event's deliveries are inserted by the statement that inserts it, an
/// attempt only for a delivery its outcome call found and locked, and the purge deletes an
/// event's attempts and deliveries, under the locks it takes, before the event
/// (`retention`). `delivery_replays` keeps its key (a cold table), and with it its cascade.
const V4: &str = r#"
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_delivery_id_fkey;
"#;

/// Version 5: one index of events by dedupe key, `events_dedupe_key` on `(dedupe_key, flow)`,
/// serves both the dedupe constraint (`ON CONFLICT (flow, dedupe_key)` infers it) and the
/// search by sender id (range scans led by the key). It replaces `events_dedupe` and
/// `events_sender_id`, so an event with a key updates one index instead of two.
const V5: &str = r#"
CREATE UNIQUE INDEX events_dedupe_key ON events (dedupe_key, flow) WHERE dedupe_key IS NOT NULL;
DROP INDEX events_dedupe;
DROP INDEX events_sender_id;
"#;

/// Every migration, in order. Never edit a released entry; append a new one.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations this database has not seen yet; refuses newer databases.
/// Returns the version found and the version now.
pub(crate) fn migrate(client: &mut Client) -> StoreResult<(i64, i64)> {
    let mut tx = client.transaction().store()?;
    // One migrating node at a time (per schema); the others wait, then find nothing to do.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ferry_schema'))",
        &[],
    )
    .store()?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS ferry_schema (version integer NOT NULL)")
        .store()?;
    let found = tx
        .query_opt("SELECT version FROM ferry_schema", &[])
        .store()?
        .map_or(0, |r| i64::from(r.get::<_, i32>(0)));
    if found > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the database schema version is {found}, but this Ferry knows only up to \
             {SCHEMA_VERSION}: it was written by a newer Ferry; upgrade Ferry or use another database"
        )));
    }
    if found == SCHEMA_VERSION {
        return Ok((found, found));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql)
            .map_err(|e| StoreError::Backend(format!("schema migration {} failed: {e}", i + 1)))?;
    }
    tx.execute("DELETE FROM ferry_schema", &[]).store()?;
    let version = i32::try_from(SCHEMA_VERSION).unwrap_or(i32::MAX);
    tx.execute(
        "INSERT INTO ferry_schema (version) VALUES ($1)",
        &[&version],
    )
    .store()?;
    tx.commit().store()?;
    tracing::info!(from = found, to = SCHEMA_VERSION, "store schema migrated");
    Ok((found, SCHEMA_VERSION))
}
