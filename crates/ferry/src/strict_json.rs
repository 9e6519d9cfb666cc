//! The strict reading of inbound JSON: every JSON document Ferry takes from a sender or a
//! vendor (webhook bodies, CloudEvents, pull pages, enrich answers) is read here, either
//! into a [`serde_json::Value`] ([`parse`]) or only checked, without building a tree
//! ([`validate`]). Both readings judge every document alike and refuse, beyond what
//! `serde_json` refuses (not UTF-8, bad grammar, lone surrogate escapes, numbers beyond
//! `f64`):
//!
//! - **an object with a duplicate key** (RFC 8259 leaves their meaning open: a validator
//!   reading the last value and a receiver keeping the first would see different
//!   documents). Keys are compared after unescaping, so `"a"` and `"\u0061"` are the same
//!   key. The error names the key and the JSON pointer (RFC 6901) of the object holding it;
//! - **nesting of arrays and objects [`DEPTH_LIMIT`] (128) levels deep or deeper**
//!   (`serde_json`'s recursion limit): at most [`MAX_DEPTH`] (127) levels are read.
//!
//! One pass either way: each object's keys are checked as they are read (the tree's own map
//! when a `Value` is built; a shared stack of the keys, a hash set for large objects, when
//! only validating), and the pointer of a duplicate is assembled only on the error path, as
//! the error passes back up through the enclosing arrays and objects.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// `serde_json`'s recursion limit: a document whose arrays and objects nest this many levels
/// deep is refused ([`JsonError::TooDeep`]).
pub const DEPTH_LIMIT: usize = 128;

/// The deepest nesting of arrays and objects that is read (`[[1]]` is 2 levels).
pub const MAX_DEPTH: usize = DEPTH_LIMIT - 1;

/// Keys of an object checked by a linear scan; an object with more moves its keys into a
/// hash set (so a huge object costs linear time, not quadratic).
const SMALL_OBJECT: usize = 16;

/// Longest key, and longest pointer, quoted in a message (the error itself keeps them whole).
const SHOWN_KEY: usize = 64;
const SHOWN_POINTER: usize = 256;

/// Why a document was refused.
#[derive(Debug)]
pub enum JsonError {
    /// An object has the same key twice.
    DuplicateKey {
        /// The key, unescaped.
        key: String,
        /// The JSON pointer (RFC 6901) of the object holding it: `""` for the root.
        pointer: String,
    },
    /// Arrays and objects nest [`DEPTH_LIMIT`] levels deep or deeper.
    TooDeep {
        /// Where the limit was reached (1-based).
        line: usize,
        column: usize,
    },
    /// Not JSON (`serde_json`'s reason, with its line and column).
    Malformed(serde_json::Error),
}

impl JsonError {
    /// The stable problem code of the refusal: `too_deep`, else `malformed_json`.
    pub fn code(&self) -> &'static str {
        match self {
            JsonError::TooDeep { .. } => "too_deep",
            JsonError::DuplicateKey { .. } | JsonError::Malformed(_) => "malformed_json",
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::DuplicateKey { key, pointer } => {
                let key = quoted(key, SHOWN_KEY);
                let at = quoted(pointer, SHOWN_POINTER);
                let root = if pointer.is_empty() {
                    " (the root)"
                } else {
                    ""
                };
                write!(f, "duplicate key {key} in the object at {at}{root}")
            }
            JsonError::TooDeep { line, column } => write!(
                f,
                "arrays and objects nest too deeply (line {line}, column {column}): the limit \
                 is {DEPTH_LIMIT} levels, so at most {MAX_DEPTH} are read"
            ),
            JsonError::Malformed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JsonError::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

/// Read `bytes` as one JSON document into a tree, strictly (see the module docs).
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut trail = Trail::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let read = Build { trail: &mut trail }
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value));
    read.map_err(|e| trail.into_error(e))
}

/// Check that `bytes` is one JSON document that [`parse`] would read, without building the
/// tree.
pub fn validate(bytes: &[u8]) -> Result<(), JsonError> {
    let mut trail = Trail::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let read = Check { trail: &mut trail }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    read.map_err(|e| trail.into_error(e))
}

/// What one read leaves behind: the keys of the objects being read (validation only), and
/// on the way out of a failure, the duplicate key and the path to its object.
#[derive(Default)]
struct Trail<'de> {
    /// The keys read so far of every object being read, outermost first (each object's
    /// own keys are the tail it pushed, removed when it ends).
    keys: Vec<Cow<'de, str>>,
    /// The duplicate key, once one is found.
    duplicate: Option<String>,
    /// The steps from the failing object up to the root, innermost first.
    path: Vec<Step>,
}

/// One step of a JSON pointer.
enum Step {
    Key(String),
    Index(usize),
}

