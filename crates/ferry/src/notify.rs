//! Owner notifications: when a destination is paused (automatically or by an operator) or
//! resumed, POST a small JSON event to `settings.notifications.webhook`, signed per Standard
//! Webhooks when a secret is configured, with a few in-process retries.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use ferry_config::Config;
use ferry_delivery::LaneEvent;
use ferry_delivery::egress::{EgressRefused, refusal_of};
use ferry_delivery::{EgressPolicy, GuardedClient};
use ferry_signature::SigningKey;
use ferry_store::LaneKey;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::clock::rfc3339;

/// Tries per notification.
const TRIES: u32 = 5;
/// Pause after the first failed try (doubling).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Timeout of one try.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Who owns a lane, as told in notifications.
#[derive(Debug, Clone, Serialize)]
struct Owners {
    /// The receiving system.
    system: String,
    /// The receiving system's owner and on-call.
    system_owner: Option<String>,
    oncall: Option<String>,
    /// The flow's owner (or its source system's).
    flow_owner: Option<String>,
}

/// A notification body.
#[derive(Debug, Serialize)]
struct Notice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    flow: &'a str,
    destination: &'a str,
    #[serde(flatten)]
    owners: Option<&'a Owners>,
    /// Why (paused only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// When (RFC 3339).
    at: String,
}

/// Sends owner notifications.
pub struct Notifier {
    client: GuardedClient,
    url: reqwest::Url,
    key: Option<SigningKey>,
    owners: HashMap<LaneKey, Owners>,
}

impl Notifier {
    /// The notifier of `config`, if it configures a webhook. Its calls obey `egress`, the
    /// hub-wide egress allow-list, like every destination's.
    pub fn from_config(config: &Config, egress: EgressPolicy) -> Result<Option<Self>> {
        let Some(hook) = &config.settings.notifications.webhook else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(&hook.url)
            .with_context(|| format!("notification webhook url `{}`", hook.url))?;
        let key = match &hook.secret {
            Some(r) => Some(
                SigningKey::from_standard_webhooks(
                    r.resolve(&config.root)
                        .map_err(|e| anyhow!("{e}"))?
                        .expose_secret(),
                )
                .map_err(|e| anyhow!("notification webhook secret: {e}"))?,
            ),
            None => None,
        };
        let mut owners = HashMap::new();
        for (flow_name, flow) in &config.flows {
            let source_owner = config
                .systems
                .get(flow.source.system())
                .and_then(|s| s.owner.clone());
            for (dest_name, dest) in &flow.destinations {
                let system = config.systems.get(&dest.system);
                owners.insert(
                    LaneKey {
                        flow: flow_name.clone(),
                        destination: dest_name.clone(),
                    },
                    Owners {
                        system: dest.system.clone(),
                        system_owner: system.and_then(|s| s.owner.clone()),
                        oncall: system.and_then(|s| s.oncall.clone()),
                        flow_owner: flow.owner.clone().or_else(|| source_owner.clone()),
                    },
                );
            }
        }
        let client =
            GuardedClient::new(egress, TIMEOUT).context("building the notification client")?;
        Ok(Some(Self {
            client,
            url,
            key,
            owners,
        }))
    }

    /// Forward lane events until `stop`.
    pub fn spawn(
        self,
        mut events: broadcast::Receiver<LaneEvent>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    event = events.recv() => event,
                };
                match event {
                    Ok(event) => self.send(&event, &stop).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "owner notifier fell behind; some lane events were not notified"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    async fn send(&self, event: &LaneEvent, stop: &CancellationToken) {
        let now = SystemTime::now();
        let (kind, lane, reason) = match event {
            LaneEvent::Paused { lane, pause } => {
                ("destination.paused", lane, Some(pause.reason.as_str()))
            }
            LaneEvent::Resumed { lane } => ("destination.resumed", lane, None),
            LaneEvent::Breaker { .. } => return,
        };
        let millis = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let notice = Notice {
            kind,
            flow: &lane.flow,
            destination: &lane.destination,
            owners: self.owners.get(lane),
            reason,
            at: rfc3339(millis),
        };
        let Ok(body) = serde_json::to_vec(&notice) else {
            return;
        };
        let id = format!("ntf_{}", uuid::Uuid::now_v7().simple());
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=TRIES {
            let timestamp = millis / 1000;
            let request = match self.client.request(reqwest::Method::POST, self.url.clone()) {
                Ok(request) => request,
                Err(refused) => {
                    log_refused(kind, lane, &refused);
                    break;
                }
            };
            let mut request = request
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string());
            if let Some(key) = &self.key {
                request = request.header(
                    "webhook-signature",
                    ferry_signature::standard_webhooks::sign(key, &id, timestamp, &body),
                );
            }
            let result = request.body(body.clone()).send().await;
            match result {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(kind, flow = %lane.flow, destination = %lane.destination, "owner notified");
                    metrics::counter!(ferry_metrics::NOTIFICATIONS_TOTAL, "outcome" => "sent")
                        .increment(1);
                    return;
                }
                Ok(r) => tracing::warn!(
                    kind,
                    attempt,
                    status = r.status().as_u16(),
                    "owner notification refused"
                ),
                Err(e) => {
                    // A host name whose addresses the guard refuses fails at connect time.
                    if let Some(refused) = refusal_of(&e) {
                        log_refused(kind, lane, refused);
                        break;
                    }
                    tracing::warn!(kind, attempt, error = %describe(e), "owner notification failed");
                }
            }
            if attempt < TRIES {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff *= 2;
            }
        }
        metrics::counter!(ferry_metrics::NOTIFICATIONS_TOTAL, "outcome" => "failed").increment(1);
        tracing::error!(kind, flow = %lane.flow, destination = %lane.destination, "owner notification could not be delivered");
    }
}

