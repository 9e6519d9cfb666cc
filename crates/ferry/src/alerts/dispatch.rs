//! Sends alert edges to the owning team's channel for the alert's tier: a pager (PagerDuty
//! Events API v2: `trigger`, then `resolve` with the same `dedup_key`), a chat (a Slack
//! incoming webhook's `{"text": ...}`), or a digest (everything that fired or resolved
//! since the last digest, in one JSON post every `every`). Every post goes through the
//! egress guard and is signed per Standard Webhooks when the channel has a secret.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use ferry_config::alerting::{Channel, OncallTeam};
use ferry_config::{Config, SecretRef};
use ferry_delivery::{EgressPolicy, GuardedClient};
use ferry_signature::SigningKey;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AlertState, AlertView};
use crate::clock::{now_ms, rfc3339};
use crate::outbound::{Poster, TIMEOUT};

/// What the dispatcher posts, in log lines.
const WHAT: &str = "alert notification";
/// What its endpoints are, in the egress guard's advice.
const ENDPOINT: &str = "alert channel";
/// Edges waiting to be sent.
pub const QUEUE: usize = 1024;

struct Pager {
    poster: Poster,
    routing_key: SecretString,
}

struct Digest {
    poster: Poster,
    every: Duration,
    next: Instant,
    /// Since the last digest.
    from: ferry_store::Millis,
    pending: Vec<AlertView>,
}

/// One team's channels.
struct Team {
    config: OncallTeam,
    pager: Option<Pager>,
    chat: Option<Poster>,
    digest: Option<Digest>,
}

/// The teams of `settings.oncall` and their channels.
pub struct Dispatcher {
    teams: BTreeMap<String, Team>,
}

impl Dispatcher {
    /// The channels of `config`'s teams, their posts obeying `egress` (the hub-wide
    /// allow-list). Fails on a secret that cannot be read.
    pub fn from_config(config: &Config, egress: EgressPolicy) -> Result<Self> {
        let client = GuardedClient::new(egress, TIMEOUT).context("building the alert client")?;
        let root = &config.root;
        let signing = |secret: &Option<SecretRef>, at: &str| -> Result<Option<SigningKey>> {
            secret
                .as_ref()
                .map(|r| {
                    let value = r.resolve(root).map_err(|e| anyhow!("{at}: {e}"))?;
                    SigningKey::from_standard_webhooks(value.expose_secret())
                        .map_err(|e| anyhow!("{at}: {e}"))
                })
                .transpose()
        };
        let url = |raw: &str, at: &str| -> Result<reqwest::Url> {
            reqwest::Url::parse(raw).with_context(|| format!("{at}: url"))
        };
        let poster = |raw: &str, secret: &Option<SecretRef>, at: &str| -> Result<Poster> {
            Ok(Poster::new(
                client.clone(),
                url(raw, at)?,
                signing(secret, &format!("{at}.secret"))?,
                WHAT,
                ENDPOINT,
            ))
        };
        let mut teams = BTreeMap::new();
        for (name, team) in &config.settings.oncall {
            let at = |channel: &str| format!("settings.oncall.{name}.{channel}");
            let pager = match &team.pager {
                Some(p) => Some(Pager {
                    poster: poster(&p.url, &p.secret, &at("pager"))?,
                    routing_key: p
                        .routing_key
                        .resolve(root)
                        .map_err(|e| anyhow!("{}.routing_key: {e}", at("pager")))?,
                }),
                None => None,
            };
            let chat = match &team.chat {
                Some(c) => Some(poster(&c.url, &c.secret, &at("chat"))?),
                None => None,
            };
            let digest = match &team.digest {
                Some(d) => Some(Digest {
                    poster: poster(&d.url, &d.secret, &at("digest"))?,
                    every: d.every,
                    next: Instant::now() + d.every,
                    from: now_ms(),
                    pending: Vec::new(),
                }),
                None => None,
            };
            teams.insert(
                name.clone(),
                Team {
                    config: team.clone(),
                    pager,
                    chat,
                    digest,
                },
            );
        }
        Ok(Dispatcher { teams })
    }

