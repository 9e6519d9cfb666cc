//! The body checks of an inbound webhook, after authentication and before the commit: the
//! body must be one JSON document, the sender's event id must be readable, and the event type
//! is read if the flow names a pointer. Pure (no I/O, no clock), so it is fuzzed
//! (`fuzz/fuzz_targets/ingest_body.rs`) and benchmarked (`benches/ingest_body.rs`) as is.

use axum::http::HeaderMap;
use axum::http::StatusCode;

use super::cloudevents::CloudEvent;
use super::event_id::read_event_id;
use super::handler::check_json;
use crate::assembly::{EventIdRule, IngressRoute};
use crate::problem::Problem;

/// What ingress reads from an accepted body and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The sender's event id (the dedupe key), if the request carries one.
    pub dedupe_key: Option<String>,
    /// The string at the flow's event-type JSON pointer, if one is configured and present.
    pub event_type: Option<String>,
}

/// Check `body` the way `POST /ingest/{path}` does: one JSON document, read strictly
/// ([`crate::strict_json`]: no duplicate object keys, nesting below 128 levels; parsed into
/// a tree only when the event id rule or `event_type_pointer` needs to read from it), then
/// the sender's event id per `event_id`, then the event type.
///
/// Refusals are `400` problems: `malformed_json` (a duplicate key among them, named with
/// its object's pointer), `too_deep` or `event_id_invalid`. Never panics, whatever the body
/// and headers hold.
pub fn inspect(
    body: &[u8],
    event_id: &EventIdRule,
    headers: &HeaderMap,
    event_type_pointer: Option<&str>,
) -> Result<Inspected, Problem> {
    inspect_value(body, event_id, headers, event_type_pointer, false).map(|(found, _)| found)
}

/// [`inspect`], also returning the parsed body when `want_value` (or when it was parsed
/// anyway to read the event id or type), so later steps need not parse it again.
pub(crate) fn inspect_value(
    body: &[u8],
    event_id: &EventIdRule,
    headers: &HeaderMap,
    event_type_pointer: Option<&str>,
    want_value: bool,
) -> Result<(Inspected, Option<serde_json::Value>), Problem> {
    let needs_value = want_value || event_type_pointer.is_some() || event_id.reads_body();
    let value = check_json(body, needs_value)?;
    let dedupe_key = read_event_id(event_id, headers, value.as_ref()).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "event_id_invalid",
            "Event id unreadable",
            e.0,
        )
    })?;
    let event_type = match (event_type_pointer, &value) {
        (Some(ptr), Some(v)) => v.pointer(ptr).and_then(|t| t.as_str()).map(str::to_string),
        _ => None,
    };
    Ok((
        Inspected {
            dedupe_key,
            event_type,
        },
        value,
    ))
}

