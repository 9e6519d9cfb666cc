//! Retention: the tags each event is kept under (`event_retention`), the purge of events
//! past their retention, and what the store keeps per source system.
//!
//! An event is tagged at append with `s:<source system>` and `c:<category>` for each
//! category it carries. A rule (a system's or a category's retention) becomes a list of
//! concrete tags with a cut-off time; a category rule covers the category's own tag and
//! every tag below it (`c:user.contact` covers `c:user.contact.email`), found with one
//! index seek per distinct tag. The events of a tag older than its cut-off are one range
//! of the table's key.
//!
//! Several nodes may purge at once, and deliveries may change meanwhile (a replay): each
//! event is deleted only after its row and its deliveries' rows are locked and none of
//! those deliveries is waiting; an event another node deleted first, or that a replay made
//! wait again, is left out (the latter is counted as held).

use std::collections::{BTreeMap, HashSet};

use postgres::{Client, GenericClient, Statement, Transaction};

use super::codec::col;
use super::codec::{IN_FLIGHT, PENDING, Param, PgResultExt, RETRYING, args, count64, limit};
use super::writer::Failure;
use crate::effects::Effects;
use crate::{
    AuditEntry, EventId, Millis, NewEvent, PurgeReport, RetentionRules, StoreResult, SystemHoldings,
};

pub(crate) use crate::retention::tagging::encode_categories;
use crate::retention::tagging::{CATEGORY, SYSTEM, decode_categories, tags};

/// The retention tags of an event.
pub(crate) fn tags_of(ev: &NewEvent) -> Vec<String> {
    tags(&ev.source, &ev.audit.categories).collect()
}

/// Tag a newly stored event: one statement for all its tags.
pub(crate) fn tag(tx: &mut Transaction<'_>, ev: &NewEvent) -> Result<(), Failure> {
    let stmt = super::writer::prepared(
        tx,
        "INSERT INTO event_retention (tag, received_at, event_id)
         SELECT t, $2, $3 FROM unnest($1::text[]) AS t
         ON CONFLICT DO NOTHING",
    )?;
    tx.execute(&stmt, &[&tags_of(ev), &ev.received_at, &ev.id.0])?;
    Ok(())
}

/// The first stored tag after `$1` and before `$2`.
pub(crate) const NEXT_TAG: &str =
    "SELECT min(tag) FROM event_retention WHERE tag > $1 AND tag < $2";

/// Events of tag `$1` received before `$2` that no waiting delivery holds, oldest first
/// (in the table's key order).
pub(crate) const PURGEABLE: &str = "SELECT t.event_id FROM event_retention t
     WHERE t.tag = $1 AND t.received_at < $2
       AND NOT EXISTS (SELECT 1 FROM deliveries d
                       WHERE d.event_id = t.event_id AND d.state IN (0, 1, 3))
     ORDER BY t.received_at, t.event_id LIMIT $3";

/// Events of tag `$1` and the oldest's receive time.
pub(crate) const TAG_STATS: &str =
    "SELECT count(*), min(received_at) FROM event_retention WHERE tag = $1";

/// The distinct stored tags from `prefix` (inclusive) up to and excluding `end`: one seek
/// each.
fn distinct_tags(
    c: &mut impl GenericClient,
    prefix: &str,
    end: &str,
) -> Result<Vec<String>, Failure> {
    let mut out = Vec::new();
    if c.query_opt(
        "SELECT 1 FROM event_retention WHERE tag = $1 LIMIT 1",
        &[&prefix],
    )?
    .is_some()
    {
        out.push(prefix.to_owned());
    }
    let next = c.prepare(NEXT_TAG)?;
    let mut after = prefix.to_owned();
    loop {
        let row = c.query_one(&next, &[&after, &end])?;
        let Some(tag) = col::<Option<String>>(&row, 0)? else {
            break;
        };
        out.push(tag.clone());
        after = tag;
    }
    Ok(out)
}

