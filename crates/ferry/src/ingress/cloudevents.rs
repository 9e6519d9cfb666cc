//! CloudEvents 1.0 at ingress (HTTP protocol binding, JSON event format).
//!
//! - **Structured mode** (`content-type: application/cloudevents+json`): the body is the
//!   envelope `{specversion: "1.0", id, source, type, data | data_base64, ...}`.
//! - **Binary mode** (a `ce-specversion` header): the attributes are `ce-*` headers and the
//!   body is the data.
//!
//! Either way Ferry stores the event's **data** as the payload, so mappings, schemas and
//! destinations see the same document whatever the mode the sender chose; the attributes are
//! kept with the event as `ce-*` headers (`ce-id`, `ce-source`, `ce-type`, `ce-specversion`,
//! and `ce-subject`, `ce-time`, `ce-dataschema` when given), and `content-type` becomes the
//! data's (`datacontenttype`, default `application/json`). **Extension attributes** (any
//! other attribute: `traceparent`, `partitionkey`, a sender's own) are kept the same way,
//! as `ce-<name>` text, so a CloudEvents destination passes them on (see
//! `ferry_delivery::cloudevents`). `type` is the event type and `source` + `id` the dedupe
//! key, unless the flow reads them its own way (`event_type`, `event_id`). Only JSON data is
//! accepted.

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use serde_json::value::RawValue;

use ferry_delivery::cloudevents::DEFINED_ATTRIBUTES;

use super::event_id::MAX_EVENT_ID_LEN;
use super::handler::json_problem;
use crate::problem::Problem;
use crate::strict_json::{self, JsonError};

/// The structured-mode media type.
const STRUCTURED: &str = "application/cloudevents+json";
/// The batched-mode media type (refused: one event per request).
const BATCHED: &str = "application/cloudevents-batch+json";
/// Longest accepted `source`, `type` or optional attribute, in bytes.
const MAX_ATTRIBUTE_LEN: usize = 1024;
/// Optional attributes kept with the event (as `ce-<name>` headers).
const KEPT_OPTIONAL: &[&str] = &["subject", "time", "dataschema"];
/// Most extension attributes kept per event; an event with more is refused.
const MAX_EXTENSIONS: usize = 32;
/// Longest extension attribute name (CloudEvents: names SHOULD NOT exceed 20 characters;
/// Ferry refuses longer ones).
const MAX_EXTENSION_NAME: usize = 20;

/// A decoded CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    /// `id`.
    pub id: String,
    /// `source` (a URI-reference).
    pub source: String,
    /// `type`.
    pub kind: String,
    /// The event data (JSON text): what Ferry stores as the payload. `null` when the event
    /// has no data.
    pub data: Bytes,
    /// The data's media type (`datacontenttype`, default `application/json`).
    pub content_type: String,
    /// The attributes kept with the event, as `ce-*` headers.
    pub attributes: Vec<(String, String)>,
}

impl CloudEvent {
    /// The dedupe key: `source` and `id` together (CloudEvents: events with the same
    /// `source` and `id` are duplicates), as `<source> <id>` (a `source` has no spaces).
    pub fn dedupe_key(&self) -> String {
        format!("{} {}", self.source, self.id)
    }

    /// The headers kept with the event: `kept` (from the request) with `content-type`
    /// replaced by the data's, then the `ce-*` attributes.
    pub fn kept_headers(&self, kept: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = kept
            .into_iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-type"))
            .collect();
        out.push(("content-type".to_string(), self.content_type.clone()));
        out.extend(self.attributes.iter().cloned());
        out
    }
}

