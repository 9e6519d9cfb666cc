//! Which fields of an event carry which data categories.
//!
//! A schema's annotations give instance pointers (`/customer/email`, `/*/phone` where `*`
//! is any array item or any property) with a category, and the pointers of the subject
//! identity fields. [`FieldClasses`] applies them to a JSON value: it finds the classified
//! values present, lets a caller rewrite or remove each one, keeps only the classified
//! ones, and reads the subject's identifier. [`Classifier`] knows which schema's
//! annotations apply to an event of a flow.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferry_config::{Config, Flow, Step};
use ferry_schema::SchemaRegistry;
use serde_json::Value;

/// One segment of a classified field's pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// An object property (or an array index written as digits).
    Key(String),
    /// `*`: every array item, or every property.
    Any,
}

/// A classified field: where it is and its category.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    pointer: String,
    path: Vec<Segment>,
    category: String,
}

/// What a visitor does with a classified value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Keep the (possibly rewritten) value where it is.
    Yes,
    /// Remove it: the property from its object, the item from its array (the whole value
    /// becomes `null` when it is the event itself).
    Remove,
}

/// The classified fields and subject identity fields of one schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldClasses {
    /// Deepest first, so a field inside a classified object is visited before the object.
    fields: Vec<Field>,
    subjects: Vec<Vec<Segment>>,
}

impl FieldClasses {
    /// From a schema's annotations: (instance pointer, category) pairs and the pointers of
    /// its subject identity fields.
    pub fn new(categories: &[(String, String)], subject_fields: &[String]) -> FieldClasses {
        let mut fields: Vec<Field> = categories
            .iter()
            .map(|(pointer, category)| Field {
                pointer: pointer.clone(),
                path: parse(pointer),
                category: category.clone(),
            })
            .collect();
        fields.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then_with(|| a.pointer.cmp(&b.pointer))
        });
        FieldClasses {
            fields,
            subjects: subject_fields.iter().map(|p| parse(p)).collect(),
        }
    }

    /// Whether the schema classifies nothing and names no subject field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.subjects.is_empty()
    }

    /// Whether the schema classifies at least one field (it may only name subject fields).
    pub fn has_categories(&self) -> bool {
        !self.fields.is_empty()
    }

    /// (pointer pattern, category) of every classified field, deepest first.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|f| (f.pointer.as_str(), f.category.as_str()))
    }

    /// The categories of the classified values present (not `null`) in `value`.
    pub fn categories_present(&self, value: &Value) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for field in &self.fields {
            if !out.contains(&field.category) && present(value, &field.path) {
                out.insert(field.category.clone());
            }
        }
        out
    }

    /// [`FieldClasses::categories_present`] read from the event's JSON text, without building
    /// the event (see [`crate::presence`]); a property given twice counts if any of its
    /// values is there. Not JSON: an error.
    pub fn categories_present_in_text(
        &self,
        json: &[u8],
    ) -> Result<BTreeSet<String>, serde_json::Error> {
        let paths: Vec<&[Segment]> = self.fields.iter().map(|f| f.path.as_slice()).collect();
        let found = crate::presence::present_in_text(json, &paths)?;
        Ok(self
            .fields
            .iter()
            .zip(found)
            .filter(|(_, here)| *here)
            .map(|(f, _)| f.category.clone())
            .collect())
    }

    /// The data subject's identifier: the first subject field present as a string or a
    /// number, as text.
    pub fn subject(&self, value: &Value) -> Option<String> {
        self.subjects.iter().find_map(|path| {
            let mut found = None;
            find(value, path, &mut |v| {
                if found.is_none() {
                    found = match v {
                        Value::String(s) if !s.is_empty() => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    };
                }
            });
            found
        })
    }

    /// Call `visit(category, value)` on every classified value present (not `null`) in
    /// `value`, deepest first, and remove those it answers [`Keep::Remove`] for.
    pub fn visit_mut(&self, value: &mut Value, visit: &mut dyn FnMut(&str, &mut Value) -> Keep) {
        for field in &self.fields {
            if field.path.is_empty() {
                if !value.is_null() && visit(&field.category, value) == Keep::Remove {
                    *value = Value::Null;
                }
                continue;
            }
            apply(value, &field.path, &mut |v| {
                if v.is_null() {
                    Keep::Yes
                } else {
                    visit(&field.category, v)
                }
            });
        }
    }

    /// Call `visit(category, pointer, value)` on every classified value present (not
    /// `null`) in `value`, deepest first, with the value's own JSON pointer (`/lines/0/iban`
    /// for the pattern `/lines/*/iban`). The visitor rewrites values in place; none is
    /// removed, so every pointer stays true of the result.
    pub fn visit_at_mut(&self, value: &mut Value, visit: &mut dyn FnMut(&str, &str, &mut Value)) {
        let mut pointer = String::new();
        for field in &self.fields {
            pointer.clear();
            apply_at(value, &field.path, &mut pointer, &mut |at, v| {
                if !v.is_null() {
                    visit(&field.category, at, v);
                }
            });
        }
    }

    /// Remove from `value` everything that is neither a classified field nor on the way to
    /// one; answer how many values were removed. (A classified field keeps all it holds.)
    pub fn retain_classified(&self, value: &mut Value) -> usize {
        let paths: Vec<&[Segment]> = self.fields.iter().map(|f| f.path.as_slice()).collect();
        if paths.iter().any(|p| p.is_empty()) {
            return 0;
        }
        let mut removed = 0;
        retain(value, &paths, 0, &mut removed);
        if matches!(value, Value::Object(_) | Value::Array(_)) {
            removed
        } else {
            *value = Value::Null;
            removed + 1
        }
    }
}