/// The inspection of an event for `route`: [`inspect_value`] on the payload (a CloudEvent's
/// data), with a CloudEvent's `source` + `id` as the dedupe key and its `type` as the event
/// type unless the flow configured its own `event_id` rule or `event_type` pointer (a
/// CloudEvent's own id comes before the scheme's vendor id: it names the event itself). The
/// parsed payload comes back whenever the route has `validate` steps (or VRL steps).
pub(crate) fn inspect_route(
    route: &IngressRoute,
    headers: &HeaderMap,
    payload: &[u8],
    cloud_event: Option<&CloudEvent>,
) -> Result<(Inspected, Option<serde_json::Value>), Problem> {
    let id_from_event = cloud_event.is_some() && !route.event_id.is_configured();
    let no_headers = HeaderMap::new();
    let (mut found, value) = inspect_value(
        payload,
        &route.event_id,
        if id_from_event { &no_headers } else { headers },
        route.event_type_pointer.as_deref(),
        !route.validate.is_empty() || !route.steps.is_empty() || route.dedupe.is_some(),
    )?;
    if let Some(ce) = cloud_event {
        if id_from_event {
            found.dedupe_key = Some(ce.dedupe_key());
        }
        if route.event_type_pointer.is_none() {
            found.event_type = Some(ce.kind.clone());
        }
    }
    Ok((found, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn reads_id_and_type_from_the_body() {
        let got = inspect(
            br#"{"id":"evt_1","type":"order.created"}"#,
            &EventIdRule::JsonPointer("/id".into()),
            &HeaderMap::new(),
            Some("/type"),
        )
        .unwrap();
        assert_eq!(
            got,
            Inspected {
                dedupe_key: Some("evt_1".into()),
                event_type: Some("order.created".into()),
            }
        );
    }

    #[test]
    fn validates_without_a_tree_when_nothing_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        let got = inspect(b"[1, 2, 3]", &EventIdRule::Default, &headers, None).unwrap();
        assert_eq!(got.dedupe_key.as_deref(), Some("msg_1"));
        assert_eq!(got.event_type, None);
    }

    #[test]
    fn refuses_malformed_json_and_missing_ids() {
        let err = inspect(b"{\"a\":", &EventIdRule::Default, &HeaderMap::new(), None).unwrap_err();
        assert_eq!((err.status, err.code), (400, "malformed_json"));
        let err = inspect(
            b"{}",
            &EventIdRule::JsonPointer("/id".into()),
            &HeaderMap::new(),
            None,
        )
        .unwrap_err();
        assert_eq!((err.status, err.code), (400, "event_id_invalid"));
    }

    /// Found by the `ingest_body` fuzz target (2026-11-24): the validate-only path
    /// (`serde::de::IgnoredAny`) skipped strings without checking their UTF-8, so a body that
    /// is not UTF-8, hence not JSON, was accepted whenever the flow read nothing from it.
    #[test]
    fn refuses_invalid_utf8_even_when_nothing_is_read() {
        let body = b"{\"type\":\"order.created\",\"n\":[\"e,nul\x97,\"]}";
        for (rule, pointer) in [
            (EventIdRule::Default, None),
            (EventIdRule::Default, Some("/type")),
        ] {
            let err = inspect(body, &rule, &HeaderMap::new(), pointer).unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (400, "malformed_json"),
                "{pointer:?}"
            );
        }
    }

    /// Whether a body is accepted must not depend on whether the flow reads from it.
    fn accepted_both_ways(body: &[u8]) -> (bool, bool) {
        let h = HeaderMap::new();
        (
            inspect(body, &EventIdRule::Default, &h, None).is_ok(),
            inspect(body, &EventIdRule::Default, &h, Some("/type")).is_ok(),
        )
    }

    /// Found by fuzzing: the validate-only path once accepted escaped lone surrogates, which
    /// the tree parse refuses (`lone leading surrogate in hex escape`).
    #[test]
    fn lone_surrogates_are_judged_alike_on_both_paths() {
        let (validated, parsed) = accepted_both_ways(br#"{"a":"\ud800"}"#);
        assert_eq!(validated, parsed);
    }

    /// Found by fuzzing: the validate-only path once accepted numbers out of `f64` range such
    /// as `1e999`, which the tree parse refuses (`number out of range`).
    #[test]
    fn out_of_range_numbers_are_judged_alike_on_both_paths() {
        let (validated, parsed) = accepted_both_ways(br#"{"a":1e999}"#);
        assert_eq!(validated, parsed);
    }

    /// Found by a security review: with a duplicate key a `validate` step read the last
    /// value while a receiver keeping the first got unvalidated data. Both paths refuse it,
    /// naming the key and the pointer of its object.
    #[test]
    fn duplicate_keys_are_refused_on_both_paths() {
        for (body, key, pointer) in [
            (&br#"{"amount":-999999,"amount":5}"#[..], "amount", ""),
            (br#"{"type":"t","order":{"id":1,"id":2}}"#, "id", "/order"),
            (
                br#"{"items":[{"a":1},{"a":1,"\u0061":2}]}"#,
                "a",
                "/items/1",
            ),
        ] {
            for pointer_read in [None, Some("/type")] {
                let err = inspect(body, &EventIdRule::Default, &HeaderMap::new(), pointer_read)
                    .unwrap_err();
                assert_eq!((err.status, err.code), (400, "malformed_json"));
                let shown = format!("duplicate key \"{key}\" in the object at \"{pointer}\"");
                assert!(err.detail.contains(&shown), "{}", err.detail);
                let ext = err.extensions.as_ref().expect("extensions");
                assert_eq!(ext["key"], key);
                assert_eq!(ext["pointer"], pointer);
            }
        }
    }

    /// Nesting at `serde_json`'s recursion limit was refused as a generic `malformed_json`.
    #[test]
    fn nesting_too_deep_is_its_own_refusal_on_both_paths() {
        let body = format!("{{\"type\":{}{}}}", "[".repeat(200), "]".repeat(200));
        for pointer_read in [None, Some("/type")] {
            let err = inspect(
                body.as_bytes(),
                &EventIdRule::Default,
                &HeaderMap::new(),
                pointer_read,
            )
            .unwrap_err();
            assert_eq!((err.status, err.code), (400, "too_deep"));
            assert!(err.detail.contains("128 levels"), "{}", err.detail);
        }
    }
}