impl Trail<'_> {
    /// The error `e` of a read that used this trail.
    fn into_error(self, e: serde_json::Error) -> JsonError {
        if let Some(key) = self.duplicate {
            return JsonError::DuplicateKey {
                key,
                pointer: pointer(&self.path),
            };
        }
        if is_too_deep(&e) {
            return JsonError::TooDeep {
                line: e.line(),
                column: e.column(),
            };
        }
        JsonError::Malformed(e)
    }

    /// Record a duplicate `key` and make the error that stops the read.
    fn duplicate<E: serde::de::Error>(&mut self, key: &str) -> E {
        self.duplicate = Some(key.to_owned());
        E::custom("duplicate object key")
    }
}

/// `serde_json` reports its recursion limit as a syntax error with this message.
fn is_too_deep(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Syntax
        && e.to_string().contains("recursion limit exceeded")
}

/// The JSON pointer of `path` (innermost step first), `~` and `/` escaped per RFC 6901.
fn pointer(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path.iter().rev() {
        out.push('/');
        match step {
            Step::Key(key) => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Step::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// `text` as a JSON string, cut to `max` characters (`…` marks a cut), for a message.
fn quoted(text: &str, max: usize) -> String {
    let mut shown: String = text.chars().take(max).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    serde_json::to_string(&shown).unwrap_or_else(|_| format!("{shown:?}"))
}

/// Reads one value into a `Value`, refusing duplicate keys.
struct Build<'t, 'de> {
    trail: &'t mut Trail<'de>,
}

impl<'de> DeserializeSeed<'de> for Build<'_, 'de> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_, 'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    /// As `serde_json` builds it (a parsed number is always finite).
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            match seq.next_element_seed(Build {
                trail: &mut *self.trail,
            }) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    self.trail.path.push(Step::Index(items.len()));
                    return Err(e);
                }
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let slot = match object.entry(key) {
                Entry::Vacant(slot) => slot,
                Entry::Occupied(taken) => return Err(self.trail.duplicate(taken.key())),
            };
            match map.next_value_seed(Build {
                trail: &mut *self.trail,
            }) {
                Ok(value) => {
                    slot.insert(value);
                }
                Err(e) => {
                    self.trail.path.push(Step::Key(slot.key().clone()));
                    return Err(e);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// Checks one value without building it, refusing duplicate keys.
struct Check<'t, 'de> {
    trail: &'t mut Trail<'de>,
}

impl<'de> DeserializeSeed<'de> for Check<'_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    // Every scalar is decoded as the tree parse decodes it (UTF-8 and escapes of strings,
    // the range of numbers), then dropped. `serde::de::IgnoredAny` would skip those checks.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            match seq.next_element_seed(Check {
                trail: &mut *self.trail,
            }) {
                Ok(Some(())) => index += 1,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.trail.path.push(Step::Index(index));
                    return Err(e);
                }
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let start = self.trail.keys.len();
        let mut large: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let seen = match &large {
                Some(set) => set.contains(&key),
                None => self.trail.keys[start..].contains(&key),
            };
            if seen {
                return Err(self.trail.duplicate(&key));
            }
            if let Err(e) = map.next_value_seed(Check {
                trail: &mut *self.trail,
            }) {
                self.trail.path.push(Step::Key(key.into_owned()));
                return Err(e);
            }
            match &mut large {
                Some(set) => {
                    set.insert(key);
                }
                None => {
                    self.trail.keys.push(key);
                    if self.trail.keys.len() - start > SMALL_OBJECT {
                        large = Some(self.trail.keys.drain(start..).collect());
                    }
                }
            }
        }
        self.trail.keys.truncate(start);
        Ok(())
    }
}

