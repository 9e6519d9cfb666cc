//! Reading the admin API's selections (query strings, replay bodies) into store filters,
//! with a `400 invalid_request` naming what cannot be read.

use axum::http::StatusCode;
use ferry_store::{
    DeliveryFilter, DeliveryId, DeliveryState, EventFilter, EventId, Millis, StatusRange,
};

use super::dto::{EventQuery, ListQuery, ReplayRequest};
use crate::clock::{now_ms, parse_time};
use crate::problem::Problem;

/// Largest page of a listing.
pub const MAX_PAGE: usize = 1000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: usize = 100;
/// Longest `requested_by` kept with a replay.
const MAX_REQUESTED_BY: usize = 200;

/// A `400 invalid_request`.
pub fn bad_request(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "Invalid request",
        detail,
    )
}

/// A delivery id: `dlv_…` or a UUID.
pub fn parse_delivery_id(s: &str) -> Result<DeliveryId, Problem> {
    s.parse()
        .map_err(|_| bad_request(format!("`{s}` is not a delivery id (dlv_… or a UUID)")))
}

/// An event id: `fev_…` (or the older `evt_…` form) or a UUID. Anything else is most likely
/// a sender's own id (Stripe's are `evt_…` too), so the refusal says where to look it up.
pub fn parse_event_id(s: &str) -> Result<EventId, Problem> {
    s.parse().map_err(|_| {
        bad_request(format!(
            "`{s}` is not a Ferry event id (fev_… or a UUID); if it is the sender's id of \
             an event (e.g. Stripe's evt_…), look it up with \
             `GET /admin/v1/events?sender_id={s}` (`ferry events --sender-id {s}`)"
        ))
    })
}

/// A page size: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn page_size(limit: Option<usize>) -> Result<usize, Problem> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}, not {limit}"
        )))
    }
}

fn time(field: &str, value: Option<&str>, now: Millis) -> Result<Option<Millis>, Problem> {
    value
        .map(|s| parse_time(s, now).map_err(|e| bad_request(format!("{field}: {e}"))))
        .transpose()
}

fn status(value: Option<&str>) -> Result<Option<StatusRange>, Problem> {
    value
        .map(|s| {
            s.parse::<StatusRange>()
                .map_err(|e| bad_request(format!("status: {e}")))
        })
        .transpose()
}

fn text(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

/// The delivery filter of `GET /admin/v1/deliveries`.
pub fn list_filter(q: &ListQuery) -> Result<DeliveryFilter, Problem> {
    let now = now_ms();
    Ok(DeliveryFilter {
        delivery_id: None,
        event_id: q.event_id.as_deref().map(parse_event_id).transpose()?,
        flow: text(q.flow.as_ref()),
        flows: None,
        destination: text(q.destination.as_ref()),
        state: q
            .state
            .as_deref()
            .map(|s| s.parse::<DeliveryState>().map_err(bad_request))
            .transpose()?,
        since: time("since", q.since.as_deref(), now)?,
        until: time("until", q.until.as_deref(), now)?,
        sender_id: text(q.sender_id.as_ref()),
        min_attempts: q.min_attempts,
        error_class: text(q.error_class.as_ref()),
        status: status(q.status.as_deref())?,
    })
}

/// The event filter of `GET /admin/v1/events`.
pub fn event_filter(q: &EventQuery) -> Result<EventFilter, Problem> {
    let now = now_ms();
    Ok(EventFilter {
        sender_id: text(q.sender_id.as_ref()),
        flow: text(q.flow.as_ref()),
        flows: None,
        since: time("since", q.since.as_deref(), now)?,
        until: time("until", q.until.as_deref(), now)?,
    })
}

/// The delivery filter of `POST /admin/v1/replay`. Refused when it selects everything, or
/// names a state that cannot be replayed.
pub fn replay_filter(r: &ReplayRequest) -> Result<DeliveryFilter, Problem> {
    let list = ListQuery {
        state: r.state.clone(),
        flow: r.flow.clone(),
        destination: r.destination.clone(),
        event_id: r.event_id.clone(),
        sender_id: r.sender_id.clone(),
        min_attempts: r.min_attempts,
        error_class: r.error_class.clone(),
        status: r.status.clone(),
        since: r.since.clone(),
        until: r.until.clone(),
        after: None,
        limit: None,
    };
    let f = DeliveryFilter {
        delivery_id: r
            .delivery_id
            .as_deref()
            .map(parse_delivery_id)
            .transpose()?,
        ..list_filter(&list)?
    };
    let selects = f.delivery_id.is_some()
        || f.event_id.is_some()
        || f.sender_id.is_some()
        || f.flow.is_some()
        || f.destination.is_some()
        || f.state.is_some()
        || f.since.is_some()
        || f.until.is_some()
        || f.min_attempts.is_some()
        || f.error_class.is_some()
        || f.status.is_some();
    if !selects {
        return Err(bad_request(
            "a replay needs at least one of delivery_id, event_id, sender_id, flow, \
             destination, state, since, until, min_attempts, error_class, status",
        ));
    }
    if let Some(s) = f.state
        && !matches!(
            s,
            DeliveryState::Delivered | DeliveryState::Retrying | DeliveryState::Dead
        )
    {
        return Err(bad_request(format!(
            "only delivered, retrying or dead deliveries can be replayed, not {}",
            s.as_str()
        )));
    }
    Ok(f)
}

/// What a replay's history entry says asked for it: `admin API`, with the caller's own
/// words when it gave them (control characters dropped, at most 200 characters).
pub fn replay_origin(r: &ReplayRequest) -> String {
    let said: String = r
        .requested_by
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REQUESTED_BY)
        .collect();
    let said = said.trim();
    if said.is_empty() {
        "admin API".to_string()
    } else {
        format!("admin API: {said}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vendor_id_is_refused_with_where_to_look_it_up() {
        let p = parse_event_id("evt_1Q0abcDEF").unwrap_err();
        assert!(p.detail.contains("sender_id=evt_1Q0abcDEF"), "{}", p.detail);
        assert!(
            p.detail.contains("ferry events --sender-id"),
            "{}",
            p.detail
        );
        let id = EventId::new();
        assert_eq!(parse_event_id(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn replay_origin_names_the_admin_api_and_the_caller() {
        let mut r = ReplayRequest::default();
        assert_eq!(replay_origin(&r), "admin API");
        r.requested_by = Some("ferry dlq replay (alice)\n".into());
        assert_eq!(replay_origin(&r), "admin API: ferry dlq replay (alice)");
        r.requested_by = Some("x".repeat(500));
        assert_eq!(replay_origin(&r).len(), "admin API: ".len() + 200);
    }

    #[test]
    fn list_filters_read_every_field() {
        let q = ListQuery {
            sender_id: Some("evt_1".into()),
            min_attempts: Some(2),
            error_class: Some("http_5xx".into()),
            status: Some("5xx".into()),
            ..Default::default()
        };
        let f = list_filter(&q).unwrap();
        assert_eq!(f.sender_id.as_deref(), Some("evt_1"));
        assert_eq!(f.min_attempts, Some(2));
        assert_eq!(f.error_class.as_deref(), Some("http_5xx"));
        assert_eq!(f.status, Some(StatusRange { from: 500, to: 599 }));
        let bad = ListQuery {
            status: Some("5".into()),
            ..Default::default()
        };
        assert!(list_filter(&bad).unwrap_err().detail.starts_with("status:"));
        assert!(replay_filter(&ReplayRequest::default()).is_err());
    }
}
