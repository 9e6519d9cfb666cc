//! CloudEvents through the real server: structured and binary mode accepted (the data stored
//! as the payload, deduped by `source` + `id`), invalid events refused with the attribute
//! named, validation by the CloudEvents `type`, CloudEvents output with a stable id, and
//! extension attributes passed from the event in to the envelope out.

mod common;

use std::net::SocketAddr;

use common::*;
use ferry_signature::SigningKey;
use serde_json::{Value, json};

const OUT_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A hub whose `orders` flow reads nothing from the body itself (no `event_type` pointer),
/// delivering to `rx` with `format`.
async fn hub(
    flow_yaml: &str,
    rx: &TestReceiver,
    format: &str,
) -> (tempfile::TempDir, ferry::hub::RunningHub) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let destination = format!(
        "      sink:\n        system: dst\n        http:\n          url: {}\n          timeout: 2s\n          connect_timeout: 1s\n          format: {format}\n          signing:\n            standard_webhooks: {{ secret: {{ file: out-secret }} }}\n        retry:\n          max_attempts: 3\n          initial_backoff: 20ms\n          max_backoff: 100ms\n",
        rx.url("/in")
    );
    write_config_with(&cfg, None, flow_yaml, &destination);
    std::fs::write(cfg.join("out-secret"), OUT_SECRET).unwrap();
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    (dir, hub)
}

fn structured(id: &str, data: Value) -> String {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "https://shop.example/orders",
        "type": "order.created",
        "subject": "order/7",
        "data": data,
    })
    .to_string()
}

async fn post_structured(hub: SocketAddr, webhook_id: &str, body: &str) -> reqwest::Response {
    send_with(
        hub,
        webhook_id,
        body,
        &[("content-type", "application/cloudevents+json")],
    )
    .await
}

async fn accepted(resp: reqwest::Response) -> Value {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(status == 200 || status == 202, "{status}: {body}");
    body
}

