//! Reading the sender's event id, the dedupe key of an inbound webhook.

use axum::http::HeaderMap;

use ferry_signature::VendorEventId;

use crate::assembly::EventIdRule;

/// Longest accepted sender event id.
pub const MAX_EVENT_ID_LEN: usize = 256;

/// Why the sender's event id could not be read.
#[derive(Debug)]
pub struct EventIdError(pub String);

/// The dedupe key, if the request carries one. `body` is consulted only for JSON pointers.
pub fn read_event_id(
    rule: &EventIdRule,
    headers: &HeaderMap,
    body: Option<&serde_json::Value>,
) -> Result<Option<String>, EventIdError> {
    let found = match rule {
        EventIdRule::Default => first_header(headers, &DEFAULT_HEADERS)?,
        EventIdRule::Vendor(VendorEventId::Headers(names)) => match first_header(headers, names)? {
            Some(id) => Some(id),
            None => first_header(headers, &DEFAULT_HEADERS)?,
        },
        EventIdRule::Vendor(VendorEventId::JsonPointer(ptr)) => {
            match body.and_then(|b| b.pointer(ptr)).and_then(id_text) {
                Some(id) => Some(id),
                None => first_header(headers, &DEFAULT_HEADERS)?,
            }
        }
        EventIdRule::Header(name) => match headers.get(name) {
            Some(v) => Some(header_text(name.as_str(), v)?),
            None => {
                return Err(EventIdError(format!(
                    "the event id header `{name}` is missing"
                )));
            }
        },
        EventIdRule::JsonPointer(ptr) => match body.and_then(|b| b.pointer(ptr)) {
            Some(value @ (serde_json::Value::String(_) | serde_json::Value::Number(_))) => {
                id_text(value)
            }
            Some(_) => {
                return Err(EventIdError(format!(
                    "the event id at JSON pointer `{ptr}` must be a string or a number"
                )));
            }
            None => {
                return Err(EventIdError(format!(
                    "the body has no event id at JSON pointer `{ptr}`"
                )));
            }
        },
    };
    match found {
        Some(id) if id.is_empty() => Err(EventIdError("the event id is empty".into())),
        Some(id) if id.len() > MAX_EVENT_ID_LEN => Err(EventIdError(format!(
            "the event id is {} bytes long; at most {MAX_EVENT_ID_LEN} are accepted",
            id.len()
        ))),
        other => Ok(other),
    }
}

/// The headers any sender may carry its event id in, in order: Standard Webhooks, Svix,
/// and the common `Idempotency-Key`.
const DEFAULT_HEADERS: [&str; 3] = ["webhook-id", "svix-id", "idempotency-key"];

/// The first of `names` the request carries, as text.
fn first_header(headers: &HeaderMap, names: &[&str]) -> Result<Option<String>, EventIdError> {
    names
        .iter()
        .find_map(|h| headers.get(*h).map(|v| (*h, v)))
        .map(|(h, v)| header_text(h, v))
        .transpose()
}

/// A string or a number as an id (a number as its JSON text).
fn id_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn header_text(name: &str, v: &axum::http::HeaderValue) -> Result<String, EventIdError> {
    v.to_str()
        .map(|s| s.trim().to_string())
        .map_err(|_| EventIdError(format!("header `{name}` is not visible ASCII")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn default_rule_prefers_webhook_id_then_idempotency_key() {
        let mut h = HeaderMap::new();
        h.insert("idempotency-key", HeaderValue::from_static("idem-1"));
        assert_eq!(
            read_event_id(&EventIdRule::Default, &h, None)
                .unwrap()
                .as_deref(),
            Some("idem-1")
        );
        h.insert("webhook-id", HeaderValue::from_static("msg_1"));
        assert_eq!(
            read_event_id(&EventIdRule::Default, &h, None)
                .unwrap()
                .as_deref(),
            Some("msg_1")
        );
        assert_eq!(
            read_event_id(&EventIdRule::Default, &HeaderMap::new(), None).unwrap(),
            None
        );
    }

    #[test]
    fn json_pointer_rule_reads_strings_and_numbers_and_refuses_others() {
        let rule = EventIdRule::JsonPointer("/id".into());
        let h = HeaderMap::new();
        let v = serde_json::json!({"id": "evt_9"});
        assert_eq!(
            read_event_id(&rule, &h, Some(&v)).unwrap().as_deref(),
            Some("evt_9")
        );
        let v = serde_json::json!({"id": 42});
        assert_eq!(
            read_event_id(&rule, &h, Some(&v)).unwrap().as_deref(),
            Some("42")
        );
        assert!(read_event_id(&rule, &h, Some(&serde_json::json!({"id": [1]}))).is_err());
        assert!(read_event_id(&rule, &h, Some(&serde_json::json!({}))).is_err());
    }

    #[test]
    fn vendor_rules_read_the_vendors_id_then_the_generic_headers() {
        let stripe = EventIdRule::Vendor(VendorEventId::JsonPointer("/id"));
        let body = serde_json::json!({"id": "evt_1Q0abc", "type": "invoice.paid"});
        let mut h = HeaderMap::new();
        h.insert("idempotency-key", HeaderValue::from_static("idem-1"));
        assert_eq!(
            read_event_id(&stripe, &h, Some(&body)).unwrap().as_deref(),
            Some("evt_1Q0abc"),
            "the body's id wins"
        );
        // Without it (or not a string or number): the generic headers, never a refusal.
        for body in [serde_json::json!({}), serde_json::json!({"id": {"x": 1}})] {
            assert_eq!(
                read_event_id(&stripe, &h, Some(&body)).unwrap().as_deref(),
                Some("idem-1")
            );
            assert_eq!(
                read_event_id(&stripe, &HeaderMap::new(), Some(&body)).unwrap(),
                None
            );
        }

        let github = EventIdRule::Vendor(VendorEventId::Headers(&["x-github-delivery"]));
        h.insert(
            "x-github-delivery",
            HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        );
        assert_eq!(
            read_event_id(&github, &h, None).unwrap().as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        h.remove("x-github-delivery");
        assert_eq!(
            read_event_id(&github, &h, None).unwrap().as_deref(),
            Some("idem-1")
        );
        // An empty vendor id is as invalid as any empty id.
        assert!(
            read_event_id(&stripe, &h, Some(&serde_json::json!({"id": ""}))).is_err(),
            "empty"
        );
    }

    #[test]
    fn overlong_ids_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            "webhook-id",
            HeaderValue::from_str(&"x".repeat(300)).unwrap(),
        );
        assert!(read_event_id(&EventIdRule::Default, &h, None).is_err());
    }
}
