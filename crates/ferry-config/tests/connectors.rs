//! Destination kinds: exactly one per destination, each kind's settings checked and located.

mod common;

use common::{SYSTEMS, dir, error_at, errors, load};

fn flow_with(destination: &str) -> String {
    format!(
        "\
flows:
  f:
    source:
      webhook:
        system: billing
        signature: {{ none: {{}} }}
    destinations:
      q:
        system: crm
{destination}"
    )
}

#[test]
fn a_nats_destination_loads() {
    let text = flow_with(
        "        nats: { url: \"nats://127.0.0.1:4222\", subject: orders.created, timeout: 3s }\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let loaded = load(tmp.path()).expect("valid");
    let q = &loaded.config.flows["f"].destinations["q"];
    assert_eq!(q.kind(), Some("nats"));
    let nats = q.nats.as_ref().unwrap();
    assert_eq!(nats.subject, "orders.created");
    assert_eq!(nats.timeout, std::time::Duration::from_secs(3));
}

#[test]
fn a_destination_has_exactly_one_kind() {
    let none = flow_with("        retry: { max_attempts: 3 }\n");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &none)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations.q");
    assert!(e.message.contains("nowhere to deliver"), "{}", e.message);

    let both = flow_with(
        "        http: { url: \"http://hook.test/x\" }\n        nats: { url: \"nats://h:4222\", subject: a }\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &both)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations.q.nats");
    assert_eq!(e.line, 11);
    assert!(
        e.message.contains("several kinds: http, nats"),
        "{}",
        e.message
    );
}

#[test]
fn bad_nats_settings_are_located() {
    let text = flow_with(
        "        nats:\n          url: \"http://127.0.0.1:4222\"\n          subject: \"orders.*\"\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    let url = error_at(&errs, "flows.f.destinations.q.nats.url");
    assert_eq!(url.line, 11);
    assert!(url.message.contains("`nats`"), "{}", url.message);
    let subject = error_at(&errs, "flows.f.destinations.q.nats.subject");
    assert_eq!(subject.line, 12);
    assert!(subject.message.contains("wildcard"), "{}", subject.message);

    let unknown = flow_with("        nats: { url: \"nats://h:4222\", subject: a, stream: S }\n");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &unknown)]);
    let errs = errors(load(tmp.path()));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("unknown field `stream`")),
        "{errs:#?}"
    );

    let creds = flow_with("        nats: { url: \"nats://u:pw@h:4222\", subject: a }\n");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &creds)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations.q.nats.url");
    assert!(e.message.contains("password"), "{}", e.message);
    assert!(!e.message.contains("pw@"), "the password is not echoed");
}

#[test]
fn rabbitmq_credentials_never_go_inline() {
    let ok = flow_with(
        "        rabbitmq: { url: \"amqp://127.0.0.1:5672/%2f\", routing_key: q, username: u, password: { file: pw } }\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &ok), ("pw", "guest")]);
    assert_eq!(
        load(tmp.path()).expect("valid").config.flows["f"].destinations["q"].kind(),
        Some("rabbitmq")
    );
    let inline = flow_with(
        "        rabbitmq: { url: \"amqp://u:pw@127.0.0.1:5672/%2f\", routing_key: q }\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &inline)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations.q.rabbitmq.url");
    assert!(e.message.contains("credentials"), "{}", e.message);
    // An empty password file is refused like every empty secret.
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &ok), ("pw", "\n")]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations.q.rabbitmq.password");
    assert!(e.message.contains("empty"), "{}", e.message);
}

#[test]
fn postgres_names_are_plain_and_the_url_is_a_secret() {
    let text =
        flow_with("        postgres: { url: { file: pg }, table: \"bad-name.t\", key: [] }\n");
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("f.yaml", &text),
        ("pg", "postgres://u:pw@h/db"),
    ]);
    let errs = errors(load(tmp.path()));
    let table = error_at(&errs, "flows.f.destinations.q.postgres.table");
    assert!(
        table.message.contains("plain SQL name"),
        "{}",
        table.message
    );
    let key = error_at(&errs, "flows.f.destinations.q.postgres.key");
    assert!(key.message.contains("empty"), "{}", key.message);

    let text = flow_with("        postgres: { url: { file: pg }, table: t, key: [id] }\n");
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("f.yaml", &text),
        ("pg", "mysql://h/db"),
    ]);
    let errs = errors(load(tmp.path()));
    let url = error_at(&errs, "flows.f.destinations.q.postgres.url");
    assert!(url.message.contains("postgres://"), "{}", url.message);
    assert!(!url.message.contains("mysql"), "the secret is not echoed");
}

#[test]
fn a_kafka_destination_loads() {
    let text = flow_with(
        "        kafka: { brokers: \"127.0.0.1:9092\", topic: orders, key: \"{{ event.customer }}\", timeout: 3s }\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let loaded = load(tmp.path()).expect("valid");
    let q = &loaded.config.flows["f"].destinations["q"];
    assert_eq!(q.kind(), Some("kafka"));
    let kafka = q.kafka.as_ref().unwrap();
    assert_eq!(kafka.topic, "orders");
    assert_eq!(kafka.key.as_deref(), Some("{{ event.customer }}"));
    assert_eq!(kafka.timeout, std::time::Duration::from_secs(3));
}

#[test]
fn bad_kafka_settings_are_located() {
    let text = flow_with(
        "        kafka:\n          brokers: \"kafka://127.0.0.1:9092\"\n          topic: \"orders created\"\n          timeout: 0s\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    let brokers = error_at(&errs, "flows.f.destinations.q.kafka.brokers");
    assert_eq!(brokers.line, 11);
    assert!(brokers.message.contains("scheme"), "{}", brokers.message);
    let topic = error_at(&errs, "flows.f.destinations.q.kafka.topic");
    assert_eq!(topic.line, 12);
    assert!(topic.message.contains("` `"), "{}", topic.message);
    let timeout = error_at(&errs, "flows.f.destinations.q.kafka.timeout");
    assert_eq!(timeout.line, 13);

    let unknown = flow_with("        kafka: { brokers: \"h:9092\", topic: t, acks: 1 }\n");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &unknown)]);
    let errs = errors(load(tmp.path()));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("unknown field `acks`")),
        "{errs:#?}"
    );

    let creds = flow_with("        kafka: { brokers: \"u:pw@h:9092\", topic: t }\n");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &creds)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations.q.kafka.brokers");
    assert!(e.message.contains("credentials"), "{}", e.message);
}

#[test]
fn kafka_ordering_needs_a_key() {
    let text = flow_with(
        "        kafka: { brokers: \"h:9092\", topic: t }\n        ordering: { key: /customer }\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations.q.ordering");
    assert_eq!(e.line, 11);
    assert!(e.message.contains("kafka.key"), "{}", e.message);

    let keyed = flow_with(
        "        kafka: { brokers: \"h:9092\", topic: t, key: \"{{ event.customer }}\" }\n        ordering: { key: /customer }\n",
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &keyed)]);
    load(tmp.path()).expect("valid");
}