/// The CloudEvent a request carries, if it is one. `Ok(None)`: not a CloudEvent (no
/// structured content type, no `ce-specversion` header). Refusals are `400` problems:
/// `cloudevents_invalid` naming the attribute (extension member `attribute`), or
/// `malformed_json` for a structured body that is not JSON or repeats a key (named, with the
/// pointer of its object), or `too_deep`. Never panics.
pub fn decode(headers: &HeaderMap, body: &Bytes) -> Result<Option<CloudEvent>, Problem> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match media_type.as_deref() {
        Some(STRUCTURED) => structured(body).map(Some),
        Some(BATCHED) => Err(invalid(
            "specversion",
            "CloudEvents batched mode is refused: post one event per request".to_string(),
        )),
        _ if headers.contains_key("ce-specversion") => binary(headers, body).map(Some),
        _ => Ok(None),
    }
}

/// Structured mode: the body is the envelope, read strictly ([`strict_json`]) as a whole
/// first, so that a duplicate attribute or data key, or nesting too deep, is refused before
/// any attribute is read.
fn structured(body: &Bytes) -> Result<CloudEvent, Problem> {
    strict_json::validate(body).map_err(|e| match e {
        JsonError::Malformed(e) => malformed(&e),
        strict => json_problem(&strict, "the CloudEvent"),
    })?;
    let envelope: std::collections::BTreeMap<String, &RawValue> = serde_json::from_slice(body)
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => invalid(
                "specversion",
                "a structured CloudEvent is a JSON object".to_string(),
            ),
            _ => malformed(&e),
        })?;
    let attribute = |name: &'static str| -> Result<Option<String>, Problem> {
        match envelope.get(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<String>(raw.get())
                .map(Some)
                .map_err(|_| invalid(name, format!("`{name}` must be a string"))),
        }
    };
    let specversion = attribute("specversion")?;
    let id = attribute("id")?;
    let source = attribute("source")?;
    let kind = attribute("type")?;
    let content_type = attribute("datacontenttype")?;
    check_required(
        specversion.as_deref(),
        id.as_deref(),
        source.as_deref(),
        kind.as_deref(),
    )?;
    if let Some(ct) = &content_type {
        check_json_media_type("datacontenttype", ct)?;
    }
    let data = match (envelope.get("data"), envelope.get("data_base64")) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "data",
                "a CloudEvent has `data` or `data_base64`, not both".to_string(),
            ));
        }
        (Some(raw), None) => Bytes::copy_from_slice(raw.get().as_bytes()),
        (None, Some(raw)) => {
            let text: String = serde_json::from_str(raw.get()).map_err(|_| {
                invalid("data_base64", "`data_base64` must be a string".to_string())
            })?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| invalid("data_base64", format!("`data_base64` is not base64: {e}")))?;
            strict_json::validate(&bytes).map_err(|e| match e {
                JsonError::Malformed(e) => invalid(
                    "data_base64",
                    format!("the data in `data_base64` is not JSON: {e}"),
                ),
                strict => json_problem(&strict, "the data in `data_base64`"),
            })?;
            Bytes::from(bytes)
        }
        (None, None) => Bytes::from_static(b"null"),
    };
    let mut optional = Vec::new();
    for name in KEPT_OPTIONAL {
        if let Some(value) = attribute(name)? {
            optional.push(((*name).to_string(), value));
        }
    }
    for (name, raw) in envelope
        .iter()
        .filter(|(n, _)| !DEFINED_ATTRIBUTES.contains(&n.as_str()))
    {
        check_extension_name(name)?;
        if let Some(value) = extension_value(name, raw)? {
            optional.push((name.clone(), value));
        }
    }
    finish(
        id.unwrap_or_default(),
        source.unwrap_or_default(),
        kind.unwrap_or_default(),
        data,
        content_type,
        optional,
    )
}

/// An extension attribute's value in structured mode, as text: a string as is, an integer
/// or a boolean in its JSON spelling (binary mode carries every value as text, so this is
/// how Ferry keeps them). `null` means the attribute is absent. Anything else is refused.
fn extension_value(name: &str, raw: &RawValue) -> Result<Option<String>, Problem> {
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Null) => Ok(None),
        Ok(Value::String(s)) => Ok(Some(s)),
        Ok(Value::Bool(b)) => Ok(Some(b.to_string())),
        Ok(Value::Number(n)) if n.is_i64() => Ok(Some(n.to_string())),
        _ => Err(invalid(
            name,
            format!("extension attribute `{name}` must be a string, an integer or a boolean"),
        )),
    }
}

