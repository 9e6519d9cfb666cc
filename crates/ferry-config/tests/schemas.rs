//! Schemas and the steps and contracts naming them: undeclared names and unusable files are
//! errors located at the YAML field.

mod common;

use common::{SYSTEMS, dir, error_at, errors, load};
use ferry_config::Severity;

fn flows(steps: &str, destination_extra: &str) -> String {
    format!(
        "flows:
  orders:
    source:
      webhook:
        system: billing
        signature: {{ none: {{}} }}
        event_type: /type
    steps:
{steps}    destinations:
      crm:
        system: crm
        http: {{ url: \"http://hook.test/x\" }}
{destination_extra}"
    )
}

const SCHEMAS: &str = "schemas:\n  order.created: { file: schemas/order.json }\n  missing: { file: schemas/nope.json }\n  escape: { file: ../outside.json }\n";

#[test]
fn undeclared_schemas_and_bad_files_are_located() {
    let flows = flows(
        "      - validate: { schema: order.creatd }\n      - validate: {}\n",
        "        contract: { schema: customer }\n",
    );
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("schemas.yaml", SCHEMAS),
        ("schemas/order.json", "{}"),
        ("flows.yaml", &flows),
    ]);
    let errs = errors(load(tmp.path()));
    assert_eq!(errs.len(), 4, "{errs:#?}");

    let step = error_at(&errs, "flows.orders.steps.0.validate.schema");
    assert_eq!(step.file, tmp.path().join("flows.yaml"));
    assert_eq!((step.line, step.column), (9, 29));
    assert!(
        step.message.contains("`order.creatd` is not declared"),
        "{}",
        step.message
    );
    assert_eq!(step.help.as_deref(), Some("did you mean `order.created`?"));

    let contract = error_at(&errs, "flows.orders.destinations.crm.contract.schema");
    assert!(
        contract.message.contains("`customer`"),
        "{}",
        contract.message
    );

    let missing = error_at(&errs, "schemas.missing.file");
    assert_eq!(missing.file, tmp.path().join("schemas.yaml"));
    assert!(
        missing.message.contains("cannot read"),
        "{}",
        missing.message
    );
    let escape = error_at(&errs, "schemas.escape.file");
    assert!(
        escape.message.contains("leaves the config directory"),
        "{}",
        escape.message
    );
}

#[test]
fn validate_by_type_without_a_type_pointer_is_a_warning() {
    let flows = flows("      - validate: { unknown_type: reject }\n", "")
        .replace("        event_type: /type\n", "");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flows)]);
    let loaded = load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let w = loaded
        .warnings
        .iter()
        .find(|w| w.field == "flows.orders.steps.0.validate")
        .unwrap_or_else(|| panic!("{:#?}", loaded.warnings));
    assert_eq!(w.severity, Severity::Warning);
    assert!(w.message.contains("CloudEvents"), "{}", w.message);
}

#[test]
fn cloudevents_destinations_batch_as_bare_arrays() {
    let cloudevents = |batch: &str| {
        flows("      []\n", batch).replace(
            "http: { url: \"http://hook.test/x\" }",
            "http: { url: \"http://hook.test/x\", format: cloudevents }",
        )
    };
    // Batched mode: allowed.
    let flows_ok = cloudevents("        batch: { max_items: 10 }\n");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flows_ok)]);
    load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    // Wrapped: a CloudEvents batch is an array by spec.
    let flows_wrapped = cloudevents("        batch: { max_items: 10, wrap: records }\n");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flows_wrapped)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.orders.destinations.crm.batch.wrap");
    assert!(e.message.contains("cannot be wrapped"), "{}", e.message);
}
