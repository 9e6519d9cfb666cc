//! `SchemaRegistry` on real schema files: validation with every violation's pointer, `$ref`
//! between config schemas, refused references, annotations and their problems.

use std::path::Path;

use ferry_config::{Config, SchemaDef};
use ferry_schema::{SchemaProblem, SchemaRegistry, Violation};
use serde_json::json;

/// A config whose schemas are `(name, file, text)`, written under a temporary directory.
fn config(dir: &Path, schemas: &[(&str, &str, &str)]) -> Config {
    let mut config = Config {
        root: dir.to_path_buf(),
        ..Config::default()
    };
    for (name, file, text) in schemas {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        config.schemas.insert(
            name.to_string(),
            SchemaDef {
                file: file.to_string(),
                description: None,
            },
        );
    }
    config
}

fn problems(schemas: &[(&str, &str, &str)]) -> Vec<SchemaProblem> {
    let dir = tempfile::tempdir().unwrap();
    SchemaRegistry::load(&config(dir.path(), schemas)).unwrap_err()
}

const ORDER: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["order_id", "customer"],
  "properties": {
    "order_id": { "type": "integer" },
    "customer": { "$ref": "customer.json" },
    "lines": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": { "sku": { "type": "string" }, "qty": { "type": "integer", "minimum": 1 } }
      }
    }
  }
}"#;

const CUSTOMER: &str = r##"{
  "$id": "https://schemas.example.com/customer.json",
  "type": "object",
  "required": ["email"],
  "properties": {
    "email": { "type": "string", "format": "email",
               "x-ferry-category": "user.contact.email", "x-ferry-subject": true },
    "name": { "type": "string", "x-ferry-category": "user.name" },
    "iban": { "$ref": "#/$defs/iban" }
  },
  "$defs": {
    "iban": { "type": "string", "x-ferry-category": "user.financial.bank_account" }
  }
}"##;

fn shop(dir: &Path) -> SchemaRegistry {
    let config = config(
        dir,
        &[
            ("order.created", "schemas/order.json", ORDER),
            ("customer", "schemas/customer.json", CUSTOMER),
        ],
    );
    SchemaRegistry::load(&config).unwrap_or_else(|p| panic!("{p:#?}"))
}

#[test]
fn every_violation_is_reported_with_its_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let registry = shop(dir.path());
    assert!(registry.contains("order.created") && !registry.contains("nope"));
    let good = json!({"order_id": 1, "customer": {"email": "a@example.com"}});
    assert_eq!(registry.validate("order.created", &good), Ok(()));

    let bad = json!({
        "order_id": "seven",
        "customer": {"email": "not-an-email"},
        "lines": [{"sku": "a", "qty": 1}, {"sku": 5, "qty": 0}]
    });
    let violations = registry.validate("order.created", &bad).unwrap_err();
    let mut pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
    pointers.sort();
    assert_eq!(
        pointers,
        [
            "/customer/email",
            "/lines/1/qty",
            "/lines/1/sku",
            "/order_id"
        ],
        "{violations:#?}"
    );
    assert!(violations.iter().all(|v| !v.message.is_empty()));

    let root = registry.validate("order.created", &json!([])).unwrap_err();
    assert_eq!(root[0].pointer, "");
}

#[test]
fn unknown_names_are_one_violation_at_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let registry = shop(dir.path());
    assert_eq!(
        registry.validate("nope", &json!({})).unwrap_err(),
        vec![Violation {
            pointer: String::new(),
            message: "there is no schema named `nope`".to_string()
        }]
    );
}

#[test]
fn violation_messages_never_quote_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let registry = shop(dir.path());
    let secret = "jane.doe.private-ssn-123";
    let violations = registry
        .validate(
            "order.created",
            &json!({"order_id": secret, "customer": {"email": secret}}),
        )
        .unwrap_err();
    assert_eq!(violations.len(), 2, "{violations:#?}");
    for v in &violations {
        assert!(!v.message.contains(secret), "{v:?}");
        assert!(v.message.len() <= ferry_schema::MAX_MESSAGE_BYTES);
    }
    let order_id = violations
        .iter()
        .find(|v| v.pointer == "/order_id")
        .unwrap();
    assert_eq!(order_id.message, r#"value is not of type "integer""#);
}

