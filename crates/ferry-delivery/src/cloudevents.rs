//! CloudEvents 1.0 output: a destination with `http.format: cloudevents` receives each
//! delivery as a structured-mode envelope (`content-type: application/cloudevents+json`):
//!
//! ```json
//! {"specversion": "1.0", "id": "dlv_…", "source": "ferry/<flow>", "type": "order.created",
//!  "time": "2026-11-24T08:00:00.000Z", "datacontenttype": "application/json", "data": {…}}
//! ```
//!
//! `id` is the delivery id, the same on every retry and replay (like `webhook-id`), so a
//! receiver dedupes on it. `type` is the event type, or `ferry.event` when the event has none;
//! `time` is when Ferry accepted the event. A body that is not JSON (a rendered text body)
//! goes in `data` as a string (`text/plain`), or base64-encoded in `data_base64` when it is
//! not UTF-8 either.
//!
//! The event's **extension attributes** (kept at ingress as `ce-<name>` headers, e.g.
//! `ce-traceparent`, `ce-partitionkey`) are passed on as members of the envelope, as text.
//! The attributes CloudEvents defines are Ferry's own in the envelope and are not copied.
//!
//! A batching destination sends CloudEvents in batched mode
//! (`content-type: application/cloudevents-batch+json`): the body is a JSON array of these
//! envelopes, one per record, each with its own delivery id as `id` ([`batch_body`]).

use base64::Engine as _;
use bytes::Bytes;
use ferry_store::ClaimedDelivery;
use serde::Serialize;
use serde_json::value::RawValue;

/// The structured-mode media type sent as `content-type`.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The batched-mode media type: the body is a JSON array of structured envelopes.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// The `type` of an event that has no event type.
pub const DEFAULT_TYPE: &str = "ferry.event";

/// The attributes CloudEvents 1.0 defines, and the members that carry the data: any other
/// attribute is an extension.
pub const DEFINED_ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

#[derive(Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    id: String,
    source: String,
    #[serde(rename = "type")]
    kind: &'a str,
    time: String,
    datacontenttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    /// The event's extension attributes, by name.
    #[serde(flatten)]
    extensions: std::collections::BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

/// The structured CloudEvents envelope of `delivery` with `body` (what would otherwise be
/// sent: the stored or mapped event) as its data. Pure: the same delivery and body give the
/// same bytes on every attempt.
pub fn envelope(delivery: &ClaimedDelivery, body: &[u8]) -> Bytes {
    let text = std::str::from_utf8(body).ok();
    let json = text.and_then(|t| serde_json::from_str::<&RawValue>(t).ok());
    let (datacontenttype, data, data_base64) = match (json, text) {
        (Some(raw), _) => ("application/json", Some(Data::Json(raw)), None),
        (None, Some(text)) => ("text/plain", Some(Data::Text(text)), None),
        (None, None) => (
            "application/octet-stream",
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(body)),
        ),
    };
    let envelope = Envelope {
        specversion: "1.0",
        id: delivery.id.to_string(),
        source: format!("ferry/{}", delivery.lane.flow),
        kind: delivery.event_type.as_deref().unwrap_or(DEFAULT_TYPE),
        time: rfc3339(delivery.received_at),
        datacontenttype,
        data,
        data_base64,
        extensions: extensions(delivery),
    };
    // Serializing plain strings and an already-valid raw value cannot fail.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// The extension attributes kept with the event: its `ce-<name>` headers other than the
/// attributes CloudEvents defines.
fn extensions(delivery: &ClaimedDelivery) -> std::collections::BTreeMap<&str, &str> {
    delivery
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.strip_prefix("ce-")?;
            (!DEFINED_ATTRIBUTES.contains(&name)).then_some((name, value.as_str()))
        })
        .collect()
}

/// The batched-mode body of `records` (each a delivery and what it sends): a JSON array of
/// their structured envelopes ([`envelope`]), in order. Pure, like [`envelope`].
pub fn batch_body<'a>(records: impl IntoIterator<Item = (&'a ClaimedDelivery, &'a [u8])>) -> Bytes {
    let envelopes: Vec<Bytes> = records
        .into_iter()
        .map(|(delivery, body)| envelope(delivery, body))
        .collect();
    crate::batch::body(envelopes.iter().map(|e| &e[..]), None)
}

