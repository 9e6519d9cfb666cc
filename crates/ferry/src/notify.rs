//! Owner notifications: when a destination is paused (automatically or by an operator) or
//! resumed, POST a small JSON event to `settings.notifications.webhook`, signed per Standard
//! Webhooks when a secret is configured, with a few in-process retries.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
                    tracing::error!(kind, error = %refused, "owner notification refused by the egress guard");
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
                    metrics::counter!("ferry_notifications_total", "outcome" => "sent")
                        .increment(1);
                    return;
                }
                Ok(r) => tracing::warn!(
                    kind,
                    attempt,
                    status = r.status().as_u16(),
                    "owner notification refused"
                ),
                Err(e) => tracing::warn!(kind, attempt, error = %e, "owner notification failed"),
            }
            if attempt < TRIES {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff *= 2;
            }
        }
        metrics::counter!("ferry_notifications_total", "outcome" => "failed").increment(1);
        tracing::error!(kind, flow = %lane.flow, destination = %lane.destination, "owner notification could not be delivered");
    }
}
