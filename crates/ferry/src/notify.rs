//! Owner notifications: when a destination is paused (automatically or by an operator) or
//! resumed, POST a small JSON event to `settings.notifications.webhook`, signed per Standard
//! Webhooks when a secret is configured, with a few in-process retries.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};
use ferry_config::Config;
use ferry_delivery::LaneEvent;
use ferry_delivery::{EgressPolicy, GuardedClient};
use ferry_signature::SigningKey;
use ferry_store::LaneKey;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::{now_ms, rfc3339};
use crate::outbound::{Poster, TIMEOUT};

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

/// What the notifier posts, in log lines.
const WHAT: &str = "owner notification";
/// What its endpoint is, in the egress guard's advice.
const ENDPOINT: &str = "notification webhook";

/// Sends owner notifications.
pub struct Notifier {
    poster: Poster,
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
            poster: Poster::new(client, url, key, WHAT, ENDPOINT),
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
        let (kind, lane, reason) = match event {
            LaneEvent::Paused { lane, pause } => {
                ("destination.paused", lane, Some(pause.reason.as_str()))
            }
            LaneEvent::Resumed { lane } => ("destination.resumed", lane, None),
            LaneEvent::Breaker { .. } => return,
        };
        let notice = Notice {
            kind,
            flow: &lane.flow,
            destination: &lane.destination,
            owners: self.owners.get(lane),
            reason,
            at: rfc3339(now_ms()),
        };
        let Ok(body) = serde_json::to_vec(&notice) else {
            return;
        };
        let span = tracing::info_span!("owner_notification", flow = %lane.flow, destination = %lane.destination);
        let sent = self.poster.post(kind, &body, stop).instrument(span).await;
        let outcome = if sent { "sent" } else { "failed" };
        metrics::counter!(ferry_metrics::NOTIFICATIONS_TOTAL, "outcome" => outcome).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use crate::outbound::refusal_reason;
    use ferry_delivery::egress::{EgressRefused, forbidden};
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
            poster: Poster::new(
                GuardedClient::new(EgressPolicy::new(), TIMEOUT).unwrap(),
                reqwest::Url::parse(url).unwrap(),
                None,
                WHAT,
                ENDPOINT,
            ),
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
            refusal_reason(&literal, ENDPOINT),
            "destination address 10.0.0.5 (private network) is not public; allow it with `egress_allow`. It is not on the hub's egress allow-list; if the notification webhook is meant to be internal, add `10.0.0.5` (or a network containing it) to `settings.delivery.egress_allow`"
        );
        let loopback = "127.0.0.1".parse().unwrap();
        let resolved = EgressRefused::resolved(
            "hooks.internal",
            vec![(loopback, forbidden(loopback).unwrap())],
        );
        let reason = refusal_reason(&resolved, ENDPOINT);
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
        notifier.poster.client = GuardedClient::new(
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