/// CloudEvents: attribute names are lower-case ASCII letters and digits; Ferry also bounds
/// their length.
fn check_extension_name(name: &str) -> Result<(), Problem> {
    let valid = !name.is_empty()
        && name.len() <= MAX_EXTENSION_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        return Ok(());
    }
    let shown = shorten(name);
    Err(invalid(
        &shown,
        format!(
            "`{shown}` is not a CloudEvents attribute name (lower-case letters and digits, \
             at most {MAX_EXTENSION_NAME})"
        ),
    ))
}

/// Binary mode: the attributes are `ce-*` headers (percent-encoded), the body is the data.
fn binary(headers: &HeaderMap, body: &Bytes) -> Result<CloudEvent, Problem> {
    let attribute = |name: &'static str| -> Result<Option<String>, Problem> {
        headers
            .get(format!("ce-{name}"))
            .map(|value| header_text(name, value))
            .transpose()
    };
    let specversion = attribute("specversion")?;
    let id = attribute("id")?;
    let source = attribute("source")?;
    let kind = attribute("type")?;
    check_required(
        specversion.as_deref(),
        id.as_deref(),
        source.as_deref(),
        kind.as_deref(),
    )?;
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => {
            let ct = v.to_str().map_err(|_| {
                invalid(
                    "datacontenttype",
                    "`content-type` is not visible ASCII".to_string(),
                )
            })?;
            check_json_media_type("datacontenttype", ct)?;
            Some(ct.to_string())
        }
    };
    let mut optional = Vec::new();
    for name in KEPT_OPTIONAL {
        if let Some(value) = attribute(name)? {
            optional.push(((*name).to_string(), value));
        }
    }
    // Every other `ce-*` header is an extension attribute (header names arrive lower-case).
    for (header_name, value) in headers.iter() {
        let Some(name) = header_name.as_str().strip_prefix("ce-") else {
            continue;
        };
        if DEFINED_ATTRIBUTES.contains(&name) {
            continue;
        }
        check_extension_name(name)?;
        optional.push((name.to_string(), header_text(name, value)?));
    }
    finish(
        id.unwrap_or_default(),
        source.unwrap_or_default(),
        kind.unwrap_or_default(),
        body.clone(),
        content_type,
        optional,
    )
}

/// The value of header `ce-<name>`: percent-encoded UTF-8 text, decoded and trimmed.
fn header_text(name: &str, value: &axum::http::HeaderValue) -> Result<String, Problem> {
    value
        .to_str()
        .ok()
        .and_then(|v| percent_encoding::percent_decode_str(v).decode_utf8().ok())
        .map(|text| text.trim().to_string())
        .ok_or_else(|| {
            invalid(
                name,
                format!("header `ce-{name}` is not percent-encoded UTF-8 text"),
            )
        })
}

