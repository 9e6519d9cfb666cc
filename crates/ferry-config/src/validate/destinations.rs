//! Checks of each flow's destinations: names, system references, HTTP request settings,
//! retry policy and concurrency.

use super::Checker;
use super::flows::undeclared_system;
use super::rules;
use crate::connectors::{
    self, KafkaDestination, NatsDestination, PostgresDestination, RabbitmqDestination,
};
use crate::locate::Part;
use crate::model::{Destination, HeaderValue, HttpAuth, HttpDestination, OAuth2Auth};
use crate::sources::FileId;

/// Headers that carry credentials: written as literals, the credential sits in the config.
pub(super) const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
];

pub(super) fn check(c: &mut Checker) {
    for (flow, def) in &c.config.flows {
        let Some(file) = c.flow_file(flow) else {
            continue;
        };
        for (name, dest) in &def.destinations {
            destination(c, file, flow, name, dest);
        }
    }
}

fn destination(c: &mut Checker, file: FileId, flow: &str, name: &str, dest: &Destination) {
    let base = ["flows", flow, "destinations", name];
    let at = |fields: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(fields.iter().copied()).collect()
    };

    if let Err((message, help)) = rules::name("destination", name) {
        c.error(file, &base, Part::Key, message, help);
    }
    if !c.origins.system_names.contains(&dest.system) {
        let (message, help) = undeclared_system(c, &dest.system);
        c.error(file, &at(&["system"]), Part::Value, message, help);
    }
    if !(1..=rules::MAX_CONCURRENCY).contains(&dest.concurrency) {
        let message = format!(
            "concurrency must be between 1 and {}, not {}",
            rules::MAX_CONCURRENCY,
            dest.concurrency
        );
        c.error(file, &at(&["concurrency"]), Part::Value, message, None);
    }

    let kinds = dest.kinds();
    match kinds[..] {
        [] => c.error(
            file,
            &base,
            Part::Key,
            format!("destination `{name}` says nowhere to deliver"),
            Some(
                "give it one kind: `http: { url: … }`, `nats: { url: …, subject: … }`, \
                 `rabbitmq: { url: …, routing_key: … }`, `postgres: { url: …, table: …, key: … }` \
                 or `kafka: { brokers: …, topic: … }`"
                    .into(),
            ),
        ),
        [_] => {}
        [_, second, ..] => c.error(
            file,
            &at(&[second]),
            Part::Key,
            format!(
                "destination `{name}` has several kinds: {}",
                kinds.join(", ")
            ),
            Some("a destination delivers one way: split it into several destinations".into()),
        ),
    }
    if let Some(http) = &dest.http {
        http_destination(c, file, &at, http);
    }
    if let Some(nats) = &dest.nats {
        nats_destination(c, file, &at, nats);
        queue_batch_and_enrich(c, file, &at, dest);
    }
    if let Some(rabbitmq) = &dest.rabbitmq {
        rabbitmq_destination(c, file, &at, rabbitmq);
        queue_batch_and_enrich(c, file, &at, dest);
    }
    if let Some(postgres) = &dest.postgres {
        postgres_destination(c, file, &at, postgres);
        queue_batch_and_enrich(c, file, &at, dest);
    }
    if let Some(kafka) = &dest.kafka {
        kafka_destination(c, file, &at, kafka, dest);
        queue_batch_and_enrich(c, file, &at, dest);
    }

    let retry = &dest.retry;
    if retry.max_attempts == 0 {
        let message = "max_attempts must be at least 1 (the first try counts)".to_string();
        c.error(
            file,
            &at(&["retry", "max_attempts"]),
            Part::Value,
            message,
            None,
        );
    }
    for (field, value) in [
        ("initial_backoff", retry.initial_backoff),
        ("max_age", retry.max_age),
    ] {
        if let Err((message, help)) = rules::positive(field, value) {
            c.error(file, &at(&["retry", field]), Part::Value, message, help);
        }
    }
    if retry.initial_backoff > retry.max_backoff {
        let message = format!(
            "initial_backoff ({}) is longer than max_backoff ({})",
            humantime::format_duration(retry.initial_backoff),
            humantime::format_duration(retry.max_backoff)
        );
        c.error(
            file,
            &at(&["retry", "initial_backoff"]),
            Part::Value,
            message,
            None,
        );
    }
}

