//! The ingress body checks (`ferry::ingress::inspect`): JSON validation, the sender's event id
//! (header or JSON pointer) and the event type pointer, on arbitrary bodies, pointers and
//! header values.
//!
//! Input layout (so seeds are easy to write by hand): byte 0 selects the rule, the event type
//! pointer and the headers; byte 1 is the length (mod 64) of a pointer / header text that
//! follows; the rest is the body. Properties: never panics; a refusal is a 400 with a known
//! code; an accepted body is JSON text (UTF-8, grammar-valid; and what `serde_json::Value`
//! accepts when the tree is built) and an accepted event id is 1 to 256 bytes; the two
//! readings of `ferry::strict_json` (tree and validate-only) judge every body alike.

#![no_main]

use ferry::assembly::EventIdRule;
use ferry::ingress::inspect;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;


fuzz_target!(|data: &[u8]| {
    let [sel, len, rest @ ..] = data else {
        return;
    };
    let len = (*len as usize % 64).min(rest.len());
    let (text, body) = rest.split_at(len);
    let pointer = String::from_utf8_lossy(text).into_owned();

    let rule = match sel & 0b11 {
        0 => EventIdRule::Default,
        1 => EventIdRule::Header(HeaderName::from_static("x-event-id")),
        2 => EventIdRule::JsonPointer(pointer.clone()),
        _ => EventIdRule::JsonPointer("/id".into()),
    };
    let event_type_pointer = match (sel >> 2) & 0b11 {
        0 => None,
        1 => Some(pointer.as_str()),
        _ => Some("/type"),
    };
    let mut headers = HeaderMap::new();
    match (sel >> 4) & 0b11 {
        0 => {}
        1 => {
            headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        }
        2 => {
            if let Ok(v) = HeaderValue::from_bytes(text) {
                headers.insert("x-event-id", v.clone());
                headers.insert("svix-id", v);
            }
        }
        _ => {
            headers.insert("idempotency-key", HeaderValue::from_static(""));
            if let Ok(v) = HeaderValue::from_str(&"k".repeat(257)) {
                headers.insert("x-event-id", v);
            }
        }
    }

    // Duplicate keys, depth and everything `serde_json` refuses: the same verdict, and the
    // same reason, whether the tree is built or not.
    let parsed = ferry::strict_json::parse(body);
    let validated = ferry::strict_json::validate(body);
    assert_eq!(
        parsed.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        validated.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        "strict_json::parse and strict_json::validate disagree"
    );

    // The JSON tree is built when something is read from the body; otherwise it is only
    // validated. Both paths must judge a body alike: exactly what `serde_json::Value` accepts.
    match inspect(body, &rule, &headers, event_type_pointer) {
        Ok(got) => {
            assert!(
                std::str::from_utf8(body).is_ok(),
                "accepted a body that is not UTF-8"
            );
            assert!(
                serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok(),
                "accepted a body that is not JSON"
            );
            assert!(
                serde_json::from_slice::<serde_json::Value>(body).is_ok(),
                "accepted a body that serde_json::Value refuses"
            );
            if let Some(id) = &got.dedupe_key {
                assert!(
                    !id.is_empty() && id.len() <= 256,
                    "event id of {} bytes",
                    id.len()
                );
            }
        }
        Err(problem) => {
            assert_eq!(problem.status, 400);
            assert!(
                matches!(
                    problem.code,
                    "malformed_json" | "too_deep" | "event_id_invalid"
                ),
                "unexpected code {}",
                problem.code
            );
        }
    }
});