/// The stored tags `rules` reach, each with its cut-off at `now` (the latest, i.e. the
/// shortest retention, when several rules reach one tag).
fn targets(
    tx: &mut Transaction<'_>,
    rules: &RetentionRules,
    now: Millis,
) -> Result<BTreeMap<String, Millis>, Failure> {
    let mut out: BTreeMap<String, Millis> = BTreeMap::new();
    let mut add = |tag: String, keep: Millis| {
        let cutoff = now.saturating_sub(keep.max(0));
        let e = out.entry(tag).or_insert(cutoff);
        *e = (*e).max(cutoff);
    };
    for (system, keep) in &rules.systems {
        add(format!("{SYSTEM}{system}"), *keep);
    }
    for (category, keep) in &rules.categories {
        // The category itself, then everything below it: `c:a.b.` < tag < `c:a.b/`.
        let own = format!("{CATEGORY}{category}");
        let mut found = distinct_tags(tx, &own, &format!("{own}/"))?;
        found.retain(|t| t == &own || t.starts_with(&format!("{own}.")));
        for t in found {
            add(t, *keep);
        }
    }
    Ok(out)
}

/// Events past retention and no longer waiting to be delivered: up to `max`, oldest first
/// per tag.
fn purgeable(
    tx: &mut Transaction<'_>,
    targets: &BTreeMap<String, Millis>,
    max: usize,
) -> Result<Vec<EventId>, Failure> {
    let select = tx.prepare(PURGEABLE)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (tag, cutoff) in targets {
        if out.len() >= max {
            break;
        }
        let rows = tx.query(&select, &[tag, cutoff, &limit(max - out.len())])?;
        for r in &rows {
            let id: uuid::Uuid = col(r, 0)?;
            if out.len() < max && seen.insert(id) {
                out.push(EventId(id));
            }
        }
    }
    Ok(out)
}