#[test]
fn annotations_follow_refs_into_other_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let registry = shop(dir.path());
    let categories = registry.categories("order.created");
    assert_eq!(
        categories,
        [
            (
                "/customer/email".to_string(),
                "user.contact.email".to_string()
            ),
            (
                "/customer/iban".to_string(),
                "user.financial.bank_account".to_string()
            ),
            ("/customer/name".to_string(), "user.name".to_string()),
        ]
    );
    assert_eq!(
        registry.subject_fields("order.created"),
        ["/customer/email"]
    );
    assert_eq!(registry.subject_fields("customer"), ["/email"]);
    assert!(registry.categories("nope").is_empty());
}

#[test]
fn array_items_are_written_as_a_star() {
    let dir = tempfile::tempdir().unwrap();
    let schema = r#"{"type": "array", "items": {"properties": {"phone": {"x-ferry-category": "user.contact.phone_number"}}}}"#;
    let config = config(dir.path(), &[("contacts", "c.json", schema)]);
    let registry = SchemaRegistry::load(&config).unwrap();
    assert_eq!(
        registry.categories("contacts"),
        [(
            "/*/phone".to_string(),
            "user.contact.phone_number".to_string()
        )]
    );
}

#[test]
fn refs_by_escaped_pointer_and_by_anchor_carry_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let schema = r##"{
      "properties": {
        "a": {"$ref": "#/$defs/with%20space"},
        "b": {"$ref": "#/$defs/sl~1ash"},
        "c": {"$ref": "#named"}
      },
      "$defs": {
        "with space": {"x-ferry-category": "user.name.first"},
        "sl/ash": {"x-ferry-category": "user.name.last"},
        "other": {"$anchor": "named", "x-ferry-subject": true}
      }
    }"##;
    let config = config(dir.path(), &[("s", "s.json", schema)]);
    let registry = SchemaRegistry::load(&config).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(
        registry.categories("s"),
        [
            ("/a".to_string(), "user.name.first".to_string()),
            ("/b".to_string(), "user.name.last".to_string()),
        ]
    );
    assert_eq!(registry.subject_fields("s"), ["/c"]);
}

#[test]
fn refs_by_id_and_by_path_both_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let by_id = r#"{"properties": {"c": {"$ref": "https://schemas.example.com/customer.json"}}}"#;
    let by_root_path = r#"{"properties": {"c": {"$ref": "/schemas/customer.json"}}}"#;
    let config = config(
        dir.path(),
        &[
            ("customer", "schemas/customer.json", CUSTOMER),
            ("a", "a.json", by_id),
            ("b", "b.json", by_root_path),
        ],
    );
    let registry = SchemaRegistry::load(&config).unwrap_or_else(|p| panic!("{p:#?}"));
    for name in ["a", "b"] {
        let err = registry.validate(name, &json!({"c": {}})).unwrap_err();
        assert_eq!(err[0].pointer, "/c", "{name}");
        assert_eq!(registry.subject_fields(name), ["/c/email"], "{name}");
    }
}

#[test]
fn network_and_file_refs_are_refused_at_their_place() {
    let schema = "{\n  \"properties\": {\n    \"a\": { \"$ref\": \"https://example.com/a.json\" },\n    \"b\": { \"$ref\": \"file:///etc/passwd\" }\n  }\n}\n";
    let found = problems(&[("x", "x.json", schema)]);
    assert_eq!(found.len(), 2, "{found:#?}");
    let a = found
        .iter()
        .find(|p| p.message.contains("https://example.com/a.json"))
        .unwrap();
    assert_eq!(a.pointer.as_deref(), Some("/properties/a/$ref"));
    assert_eq!((a.line, a.column), (3, 20));
    assert!(a.message.contains("refused"), "{}", a.message);
    assert!(
        found
            .iter()
            .any(|p| p.message.contains("file:///etc/passwd"))
    );
}

