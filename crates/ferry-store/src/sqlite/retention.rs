//! Retention: the tags each event is kept under (`event_retention`), the purge of events
//! past their retention, and what the store keeps per source system.
//!
//! An event is tagged at append with `s:<source system>` and `c:<category>` for each
//! category it carries. A rule (a system's or a category's retention) becomes a list of
//! concrete tags with a cut-off time; a category rule covers the category's own tag and
//! every tag below it (`c:user.contact` covers `c:user.contact.email`), found with one
//! index seek per distinct tag. The events of a tag older than its cut-off are one range
//! of the table's key.

use std::collections::{BTreeMap, HashSet};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::codec::{SqlResultExt, limit, uuid_at};
use crate::effects::Effects;
use crate::{
    AuditEntry, EventId, Millis, NewEvent, PurgeReport, RetentionRules, StoreResult, SystemHoldings,
};

pub(crate) use crate::retention::tagging::encode_categories;
use crate::retention::tagging::{CATEGORY, SYSTEM, decode_categories, tags};

/// Tag a newly stored event.
pub(crate) fn tag(conn: &Connection, ev: &NewEvent) -> StoreResult<()> {
    let mut insert = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO event_retention (tag, received_at, event_id) VALUES (?1, ?2, ?3)",
        )
        .store()?;
    for t in tags(&ev.source, &ev.audit.categories) {
        insert
            .execute(params![t, ev.received_at, ev.id.0.as_bytes()])
            .store()?;
    }
    Ok(())
}

/// The first stored tag after `?1` and before `?2`.
pub(crate) const NEXT_TAG: &str =
    "SELECT min(tag) FROM event_retention WHERE tag > ?1 AND tag < ?2";

/// Events of tag `?1` received before `?2` that no waiting delivery holds, oldest first.
pub(crate) const PURGEABLE: &str = "SELECT t.event_id FROM event_retention t
     WHERE t.tag = ?1 AND t.received_at < ?2
       AND NOT EXISTS (SELECT 1 FROM deliveries d
                       WHERE d.event_id = t.event_id AND d.state IN (0, 1, 3))
     ORDER BY t.received_at LIMIT ?3";

/// Events of tag `?1` and the oldest's receive time.
pub(crate) const TAG_STATS: &str =
    "SELECT count(*), min(received_at) FROM event_retention WHERE tag = ?1";

/// The distinct stored tags from `prefix` (inclusive) up to and excluding `end`: one seek
/// each.
fn distinct_tags(conn: &Connection, prefix: &str, end: &str) -> StoreResult<Vec<String>> {
    let mut exact = conn
        .prepare_cached("SELECT 1 FROM event_retention WHERE tag = ?1 LIMIT 1")
        .store()?;
    let mut next = conn.prepare_cached(NEXT_TAG).store()?;
    let mut out = Vec::new();
    if exact.exists([prefix]).store()? {
        out.push(prefix.to_owned());
    }
    let mut after = prefix.to_owned();
    while let Some(tag) = next
        .query_row(params![after, end], |r| r.get::<_, Option<String>>(0))
        .store()?
    {
        out.push(tag.clone());
        after = tag;
    }
    Ok(out)
}

/// The stored tags `rules` reach, each with its cut-off at `now` (the latest, i.e. the
/// shortest retention, when several rules reach one tag).
fn targets(
    conn: &Connection,
    rules: &RetentionRules,
    now: Millis,
) -> StoreResult<BTreeMap<String, Millis>> {
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
        let mut found = distinct_tags(conn, &own, &format!("{own}/"))?;
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
    conn: &Connection,
    targets: &BTreeMap<String, Millis>,
    max: usize,
) -> StoreResult<Vec<EventId>> {
    let mut select = conn.prepare_cached(PURGEABLE).store()?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (tag, cutoff) in targets {
        if out.len() >= max {
            break;
        }
        let ids = select
            .query_map(params![tag, cutoff, limit(max - out.len())], |r| {
                uuid_at(r, 0)
            })
            .store()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .store()?;
        for id in ids {
            if out.len() < max && seen.insert(id) {
                out.push(EventId(id));
            }
        }
    }
    Ok(out)
}