/// Events past retention that a waiting delivery holds.
fn held(tx: &mut Transaction<'_>, targets: &BTreeMap<String, Millis>) -> Result<u64, Failure> {
    if targets.is_empty() {
        return Ok(0);
    }
    let union = (0..targets.len())
        .map(|i| {
            format!(
                "SELECT event_id FROM event_retention WHERE tag = ${} AND received_at < ${}",
                2 * i + 1,
                2 * i + 2
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ");
    let sql = format!(
        "SELECT count(*) FROM ({union}) AS x
         WHERE EXISTS (SELECT 1 FROM deliveries d
                       WHERE d.event_id = x.event_id AND d.state IN (0, 1, 3))"
    );
    let mut params: Vec<Param> = Vec::with_capacity(2 * targets.len());
    for (tag, cutoff) in targets {
        params.push(Box::new(tag.clone()));
        params.push(Box::new(*cutoff));
    }
    let row = tx.query_one(&sql, &args(&params))?;
    Ok(count64(col(&row, 0)?))
}

/// The statements of [`delete_event`], prepared once per purge step.
struct Deletes {
    event: Statement,
    deliveries: Statement,
    attempts: Statement,
    untag: Statement,
    delete_deliveries: Statement,
    delete: Statement,
}

impl Deletes {
    fn prepare(tx: &mut Transaction<'_>) -> Result<Self, Failure> {
        Ok(Deletes {
            event: tx.prepare(
                "SELECT source, received_at, categories FROM events WHERE id = $1 FOR UPDATE",
            )?,
            deliveries: tx.prepare(
                "SELECT flow, destination, state FROM deliveries WHERE event_id = $1
                 ORDER BY seq FOR UPDATE",
            )?,
            // No foreign key cascades from deliveries to attempts (schema version 4): the
            // attempts go first, counted as they go.
            attempts: tx.prepare(
                "WITH gone AS (
                     DELETE FROM attempts
                     WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = $1)
                     RETURNING 1)
                 SELECT count(*) FROM gone",
            )?,
            untag: tx.prepare(
                "DELETE FROM event_retention
                 WHERE tag = ANY($1) AND received_at = $2 AND event_id = $3",
            )?,
            // Their replay records go with them (ON DELETE CASCADE).
            delete_deliveries: tx.prepare("DELETE FROM deliveries WHERE event_id = $1")?,
            delete: tx.prepare("DELETE FROM events WHERE id = $1")?,
        })
    }
}

/// Delete one event with its deliveries, attempts and tags; how many deliveries and
/// attempts went with it. Its lane counts are taken out of `fx`. `None` (nothing deleted)
/// when the event is gone already (another node purged it) or, once its rows are locked,
/// one of its deliveries is waiting again.
fn delete_event(
    tx: &mut Transaction<'_>,
    st: &Deletes,
    fx: &mut Effects,
    id: EventId,
) -> Result<Option<(u64, u64)>, Failure> {
    let Some(event) = tx.query_opt(&st.event, &[&id.0])? else {
        return Ok(None);
    };
    let source: String = col(&event, 0)?;
    let received_at: Millis = col(&event, 1)?;
    let categories = decode_categories(col(&event, 2)?)?;
    let mut lanes: Vec<(String, String, i32)> = Vec::new();
    for r in tx.query(&st.deliveries, &[&id.0])? {
        lanes.push((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?));
    }
    if lanes
        .iter()
        .any(|(_, _, s)| matches!(*s, PENDING | IN_FLIGHT | RETRYING))
    {
        return Ok(None);
    }
    for (flow, destination, state) in &lanes {
        fx.lanes.add(flow, destination, i64::from(*state), -1);
    }
    let attempts: i64 = col(&tx.query_one(&st.attempts, &[&id.0])?, 0)?;
    let all: Vec<String> = tags(&source, &categories).collect();
    tx.execute(&st.untag, &[&all, &received_at, &id.0])?;
    // Its deliveries are locked above, so no outcome call can add an attempt meanwhile.
    tx.execute(&st.delete_deliveries, &[&id.0])?;
    tx.execute(&st.delete, &[&id.0])?;
    Ok(Some((lanes.len() as u64, count64(attempts))))
}

/// One bounded purge step (see [`crate::Store::purge_expired`]).
pub(crate) fn purge(
    tx: &mut Transaction<'_>,
    fx: &mut Effects,
    rules: &RetentionRules,
    now: Millis,
    max: usize,
) -> Result<PurgeReport, Failure> {
    let targets = targets(tx, rules, now)?;
    let candidates = purgeable(tx, &targets, max)?;
    let mut report = PurgeReport::default();
    let mut ids = Vec::with_capacity(candidates.len());
    if !candidates.is_empty() {
        let st = Deletes::prepare(tx)?;
        for id in candidates {
            if let Some((deliveries, attempts)) = delete_event(tx, &st, fx, id)? {
                report.events += 1;
                report.deliveries += deliveries;
                report.attempts += attempts;
                ids.push(id);
            }
        }
    }
    if !ids.is_empty() {
        fx.audit.push(AuditEntry::Purged {
            at: now,
            events: report.events,
            deliveries: report.deliveries,
            attempts: report.attempts,
            event_ids: ids,
        });
    }
    report.held = held(tx, &targets)?;
    Ok(report)
}

/// Events kept per source system, and the oldest.
pub(crate) fn holdings(c: &mut Client) -> StoreResult<Vec<SystemHoldings>> {
    // `s;` is the first string after every `s:…`.
    let systems = distinct_tags(c, SYSTEM, "s;").map_err(Failure::into_store)?;
    let stats = c.prepare(TAG_STATS).store()?;
    systems
        .into_iter()
        .filter(|t| t.len() > SYSTEM.len())
        .map(|t| {
            let row = c.query_one(&stats, &[&t]).store()?;
            let events: i64 = col(&row, 0)?;
            let oldest: Option<Millis> = col(&row, 1)?;
            Ok(SystemHoldings {
                system: t[SYSTEM.len()..].to_owned(),
                events: count64(events),
                oldest_received_at: oldest,
            })
        })
        .collect()
}