/// A failed try's error and its causes on one line, without the URL: a notification
/// webhook's URL often is its secret (a chat service's incoming-webhook path).
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Log that the egress guard refused the notification webhook's address, with the reason.
/// Not retried: only a configuration change can help.
fn log_refused(kind: &str, lane: &LaneKey, refused: &EgressRefused) {
    tracing::error!(
        kind,
        flow = %lane.flow,
        destination = %lane.destination,
        reason = %refusal_reason(refused),
        "owner notification refused by the egress guard; not retried"
    );
}

/// Why the guard refused the notification webhook: the address and its network (from the
/// guard), that it is not allow-listed, and the entry that would allow it in
/// `settings.delivery.egress_allow` (the hub-wide list, which owner notifications obey).
fn refusal_reason(refused: &EgressRefused) -> String {
    let or = if refused.literal {
        "or a network containing it"
    } else {
        "or the network of its addresses"
    };
    format!(
        "{refused}. It is not on the hub's egress allow-list; if the notification webhook is meant to be internal, add `{}` ({or}) to `settings.delivery.egress_allow`",
        refused.suggestion()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use ferry_delivery::egress::forbidden;
    use ferry_store::LanePause;

    /// Log output, shared with the subscriber that writes it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// A notifier for `url` allowed to reach public addresses only.
    fn notifier(url: &str) -> Notifier {
        Notifier {
            client: GuardedClient::new(EgressPolicy::new(), TIMEOUT).unwrap(),
            url: reqwest::Url::parse(url).unwrap(),
            key: None,
            owners: HashMap::new(),
        }
    }

    fn paused() -> LaneEvent {
        LaneEvent::Paused {
            lane: LaneKey {
                flow: "orders".into(),
                destination: "crm".into(),
            },
            pause: LanePause {
                since: 0,
                reason: "maintenance".into(),
            },
        }
    }

    /// Send a notification to `url` and return what was logged.
    async fn logged_sending_to(url: &str) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        notifier(url)
            .send(&paused(), &CancellationToken::new())
            .await;
        captured.text()
    }

    #[test]
    fn the_refusal_reason_names_the_address_its_network_and_the_setting() {
        let ip = "10.0.0.5".parse().unwrap();
        let literal = EgressRefused::literal(ip, forbidden(ip).unwrap());
        assert_eq!(
            refusal_reason(&literal),
            "destination address 10.0.0.5 (private network) is not public; allow it with `egress_allow`. It is not on the hub's egress allow-list; if the notification webhook is meant to be internal, add `10.0.0.5` (or a network containing it) to `settings.delivery.egress_allow`"
        );
        let loopback = "127.0.0.1".parse().unwrap();
        let resolved = EgressRefused::resolved(
            "hooks.internal",
            vec![(loopback, forbidden(loopback).unwrap())],
        );
        let reason = refusal_reason(&resolved);
        assert!(
            reason.contains("`hooks.internal` resolves only to 127.0.0.1 (loopback"),
            "{reason}"
        );
        assert!(
            reason.ends_with("add `hooks.internal` (or the network of its addresses) to `settings.delivery.egress_allow`"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_host_name_refused_at_connect_time_is_logged_with_the_reason_and_not_retried() {
        // `localhost` resolves to loopback, which the guard refuses when it connects.
        let logs = logged_sending_to("http://localhost:9/owners").await;
        let refused: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("owner notification refused by the egress guard"))
            .collect();
        assert_eq!(refused.len(), 1, "{logs}");
        let line = refused[0];
        assert!(line.contains("ERROR"), "{line}");
        assert!(
            line.contains("destination host `localhost` resolves only to"),
            "{line}"
        );
        assert!(line.contains("(loopback"), "{line}");
        assert!(
            line.contains("not on the hub's egress allow-list"),
            "{line}"
        );
        assert!(
            line.contains("add `localhost` (or the network of its addresses) to `settings.delivery.egress_allow`"),
            "{line}"
        );
        assert!(
            !logs.contains("owner notification failed"),
            "retried: {logs}"
        );
    }

    #[tokio::test]
    async fn a_failed_try_is_logged_with_its_cause_but_without_the_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let mut notifier = notifier(&format!("http://{addr}/services/T0/B0/s3cr3t-path"));
        notifier.client = GuardedClient::new(
            EgressPolicy::from_entries(["127.0.0.0/8"]).unwrap(),
            TIMEOUT,
        )
        .unwrap();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // Stopping: one try, no backoff.
        let stop = CancellationToken::new();
        stop.cancel();
        notifier.send(&paused(), &stop).await;
        let logs = captured.text();
        let line = logs
            .lines()
            .find(|l| l.contains("owner notification failed"))
            .unwrap_or_else(|| panic!("{logs}"));
        assert!(!logs.contains("s3cr3t-path"), "{logs}");
        assert!(line.to_lowercase().contains("refused"), "{line}");
    }

    #[tokio::test]
    async fn an_address_literal_refused_before_sending_is_logged_with_the_reason() {
        let logs = logged_sending_to("http://169.254.169.254/owners").await;
        let line = logs
            .lines()
            .find(|l| l.contains("owner notification refused by the egress guard"))
            .unwrap_or_else(|| panic!("{logs}"));
        assert!(
            line.contains("destination address 169.254.169.254"),
            "{line}"
        );
        assert!(
            line.contains("add `169.254.169.254` (or a network containing it) to `settings.delivery.egress_allow`"),
            "{line}"
        );
    }
}
