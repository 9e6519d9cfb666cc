//! The connector conformance suite (`ferry_connectors::conformance`) run against every
//! destination connector, each over a real instance of its system: an HTTP receiver on
//! loopback always; NATS JetStream, RabbitMQ and PostgreSQL when their URLs are set
//! (`FERRY_TEST_NATS_URL`, `FERRY_TEST_AMQP_URL`, `FERRY_TEST_POSTGRES_URL`,
//! `FERRY_TEST_KAFKA_URL`; each test says why it skips otherwise).

#[path = "kafka_common/mod.rs"]
mod kafka_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ferry_config::{
    BodyFormat, KafkaDestination, NatsDestination, PostgresDestination, RabbitmqDestination,
    SecretRef,
};
use ferry_connectors::conformance::{self, Harness, Received};
use ferry_connectors::kafka::KafkaConnector;
use ferry_connectors::nats::NatsConnector;
use ferry_connectors::postgres::PostgresConnector;
use ferry_connectors::rabbitmq::RabbitmqConnector;
use ferry_delivery::{Connector, EgressPolicy, HttpConnector, HttpTarget};

fn env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            eprintln!("skipped: {name} is not set");
            None
        }
    }
}

/// The ids in a JSON body: its `id`, or each element's in an array.
fn body_ids(body: &[u8]) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let one = |v: &serde_json::Value| v["id"].as_str().map(str::to_string);
    match &value {
        serde_json::Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

// ---- HTTP ----------------------------------------------------------------------------

struct Http {
    url: reqwest::Url,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Http {
    async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = got.clone();
        let app = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let sink = sink.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let mut sink = sink.lock().unwrap();
                    for body_id in body_ids(&body) {
                        sink.push(Received {
                            id: id.clone(),
                            body_id,
                        });
                    }
                    "ok"
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, got }
    }

    fn connector_to(url: reqwest::Url) -> Arc<dyn Connector> {
        let target = HttpTarget {
            url,
            method: reqwest::Method::POST,
            headers: Default::default(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            signing_key: None,
            egress: EgressPolicy::from_entries(["127.0.0.0/8"]).unwrap(),
            format: BodyFormat::Json,
        };
        Arc::new(HttpConnector::new(target, 4).unwrap())
    }
}

#[async_trait]
impl Harness for Http {
    async fn connector(&self) -> Arc<dyn Connector> {
        Self::connector_to(self.url.clone())
    }
    fn unreachable(&self) -> Arc<dyn Connector> {
        Self::connector_to("http://127.0.0.1:1/hook".parse().unwrap())
    }
    async fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
    fn dedupes(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn http_passes_the_connector_suite() {
    conformance::run(&Http::start().await).await;
}

// ---- NATS JetStream ------------------------------------------------------------------

struct Nats {
    url: String,
    js: async_nats::jetstream::Context,
    stream: String,
    subject: String,
}

fn nats_config(url: &str, subject: &str) -> NatsDestination {
    NatsDestination {
        url: url.to_string(),
        subject: subject.to_string(),
        timeout: Duration::from_secs(2),
    }
}

#[async_trait]
impl Harness for Nats {
    async fn connector(&self) -> Arc<dyn Connector> {
        Arc::new(NatsConnector::new(nats_config(&self.url, &self.subject)))
    }
    fn unreachable(&self) -> Arc<dyn Connector> {
        Arc::new(NatsConnector::new(nats_config("nats://127.0.0.1:1", "x")))
    }
    async fn received(&self) -> Vec<Received> {
        let stream = self.js.get_stream(&self.stream).await.unwrap();
        let mut out = Vec::new();
        let last = stream.get_info().await.unwrap().state.last_sequence;
        for seq in 1..=last {
            let Ok(message) = stream.get_raw_message(seq).await else {
                continue;
            };
            let id = message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            for body_id in body_ids(&message.payload) {
                out.push(Received {
                    id: id.clone(),
                    body_id,
                });
            }
        }
        out
    }
    fn dedupes(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn nats_passes_the_connector_suite() {
    let Some(url) = env("FERRY_TEST_NATS_URL") else {
        return;
    };
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let (stream, subject) = (
        format!("CONFORMANCE_{unique}"),
        format!("conformance.{unique}"),
    );
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let harness = Nats {
        url,
        js: js.clone(),
        stream: stream.clone(),
        subject,
    };
    conformance::run(&harness).await;
    js.delete_stream(&stream).await.unwrap();
}

// ---- RabbitMQ ------------------------------------------------------------------------

struct Rabbit {
    url: String,
    queue: String,
    channel: lapin::Channel,
    got: Mutex<Vec<Received>>,
}

fn rabbit_config(url: &str, queue: &str) -> RabbitmqDestination {
    RabbitmqDestination {
        url: url.to_string(),
        username: Some("guest".into()),
        password: Some(SecretRef::Env("UNUSED".into())),
        exchange: String::new(),
        routing_key: queue.to_string(),
        timeout: Duration::from_secs(2),
    }
}

#[async_trait]
impl Harness for Rabbit {
    async fn connector(&self) -> Arc<dyn Connector> {
        let password = Some(secrecy::SecretString::from("guest"));
        Arc::new(RabbitmqConnector::new(
            rabbit_config(&self.url, &self.queue),
            password,
        ))
    }
    fn unreachable(&self) -> Arc<dyn Connector> {
        Arc::new(RabbitmqConnector::new(
            rabbit_config("amqp://127.0.0.1:1/%2f", "q"),
            None,
        ))
    }
    async fn received(&self) -> Vec<Received> {
        use lapin::options::BasicGetOptions;
        // Messages are taken off the queue as they are read: keep what was seen.
        let mut got = self.got.lock().unwrap().clone();
        while let Ok(Some(message)) = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
        {
            let id = message
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default();
            for body_id in body_ids(&message.delivery.data) {
                got.push(Received {
                    id: id.clone(),
                    body_id,
                });
            }
        }
        *self.got.lock().unwrap() = got.clone();
        got
    }
    fn dedupes(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn rabbitmq_passes_the_connector_suite() {
    let Some(url) = env("FERRY_TEST_AMQP_URL") else {
        return;
    };
    let mut with_guest = reqwest::Url::parse(&url).unwrap();
    with_guest.set_username("guest").unwrap();
    with_guest.set_password(Some("guest")).unwrap();
    let conn =
        lapin::Connection::connect(with_guest.as_str(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let queue = format!("conformance-{}", uuid::Uuid::now_v7().simple());
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions::durable(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let harness = Rabbit {
        url,
        queue: queue.clone(),
        channel: channel.clone(),
        got: Mutex::default(),
    };
    conformance::run(&harness).await;
    channel
        .queue_delete(
            queue.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
}

// ---- PostgreSQL ----------------------------------------------------------------------

struct Postgres {
    url: String,
    schema: String,
    client: tokio_postgres::Client,
}

fn pg_config(table: &str) -> PostgresDestination {
    PostgresDestination {
        url: SecretRef::Env("UNUSED".into()),
        table: table.to_string(),
        key: vec!["id".into()],
        pool: 2,
        timeout: Duration::from_secs(2),
    }
}

#[async_trait]
impl Harness for Postgres {
    async fn connector(&self) -> Arc<dyn Connector> {
        let url = secrecy::SecretString::from(self.url.clone());
        Arc::new(PostgresConnector::new(
            pg_config(&format!("{}.rows", self.schema)),
            &url,
        ))
    }
    fn unreachable(&self) -> Arc<dyn Connector> {
        let url = secrecy::SecretString::from("postgres://postgres@127.0.0.1:1/test");
        Arc::new(PostgresConnector::new(pg_config("rows"), &url))
    }
    async fn received(&self) -> Vec<Received> {
        // The row's key is the id it arrived under; its body is the row.
        self.client
            .query(&format!("SELECT id FROM {}.rows", self.schema), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                Received {
                    id: id.clone(),
                    body_id: id,
                }
            })
            .collect()
    }
    fn dedupes(&self) -> bool {
        true
    }
}

/// A connection, and a fresh schema (`<prefix>_<uuid>`) holding the table `rows` keyed by
/// `id`, with the column `n` as `n_column` declares it.
async fn pg_schema(url: &str, prefix: &str, n_column: &str) -> (tokio_postgres::Client, String) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let schema = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.rows (id text PRIMARY KEY, {n_column});"
        ))
        .await
        .unwrap();
    (client, schema)
}

#[tokio::test]
async fn postgres_passes_the_connector_suite() {
    let Some(url) = env("FERRY_TEST_POSTGRES_URL") else {
        return;
    };
    let (client, schema) = pg_schema(&url, "conformance", "n bigint").await;
    let harness = Postgres {
        url,
        schema: schema.clone(),
        client,
    };
    conformance::run(&harness).await;
    harness
        .client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

// ---- Kafka ---------------------------------------------------------------------------

struct Kafka {
    brokers: String,
    topic: String,
}

fn kafka_config(brokers: &str, topic: &str) -> KafkaDestination {
    KafkaDestination {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
        key: Some("{{ event.id }}".into()),
        timeout: Duration::from_secs(5),
    }
}

#[async_trait]
impl Harness for Kafka {
    async fn connector(&self) -> Arc<dyn Connector> {
        Arc::new(KafkaConnector::new(kafka_config(&self.brokers, &self.topic)).unwrap())
    }
    fn unreachable(&self) -> Arc<dyn Connector> {
        Arc::new(KafkaConnector::new(kafka_config("127.0.0.1:1", "nowhere")).unwrap())
    }
    async fn received(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for record in kafka_common::read_all(&self.brokers, &self.topic).await {
            let id = record.header("webhook-id").unwrap_or_default().to_string();
            assert_eq!(record.header("idempotency-key"), Some(id.as_str()));
            for body_id in body_ids(record.body.as_bytes()) {
                // The key template renders each record's own id.
                assert_eq!(record.key.as_deref(), Some(body_id.as_str()));
                out.push(Received {
                    id: id.clone(),
                    body_id,
                });
            }
        }
        out
    }
    fn dedupes(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn kafka_passes_the_connector_suite() {
    let Some(brokers) = kafka_common::kafka_url() else {
        return;
    };
    let topic = kafka_common::fresh_topic(&brokers, 3).await;
    conformance::run(&Kafka { brokers, topic }).await;
}

/// Per-event upserts sent at once share transactions (rows committed together carry the
/// same `xmin`), each send answered only after its row is there; a row the table refuses
/// fails alone, dead, while the rows sent with it are written.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_per_event_sends_share_transactions_and_fail_alone() {
    let Some(url) = env("FERRY_TEST_POSTGRES_URL") else {
        return;
    };
    let (client, schema) = pg_schema(&url, "groupcommit", "n bigint CHECK (n <> 13)").await;
    let secret = secrecy::SecretString::from(url.clone());
    let connector = Arc::new(PostgresConnector::new(
        pg_config(&format!("{schema}.rows")),
        &secret,
    ));
    let sends = (0..200).map(|n| {
        let connector = connector.clone();
        async move {
            let d = conformance::delivery(n);
            let id = d.id.to_string();
            (id, n, connector.send(&d, None).await)
        }
    });
    let results = futures_util::future::join_all(sends).await;
    for (_, n, result) in &results {
        if *n == 13 {
            assert_eq!(
                result.verdict,
                ferry_delivery::Verdict::Permanent,
                "{result:?}"
            );
            assert_eq!(result.error_class, "constraint_violation");
        } else {
            assert_eq!(
                result.verdict,
                ferry_delivery::Verdict::Delivered,
                "{n}: {result:?}"
            );
        }
    }
    let row = client
        .query_one(
            &format!("SELECT count(*), count(DISTINCT xmin::text) FROM {schema}.rows"),
            &[],
        )
        .await
        .unwrap();
    let (rows, transactions): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rows, 199, "every row but the refused one");
    assert!(
        transactions < rows / 2,
        "{rows} rows in {transactions} transactions: sends sent at once share them"
    );

    // Sends of one key at once: one row, every send delivered (a key is never twice in one
    // statement, which PostgreSQL would refuse).
    let same = conformance::delivery(0);
    let sends = (0..50).map(|n| {
        let (connector, mut d) = (connector.clone(), same.clone());
        d.payload = format!(r#"{{"id":"{}","n":{}}}"#, same.id, n + 1000).into();
        async move { connector.send(&d, None).await }
    });
    for result in futures_util::future::join_all(sends).await {
        assert_eq!(
            result.verdict,
            ferry_delivery::Verdict::Delivered,
            "{result:?}"
        );
    }
    let row = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.rows WHERE id = $1"),
            &[&same.id.to_string()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
