//! Reading the sender's event id, the dedupe key of an inbound webhook.

use axum::http::HeaderMap;

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
        EventIdRule::Default => ["webhook-id", "svix-id", "idempotency-key"]
            .iter()
            .find_map(|h| headers.get(*h).map(|v| (*h, v)))
            .map(|(h, v)| header_text(h, v))
            .transpose()?,
        EventIdRule::Header(name) => match headers.get(name) {
            Some(v) => Some(header_text(name.as_str(), v)?),
            None => {
                return Err(EventIdError(format!(
                    "the event id header `{name}` is missing"
                )));
            }
        },
        EventIdRule::JsonPointer(ptr) => match body.and_then(|b| b.pointer(ptr)) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
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
    fn overlong_ids_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            "webhook-id",
            HeaderValue::from_str(&"x".repeat(300)).unwrap(),
        );
        assert!(read_event_id(&EventIdRule::Default, &h, None).is_err());
    }
}
