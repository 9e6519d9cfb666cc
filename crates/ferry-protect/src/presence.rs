//! Which classified fields an event holds, read from its JSON text without building it.
//!
//! A destination allowed every category of an event receives the event as stored; what the
//! audit trail still needs of it is which categories it carried. Finding them this way
//! skips building the event as a `serde_json::Value` and writing it back: only the
//! classified fields' objects and arrays are looked into, and every other value is
//! skipped over (still checked as JSON).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::classify::{Segment, segment_matches};

/// For each of `paths` (a field's segments), whether a value other than `null` lies at it
/// in `json`. A property given twice counts if any of its values is there (what the text
/// carries, which is what a destination receiving the text would get). Not JSON: an error.
pub(crate) fn present_in_text(
    json: &[u8],
    paths: &[&[Segment]],
) -> Result<Vec<bool>, serde_json::Error> {
    let text = std::str::from_utf8(json).map_err(serde::de::Error::custom)?;
    let mut found = vec![false; paths.len()];
    let all: Vec<(usize, &[Segment])> = paths.iter().copied().enumerate().collect();
    scan(text.trim_ascii(), &all, &mut found)?;
    Ok(found)
}

/// Mark in `found` the `paths` (index, segments left) that reach a non-`null` value from
/// `text`, one JSON value (checked as such while it is read).
fn scan(
    text: &str,
    paths: &[(usize, &[Segment])],
    found: &mut [bool],
) -> Result<(), serde_json::Error> {
    let mut deeper = Vec::with_capacity(paths.len());
    for &(i, path) in paths {
        if found[i] {
            continue;
        }
        if path.is_empty() {
            found[i] = text != "null";
        } else {
            deeper.push((i, path));
        }
    }
    let mut follow = |key: &str, child: &RawValue| {
        let next: Vec<(usize, &[Segment])> = deeper
            .iter()
            .filter(|(_, path)| segment_matches(&path[0], key))
            .map(|&(i, path)| (i, &path[1..]))
            .collect();
        if next.is_empty() {
            Ok(())
        } else {
            scan(child.get(), &next, found)
        }
    };
    // Each member and item is read as text (checked, not built); a scalar is checked.
    match text.as_bytes().first() {
        Some(b'{') => {
            let Members(members) = serde_json::from_str(text)?;
            for (key, child) in members {
                follow(&key, child)?;
            }
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            for (index, child) in items.into_iter().enumerate() {
                follow(&index.to_string(), child)?;
            }
        }
        _ => {
            serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        }
    }
    Ok(())
}

/// An object's members in order, their values left as text.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(MemberName(name)) = map.next_key()? {
                    members.push((name, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A member's name: borrowed from the text unless it has escapes.
struct MemberName<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = MemberName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}