/// A pointer pattern as segments (`~1` and `~0` unescaped).
fn parse(pointer: &str) -> Vec<Segment> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| match s {
            "*" => Segment::Any,
            s => Segment::Key(s.replace("~1", "/").replace("~0", "~")),
        })
        .collect()
}

pub(crate) fn segment_matches(segment: &Segment, key: &str) -> bool {
    match segment {
        Segment::Any => true,
        Segment::Key(k) => k == key,
    }
}

fn present(value: &Value, path: &[Segment]) -> bool {
    let mut any = false;
    find(value, path, &mut |v| any |= !v.is_null());
    any
}

/// Call `f` on every value at `path` in `value`.
fn find(value: &Value, path: &[Segment], f: &mut dyn FnMut(&Value)) {
    let Some((head, rest)) = path.split_first() else {
        f(value);
        return;
    };
    match value {
        Value::Object(map) => match head {
            Segment::Key(k) => {
                if let Some(v) = map.get(k) {
                    find(v, rest, f);
                }
            }
            Segment::Any => map.values().for_each(|v| find(v, rest, f)),
        },
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                if segment_matches(head, &i.to_string()) {
                    find(v, rest, f);
                }
            }
        }
        _ => {}
    }
}

/// Call `f` on every value at the non-empty `path` in `value`, removing those it answers
/// [`Keep::Remove`] for.
fn apply(value: &mut Value, path: &[Segment], f: &mut dyn FnMut(&mut Value) -> Keep) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = match head {
                Segment::Key(k) => map.contains_key(k).then(|| k.clone()).into_iter().collect(),
                Segment::Any => map.keys().cloned().collect(),
            };
            for key in keys {
                let Some(child) = map.get_mut(&key) else {
                    continue;
                };
                if rest.is_empty() {
                    if f(child) == Keep::Remove {
                        map.remove(&key);
                    }
                } else {
                    apply(child, rest, f);
                }
            }
        }
        Value::Array(items) => {
            let mut index = 0;
            items.retain_mut(|child| {
                let i = index;
                index += 1;
                if !segment_matches(head, &i.to_string()) {
                    return true;
                }
                if rest.is_empty() {
                    f(child) == Keep::Yes
                } else {
                    apply(child, rest, f);
                    true
                }
            });
        }
        _ => {}
    }
}