    /// Send edges from `edges` until `stop`; then send what the digests hold (one try).
    pub fn spawn(
        mut self,
        mut edges: mpsc::Receiver<AlertView>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let next_digest = self
                    .teams
                    .values()
                    .filter_map(|t| t.digest.as_ref().map(|d| d.next))
                    .min();
                let digest_due = async {
                    match next_digest {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    edge = edges.recv() => match edge {
                        Some(view) => self.send(&view, &stop).await,
                        None => break,
                    },
                    _ = digest_due => self.send_digests(false, &stop).await,
                }
            }
            self.send_digests(true, &stop).await;
        })
    }

    /// Route one edge to its team's channel for its tier.
    async fn send(&mut self, view: &AlertView, stop: &CancellationToken) {
        let Some(team) = view.team.as_deref().and_then(|t| self.teams.get_mut(t)) else {
            return;
        };
        let tier = match view.tier.as_str() {
            "critical" => ferry_config::Tier::Critical,
            "high" => ferry_config::Tier::High,
            _ => ferry_config::Tier::Low,
        };
        let Some(channel) = team.config.channel_for(tier) else {
            return;
        };
        let kind = match view.state {
            AlertState::Resolved => "alert.resolved",
            _ => "alert.firing",
        };
        let sent = match channel {
            Channel::Pager => {
                let Some(pager) = &team.pager else { return };
                let body = pagerduty_event(view, pager.routing_key.expose_secret());
                pager.poster.post(kind, &body, stop).await
            }
            Channel::Chat => {
                let Some(chat) = &team.chat else { return };
                chat.post(kind, &slack_message(view), stop).await
            }
            Channel::Digest => {
                if let Some(digest) = &mut team.digest {
                    digest.pending.push(view.clone());
                }
                return;
            }
        };
        count(channel, sent);
    }

    /// Post each team's digest that is due (every one with something in it, when `all`).
    async fn send_digests(&mut self, all: bool, stop: &CancellationToken) {
        let now = Instant::now();
        for (name, team) in &mut self.teams {
            let Some(digest) = &mut team.digest else {
                continue;
            };
            if !all && digest.next > now {
                continue;
            }
            digest.next = now + digest.every;
            if digest.pending.is_empty() {
                continue;
            }
            let to = now_ms();
            let body = json!({
                "type": "ferry.alerts.digest",
                "team": name,
                "from": rfc3339(digest.from),
                "to": rfc3339(to),
                "alerts": digest.pending,
            });
            let sent = digest
                .poster
                .post("alert.digest", body.to_string().as_bytes(), stop)
                .await;
            count(Channel::Digest, sent);
            if sent {
                digest.pending.clear();
                digest.from = to;
            }
        }
    }
}

fn count(channel: Channel, sent: bool) {
    let outcome = if sent { "sent" } else { "failed" };
    metrics::counter!(ferry_metrics::ALERT_NOTIFICATIONS_TOTAL, "channel" => channel.as_str(), "outcome" => outcome)
        .increment(1);
}

/// A PagerDuty Events API v2 event: `trigger` when firing, `resolve` when resolved, with
/// the alert's id as the `dedup_key` so the two meet the same incident.
pub fn pagerduty_event(view: &AlertView, routing_key: &str) -> Vec<u8> {
    let dedup_key = format!("ferry/{}", view.id);
    let event = if view.state == AlertState::Resolved {
        json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        })
    } else {
        let severity = match view.tier.as_str() {
            "critical" => "critical",
            "high" => "error",
            _ => "warning",
        };
        let mut summary = format!("{}: {}", headline(view), view.summary);
        if summary.len() > 1024 {
            let mut end = 1021;
            while !summary.is_char_boundary(end) {
                end -= 1;
            }
            summary.truncate(end);
            summary.push_str("...");
        }
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": summary,
                "source": "ferry",
                "severity": severity,
                "component": view.system,
                "group": view.flow,
                "class": view.kind.as_str(),
                "custom_details": view,
            },
            "links": [{ "href": view.runbook, "text": "Runbook" }],
        })
    };
    event.to_string().into_bytes()
}

/// A Slack incoming-webhook message.
pub fn slack_message(view: &AlertView) -> Vec<u8> {
    let text = match view.state {
        AlertState::Resolved => format!("*RESOLVED* {}", headline(view)),
        _ => format!(
            "*FIRING* [{}] {}: {}\nRunbook: <{}>",
            view.tier,
            headline(view),
            view.summary,
            view.runbook
        ),
    };
    json!({ "text": text }).to_string().into_bytes()
}

/// `failure_ratio on orders → crm (system crm, owner payments)`.
fn headline(view: &AlertView) -> String {
    let place = match &view.destination {
        Some(d) => format!("{} → {d}", view.flow),
        None => view.flow.clone(),
    };
    let owner = view
        .owner
        .as_deref()
        .map(|o| format!(", owner {o}"))
        .unwrap_or_default();
    format!(
        "{} on {place} (system {}{owner})",
        view.kind.as_str(),
        view.system
    )
}