/// The HTTP request settings of an `http` destination.
fn http_destination<'a>(
    c: &mut Checker,
    file: FileId,
    at: &dyn Fn(&[&'static str]) -> Vec<&'a str>,
    http: &HttpDestination,
) {
    // A URL template whose host is templated is reported by `transforms` (more usefully).
    if !super::transforms::templated_origin(&http.url)
        && let Err((message, help)) = rules::destination_url(&http.url)
    {
        c.error(file, &at(&["http", "url"]), Part::Value, message, help);
    }
    if let Err((message, help)) = rules::method(&http.method) {
        c.error(file, &at(&["http", "method"]), Part::Value, message, help);
    }
    for (header, value) in &http.headers {
        let path: Vec<&str> = at(&["http", "headers"])
            .into_iter()
            .chain([header.as_str()])
            .collect();
        if let Err((message, help)) = rules::header_name(header) {
            c.error(file, &path, Part::Key, message, help);
        }
        let HeaderValue::Literal(literal) = value else {
            continue;
        };
        if let Err((message, help)) = rules::header_value(literal) {
            c.error(file, &path, Part::Value, message, help);
        } else if CREDENTIAL_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
            c.warning(
                file,
                &path,
                Part::Value,
                format!("`{header}` is a credential written inline"),
                Some(format!(
                    "give it by reference: `{header}: {{ env: VAR_NAME }}`"
                )),
            );
        }
    }
    let literal_authorization = http
        .headers
        .keys()
        .any(|h| h.eq_ignore_ascii_case("authorization"));
    if http.auth.is_some() && literal_authorization {
        c.error(
            file,
            &at(&["http", "auth"]),
            Part::Key,
            "`auth` and an `Authorization` header each say how the request authenticates"
                .to_string(),
            Some("keep one: `auth` (its secret by reference) or the header".to_string()),
        );
    }
    if let Some(HttpAuth::Oauth2(oauth2)) = &http.auth {
        oauth2_auth(c, file, at, oauth2);
    }
    let timeouts = [
        ("timeout", http.timeout),
        ("connect_timeout", http.connect_timeout),
    ];
    for (field, value) in timeouts {
        if let Err((message, help)) = rules::positive(field, value) {
            c.error(file, &at(&["http", field]), Part::Value, message, help);
        }
    }
    if http.connect_timeout > http.timeout {
        let message = format!(
            "connect_timeout ({}) is longer than timeout ({})",
            humantime::format_duration(http.connect_timeout),
            humantime::format_duration(http.timeout)
        );
        c.error(
            file,
            &at(&["http", "connect_timeout"]),
            Part::Value,
            message,
            None,
        );
    }
}

/// An HTTP destination's `auth.oauth2`: a token URL Ferry may call, a client id.
fn oauth2_auth<'a>(
    c: &mut Checker,
    file: FileId,
    at: &dyn Fn(&[&'static str]) -> Vec<&'a str>,
    oauth2: &OAuth2Auth,
) {
    if let Err((message, help)) = rules::destination_url(&oauth2.token_url) {
        let path = at(&["http", "auth", "oauth2", "token_url"]);
        c.error(file, &path, Part::Value, message, help);
    }
    if oauth2.client_id.trim().is_empty() {
        c.error(
            file,
            &at(&["http", "auth", "oauth2", "client_id"]),
            Part::Value,
            "the client id is empty".to_string(),
            Some("write the id the authorization server gave this client".to_string()),
        );
    }
    for (field, value) in [("scope", &oauth2.scope), ("audience", &oauth2.audience)] {
        if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
            c.error(
                file,
                &at(&["http", "auth", "oauth2", field]),
                Part::Value,
                format!("`{field}` is empty"),
                Some(format!("remove `{field}`, or give it a value")),
            );
        }
    }
}

/// A `nats` destination: its server URL, subject and timeout.
fn nats_destination<'a>(
    c: &mut Checker,
    file: FileId,
    at: &dyn Fn(&[&'static str]) -> Vec<&'a str>,
    nats: &NatsDestination,
) {
    if let Some(message) = connectors::url_problem(&nats.url) {
        c.error(file, &at(&["nats", "url"]), Part::Value, message, None);
    }
    // A template is compiled by Ferry at load; here its literal parts are checked, each
    // `{{ … }}` standing for one token's worth of text.
    let subject = match super::transforms::is_template(&nats.subject) {
        true if nats.subject.contains("{%") => None,
        true => template_skeleton(&nats.subject),
        false => Some(nats.subject.clone()),
    };
    if let Some(message) = subject.as_deref().and_then(connectors::subject_problem) {
        let help = Some(
            "e.g. `orders.created` or `orders.{{ event.region }}`; a JetStream stream must \
             capture it"
                .to_string(),
        );
        c.error(file, &at(&["nats", "subject"]), Part::Value, message, help);
    }
    if let Err((message, help)) = rules::positive("timeout", nats.timeout) {
        c.error(file, &at(&["nats", "timeout"]), Part::Value, message, help);
    }
}

/// `text` with each `{{ … }}` replaced by `x`: the literal frame of a template (`None`
/// when a `{{` is not closed: the template does not compile, which Ferry reports).
fn template_skeleton(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push('x');
                rest = &rest[start + end + 2..];
            }
            None => return None,
        }
    }
    out.push_str(rest);
    Some(out)
}