/// The bytes the envelope of `delivery` adds around a JSON body: what a batcher counts on
/// top of the stored payload's size.
pub fn overhead(delivery: &ClaimedDelivery) -> usize {
    // The envelope of the one-byte JSON document `0`, less that byte.
    envelope(delivery, b"0").len().saturating_sub(1)
}

/// `millis` since the Unix epoch as RFC 3339 UTC with milliseconds.
fn rfc3339(millis: i64) -> String {
    let at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::{DeliveryId, EventId, LaneKey};

    fn delivery(event_type: Option<&str>) -> ClaimedDelivery {
        ClaimedDelivery {
            id: DeliveryId::new(),
            event_id: EventId::new(),
            lane: LaneKey {
                flow: "orders".into(),
                destination: "crm".into(),
            },
            event_type: event_type.map(str::to_string),
            received_at: 1_700_000_000_123,
            headers: Vec::new(),
            payload: Bytes::from_static(br#"{"a": 1}"#),
            attempts: 0,
            round_attempts: 0,
            round_started_at: 0,
            clear_payload: None,
        }
    }

    fn parse(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn passes_extension_attributes_on_but_not_the_defined_ones() {
        let mut d = delivery(Some("order.created"));
        d.headers = vec![
            ("content-type".into(), "application/json".into()),
            ("ce-id".into(), "sender-id".into()),
            ("ce-source".into(), "/shop".into()),
            ("ce-subject".into(), "o/1".into()),
            ("ce-partitionkey".into(), "c-42".into()),
            ("ce-traceparent".into(), "00-abc-def-01".into()),
        ];
        let got = parse(&envelope(&d, br#"{"a": 1}"#));
        assert_eq!(got["partitionkey"], "c-42");
        assert_eq!(got["traceparent"], "00-abc-def-01");
        assert_eq!(got["id"], d.id.to_string(), "the delivery id stays the id");
        assert_eq!(got["source"], "ferry/orders");
        assert!(got.get("subject").is_none());
        assert!(got.get("content-type").is_none());
        assert_eq!(
            got.as_object().unwrap().len(),
            9,
            "Ferry's seven members and the two extensions: {got}"
        );
    }

    #[test]
    fn wraps_json_as_data() {
        let d = delivery(Some("order.created"));
        let got = parse(&envelope(&d, br#"{"a": 1}"#));
        assert_eq!(
            got,
            serde_json::json!({
                "specversion": "1.0",
                "id": d.id.to_string(),
                "source": "ferry/orders",
                "type": "order.created",
                "time": "2023-11-14T22:13:20.123Z",
                "datacontenttype": "application/json",
                "data": {"a": 1}
            })
        );
        assert_eq!(envelope(&d, b"[1]"), envelope(&d, b"[1]"), "stable bytes");
    }

    #[test]
    fn batches_are_arrays_of_envelopes_with_their_own_ids() {
        let (a, b) = (delivery(Some("order.created")), delivery(None));
        let got = parse(&batch_body([(&a, &br#"{"a": 1}"#[..]), (&b, &b"[2]"[..])]));
        let items = got.as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], parse(&envelope(&a, br#"{"a": 1}"#)));
        assert_eq!(items[1]["id"], b.id.to_string());
        assert_eq!(items[1]["type"], DEFAULT_TYPE);
        assert_eq!(items[1]["data"], serde_json::json!([2]));
        assert_ne!(items[0]["id"], items[1]["id"]);
        // The overhead is exact for JSON bodies.
        let body = br#"{"a": 1}"#;
        assert_eq!(envelope(&a, body).len(), body.len() + overhead(&a));
    }

    #[test]
    fn untyped_and_non_json_bodies() {
        let d = delivery(None);
        let got = parse(&envelope(&d, b"hello"));
        assert_eq!(got["type"], DEFAULT_TYPE);
        assert_eq!(got["datacontenttype"], "text/plain");
        assert_eq!(got["data"], "hello");
        let got = parse(&envelope(&d, &[0xff, 0x00]));
        assert_eq!(got["data_base64"], "/wA=");
        assert!(got.get("data").is_none());
    }
}