#[test]
fn a_ref_to_an_undeclared_file_is_reported() {
    let found = problems(&[("x", "schemas/x.json", r#"{"$ref": "missing.json"}"#)]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].message.contains("schemas/missing.json"),
        "{}",
        found[0].message
    );
}

#[test]
fn malformed_annotations_are_located() {
    let schema = "{\n  \"properties\": {\n    \"email\": { \"x-ferry-category\": \"User.Email\" },\n    \"id\": { \"x-ferry-subject\": \"yes\" },\n    \"n\": { \"x-ferry-categroy\": \"user.name\" },\n    \"x-ferry-category\": { \"type\": \"string\" }\n  }\n}\n";
    let found = problems(&[("x", "x.json", schema)]);
    let pointers: Vec<_> = found.iter().map(|p| p.pointer.clone().unwrap()).collect();
    assert_eq!(
        pointers,
        [
            "/properties/email/x-ferry-category",
            "/properties/id/x-ferry-subject",
            "/properties/n/x-ferry-categroy"
        ],
        "{found:#?}"
    );
    assert_eq!((found[0].line, found[0].column), (3, 36));
    let d = found[0].to_diagnostic();
    assert_eq!(d.field, "#/properties/email/x-ferry-category");
    assert!(d.message.starts_with("schema `x`: "), "{}", d.message);
}

#[test]
fn file_problems_are_reported_each() {
    let found = problems(&[
        ("bad-json", "a.json", "{\n  \"type\": \"object\",\n}"),
        ("bad-schema", "b.json", r#"{"type": "strin"}"#),
        (
            "old-draft",
            "c.json",
            r#"{"$schema": "http://json-schema.org/draft-07/schema#"}"#,
        ),
        ("not-object", "d.json", "42"),
        ("bad-pattern", "e.json", r#"{"pattern": "(?<=a)b"}"#),
    ]);
    let by = |name: &str| {
        found
            .iter()
            .find(|p| p.schema == name)
            .unwrap_or_else(|| panic!("no problem for {name}: {found:#?}"))
    };
    assert_eq!((by("bad-json").line, by("bad-json").column), (3, 1));
    assert!(by("bad-json").message.contains("not valid JSON"));
    assert_eq!(by("bad-schema").pointer.as_deref(), Some("/type"));
    assert!(by("old-draft").message.contains("2020-12"));
    assert!(by("not-object").message.contains("JSON object"));
    assert!(by("bad-pattern").message.contains("invalid JSON Schema"));
}

#[test]
fn files_outside_the_config_or_too_large_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("config");
    std::fs::create_dir_all(&root).unwrap();
    let big = format!(
        "{{\"description\": \"{}\"}}",
        "x".repeat(ferry_schema::MAX_SCHEMA_BYTES as usize)
    );
    let mut config = config(&root, &[("big", "big.json", &big)]);
    config.schemas.insert(
        "outside".to_string(),
        SchemaDef {
            file: "../x.json".to_string(),
            description: None,
        },
    );
    let found = SchemaRegistry::load(&config).unwrap_err();
    assert!(
        found
            .iter()
            .any(|p| p.schema == "big" && p.message.contains("larger")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.schema == "outside" && p.message.contains("leaves")),
        "{found:#?}"
    );
}

#[test]
fn leaf_fields_are_the_described_fields_with_nothing_under_them() {
    let dir = tempfile::tempdir().unwrap();
    let registry = shop(dir.path());
    assert_eq!(
        registry.leaf_fields("order.created"),
        [
            "/customer/email",
            "/customer/iban",
            "/customer/name",
            "/lines/*/qty",
            "/lines/*/sku",
            "/order_id"
        ]
    );
    let config = config(dir.path(), &[("any", "any.json", r#"{"type": "object"}"#)]);
    let registry = SchemaRegistry::load(&config).unwrap();
    assert_eq!(registry.leaf_fields("any"), [""]);
    assert!(registry.leaf_fields("nope").is_empty());
}

#[test]
fn a_category_check_refuses_at_the_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let schema = "{\n  \"properties\": {\n    \"email\": { \"x-ferry-category\": \"user.contact.emial\" },\n    \"name\": { \"x-ferry-category\": \"user.name\" }\n  }\n}\n";
    let config = config(dir.path(), &[("x", "x.json", schema)]);
    let known = |c: &str| {
        if c == "user.name" {
            Ok(())
        } else {
            Err(format!("`{c}` is not a known data category"))
        }
    };
    let found = SchemaRegistry::load_checked(&config, &known).unwrap_err();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].pointer.as_deref(),
        Some("/properties/email/x-ferry-category")
    );
    assert_eq!(found[0].line, 3);
    assert!(found[0].message.contains("user.contact.emial"));
    assert!(
        SchemaRegistry::load(&config).is_ok(),
        "the lexical check alone passes"
    );
}
