//! How the operator commands print what the admin API answers: tables of deliveries and
//! events, one delivery with its history.

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use ferry_store::{DeliverySummary, EventSummary};

use crate::admin::dto::{DeliveryView, HistoryView};
use crate::clock::rfc3339;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    t
}

/// Deliveries, one row each: id, lane, state, when the event came, attempts, last error.
pub fn deliveries(rows: &[DeliverySummary]) {
    let mut t = table(&[
        "delivery",
        "flow -> destination",
        "state",
        "received",
        "attempts",
        "reason",
    ]);
    for d in rows {
        let attempts = if d.replays > 0 {
            format!("{} ({} replays)", d.attempts, d.replays)
        } else {
            d.attempts.to_string()
        };
        t.add_row([
            d.id.to_string(),
            format!("{} -> {}", d.lane.flow, d.lane.destination),
            d.state.as_str().to_string(),
            rfc3339(d.received_at),
            attempts,
            truncate(d.last_error.as_deref().unwrap_or(""), 70),
        ]);
    }
    println!("{t}");
}

/// Events, one row each: Ferry's id, the sender's id, flow, type, when it came.
pub fn events(rows: &[EventSummary]) {
    let mut t = table(&["event", "sender id", "flow", "type", "received"]);
    for e in rows {
        t.add_row([
            e.id.to_string(),
            e.sender_id.clone().unwrap_or_else(|| "-".into()),
            e.flow.clone(),
            e.event_type.clone().unwrap_or_else(|| "-".into()),
            rfc3339(e.received_at),
        ]);
    }
    println!("{t}");
}

/// One delivery: its state, its history (every attempt and replay, in order) and its event.
pub fn delivery(v: &DeliveryView) {
    let s = &v.detail.summary;
    println!("delivery    {}", s.id);
    println!("event       {}", s.event_id);
    println!("lane        {} -> {}", s.lane.flow, s.lane.destination);
    println!("state       {}", s.state.as_str());
    println!("received    {}", rfc3339(s.received_at));
    println!("attempts    {} (replays: {})", s.attempts, s.replays);
    if let Some(e) = &s.last_error {
        println!("last error  {e}");
    }
    // An older hub sends no `history`: its attempts alone.
    let history = if v.history.is_empty() {
        HistoryView::of(&v.detail)
    } else {
        v.history.clone()
    };
    if !history.is_empty() {
        let mut t = table(&[
            "#",
            "started",
            "latency",
            "status",
            "class",
            "error / response",
        ]);
        for entry in &history {
            t.add_row(history_row(entry));
        }
        println!("{t}");
    }
    if let Some(ev) = &v.event {
        println!("event type  {}", ev.event_type.as_deref().unwrap_or("-"));
        println!("sender id   {}", ev.dedupe_key.as_deref().unwrap_or("-"));
        println!("payload     {}", truncate(&ev.payload.to_string(), 400));
    }
}

fn history_row(entry: &HistoryView) -> [String; 6] {
    match entry {
        HistoryView::Attempt { number, attempt: a } => [
            number.to_string(),
            rfc3339(a.started_at),
            format!("{} ms", a.latency_ms),
            a.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            a.error_class.clone().unwrap_or_default(),
            truncate(
                a.error
                    .as_deref()
                    .or(a.response_excerpt.as_deref())
                    .unwrap_or(""),
                80,
            ),
        ],
        HistoryView::Replay {
            at,
            by,
            from_state,
            last_error,
            ..
        } => {
            let was = match last_error {
                Some(e) => format!("{} ({})", from_state.as_str(), truncate(e, 40)),
                None => from_state.as_str().to_string(),
            };
            [
                "replay".to_string(),
                rfc3339(*at),
                "-".to_string(),
                "-".to_string(),
                format!("was {was}"),
                format!("by {}", truncate(by, 70)),
            ]
        }
    }
}

/// `s` cut to `max` characters, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}