/// Call `f(pointer, value)` on every value at `path` in `value`; `pointer` holds the JSON
/// pointer of `value` on entry and of each visited value during its call.
fn apply_at(
    value: &mut Value,
    path: &[Segment],
    pointer: &mut String,
    f: &mut dyn FnMut(&str, &mut Value),
) {
    let Some((head, rest)) = path.split_first() else {
        f(pointer, value);
        return;
    };
    let len = pointer.len();
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if segment_matches(head, key) {
                    push_segment(pointer, key);
                    apply_at(child, rest, pointer, f);
                    pointer.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                let key = i.to_string();
                if segment_matches(head, &key) {
                    push_segment(pointer, &key);
                    apply_at(child, rest, pointer, f);
                    pointer.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// Append `/key` to a JSON pointer, `~` and `/` escaped.
pub(crate) fn push_segment(pointer: &mut String, key: &str) {
    pointer.push('/');
    if key.contains(['~', '/']) {
        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
    } else {
        pointer.push_str(key);
    }
}

/// Keep in `value` (at `depth` of every path in `paths`) only what leads to or lies in a
/// classified field.
fn retain(value: &mut Value, paths: &[&[Segment]], depth: usize, removed: &mut usize) {
    let mut decide = |key: &str, child: &mut Value| -> bool {
        let next: Vec<&[Segment]> = paths
            .iter()
            .copied()
            .filter(|p| p.len() > depth && segment_matches(&p[depth], key))
            .collect();
        if next.is_empty() {
            *removed += 1;
            return false;
        }
        if next.iter().any(|p| p.len() == depth + 1) {
            return true;
        }
        if matches!(child, Value::Object(_) | Value::Array(_)) {
            retain(child, &next, depth + 1, removed);
            true
        } else {
            *removed += 1;
            false
        }
    };
    match value {
        Value::Object(map) => map.retain(|k, v| decide(k, v)),
        Value::Array(items) => {
            let mut index = 0;
            items.retain_mut(|v| {
                let i = index;
                index += 1;
                decide(&i.to_string(), v)
            });
        }
        _ => {}
    }
}

/// Which schema's annotations apply to an event: the schema a flow's `validate` step names,
/// else the schema named like the event's type.
#[derive(Debug, Default)]
pub struct Classifier {
    /// Flow → the schema its `validate` step names.
    flow_schema: BTreeMap<String, String>,
    /// Schema name → its classified fields (schemas that classify nothing are left out).
    by_schema: BTreeMap<String, Arc<FieldClasses>>,
}

/// The schema the first `validate` step of `flow` names, if one does.
fn validate_schema(flow: &Flow) -> Option<&str> {
    flow.steps.iter().find_map(|step| match step {
        Step::Validate(v) => v.schema.as_deref(),
        _ => None,
    })
}

/// The schemas whose fields an event of `flow` may carry, for checks made before any event
/// exists: the schema its `validate` step names; without one, failing closed, every schema
/// of the config (an event's type may name any of them). Sorted.
pub fn schemas_of_flow<'a>(
    config: &'a Config,
    registry: &'a SchemaRegistry,
    flow: &str,
) -> Vec<&'a str> {
    match config.flows.get(flow).and_then(validate_schema) {
        Some(schema) => vec![schema],
        None => registry.names().collect(),
    }
}

impl Classifier {
    /// The classifier of `config`'s flows over `registry`'s schemas.
    pub fn new(config: &Config, registry: &SchemaRegistry) -> Classifier {
        let flow_schema = config
            .flows
            .iter()
            .filter_map(|(name, flow)| validate_schema(flow).map(|s| (name.clone(), s.to_owned())))
            .collect();
        let by_schema = registry
            .names()
            .filter_map(|name| {
                let classes =
                    FieldClasses::new(&registry.categories(name), &registry.subject_fields(name));
                (!classes.is_empty()).then(|| (name.to_owned(), Arc::new(classes)))
            })
            .collect();
        Classifier {
            flow_schema,
            by_schema,
        }
    }

    /// The name of the schema whose annotations apply to an event of `flow` with type
    /// `event_type` (whether or not it classifies anything).
    pub fn schema_name<'a>(&'a self, flow: &str, event_type: Option<&'a str>) -> Option<&'a str> {
        self.flow_schema
            .get(flow)
            .map(String::as_str)
            .or(event_type)
    }

    /// The classified fields of an event of `flow` with type `event_type`, or `None` when its
    /// schema classifies nothing (or it has none).
    pub fn classes(&self, flow: &str, event_type: Option<&str>) -> Option<&Arc<FieldClasses>> {
        self.schema_name(flow, event_type)
            .and_then(|name| self.by_schema.get(name))
    }

    /// Whether any schema classifies a field or names a subject field.
    pub fn is_empty(&self) -> bool {
        self.by_schema.is_empty()
    }

    /// Whether an event of `flow` may carry classified fields: the schema its `validate`
    /// step names classifies a field; without one, any schema of the config does (an
    /// event's type may name any of them).
    pub fn flow_is_classified(&self, flow: &str) -> bool {
        match self.flow_schema.get(flow) {
            Some(schema) => self
                .by_schema
                .get(schema)
                .is_some_and(|c| c.has_categories()),
            None => self.by_schema.values().any(|c| c.has_categories()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classes() -> FieldClasses {
        FieldClasses::new(
            &[
                ("/customer".into(), "user.contact".into()),
                ("/customer/email".into(), "user.contact.email".into()),
                ("/lines/*/iban".into(), "user.financial.bank_account".into()),
                ("/sl~1ash".into(), "user.name".into()),
            ],
            &["/customer/email".into(), "/id".into()],
        )
    }

    #[test]
    fn finds_categories_present_and_the_subject() {
        let c = classes();
        let event =
            json!({"customer": {"email": "a@x.io"}, "lines": [{"iban": "DE1"}, {}], "n": 1});
        assert_eq!(
            c.categories_present(&event).into_iter().collect::<Vec<_>>(),
            [
                "user.contact",
                "user.contact.email",
                "user.financial.bank_account"
            ]
        );
        assert_eq!(c.subject(&event).as_deref(), Some("a@x.io"));
        assert_eq!(c.subject(&json!({"id": 42})).as_deref(), Some("42"));
        assert_eq!(c.subject(&json!({"customer": {"email": null}})), None);
        assert!(c.categories_present(&json!({"customer": null})).is_empty());
    }

    #[test]
    fn reading_the_text_finds_what_reading_the_value_finds() {
        let c = classes();
        let wildcard = FieldClasses::new(
            &[
                ("/*/phone".into(), "user.contact.phone_number".into()),
                ("".into(), "user.content".into()),
            ],
            &[],
        );
        let events = [
            r#"{"customer": {"email": "a@x.io"}, "lines": [{"iban": "DE1"}, {}], "n": 1}"#,
            r#"{"customer": null, "lines": [{"iban": null}], "sl/ash": "Bob"}"#,
            r#"{"customer": {"email": null, "x": [1, {"y": "z"}]}, "lines": {"0": {"iban": 1}}}"#,
            r#"{"customer": {"em\"ail": 1, "email": true}, "sl/ash": 0}"#,
            r#" [ {"phone": "1"}, {"phone": null} ] "#,
            r#"{"a": {"phone": 3}, "b": "phone"}"#,
            r#"{"lines": [[{"iban": "x"}], {"iban": "y"}]}"#,
            "null",
            "\"text\"",
            "{}",
        ];
        for text in events {
            let value: Value = serde_json::from_str(text).unwrap();
            for classes in [&c, &wildcard] {
                assert_eq!(
                    classes.categories_present_in_text(text.as_bytes()).unwrap(),
                    classes.categories_present(&value),
                    "{text}"
                );
            }
        }
        for broken in [
            r#"{"customer": {"email": "a"}"#,
            r#"{"n": 1} x"#,
            "",
            r#"{"a": tru}"#,
        ] {
            assert!(
                c.categories_present_in_text(broken.as_bytes()).is_err(),
                "{broken}"
            );
        }
    }

    #[test]
    fn visits_deepest_first_and_removes_what_the_visitor_drops() {
        let c = classes();
        let mut event = json!({
            "customer": {"email": "a@x.io", "name": "Ada"},
            "lines": [{"iban": "DE1", "qty": 2}, {"iban": "DE2"}],
            "sl/ash": "Bob",
            "total": 10
        });
        let mut seen = Vec::new();
        c.visit_mut(&mut event, &mut |category, v| {
            seen.push(category.to_owned());
            match category {
                "user.contact.email" => {
                    *v = json!("hashed");
                    Keep::Yes
                }
                "user.financial.bank_account" => Keep::Remove,
                "user.name" => Keep::Remove,
                _ => Keep::Yes,
            }
        });
        let pos = |c: &str| seen.iter().position(|s| s == c).unwrap();
        assert!(pos("user.contact.email") < pos("user.contact"), "{seen:?}");
        assert_eq!(
            event,
            json!({"customer": {"email": "hashed", "name": "Ada"}, "lines": [{"qty": 2}, {}], "total": 10})
        );
    }

    #[test]
    fn visit_at_gives_each_value_its_own_pointer() {
        let c = classes();
        let mut event = json!({
            "customer": {"email": "a@x.io"},
            "lines": [{"iban": "DE1"}, {"qty": 1}, {"iban": "DE3"}],
            "sl/ash": "Bob"
        });
        let mut seen = Vec::new();
        c.visit_at_mut(&mut event, &mut |category, pointer, v| {
            seen.push((category.to_owned(), pointer.to_owned()));
            assert_eq!(event_at(pointer), v.clone());
        });
        fn event_at(pointer: &str) -> Value {
            json!({
                "customer": {"email": "a@x.io"},
                "lines": [{"iban": "DE1"}, {"qty": 1}, {"iban": "DE3"}],
                "sl/ash": "Bob"
            })
            .pointer(pointer)
            .cloned()
            .unwrap()
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                ("user.contact".to_owned(), "/customer".to_owned()),
                (
                    "user.contact.email".to_owned(),
                    "/customer/email".to_owned()
                ),
                (
                    "user.financial.bank_account".to_owned(),
                    "/lines/0/iban".to_owned()
                ),
                (
                    "user.financial.bank_account".to_owned(),
                    "/lines/2/iban".to_owned()
                ),
                ("user.name".to_owned(), "/sl~1ash".to_owned()),
            ]
        );
    }

    #[test]
    fn retain_classified_keeps_only_classified_fields() {
        let c = FieldClasses::new(
            &[
                ("/a/b".into(), "user.name".into()),
                ("/l/*/x".into(), "user.name".into()),
            ],
            &[],
        );
        let mut event = json!({"a": {"b": {"deep": 1}, "c": 2}, "l": [{"x": 1, "y": 2}], "z": 3});
        let removed = c.retain_classified(&mut event);
        assert_eq!(event, json!({"a": {"b": {"deep": 1}}, "l": [{"x": 1}]}));
        assert_eq!(removed, 3);
    }
}