/// `specversion` is `1.0`; `id`, `source` and `type` are present, non-empty and bounded;
/// `source` is a URI-reference (at least: no whitespace or control characters).
fn check_required(
    specversion: Option<&str>,
    id: Option<&str>,
    source: Option<&str>,
    kind: Option<&str>,
) -> Result<(), Problem> {
    match specversion {
        Some("1.0") => {}
        Some(other) => {
            return Err(invalid(
                "specversion",
                format!(
                    "`specversion` is `{}`; Ferry accepts CloudEvents `1.0`",
                    shorten(other)
                ),
            ));
        }
        None => return Err(missing("specversion")),
    }
    for (name, value, max) in [
        ("id", id, MAX_EVENT_ID_LEN),
        ("source", source, MAX_ATTRIBUTE_LEN),
        ("type", kind, MAX_ATTRIBUTE_LEN),
    ] {
        match value {
            None => return Err(missing(name)),
            Some("") => return Err(invalid(name, format!("`{name}` is empty"))),
            Some(v) if v.len() > max => {
                return Err(invalid(
                    name,
                    format!(
                        "`{name}` is {} bytes long; at most {max} are accepted",
                        v.len()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if source.is_some_and(|s| s.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(invalid(
            "source",
            "`source` must be a URI-reference (no spaces or control characters)".to_string(),
        ));
    }
    Ok(())
}

/// Ferry accepts JSON data only: `application/json`, `text/json` or any `…+json` type.
fn check_json_media_type(attribute: &'static str, content_type: &str) -> Result<(), Problem> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media == "application/json" || media == "text/json" || media.ends_with("+json") {
        return Ok(());
    }
    Err(invalid(
        attribute,
        format!(
            "the data is `{}`; Ferry accepts JSON data only (`application/json` or a `+json` type)",
            shorten(&media)
        ),
    ))
}

fn finish(
    id: String,
    source: String,
    kind: String,
    data: Bytes,
    content_type: Option<String>,
    optional: Vec<(String, String)>,
) -> Result<CloudEvent, Problem> {
    let extensions = optional
        .iter()
        .filter(|(name, _)| !KEPT_OPTIONAL.contains(&name.as_str()))
        .count();
    if extensions > MAX_EXTENSIONS {
        return Err(invalid(
            "extensions",
            format!(
                "the CloudEvent has {extensions} extension attributes; at most {MAX_EXTENSIONS} are accepted"
            ),
        ));
    }
    for (name, value) in &optional {
        if value.len() > MAX_ATTRIBUTE_LEN {
            return Err(invalid(
                name,
                format!("`{name}` is longer than {MAX_ATTRIBUTE_LEN} bytes"),
            ));
        }
    }
    let mut attributes = vec![
        ("ce-specversion".to_string(), "1.0".to_string()),
        ("ce-id".to_string(), id.clone()),
        ("ce-source".to_string(), source.clone()),
        ("ce-type".to_string(), kind.clone()),
    ];
    attributes.extend(
        optional
            .into_iter()
            .map(|(name, value)| (format!("ce-{name}"), value)),
    );
    Ok(CloudEvent {
        id,
        source,
        kind,
        data,
        content_type: content_type.unwrap_or_else(|| "application/json".to_string()),
        attributes,
    })
}

/// A `400 malformed_json`: the envelope is not JSON.
fn malformed(e: &serde_json::Error) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "Malformed JSON",
        format!(
            "the CloudEvent is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ),
    )
}

fn missing(attribute: &str) -> Problem {
    invalid(
        attribute,
        format!("the required attribute `{attribute}` is missing"),
    )
}

/// A `400 cloudevents_invalid` naming `attribute`.
fn invalid(attribute: &str, detail: String) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "cloudevents_invalid",
        "Invalid CloudEvent",
        detail,
    )
    .with_extension("attribute", Value::String(attribute.to_string()))
}

/// At most 64 characters of `text`, for quoting it in a message.
fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn structured_event(body: &str) -> Result<Option<CloudEvent>, Problem> {
        decode(
            &headers(&[(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )]),
            &Bytes::from(body.to_string()),
        )
    }

    fn attribute_of(p: &Problem) -> String {
        p.extensions.as_ref().unwrap()["attribute"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn extension_attributes_are_kept_as_text_in_either_mode() {
        let ce = structured_event(
            r#"{"specversion":"1.0","id":"A-1","source":"/shop","type":"t","data":1,
                "partitionkey":"c-1","sequence":3,"sampled":true,"gone":null}"#,
        )
        .unwrap()
        .unwrap();
        for kept in [
            ("ce-partitionkey", "c-1"),
            ("ce-sequence", "3"),
            ("ce-sampled", "true"),
        ] {
            assert!(
                ce.attributes
                    .contains(&(kept.0.to_string(), kept.1.to_string())),
                "{kept:?} in {:?}",
                ce.attributes
            );
        }
        assert!(!ce.attributes.iter().any(|(n, _)| n == "ce-gone"));

        let ce = decode(
            &headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "B-1"),
                ("ce-source", "/shop"),
                ("ce-type", "t"),
                ("ce-traceparent", "00-x-y-01"),
                ("ce-note", "caf%C3%A9"),
            ]),
            &Bytes::from_static(b"{}"),
        )
        .unwrap()
        .unwrap();
        assert!(
            ce.attributes
                .contains(&("ce-traceparent".to_string(), "00-x-y-01".to_string()))
        );
        assert!(
            ce.attributes
                .contains(&("ce-note".to_string(), "caf\u{e9}".to_string()))
        );
    }

    #[test]
    fn malformed_extension_attributes_are_refused_by_name() {
        for (body, attribute) in [
            (r#""Upper":"x""#, "Upper"),
            (r#""with_underscore":"x""#, "with_underscore"),
            (r#""obj":{"a":1}"#, "obj"),
            (r#""list":[1]"#, "list"),
            (r#""float":1.5"#, "float"),
            (r#""name21charactersxxxxx":"x""#, "name21charactersxxxxx"),
        ] {
            let event =
                format!(r#"{{"specversion":"1.0","id":"A","source":"/s","type":"t",{body}}}"#);
            let p = structured_event(&event).unwrap_err();
            assert_eq!(p.code, "cloudevents_invalid");
            assert_eq!(attribute_of(&p), attribute, "{event}");
        }
        let binary = decode(
            &headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "B-1"),
                ("ce-source", "/shop"),
                ("ce-type", "t"),
                ("ce-bad_name", "x"),
            ]),
            &Bytes::from_static(b"{}"),
        )
        .unwrap_err();
        assert_eq!(attribute_of(&binary), "bad_name");
    }

    #[test]
    fn structured_mode_keeps_the_data_as_sent() {
        let ce = structured_event(
            r#"{"specversion":"1.0","id":"A-1","source":"/shop","type":"order.created","subject":"o/1","data":{"b": 1, "a": [2]}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ce.data, Bytes::from_static(br#"{"b": 1, "a": [2]}"#));
        assert_eq!((ce.id.as_str(), ce.kind.as_str()), ("A-1", "order.created"));
        assert_eq!(ce.dedupe_key(), "/shop A-1");
        assert_eq!(ce.content_type, "application/json");
        assert!(
            ce.attributes
                .contains(&("ce-subject".to_string(), "o/1".to_string()))
        );
        let kept = ce.kept_headers(vec![
            ("content-type".into(), STRUCTURED.into()),
            ("traceparent".into(), "00-x".into()),
        ]);
        assert_eq!(kept[0], ("traceparent".into(), "00-x".into()));
        assert_eq!(kept[1], ("content-type".into(), "application/json".into()));
    }

    #[test]
    fn structured_mode_decodes_data_base64_and_defaults_to_null() {
        let ce = structured_event(
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"eyJhIjoxfQ=="}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ce.data, Bytes::from_static(br#"{"a":1}"#));
        let ce = structured_event(r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(ce.data, Bytes::from_static(b"null"));
    }

    #[test]
    fn invalid_events_name_the_attribute() {
        for (body, attribute) in [
            (r#"{"id":"1","source":"s","type":"t"}"#, "specversion"),
            (
                r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#,
                "specversion",
            ),
            (r#"{"specversion":"1.0","source":"s","type":"t"}"#, "id"),
            (
                r#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#,
                "id",
            ),
            (r#"{"specversion":"1.0","id":"1","type":"t"}"#, "source"),
            (
                r#"{"specversion":"1.0","id":"1","source":"a b","type":"t"}"#,
                "source",
            ),
            (r#"{"specversion":"1.0","id":"1","source":"s"}"#, "type"),
            (
                r#"{"specversion":"1.0","id":1,"source":"s","type":"t"}"#,
                "id",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"hi"}"#,
                "datacontenttype",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"aGk="}"#,
                "data_base64",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"MQ=="}"#,
                "data",
            ),
            ("[1]", "specversion"),
        ] {
            let p = structured_event(body).unwrap_err();
            assert_eq!((p.status, p.code), (400, "cloudevents_invalid"), "{body}");
            assert_eq!(attribute_of(&p), attribute, "{body}: {}", p.detail);
        }
        let p = structured_event("{\"specversion\":").unwrap_err();
        assert_eq!(p.code, "malformed_json");
    }

    #[test]
    fn binary_mode_reads_headers_and_keeps_the_body() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "A-2"),
            ("ce-source", "https://shop.example/orders"),
            ("ce-type", "order.created"),
            ("ce-subject", "caf%C3%A9"),
            ("content-type", "application/vnd.shop+json"),
        ]);
        let body = Bytes::from_static(br#"{"order_id":1}"#);
        let ce = decode(&h, &body).unwrap().unwrap();
        assert_eq!(ce.data, body);
        assert_eq!(ce.content_type, "application/vnd.shop+json");
        assert!(
            ce.attributes
                .contains(&("ce-subject".to_string(), "café".to_string()))
        );

        let mut h2 = h.clone();
        h2.remove("ce-type");
        assert_eq!(attribute_of(&decode(&h2, &body).unwrap_err()), "type");
        let mut h3 = h.clone();
        h3.insert("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(
            attribute_of(&decode(&h3, &body).unwrap_err()),
            "datacontenttype"
        );
    }

    #[test]
    fn plain_requests_are_not_cloudevents() {
        let h = headers(&[("content-type", "application/json")]);
        assert_eq!(decode(&h, &Bytes::from_static(b"{}")).unwrap(), None);
        let batched = headers(&[("content-type", BATCHED)]);
        assert!(decode(&batched, &Bytes::from_static(b"[]")).is_err());
    }

    /// A repeated attribute (which `id` is the event's?) or a repeated key in the data is
    /// refused, named with the pointer of its object in the envelope.
    #[test]
    fn duplicate_keys_are_refused_in_the_envelope_and_the_data() {
        for (body, key, pointer) in [
            (
                r#"{"specversion":"1.0","id":"A","id":"B","source":"/s","type":"t"}"#,
                "id",
                "",
            ),
            (
                r#"{"specversion":"1.0","id":"A","source":"/s","type":"t","data":{"amount":-9,"amount":5}}"#,
                "amount",
                "/data",
            ),
            (
                // `{"a":1,"a":2}`
                r#"{"specversion":"1.0","id":"A","source":"/s","type":"t","data_base64":"eyJhIjoxLCJhIjoyfQ=="}"#,
                "a",
                "",
            ),
        ] {
            let p = structured_event(body).unwrap_err();
            assert_eq!((p.status, p.code), (400, "malformed_json"), "{body}");
            let ext = p.extensions.as_ref().expect("extensions");
            assert_eq!(
                (&ext["key"], &ext["pointer"]),
                (&json!(key), &json!(pointer))
            );
            assert!(
                p.detail.contains(&format!("duplicate key \"{key}\"")),
                "{}",
                p.detail
            );
        }
    }

    #[test]
    fn data_nested_too_deep_is_refused_as_such() {
        let data = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let body =
            format!(r#"{{"specversion":"1.0","id":"A","source":"/s","type":"t","data":{data}}}"#);
        let p = structured_event(&body).unwrap_err();
        assert_eq!((p.status, p.code), (400, "too_deep"));
        assert!(p.detail.contains("128 levels"), "{}", p.detail);
    }
}
