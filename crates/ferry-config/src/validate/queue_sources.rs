//! Checks of the queue sources (`source: { nats | rabbitmq | kafka: … }`): the
//! system, the broker URL (no inline credentials), names, pointers and batch bounds.

use std::time::Duration;

use super::Checker;
use super::flows::undeclared_system;
use super::rules;
use crate::connectors::{
    self, KafkaSource, MAX_SOURCE_BATCH, NatsSource, RabbitmqSource, jetstream_name_problem,
    queue_name_problem, subject_filter_problem,
};
use crate::locate::Part;
use crate::model::Source;
use crate::sources::FileId;

pub(super) fn check(c: &mut Checker) {
    for (name, flow) in &c.config.flows {
        let Some(file) = c.flow_file(name) else {
            continue;
        };
        match &flow.source {
            Source::Nats(src) => nats(c, file, name, src),
            Source::Rabbitmq(src) => rabbitmq(c, file, name, src),
            Source::Kafka(src) => kafka(c, file, name, src),
            Source::Webhook(_) | Source::Pull(_) | Source::Postgres(_) => {}
        }
    }
}

/// Where a finding goes: `flows.<flow>.source.<kind>.<field>`.
struct At<'a> {
    file: FileId,
    flow: &'a str,
    kind: &'static str,
}

impl At<'_> {
    fn error(&self, c: &mut Checker, field: &str, message: String, help: Option<String>) {
        let path = ["flows", self.flow, "source", self.kind, field];
        c.error(self.file, &path, Part::Value, message, help);
    }

    /// The checks both kinds share.
    fn common(
        &self,
        c: &mut Checker,
        system: &str,
        event_id: Option<&str>,
        event_type: Option<&str>,
        batch: usize,
        linger: Duration,
    ) {
        if !c.origins.system_names.contains(system) {
            let (message, help) = undeclared_system(c, system);
            self.error(c, "system", message, help);
        }
        for (field, pointer) in [("event_id", event_id), ("event_type", event_type)] {
            if let Some(Err((message, help))) = pointer.map(rules::json_pointer) {
                self.error(c, field, message, help);
            }
        }
        if batch == 0 || batch > MAX_SOURCE_BATCH {
            let message = format!("batch is {batch}; it must be between 1 and {MAX_SOURCE_BATCH}");
            self.error(c, "batch", message, None);
        }
        if let Err((message, help)) = rules::positive("linger", linger) {
            self.error(c, "linger", message, help);
        }
    }
}

fn nats(c: &mut Checker, file: FileId, flow: &str, src: &NatsSource) {
    let at = At {
        file,
        flow,
        kind: "nats",
    };
    at.common(
        c,
        &src.system,
        src.event_id.as_deref(),
        src.event_type.as_deref(),
        src.batch,
        src.linger,
    );
    if let Some(message) = connectors::url_problem(&src.url) {
        at.error(c, "url", message, None);
    }
    if let Some(message) = jetstream_name_problem("stream", &src.stream) {
        at.error(c, "stream", message, None);
    }
    if let Some(message) = jetstream_name_problem("consumer", &src.consumer) {
        at.error(c, "consumer", message, None);
    }
    if let Some(message) = src.subject.as_deref().and_then(subject_filter_problem) {
        at.error(c, "subject", message, None);
    }
}

fn kafka(c: &mut Checker, file: FileId, flow: &str, src: &KafkaSource) {
    let at = At {
        file,
        flow,
        kind: "kafka",
    };
    at.common(
        c,
        &src.system,
        src.event_id.as_deref(),
        src.event_type.as_deref(),
        src.batch,
        src.linger,
    );
    if let Some(message) = connectors::brokers_problem(&src.brokers) {
        at.error(c, "brokers", message, None);
    }
    if src.topics.is_empty() {
        let help = Some("e.g. `topics: [orders]`".to_string());
        at.error(c, "topics", "no topics to read".to_string(), help);
    }
    for message in src
        .topics
        .iter()
        .filter_map(|t| connectors::topic_problem(t))
    {
        at.error(c, "topics", message, None);
    }
    if src.group.trim().is_empty() || src.group.len() > 255 {
        let message = "the consumer group id must be 1 to 255 characters".to_string();
        at.error(c, "group", message, None);
    }
}

fn rabbitmq(c: &mut Checker, file: FileId, flow: &str, src: &RabbitmqSource) {
    let at = At {
        file,
        flow,
        kind: "rabbitmq",
    };
    at.common(
        c,
        &src.system,
        src.event_id.as_deref(),
        src.event_type.as_deref(),
        src.batch,
        src.linger,
    );
    if let Some(message) = connectors::amqp_url_problem(&src.url) {
        at.error(c, "url", message, None);
    }
    if src.password.is_some() && src.username.as_deref().is_none_or(str::is_empty) {
        let help = Some("give the user name too".to_string());
        at.error(
            c,
            "password",
            "a password without a `username`".to_string(),
            help,
        );
    }
    if src.username.is_some() && src.password.is_none() {
        let help = Some("give it by reference: `password: { env: RABBITMQ_PASSWORD }`".into());
        at.error(
            c,
            "username",
            "a `username` without a `password`".to_string(),
            help,
        );
    }
    if let Some(message) = queue_name_problem(&src.queue) {
        at.error(c, "queue", message, None);
    }
    if src.prefetch == 0 || src.prefetch > u32::from(u16::MAX) {
        let message = format!(
            "prefetch is {}; it must be between 1 and 65535",
            src.prefetch
        );
        at.error(c, "prefetch", message, None);
    } else if src.batch > src.prefetch as usize {
        let message = format!(
            "batch ({}) is larger than prefetch ({}): a batch could never fill",
            src.batch, src.prefetch
        );
        at.error(
            c,
            "batch",
            message,
            Some("lower `batch` or raise `prefetch`".into()),
        );
    }
}