fn header<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn structured_events_store_their_data_and_dedupe_by_source_and_id() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub("", &rx, "json").await;
    let body = structured("A-1", json!({"order_id": 7, "total": 12.5}));
    let first = accepted(post_structured(hub.addr(), "msg_1", &body).await).await;
    assert_eq!(first["duplicate"], false);

    let event = admin_get(
        hub.addr(),
        &format!("/admin/v1/events/{}", first["event_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(event["payload"], json!({"order_id": 7, "total": 12.5}));
    assert_eq!(event["event_type"], "order.created");
    assert_eq!(event["dedupe_key"], "https://shop.example/orders A-1");
    assert_eq!(
        header(&event, "ce-source"),
        Some("https://shop.example/orders")
    );
    assert_eq!(header(&event, "ce-id"), Some("A-1"));
    assert_eq!(header(&event, "ce-subject"), Some("order/7"));
    assert_eq!(header(&event, "content-type"), Some("application/json"));

    // The destination receives the data, as JSON.
    wait_until(30, "delivery", || async { rx.count() == 1 }).await;
    let got = &rx.received()[0];
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&got.body).unwrap(),
        json!({"order_id": 7, "total": 12.5})
    );

    // Re-sent (even under another webhook-id): a duplicate, nothing new stored.
    let again = accepted(post_structured(hub.addr(), "msg_2", &body).await).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(deliveries(hub.addr(), "flow=orders").await.len(), 1);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_events_are_the_same_event_as_structured_ones() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub("", &rx, "json").await;
    let data = r#"{"order_id": 8}"#;
    let binary = |webhook_id: &'static str| {
        send_with(
            hub.addr(),
            webhook_id,
            data,
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "B-1"),
                ("ce-source", "https://shop.example/orders"),
                ("ce-type", "order.created"),
                ("content-type", "application/json"),
            ],
        )
    };
    let first = accepted(binary("msg_1").await).await;
    assert_eq!(first["duplicate"], false);
    let event = admin_get(
        hub.addr(),
        &format!("/admin/v1/events/{}", first["event_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(event["payload"], json!({"order_id": 8}));
    assert_eq!(event["event_type"], "order.created");
    assert_eq!(header(&event, "ce-type"), Some("order.created"));

    assert_eq!(accepted(binary("msg_2").await).await["duplicate"], true);
    // The same event in structured mode is a duplicate too.
    let structured_body = structured("B-1", json!({"order_id": 8}));
    let third = accepted(post_structured(hub.addr(), "msg_3", &structured_body).await).await;
    assert_eq!(third["duplicate"], true);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_cloudevents_are_refused_naming_the_attribute() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub("", &rx, "json").await;
    let cases = [
        (
            json!({"id": "1", "source": "s", "type": "t"}),
            "specversion",
        ),
        (
            json!({"specversion": "0.3", "id": "1", "source": "s", "type": "t"}),
            "specversion",
        ),
        (
            json!({"specversion": "1.0", "source": "s", "type": "t"}),
            "id",
        ),
        (
            json!({"specversion": "1.0", "id": "1", "type": "t"}),
            "source",
        ),
        (
            json!({"specversion": "1.0", "id": "1", "source": "s"}),
            "type",
        ),
        (
            json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t",
                   "datacontenttype": "text/plain", "data": "hello"}),
            "datacontenttype",
        ),
    ];
    for (i, (envelope, attribute)) in cases.iter().enumerate() {
        let resp = post_structured(hub.addr(), &format!("m{i}"), &envelope.to_string()).await;
        assert_eq!(resp.status(), 400, "{envelope}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "cloudevents_invalid", "{problem}");
        assert_eq!(problem["attribute"], *attribute, "{problem}");
    }
    // Binary mode without `ce-id`.
    let resp = send_with(
        hub.addr(),
        "m9",
        "{}",
        &[
            ("ce-specversion", "1.0"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["attribute"], "id", "{problem}");
    assert!(deliveries(hub.addr(), "flow=orders").await.is_empty());
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cloudevents_type_picks_the_schema() {
    let rx = TestReceiver::start().await;
    let flow = "    steps:\n      - validate: { unknown_type: reject }\n";
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    write_config_with(
        &cfg,
        None,
        flow,
        &http_destination("sink", &rx.url("/in"), 3),
    );
    write_schemas(
        &cfg,
        &[(
            "order.created",
            "schemas/order.json",
            r#"{"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "integer"}}}"#,
        )],
    );
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let bad = structured("C-1", json!({"order_id": "x"}));
    let resp = post_structured(hub.addr(), "m1", &bad).await;
    assert_eq!(resp.status(), 422);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(
        problem["violations"][0]["pointer"], "/order_id",
        "{problem}"
    );
    let good = structured("C-2", json!({"order_id": 1}));
    accepted(post_structured(hub.addr(), "m2", &good).await).await;
    // A plain JSON request has no type here: refused as unknown.
    let resp = send(hub.addr(), "m3", r#"{"order_id": 1}"#).await;
    assert_eq!(resp.status(), 422);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cloudevents_output_has_a_stable_envelope_across_retries() {
    let rx = TestReceiver::start().await;
    rx.script([Answer::status(503)]);
    let (_d, hub) = hub("", &rx, "cloudevents").await;
    let payload = r#"{"type": "order.created", "order_id": 9}"#;
    let resp = send(hub.addr(), "msg_out", payload).await;
    assert_eq!(resp.status(), 202);
    wait_until(10, "a retry after the 503", || async { rx.count() == 2 }).await;

    let received = rx.received();
    let key = SigningKey::from_standard_webhooks(OUT_SECRET).unwrap();
    let mut ids = Vec::new();
    for got in &received {
        assert_eq!(got.headers["content-type"], "application/cloudevents+json");
        let envelope: Value = serde_json::from_slice(&got.body).unwrap();
        let webhook_id = got.headers["webhook-id"].to_str().unwrap();
        assert!(webhook_id.starts_with("dlv_"), "{webhook_id}");
        assert_eq!(
            envelope["id"], webhook_id,
            "the envelope id is the delivery id"
        );
        assert_eq!(envelope["specversion"], "1.0");
        assert_eq!(envelope["source"], "ferry/orders");
        // No `event_type` pointer in this flow and not a CloudEvent: the default type.
        assert_eq!(envelope["type"], "ferry.event");
        assert_eq!(envelope["datacontenttype"], "application/json");
        assert_eq!(
            envelope["data"],
            json!({"type": "order.created", "order_id": 9})
        );
        let time = envelope["time"].as_str().unwrap();
        humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("time {time}: {e}"));
        // The signature covers the envelope, as sent.
        let ts: i64 = got.headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let expected = ferry_signature::standard_webhooks::sign(&key, webhook_id, ts, &got.body);
        assert_eq!(got.headers["webhook-signature"], expected.as_str());
        ids.push(envelope["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "the id is stable across a retry");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cloudevents_in_and_out_keep_the_type() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub("", &rx, "cloudevents").await;
    let body = structured("D-1", json!({"order_id": 10}));
    accepted(post_structured(hub.addr(), "m1", &body).await).await;
    wait_until(30, "delivery", || async { rx.count() == 1 }).await;
    let envelope: Value = serde_json::from_slice(&rx.received()[0].body).unwrap();
    assert_eq!(envelope["type"], "order.created");
    assert_eq!(envelope["data"], json!({"order_id": 10}));
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn batching_destinations_send_cloudevents_batches() {
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let destination = format!(
        "      sink:\n        system: dst\n        http:\n          url: {}\n          timeout: 2s\n          connect_timeout: 1s\n          format: cloudevents\n          signing:\n            standard_webhooks: {{ secret: {{ file: out-secret }} }}\n        batch: {{ max_items: 3, linger: 1h }}\n        map: .mapped = true\n        retry:\n          max_attempts: 3\n          initial_backoff: 20ms\n          max_backoff: 100ms\n",
        rx.url("/in")
    );
    write_config_with(&cfg, Some("/type"), "", &destination);
    std::fs::write(cfg.join("out-secret"), OUT_SECRET).unwrap();
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    for n in 1..=3 {
        let body = json!({"type": "order.created", "order_id": n}).to_string();
        assert_eq!(
            send(hub.addr(), &format!("msg_{n}"), &body).await.status(),
            202
        );
    }
    // Three records fill the batch: one call. (The linger is an hour, so only a full batch
    // can have been sent.)
    wait_until(30, "one batch call", || async { rx.count() == 1 }).await;

    let got = &rx.received()[0];
    assert_eq!(
        got.headers["content-type"],
        "application/cloudevents-batch+json"
    );
    let webhook_id = got.headers["webhook-id"].to_str().unwrap();
    assert!(webhook_id.starts_with("bat_"), "{webhook_id}");
    let key = SigningKey::from_standard_webhooks(OUT_SECRET).unwrap();
    let ts: i64 = got.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = ferry_signature::standard_webhooks::sign(&key, webhook_id, ts, &got.body);
    assert_eq!(got.headers["webhook-signature"], expected.as_str());

    // A JSON array of structured envelopes, one per record, each with its delivery id.
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    let envelopes = body.as_array().expect("a JSON array");
    assert_eq!(envelopes.len(), 3, "{body}");
    let mut ids: Vec<String> = Vec::new();
    let mut orders: Vec<i64> = Vec::new();
    for envelope in envelopes {
        assert_eq!(envelope["specversion"], "1.0");
        assert_eq!(envelope["source"], "ferry/orders");
        assert_eq!(envelope["type"], "order.created");
        assert_eq!(envelope["datacontenttype"], "application/json");
        assert_eq!(
            envelope["data"]["mapped"], true,
            "mapped before the envelope"
        );
        ids.push(envelope["id"].as_str().unwrap().to_owned());
        orders.push(envelope["data"]["order_id"].as_i64().unwrap());
    }
    orders.sort();
    assert_eq!(orders, [1, 2, 3]);
    wait_until(30, "three delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 3
    })
    .await;
    let mut delivered: Vec<String> = deliveries(hub.addr(), "state=delivered")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    ids.sort();
    assert_eq!(ids, delivered, "each envelope's id is its delivery id");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn extension_attributes_pass_from_the_event_in_to_the_envelope_out() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub("", &rx, "cloudevents").await;
    // Structured mode: a string, an integer, a boolean, and a null (absent).
    let mut body: Value =
        serde_json::from_str(&structured("X-1", json!({"order_id": 11}))).unwrap();
    body["partitionkey"] = json!("customer-42");
    body["sequence"] = json!(7);
    body["replayed"] = json!(false);
    body["ignored"] = Value::Null;
    let first = accepted(post_structured(hub.addr(), "m1", &body.to_string()).await).await;
    let event = admin_get(
        hub.addr(),
        &format!("/admin/v1/events/{}", first["event_id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(header(&event, "ce-partitionkey"), Some("customer-42"));
    assert_eq!(header(&event, "ce-sequence"), Some("7"));
    assert_eq!(header(&event, "ce-ignored"), None);
    // Binary mode: every other `ce-*` header, percent-decoded.
    let binary = send_with(
        hub.addr(),
        "m2",
        r#"{"order_id": 12}"#,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "X-2"),
            ("ce-source", "https://shop.example/orders"),
            ("ce-type", "order.created"),
            (
                "ce-traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("ce-region", "eu%20west"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    accepted(binary).await;

    wait_until(30, "both deliveries", || async { rx.count() == 2 }).await;
    let envelopes: Vec<Value> = rx
        .received()
        .iter()
        .map(|got| serde_json::from_slice(&got.body).unwrap())
        .collect();
    let of = |order: i64| {
        envelopes
            .iter()
            .find(|e| e["data"]["order_id"] == order)
            .unwrap_or_else(|| panic!("no envelope for order {order}: {envelopes:?}"))
    };
    let structured_out = of(11);
    assert_eq!(structured_out["partitionkey"], "customer-42");
    assert_eq!(structured_out["sequence"], "7");
    assert_eq!(structured_out["replayed"], "false");
    assert!(structured_out.get("ignored").is_none());
    // Ferry's own attributes are not overwritten by the event's.
    assert_eq!(structured_out["source"], "ferry/orders");
    assert!(structured_out.get("subject").is_none());
    let binary_out = of(12);
    assert_eq!(
        binary_out["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(binary_out["region"], "eu west");
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_extension_attributes_are_refused_and_nothing_is_stored() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub("", &rx, "json").await;
    let with = |name: &str, value: Value| {
        let mut body: Value =
            serde_json::from_str(&structured("Y-1", json!({"order_id": 1}))).unwrap();
        body[name] = value;
        body.to_string()
    };
    for (i, (body, attribute)) in [
        (with("Partition_Key", json!("p")), "Partition_Key"),
        (with("nested", json!({"a": 1})), "nested"),
        (with("ratio", json!(0.5)), "ratio"),
        (
            with("averyveryverylongname1", json!("x")),
            "averyveryverylongname1",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let resp = post_structured(hub.addr(), &format!("bad{i}"), &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "cloudevents_invalid", "{problem}");
        assert_eq!(problem["attribute"], attribute, "{problem}");
    }
    let too_many = {
        let mut body: Value =
            serde_json::from_str(&structured("Y-2", json!({"order_id": 2}))).unwrap();
        for i in 0..33 {
            body[format!("ext{i}")] = json!("v");
        }
        body.to_string()
    };
    let resp = post_structured(hub.addr(), "bad-many", &too_many).await;
    assert_eq!(resp.status(), 400);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["attribute"], "extensions", "{problem}");
    assert!(
        deliveries(hub.addr(), "").await.is_empty(),
        "a refused CloudEvent stores nothing"
    );
    hub.shutdown().await.unwrap();
}

/// A structured CloudEvent that repeats an attribute (two `id`s: which one dedupes?) or a
/// key of its data is refused as malformed, naming the key and its object; one nested too
/// deeply is refused as `too_deep`. Nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn structured_events_with_duplicate_keys_are_refused() {
    let rx = TestReceiver::start().await;
    let (_d, hub) = hub("", &rx, "json").await;
    let envelope = r#"{"specversion":"1.0","id":"D-1","source":"https://shop.example/orders","type":"order.created""#;
    for (i, (body, key, pointer)) in [
        (format!(r#"{envelope},"id":"D-2","data":{{}}}}"#), "id", ""),
        (
            format!(r#"{envelope},"data":{{"order":{{"amount":-9,"amount":5}}}}}}"#),
            "amount",
            "/data/order",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let resp = post_structured(hub.addr(), &format!("dup{i}"), &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "malformed_json", "{problem}");
        assert_eq!(
            (&problem["key"], &problem["pointer"]),
            (&json!(key), &json!(pointer))
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("duplicate key \"{key}\"")),
            "{problem}"
        );
    }
    let deep = format!(
        r#"{envelope},"data":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let resp = post_structured(hub.addr(), "deep", &deep).await;
    assert_eq!(resp.status(), 400);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "too_deep", "{problem}");
    assert!(
        deliveries(hub.addr(), "").await.is_empty(),
        "a refused CloudEvent stores nothing"
    );
    hub.shutdown().await.unwrap();
}
