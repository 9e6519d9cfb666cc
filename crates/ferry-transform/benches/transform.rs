//! Per-event cost of the transforms on a 1 KB event (issue 5): a destination `map` (from a
//! JSON value, from bytes as the lane runs it, and the program alone), the conditions of a
//! `route` step, a `validate` step (ferry-schema), a URL template, the conversion into VRL's
//! representation, and validate + route + map together as one event meets them (parse,
//! validate, route at ingress; map at delivery).
//!
//! `cargo bench -p ferry-transform --bench transform -- --measurement-time 3 --warm-up-time 1`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_config::{Config, SchemaDef};
use ferry_schema::SchemaRegistry;
use ferry_transform::{Applied, Event, Outcome, Program, Returns, Template, TemplateContext};
use serde_json::Value;

/// A 1 KB order event: ids, a type, a customer, line items, padding in a note.
fn event() -> Vec<u8> {
    let mut items = String::new();
    let mut i = 0;
    loop {
        let item = format!(
            r#"{{"sku":"SKU-{i:05}","qty":{},"price":"{}.{:02}"}}"#,
            i % 7 + 1,
            i * 3 + 10,
            i % 100
        );
        if items.len() + item.len() + 1 > 640 {
            break;
        }
        if !items.is_empty() {
            items.push(',');
        }
        items.push_str(&item);
        i += 1;
    }
    let mut body = format!(
        r#"{{"id":"ord_4242","type":"order.created","created":1700000000,"total":"1234.50","currency":"eur","customer":{{"id":"cus_77","email":"ada@example.com","name":"Ada Lovelace","tier":"gold"}},"items":[{items}],"note":""#
    );
    let tail = r#""}"#;
    let pad = 1024 - body.len() - tail.len();
    body.push_str(&"n".repeat(pad));
    body.push_str(tail);
    body.into_bytes()
}

/// A typical CRM mapping: renames, conversions, a derived field, a dropped field.
const MAP: &str = r#"
.order_id = del(.id)
.customer_id = del(.customer.id)
.email = downcase(string!(.customer.email))
.name = upcase(string!(.customer.name))
.total_cents = to_int(to_float!(.total) * 100)
.item_count = length!(.items)
.currency = upcase!(.currency)
del(.note)
del(.customer)
"#;

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "type", "customer", "items"],
  "properties": {
    "id": {"type": "string"},
    "type": {"type": "string"},
    "total": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"},
    "customer": {
      "type": "object",
      "required": ["id", "email"],
      "properties": {"id": {"type": "string"}, "email": {"type": "string", "format": "email"}}
    },
    "items": {
      "type": "array",
      "items": {
        "type": "object",
        "required": ["sku", "qty"],
        "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}
      }
    }
  }
}"#;

fn registry(dir: &std::path::Path) -> SchemaRegistry {
    std::fs::write(dir.join("order.json"), SCHEMA).expect("schema written");
    let config = Config {
        root: dir.to_path_buf(),
        schemas: BTreeMap::from([(
            "order.created".to_string(),
            SchemaDef {
                file: "order.json".to_string(),
                description: None,
            },
        )]),
        ..Config::default()
    };
    SchemaRegistry::load(&config).expect("the schema compiles")
}

fn transforms(c: &mut Criterion) {
    let body = event();
    assert_eq!(body.len(), 1024);
    let value: Value = serde_json::from_slice(&body).expect("the event is JSON");
    let map = Program::compile(MAP).expect("map compiles");
    let routes = [
        Program::compile_returning(r#".customer.tier == "gold""#, Returns::Boolean)
            .expect("route compiles"),
        Program::compile_returning("(to_float(.total) ?? 0.0) > 1000.0", Returns::Boolean)
            .expect("route compiles"),
    ];
    let url = Template::compile_url("https://crm.example.com/customers/{{ event.customer_id }}")
        .expect("template compiles");
    let dir = tempfile::tempdir().expect("temp dir");
    let schemas = registry(dir.path());
    assert_eq!(schemas.validate("order.created", &value), Ok(()));
    let mut parsed = Event::new(value.clone());
    assert!(routes[0].condition(&mut parsed).expect("condition runs"));
    assert!(routes[1].condition(&mut parsed).expect("condition runs"));
    match map.run(value.clone()).expect("map runs") {
        Outcome::Done { event, .. } => assert_eq!(event["total_cents"], 123450),
        Outcome::Aborted { .. } => panic!("map aborted"),
    }

    let mut group = c.benchmark_group("transform_1kb");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("map", |b| {
        b.iter(|| black_box(map.run(black_box(value.clone())).expect("map runs")))
    });
    // The delivery-time path: JSON bytes straight into VRL, mapped, straight back to bytes.
    group.bench_function("map_bytes", |b| {
        b.iter(|| {
            let event = Event::from_slice(black_box(&body)).expect("JSON");
            let Applied::Done(out) = map.apply(event).expect("map runs") else {
                panic!("map aborted")
            };
            black_box(out.to_json_vec().expect("mapped JSON"))
        })
    });
    // The program alone, on a copy of an event already in VRL's representation.
    let converted = Event::new(value.clone());
    group.bench_function("map_run_only", |b| {
        b.iter(|| black_box(map.apply(black_box(converted.clone())).expect("map runs")))
    });
    // What the others spend on moving the event into VRL's representation.
    group.bench_function("convert_to_vrl", |b| {
        b.iter(|| black_box(Event::new(black_box(value.clone()))))
    });
    group.bench_function("route_2_conditions", |b| {
        b.iter(|| {
            let mut event = Event::new(black_box(value.clone()));
            for r in &routes {
                black_box(r.condition(&mut event).expect("condition runs"));
            }
        })
    });
    group.bench_function("validate", |b| {
        b.iter(|| black_box(schemas.validate("order.created", black_box(&value))))
    });
    group.bench_function("url_template", |b| {
        let mapped = serde_json::json!({"customer_id": "cus_77"});
        b.iter(|| {
            black_box(
                url.render(&TemplateContext {
                    event: black_box(&mapped),
                    event_id: "evt_1",
                    event_type: Some("order.created"),
                    flow: "orders",
                    tenant: ferry_config::tenants::tenant_of("orders"),
                    destination: "crm",
                    delivery_id: "dlv_1",
                })
                .expect("renders"),
            )
        })
    });
    // What one event costs end to end: parse the body, validate and route it (ingress),
    // then parse the stored event again, map it and write the mapped JSON (delivery).
    group.bench_function("validate_route_map", |b| {
        b.iter(|| {
            let parsed: Value = serde_json::from_slice(black_box(&body)).expect("JSON");
            schemas
                .validate("order.created", &parsed)
                .expect("valid event");
            let mut event = Event::new(parsed);
            for r in &routes {
                black_box(r.condition(&mut event).expect("condition runs"));
            }
            let stored = Event::from_slice(black_box(&body)).expect("JSON");
            let Applied::Done(out) = map.apply(stored).expect("map runs") else {
                panic!("map aborted")
            };
            black_box(out.to_json_vec().expect("mapped JSON"))
        })
    });
    group.finish();
}

criterion_group!(benches, transforms);
criterion_main!(benches);
