//! Queue sources (`source: { nats: … }`, `source: { rabbitmq: … }`): they load with their
//! defaults, and every bad setting is refused at its file and line.

mod common;

use std::time::Duration;

use common::{SYSTEMS, UNSET_VAR, dir, error_at, errors, load};
use ferry_config::Source;

fn flow_from(source: &str) -> String {
    format!(
        "\
flows:
  f:
    source:
{source}    destinations:
      crm:
        system: crm
        http: {{ url: \"http://crm.test/hook\" }}
"
    )
}

#[test]
fn a_nats_source_loads_with_defaults() {
    let text = flow_from(
        "      nats:\n        system: billing\n        url: \"nats://127.0.0.1:4222\"\n        stream: ORDERS\n        consumer: ferry-orders\n        event_type: /type\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let loaded = load(tmp.path()).expect("valid");
    let source = &loaded.config.flows["f"].source;
    assert_eq!(source.kind(), "nats");
    assert_eq!(source.system(), "billing");
    let Source::Nats(nats) = source else {
        panic!("{source:?}")
    };
    assert_eq!(nats.stream, "ORDERS");
    assert_eq!(nats.consumer, "ferry-orders");
    assert_eq!(nats.subject, None);
    assert_eq!(nats.batch, 500);
    assert_eq!(nats.linger, Duration::from_millis(20));
}

#[test]
fn a_rabbitmq_source_loads_with_its_password_by_reference() {
    let text = flow_from(
        "      rabbitmq:\n        system: billing\n        url: \"amqp://127.0.0.1:5672/%2f\"\n        username: guest\n        password: { file: pw }\n        queue: orders\n",
    );
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("f.yaml", &text),
        ("pw", "guest"),
    ]);
    let loaded = load(tmp.path()).expect("valid");
    let Source::Rabbitmq(rabbit) = &loaded.config.flows["f"].source else {
        panic!("not rabbitmq")
    };
    assert_eq!(rabbit.queue, "orders");
    assert_eq!(rabbit.prefetch, 500);
    assert_eq!(rabbit.batch, 500);
}

#[test]
fn bad_nats_source_settings_are_located() {
    let text = flow_from(
        "      nats:\n        system: nobody\n        url: \"http://127.0.0.1:4222\"\n        stream: \"\"\n        consumer: \"a.b\"\n        subject: \"orders.>.x\"\n        event_id: id\n        batch: 0\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    let at = |field: &str| error_at(&errs, &format!("flows.f.source.nats.{field}"));
    assert_eq!(at("system").line, 5);
    assert!(at("system").message.contains("not declared"));
    assert_eq!(at("url").line, 6);
    assert!(
        at("url").message.contains("`nats`"),
        "{}",
        at("url").message
    );
    assert_eq!(at("stream").line, 7);
    assert!(at("stream").message.contains("empty"));
    assert_eq!(at("consumer").line, 8);
    assert!(at("consumer").message.contains("`.`"));
    assert_eq!(at("subject").line, 9);
    assert_eq!(at("event_id").line, 10);
    assert_eq!(at("batch").line, 11);
    for e in &errs {
        assert!(e.file.ends_with("f.yaml"), "{e:?}");
    }
}

#[test]
fn unknown_fields_of_a_queue_source_are_refused() {
    let text = flow_from(
        "      nats:\n        system: billing\n        url: \"nats://h:4222\"\n        stream: S\n        consumer: c\n        routing_key: x\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    let e = errs
        .iter()
        .find(|e| e.message.contains("unknown field `routing_key`"))
        .unwrap_or_else(|| panic!("{errs:#?}"));
    assert_eq!(e.line, 9, "{e:?}");

    let text = flow_from("      sqs: { system: billing }\n");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    assert!(errs.iter().any(|e| e.message.contains("sqs")), "{errs:#?}");
}

#[test]
fn bad_kafka_source_settings_are_located() {
    let text = flow_from(
        "      kafka:\n        system: billing\n        brokers: \"kafka://h:9092\"\n        topics: []\n        group: \"\"\n        batch: 0\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    let at = |field: &str| {
        errs.iter()
            .find(|e| e.field == format!("flows.f.source.kafka.{field}"))
            .unwrap_or_else(|| panic!("no error at {field}: {errs:#?}"))
    };
    assert!(
        at("brokers").message.contains("without a scheme"),
        "{errs:#?}"
    );
    assert!(at("topics").message.contains("no topics"), "{errs:#?}");
    assert!(at("group").message.contains("group id"), "{errs:#?}");
    assert!(at("batch").message.contains("between 1 and"), "{errs:#?}");
    assert_eq!(at("brokers").line, 6, "{errs:#?}");
}

#[test]
fn bad_rabbitmq_source_settings_are_located() {
    let text = flow_from(
        "      rabbitmq:\n        system: billing\n        url: \"amqp://u:pw@127.0.0.1:5672/%2f\"\n        password: { file: pw }\n        queue: \"\"\n        prefetch: 70000\n",
    );
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("f.yaml", &text),
        ("pw", "guest"),
    ]);
    let errs = errors(load(tmp.path()));
    let at = |field: &str| error_at(&errs, &format!("flows.f.source.rabbitmq.{field}"));
    assert_eq!(at("url").line, 6);
    assert!(at("url").message.contains("credentials"));
    assert!(!at("url").message.contains("pw@"), "not echoed");
    assert_eq!(at("password").line, 7);
    assert!(at("password").message.contains("without a `username`"));
    assert_eq!(at("queue").line, 8);
    assert_eq!(at("prefetch").line, 9);

    let text = flow_from(
        "      rabbitmq:\n        system: billing\n        url: \"amqp://127.0.0.1:5672/%2f\"\n        queue: q\n        prefetch: 10\n        batch: 50\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    let batch = error_at(&errs, "flows.f.source.rabbitmq.batch");
    assert_eq!(batch.line, 9);
    assert!(batch.message.contains("prefetch"), "{}", batch.message);
}

#[test]
fn a_missing_rabbitmq_password_fails_closed() {
    let text = flow_from(&format!(
        "      rabbitmq:\n        system: billing\n        url: \"amqp://127.0.0.1:5672/%2f\"\n        username: guest\n        password: {{ env: {UNSET_VAR} }}\n        queue: q\n"
    ));
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.source.rabbitmq.password");
    assert_eq!(e.line, 8);
    assert!(e.message.contains(UNSET_VAR), "{}", e.message);
}