/// Reads an object key, borrowed from the input when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readings of `text`: `Ok` only if both accept it, with the tree; the two errors
    /// must be the same refusal.
    fn read(text: &str) -> Result<Value, JsonError> {
        let parsed = parse(text.as_bytes());
        let validated = validate(text.as_bytes());
        match (&parsed, &validated) {
            (Ok(_), Ok(())) => {}
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
            _ => panic!("the readings disagree on {text}: {parsed:?} / {validated:?}"),
        }
        parsed
    }

    /// The duplicate key and pointer `text` is refused for.
    fn duplicate(text: &str) -> (String, String) {
        match read(text) {
            Err(JsonError::DuplicateKey { key, pointer }) => (key, pointer),
            other => panic!("{text}: expected a duplicate key, got {other:?}"),
        }
    }

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn a_duplicate_key_at_the_root_is_refused_by_name() {
        let (key, pointer) = duplicate(r#"{"amount":-999999,"amount":5}"#);
        assert_eq!((key.as_str(), pointer.as_str()), ("amount", ""));
        let e = read(r#"{"amount":-999999,"amount":5}"#).unwrap_err();
        assert_eq!(e.code(), "malformed_json");
        assert_eq!(
            e.to_string(),
            r#"duplicate key "amount" in the object at "" (the root)"#
        );
    }

    #[test]
    fn a_nested_duplicate_names_the_pointer_of_its_object() {
        assert_eq!(
            duplicate(r#"{"order":{"id":1,"total":2,"id":3}}"#),
            ("id".into(), "/order".into())
        );
        assert_eq!(
            duplicate(r#"{"items":[{"a":1},{"b":1,"b":2}]}"#),
            ("b".into(), "/items/1".into())
        );
        assert_eq!(
            duplicate(r#"[0,[1,{"x":{"q":[],"q":{}}}]]"#),
            ("q".into(), "/1/1/x".into())
        );
        // RFC 6901 escapes `~` and `/` in the pointer.
        assert_eq!(
            duplicate(r#"{"a/b":{"~":{"k":1,"k":2}}}"#),
            ("k".into(), "/a~1b/~0".into())
        );
        let e = read(r#"{"order":{"id":1,"id":3}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"duplicate key "id" in the object at "/order""#
        );
    }

    #[test]
    fn keys_are_compared_unescaped() {
        assert_eq!(duplicate(r#"{"a":1,"\u0061":2}"#), ("a".into(), "".into()));
        assert_eq!(
            duplicate(r#"{"caf\u00e9":1,"café":2}"#),
            ("café".into(), "".into())
        );
        assert_eq!(
            duplicate(r#"{"\"":1,"\u0022":2}"#),
            ("\"".into(), "".into())
        );
    }

    #[test]
    fn the_same_key_in_different_objects_is_no_duplicate() {
        for text in [
            r#"{"a":{"b":1,"c":2},"b":3,"c":{"a":{"a":1}}}"#,
            r#"[{"a":1},{"a":1}]"#,
            r#"{"x":[{"x":1},{"x":[{"x":2}]}],"y":{"x":{}}}"#,
        ] {
            let tree = read(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(tree, serde_json::from_str::<Value>(text).unwrap());
        }
    }

    #[test]
    fn large_objects_are_checked_too() {
        let keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let object = format!("{{{}}}", keys.join(","));
        read(&object).unwrap();
        let with_dup = format!("{{{},\"k\\u0037\":0}}", keys.join(","));
        assert_eq!(duplicate(&with_dup), ("k7".into(), "".into()));
        let inside = format!("{{\"big\":[{object},{with_dup}]}}");
        assert_eq!(duplicate(&inside), ("k7".into(), "/big/1".into()));
    }

    #[test]
    fn nesting_at_the_recursion_limit_is_too_deep() {
        assert_eq!(DEPTH_LIMIT, 128);
        read(&nested(MAX_DEPTH)).unwrap();
        let objects = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        read(&objects).unwrap();
        for levels in [DEPTH_LIMIT, 200, 10_000] {
            let e = read(&nested(levels)).unwrap_err();
            assert!(matches!(e, JsonError::TooDeep { .. }), "{levels}: {e:?}");
            assert_eq!(e.code(), "too_deep");
            assert!(e.to_string().contains("128 levels"), "{e}");
        }
        let e = read(&format!("{{\"a\":{}}}", nested(200))).unwrap_err();
        assert!(matches!(e, JsonError::TooDeep { line: 1, .. }), "{e:?}");
    }

    #[test]
    fn what_serde_json_refuses_is_refused_alike() {
        for text in [
            "",
            "{\"a\":",
            "[1,]",
            "{} {}",
            r#"{"a":"\ud800"}"#,
            r#"{"a":1e999}"#,
            r#"{"a" 1}"#,
        ] {
            let e = read(text).unwrap_err();
            assert!(matches!(e, JsonError::Malformed(_)), "{text}: {e:?}");
            assert_eq!(e.code(), "malformed_json");
        }
        let bytes = b"{\"n\":[\"e,nul\x97,\"]}";
        assert!(matches!(parse(bytes), Err(JsonError::Malformed(_))));
        assert!(matches!(validate(bytes), Err(JsonError::Malformed(_))));
    }

    #[test]
    fn the_tree_is_the_one_serde_json_builds() {
        for text in [
            "null",
            "true",
            " 0 ",
            "-1",
            "18446744073709551615",
            "-9223372036854775808",
            "1.5e300",
            "0.1",
            r#""caf\u00e9 \ud83d\ude00""#,
            r#"{"b":[1,2.5,{"c":null}],"a":"x","e":{},"f":[]}"#,
        ] {
            assert_eq!(
                read(text).unwrap(),
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn messages_quote_long_keys_shortened() {
        let key = "k".repeat(1000);
        let text = format!("{{\"{key}\":{{\"{key}\":1,\"{key}\":2}}}}");
        let e = read(&text).unwrap_err();
        let JsonError::DuplicateKey { key: got, pointer } = &e else {
            panic!("{e:?}");
        };
        assert_eq!((got, pointer), (&key, &format!("/{key}")));
        assert!(e.to_string().len() < 400, "{e}");
    }
}