/// A `rabbitmq` destination: its broker URL (no inline credentials), routing and timeout.
fn rabbitmq_destination<'a>(
    c: &mut Checker,
    file: FileId,
    at: &dyn Fn(&[&'static str]) -> Vec<&'a str>,
    rabbitmq: &RabbitmqDestination,
) {
    if let Some(message) = connectors::amqp_url_problem(&rabbitmq.url) {
        c.error(file, &at(&["rabbitmq", "url"]), Part::Value, message, None);
    }
    if rabbitmq.password.is_some() && rabbitmq.username.is_none() {
        c.error(
            file,
            &at(&["rabbitmq", "password"]),
            Part::Key,
            "a password without a `username`".to_string(),
            Some("give the user name too".to_string()),
        );
    }
    if rabbitmq.exchange.is_empty() && rabbitmq.routing_key.is_empty() {
        c.error(
            file,
            &at(&["rabbitmq", "routing_key"]),
            Part::Value,
            "with the default exchange the routing key is a queue's name, and it is empty"
                .to_string(),
            None,
        );
    }
    if let Err((message, help)) = rules::positive("timeout", rabbitmq.timeout) {
        c.error(
            file,
            &at(&["rabbitmq", "timeout"]),
            Part::Value,
            message,
            help,
        );
    }
}

/// A `postgres` destination: a plain table name and conflict key, a bounded pool.
fn postgres_destination<'a>(
    c: &mut Checker,
    file: FileId,
    at: &dyn Fn(&[&'static str]) -> Vec<&'a str>,
    postgres: &PostgresDestination,
) {
    let parts: Vec<&str> = postgres.table.split('.').collect();
    let table_problem = if parts.len() > 2 {
        Some(format!(
            "`{}` has more than one `.`: write `table` or `schema.table`",
            postgres.table
        ))
    } else {
        parts.iter().find_map(|p| connectors::identifier_problem(p))
    };
    if let Some(message) = table_problem {
        c.error(
            file,
            &at(&["postgres", "table"]),
            Part::Value,
            message,
            None,
        );
    }
    if postgres.key.is_empty() {
        c.error(
            file,
            &at(&["postgres", "key"]),
            Part::Value,
            "the conflict key is empty: an upsert needs the columns that identify a row"
                .to_string(),
            Some("e.g. `key: [id]`, columns with a unique constraint".to_string()),
        );
    }
    if let Some(message) = postgres
        .key
        .iter()
        .find_map(|k| connectors::identifier_problem(k))
    {
        c.error(file, &at(&["postgres", "key"]), Part::Value, message, None);
    }
    if !(1..=64).contains(&postgres.pool) {
        let message = format!("pool must be between 1 and 64, not {}", postgres.pool);
        c.error(file, &at(&["postgres", "pool"]), Part::Value, message, None);
    }
    if let Err((message, help)) = rules::positive("timeout", postgres.timeout) {
        c.error(
            file,
            &at(&["postgres", "timeout"]),
            Part::Value,
            message,
            help,
        );
    }
}

/// A `kafka` destination: its brokers, topic and timeout, and a key when order matters.
/// (The key template compiles with the other templates, see the hub's transforms.)
fn kafka_destination<'a>(
    c: &mut Checker,
    file: FileId,
    at: &dyn Fn(&[&'static str]) -> Vec<&'a str>,
    kafka: &KafkaDestination,
    dest: &Destination,
) {
    if let Some(message) = connectors::brokers_problem(&kafka.brokers) {
        c.error(file, &at(&["kafka", "brokers"]), Part::Value, message, None);
    }
    if let Some(message) = connectors::topic_problem(&kafka.topic) {
        c.error(file, &at(&["kafka", "topic"]), Part::Value, message, None);
    }
    if kafka.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        c.error(
            file,
            &at(&["kafka", "key"]),
            Part::Value,
            "the key is empty".to_string(),
            Some("remove `key`, or give one, e.g. `key: \"{{ event.customer_id }}\"`".into()),
        );
    }
    if dest.ordering.is_some() && kafka.key.is_none() {
        c.error(
            file,
            &at(&["ordering"]),
            Part::Key,
            "`ordering` on a kafka destination needs `kafka.key`: records without a key \
             are spread over partitions, and Kafka orders only within one"
                .to_string(),
            Some(
                "give the key the ordering key, e.g. `key: \"{{ event.customer.id }}\"`"
                    .to_string(),
            ),
        );
    }
    if let Err((message, help)) = rules::positive("timeout", kafka.timeout) {
        c.error(file, &at(&["kafka", "timeout"]), Part::Value, message, help);
    }
}

/// The destination settings that shape HTTP bodies or calls, refused on a queue destination.
fn queue_batch_and_enrich<'a>(
    c: &mut Checker,
    file: FileId,
    at: &dyn Fn(&[&'static str]) -> Vec<&'a str>,
    dest: &Destination,
) {
    if let Some(batch) = &dest.batch {
        // A queue batch is a run of publishes confirmed together: there is no body to
        // wrap and no response listing failed items.
        for (field, set) in [
            ("wrap", batch.wrap.is_some()),
            ("failed_items", batch.failed_items.is_some()),
        ] {
            if set {
                c.error(
                    file,
                    &at(&["batch", field]),
                    Part::Key,
                    format!("`batch.{field}` shapes an HTTP batch body; a queue batch publishes each record"),
                    Some(format!("remove `{field}`")),
                );
            }
        }
    }
    if dest.enrich.is_some() {
        c.error(
            file,
            &at(&["enrich"]),
            Part::Key,
            "`enrich` is for http destinations".to_string(),
            Some("enrich lookups run on http destinations only; remove it here".to_string()),
        );
    }
}
