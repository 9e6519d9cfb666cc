//! Conversions between `serde_json::Value` (what Ferry stores and sends) and VRL's value.

use vrl::value::Value;

/// A JSON value as a VRL value: integers that fit `i64` stay integers, other numbers
/// (`u64` beyond `i64`, fractions) become floats.
pub(crate) fn to_vrl(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            // JSON numbers are never NaN; `from_f64_or_zero` only guards the type.
            None => Value::from_f64_or_zero(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::from(s),
        serde_json::Value::Array(items) => Value::Array(items.into_iter().map(to_vrl).collect()),
        serde_json::Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key.into(), to_vrl(value)))
                .collect(),
        ),
    }
}

/// A VRL value as JSON. Timestamps become RFC 3339 strings and regexes their pattern.
/// Fails, naming the path, on bytes that are not UTF-8 text (e.g. from `decode_base64`) and
/// on infinite numbers: JSON has neither.
pub(crate) fn to_json(value: Value) -> Result<serde_json::Value, String> {
    to_json_at(value, &mut String::from("."))
}

fn to_json_at(value: Value, path: &mut String) -> Result<serde_json::Value, String> {
    Ok(match value {
        Value::Null => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(b),
        Value::Integer(i) => serde_json::Value::from(i),
        Value::Float(f) => serde_json::Number::from_f64(f.into_inner())
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{path} is an infinite number, which JSON cannot hold"))?,
        Value::Bytes(bytes) => match String::from_utf8(bytes.to_vec()) {
            Ok(s) => serde_json::Value::String(s),
            Err(_) => {
                return Err(format!(
                    "{path} holds bytes that are not UTF-8 text, which JSON cannot hold (encode them, e.g. with `encode_base64`)"
                ));
            }
        },
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::Regex(regex) => serde_json::Value::String(regex.as_str().to_string()),
        Value::Timestamp(ts) => {
            serde_json::Value::String(vrl::value::value::timestamp_to_string(&ts))
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (key, value) in map {
                let len = path.len();
                if !path.ends_with('.') {
                    path.push('.');
                }
                path.push_str(key.as_str());
                let value = to_json_at(value, path)?;
                path.truncate(len);
                out.insert(key.into(), value);
            }
            serde_json::Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(to_json_at(item, path)?);
                path.truncate(len);
            }
            serde_json::Value::Array(out)
        }
    })
}

/// A VRL value serialized as JSON, failing where [`to_json`] fails (bytes that are not
/// UTF-8, infinite numbers) instead of writing them lossily.
pub(crate) struct Strict<'a>(pub &'a Value);

impl serde::Serialize for Strict<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        match self.0 {
            Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => serializer.serialize_str(text),
                Err(_) => Err(S::Error::custom(
                    "a value holds bytes that are not UTF-8 text, which JSON cannot hold (encode them, e.g. with `encode_base64`)",
                )),
            },
            Value::Float(f) if !f.is_finite() => Err(S::Error::custom(
                "a value is an infinite number, which JSON cannot hold",
            )),
            Value::Object(map) => serializer.collect_map(map.iter().map(|(k, v)| (k, Strict(v)))),
            Value::Array(items) => serializer.collect_seq(items.iter().map(Strict)),
            other => other.serialize(serializer),
        }
    }
}

/// The VRL kind name of a value, for messages (`string`, `integer`, …).
pub(crate) fn kind_name(value: &Value) -> String {
    value.kind_str().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips() {
        let doc = json!({"a": 1, "b": [true, null, 2.5, "x"], "c": {"d": -7}, "e": 18446744073709551615u64});
        let back = to_json(to_vrl(doc.clone())).unwrap();
        // u64 beyond i64 becomes a float, not a string.
        assert_eq!(back["a"], doc["a"]);
        assert_eq!(back["b"], doc["b"]);
        assert_eq!(back["c"], doc["c"]);
        assert!(back["e"].is_number());
    }

    #[test]
    fn non_utf8_bytes_are_refused_with_their_path() {
        let mut map = vrl::value::ObjectMap::new();
        map.insert(
            "blob".into(),
            Value::Array(vec![Value::Bytes(bytes_of(&[0xff, 0xfe]))]),
        );
        let err = to_json(Value::Object(map)).unwrap_err();
        assert!(err.starts_with(".blob[0] holds bytes"), "{err}");
    }

    fn bytes_of(b: &[u8]) -> vrl::prelude::Bytes {
        vrl::prelude::Bytes::copy_from_slice(b)
    }
}
