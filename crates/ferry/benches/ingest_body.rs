//! The ingress body checks (`ferry::ingress::inspect`, the function the `ingest_body` fuzz
//! target exercises) on a 1 KB JSON event: validate only (event id from the `webhook-id`
//! header, nothing read from the body), and with a JSON tree (event id and type read by
//! JSON pointer).
//!
//! `cargo bench -p ferry --bench ingest_body -- --measurement-time 3 --warm-up-time 1`

use std::hint::black_box;

use axum::http::{HeaderMap, HeaderValue};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry::assembly::EventIdRule;
use ferry::ingress::inspect;

/// A 1 KB event shaped like a typical webhook: ids, a type, nested data, an array.
fn event() -> Vec<u8> {
    let mut items = String::new();
    let mut i = 0;
    loop {
        let item = format!(
            r#"{{"sku":"SKU-{i:05}","qty":{},"price":{}.{:02}}}"#,
            i % 7 + 1,
            i * 3 + 10,
            i % 100
        );
        // Leave room for the envelope below (about 260 bytes).
        if items.len() + item.len() + 1 > 760 {
            break;
        }
        if !items.is_empty() {
            items.push(',');
        }
        items.push_str(&item);
        i += 1;
    }
    let mut body = format!(
        r#"{{"id":"evt_01J9Z3K6Q8W2","type":"order.created","created":1700000000,"livemode":false,"data":{{"object":{{"id":"ord_4242","customer":"cus_77","currency":"eur","items":[{items}],"note":""#
    );
    let tail = r#""}}}"#;
    let pad = 1024 - body.len() - tail.len();
    body.push_str(&"n".repeat(pad));
    body.push_str(tail);
    body.into_bytes()
}

fn ingest_body(c: &mut Criterion) {
    let body = event();
    assert_eq!(body.len(), 1024);
    serde_json::from_slice::<serde_json::Value>(&body).expect("the event is JSON");

    let mut with_id = HeaderMap::new();
    with_id.insert("webhook-id", HeaderValue::from_static("msg_01J9Z3K6Q8W2"));
    let no_headers = HeaderMap::new();
    let pointer_id = EventIdRule::JsonPointer("/id".into());

    let mut group = c.benchmark_group("ingest_body_1kb");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("validate_only", |b| {
        b.iter(|| {
            inspect(
                black_box(&body),
                &EventIdRule::Default,
                black_box(&with_id),
                None,
            )
        })
    });
    group.bench_function("tree_id_and_type", |b| {
        b.iter(|| {
            inspect(
                black_box(&body),
                &pointer_id,
                black_box(&no_headers),
                Some("/type"),
            )
        })
    });
    group.finish();

    let got = inspect(&body, &pointer_id, &no_headers, Some("/type")).expect("accepted");
    assert_eq!(got.dedupe_key.as_deref(), Some("evt_01J9Z3K6Q8W2"));
    assert_eq!(got.event_type.as_deref(), Some("order.created"));
}

criterion_group!(benches, ingest_body);
criterion_main!(benches);