/// Events past retention that a waiting delivery holds.
fn held(conn: &Connection, targets: &BTreeMap<String, Millis>) -> StoreResult<u64> {
    if targets.is_empty() {
        return Ok(0);
    }
    let union = vec![
        "SELECT event_id FROM event_retention WHERE tag = ? AND received_at < ?";
        targets.len()
    ]
    .join(" UNION ");
    let sql = format!(
        "SELECT count(*) FROM ({union}) AS x
         WHERE EXISTS (SELECT 1 FROM deliveries d
                       WHERE d.event_id = x.event_id AND d.state IN (0, 1, 3))"
    );
    let params: Vec<Value> = targets
        .iter()
        .flat_map(|(tag, cutoff)| [Value::Text(tag.clone()), Value::Integer(*cutoff)])
        .collect();
    let n: i64 = conn
        .prepare(&sql)
        .store()?
        .query_row(params_from_iter(params), |r| r.get(0))
        .store()?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Delete one event with its deliveries, attempts and tags; how many deliveries and
/// attempts went with it. Its lane counts are taken out of `fx`.
fn delete_event(conn: &Connection, fx: &mut Effects, id: EventId) -> StoreResult<(u64, u64)> {
    let key = id.0.as_bytes();
    let event = conn
        .prepare_cached("SELECT source, received_at, categories FROM events WHERE id = ?1")
        .store()?
        .query_row([key], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Millis>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()
        .store()?;
    let Some((source, received_at, categories)) = event else {
        return Ok((0, 0));
    };
    let mut deliveries = 0;
    {
        let mut by_lane = conn
            .prepare_cached(
                "SELECT flow, destination, state, count(*) FROM deliveries WHERE event_id = ?1
                 GROUP BY flow, destination, state",
            )
            .store()?;
        let mut rows = by_lane.query([key]).store()?;
        while let Some(r) = rows.next().store()? {
            let (flow, destination): (String, String) = (r.get(0).store()?, r.get(1).store()?);
            let (state, n): (i64, i64) = (r.get(2).store()?, r.get(3).store()?);
            fx.lanes.add(&flow, &destination, state, -n);
            deliveries += u64::try_from(n).unwrap_or(0);
        }
    }
    let attempts: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM attempts a JOIN deliveries d ON a.delivery_id = d.id
             WHERE d.event_id = ?1",
        )
        .store()?
        .query_row([key], |r| r.get(0))
        .store()?;
    let categories = decode_categories(categories)?;
    let mut untag = conn
        .prepare_cached(
            "DELETE FROM event_retention WHERE tag = ?1 AND received_at = ?2 AND event_id = ?3",
        )
        .store()?;
    for t in tags(&source, &categories) {
        untag.execute(params![t, received_at, key]).store()?;
    }
    // Deliveries, their attempts and replay records go with it (ON DELETE CASCADE).
    conn.prepare_cached("DELETE FROM events WHERE id = ?1")
        .store()?
        .execute([key])
        .store()?;
    Ok((deliveries, u64::try_from(attempts).unwrap_or(0)))
}

/// One bounded purge step (see [`crate::Store::purge_expired`]).
pub(crate) fn purge(
    conn: &Connection,
    fx: &mut Effects,
    rules: &RetentionRules,
    now: Millis,
    max: usize,
) -> StoreResult<PurgeReport> {
    let targets = targets(conn, rules, now)?;
    let ids = purgeable(conn, &targets, max)?;
    let mut report = PurgeReport::default();
    for id in &ids {
        let (deliveries, attempts) = delete_event(conn, fx, *id)?;
        report.events += 1;
        report.deliveries += deliveries;
        report.attempts += attempts;
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
    report.held = held(conn, &targets)?;
    Ok(report)
}

/// Events kept per source system, and the oldest.
pub(crate) fn holdings(conn: &Connection) -> StoreResult<Vec<SystemHoldings>> {
    // `s;` is the first string after every `s:…`.
    let systems = distinct_tags(conn, SYSTEM, "s;")?;
    let mut stats = conn.prepare_cached(TAG_STATS).store()?;
    systems
        .into_iter()
        .filter(|t| t.len() > SYSTEM.len())
        .map(|t| {
            let (events, oldest): (i64, Option<Millis>) = stats
                .query_row([&t], |r| Ok((r.get(0)?, r.get(1)?)))
                .store()?;
            Ok(SystemHoldings {
                system: t[SYSTEM.len()..].to_owned(),
                events: u64::try_from(events).unwrap_or(0),
                oldest_received_at: oldest,
            })
        })
        .collect()
}
