//! Alerts evaluated in the hub (`settings.alerts`) and where they go (`settings.oncall`).
//!
//! Each rule has defaults per business-impact tier (the tier of the system a lane delivers
//! to); `settings.alerts.tiers.<tier>` overrides any of them. Each team of
//! `settings.oncall` (the `owner` of systems and flows) says which of its channels — a pager
//! (PagerDuty Events API v2), a chat (Slack incoming webhook) or a digest — each tier goes
//! to.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::model::Tier;
use crate::secret::SecretRef;

/// `settings.alerts`: how often the rules are evaluated and their thresholds per tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// Evaluate every rule this often. Default 15s; at least 100ms.
    #[serde(default = "default_evaluate_every", with = "humantime_serde")]
    pub evaluate_every: Duration,
    /// Where runbooks live: each alert links to this base followed by the anchor of its
    /// failure mode (`#alert-failure-ratio`...). Default `docs/runbooks.md`, Ferry's own
    /// runbooks beside its config reference.
    #[serde(default = "default_runbooks")]
    pub runbooks: String,
    /// Rule thresholds per tier, over the built-in defaults.
    #[serde(default)]
    pub tiers: TierRules,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            evaluate_every: default_evaluate_every(),
            runbooks: default_runbooks(),
            tiers: TierRules::default(),
        }
    }
}

const fn default_evaluate_every() -> Duration {
    Duration::from_secs(15)
}

fn default_runbooks() -> String {
    "docs/runbooks.md".to_string()
}

/// Overrides of the rules per tier.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRules {
    #[serde(default)]
    pub critical: RuleOverrides,
    #[serde(default)]
    pub high: RuleOverrides,
    #[serde(default)]
    pub low: RuleOverrides,
}

impl TierRules {
    /// The overrides of `tier`.
    pub fn of(&self, tier: Tier) -> &RuleOverrides {
        match tier {
            Tier::Critical => &self.critical,
            Tier::High => &self.high,
            Tier::Low => &self.low,
        }
    }
}

/// What a tier changes of the defaults; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverrides {
    /// A condition must hold this long before its alert fires (pending → firing).
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub pending_for: Option<Duration>,
    /// A firing alert resolves only after its condition stayed clear this long
    /// (hysteresis: a flapping destination does not page on every flap).
    #[serde(default, with = "humantime_serde")]
    pub keep_firing_for: Option<Duration>,
    /// Share of attempts that failed over a window.
    #[serde(default)]
    pub failure_ratio: Option<FailureRatioOverride>,
    /// 99th percentile of attempt latency over a window.
    #[serde(default)]
    pub attempt_latency_p99: Option<LatencyOverride>,
    /// Age of the oldest delivery still waiting.
    #[serde(default)]
    pub backlog_age: Option<ThresholdOverride>,
    /// The circuit breaker stays open (or half-open) for longer than `for`.
    #[serde(default)]
    pub breaker_open: Option<ForOverride>,
    /// The dead-letter queue grew over a window.
    #[serde(default)]
    pub dead_letters_growing: Option<WindowOverride>,
    /// A pull flow went longer than its `freshness` SLA without a successful run.
    #[serde(default)]
    pub freshness: Option<ForOverride>,
}

/// `failure_ratio` overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRatioOverride {
    /// `false` turns the rule off for the tier.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Fires above this share (0 to 1) of failed attempts.
    #[serde(default)]
    pub above: Option<f64>,
    /// Over this window.
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// Only with at least this many attempts in the window.
    #[serde(default)]
    pub min_attempts: Option<u64>,
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub pending_for: Option<Duration>,
}

/// `attempt_latency_p99` overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyOverride {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Fires when the 99th percentile is above this.
    #[serde(default, with = "humantime_serde")]
    pub above: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub pending_for: Option<Duration>,
}

/// Overrides of a rule with a duration threshold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdOverride {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub above: Option<Duration>,
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub pending_for: Option<Duration>,
}

/// Overrides of a rule whose condition is a state held for a while.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForOverride {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub pending_for: Option<Duration>,
}

/// Overrides of a rule measured over a window.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowOverride {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub pending_for: Option<Duration>,
}

/// The rules of one tier, defaults and overrides merged.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    pub keep_firing_for: Duration,
    pub failure_ratio: Option<FailureRatioRule>,
    pub attempt_latency_p99: Option<LatencyRule>,
    pub backlog_age: Option<ThresholdRule>,
    pub breaker_open: Option<Duration>,
    pub dead_letters_growing: Option<WindowRule>,
    pub freshness: Option<Duration>,
}

/// Fires when more than `above` of at least `min_attempts` attempts in `window` failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRatioRule {
    pub above: f64,
    pub window: Duration,
    pub min_attempts: u64,
    pub pending_for: Duration,
}

/// Fires when the attempts' p99 latency over `window` is above `above`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyRule {
    pub above: Duration,
    pub window: Duration,
    pub pending_for: Duration,
}

/// Fires when a measured duration is above `above`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdRule {
    pub above: Duration,
    pub pending_for: Duration,
}

/// Fires when a count grew over `window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowRule {
    pub window: Duration,
    pub pending_for: Duration,
}

const fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// The built-in rules of `tier`: the more critical, the sooner and the more sensitive.
pub fn default_rules(tier: Tier) -> (Duration, AlertRules) {
    // (pending for, keep firing for, failure ratio, its window, p99, backlog age,
    //  breaker open for, dead-letter window)
    let (pending, keep, ratio, window, p99, age, breaker, dead) = match tier {
        Tier::Critical => (
            mins(1),
            mins(2),
            0.05,
            mins(5),
            5,
            mins(5),
            mins(2),
            mins(15),
        ),
        Tier::High => (
            mins(5),
            mins(5),
            0.10,
            mins(10),
            10,
            mins(15),
            mins(5),
            mins(30),
        ),
        Tier::Low => (
            mins(15),
            mins(10),
            0.25,
            mins(30),
            30,
            mins(60),
            mins(15),
            mins(60),
        ),
    };
    let rules = AlertRules {
        keep_firing_for: keep,
        failure_ratio: Some(FailureRatioRule {
            above: ratio,
            window,
            min_attempts: 5,
            pending_for: pending,
        }),
        attempt_latency_p99: Some(LatencyRule {
            above: Duration::from_secs(p99),
            window,
            pending_for: pending,
        }),
        backlog_age: Some(ThresholdRule {
            above: age,
            pending_for: pending,
        }),
        breaker_open: Some(breaker),
        dead_letters_growing: Some(WindowRule {
            window: dead,
            pending_for: pending,
        }),
        freshness: Some(pending),
    };
    (pending, rules)
}

impl AlertSettings {
    /// The rules of `tier`: its defaults with the config's overrides.
    pub fn rules(&self, tier: Tier) -> AlertRules {
        let (default_pending, mut rules) = default_rules(tier);
        let o = self.tiers.of(tier);
        let pending = o.pending_for.unwrap_or(default_pending);
        rules.keep_firing_for = o.keep_firing_for.unwrap_or(rules.keep_firing_for);
        rules.failure_ratio = rules.failure_ratio.and_then(|mut r| {
            r.pending_for = pending;
            if let Some(x) = &o.failure_ratio {
                if x.enabled == Some(false) {
                    return None;
                }
                r.above = x.above.unwrap_or(r.above);
                r.window = x.window.unwrap_or(r.window);
                r.min_attempts = x.min_attempts.unwrap_or(r.min_attempts);
                r.pending_for = x.pending_for.unwrap_or(pending);
            }
            Some(r)
        });
        rules.attempt_latency_p99 = rules.attempt_latency_p99.and_then(|mut r| {
            r.pending_for = pending;
            if let Some(x) = &o.attempt_latency_p99 {
                if x.enabled == Some(false) {
                    return None;
                }
                r.above = x.above.unwrap_or(r.above);
                r.window = x.window.unwrap_or(r.window);
                r.pending_for = x.pending_for.unwrap_or(pending);
            }
            Some(r)
        });
        rules.backlog_age = rules.backlog_age.and_then(|mut r| {
            r.pending_for = pending;
            if let Some(x) = &o.backlog_age {
                if x.enabled == Some(false) {
                    return None;
                }
                r.above = x.above.unwrap_or(r.above);
                r.pending_for = x.pending_for.unwrap_or(pending);
            }
            Some(r)
        });
        rules.breaker_open = held_for(rules.breaker_open, o.breaker_open.as_ref());
        rules.dead_letters_growing = rules.dead_letters_growing.and_then(|mut r| {
            r.pending_for = pending;
            if let Some(x) = &o.dead_letters_growing {
                if x.enabled == Some(false) {
                    return None;
                }
                r.window = x.window.unwrap_or(r.window);
                r.pending_for = x.pending_for.unwrap_or(pending);
            }
            Some(r)
        });
        rules.freshness = held_for(Some(pending), o.freshness.as_ref());
        rules
    }
}

/// A held-state rule's `for`, or `None` when turned off.
fn held_for(default: Option<Duration>, o: Option<&ForOverride>) -> Option<Duration> {
    match o {
        Some(x) if x.enabled == Some(false) => None,
        Some(x) => x.pending_for.or(default),
        None => default,
    }
}

/// `settings.oncall`: the teams alerts are routed to, by the `owner` name systems and
/// flows give. A team named `default` receives the alerts of owners without their own.
pub type Oncall = BTreeMap<String, OncallTeam>;

/// One team's alert channels and which tier goes where.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OncallTeam {
    /// A pager: PagerDuty Events API v2 (`trigger` and `resolve` events).
    #[serde(default)]
    pub pager: Option<PagerChannel>,
    /// A chat room: a Slack incoming webhook (`{"text": ...}`).
    #[serde(default)]
    pub chat: Option<AlertWebhook>,
    /// A digest: every alert that fired or resolved since the last one, in one JSON post.
    #[serde(default)]
    pub digest: Option<DigestChannel>,
    /// Which channel each tier's alerts go to. Default: `critical` to the pager (else the
    /// chat, else the digest), `high` to the chat (else the digest), `low` to the digest
    /// (else the chat).
    #[serde(default)]
    pub route: RouteOverrides,
}

/// A channel receiving alert notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertWebhook {
    /// `http://` or `https://` URL; obeys the hub's egress allow-list.
    pub url: String,
    /// Sign each post per Standard Webhooks with this `whsec_...` secret.
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

/// A PagerDuty Events API v2 endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerChannel {
    /// The Events API URL (`https://events.pagerduty.com/v2/enqueue`, or a relay).
    pub url: String,
    /// The integration's routing key.
    pub routing_key: SecretRef,
    /// Sign each post per Standard Webhooks with this `whsec_...` secret.
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

/// A digest endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestChannel {
    pub url: String,
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// How often a digest is sent (only when something happened). Default 24h.
    #[serde(default = "default_digest_every", with = "humantime_serde")]
    pub every: Duration,
}

const fn default_digest_every() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// One of a team's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Pager,
    Chat,
    Digest,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Pager => "pager",
            Channel::Chat => "chat",
            Channel::Digest => "digest",
        }
    }
}

/// `route:` of a team.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOverrides {
    #[serde(default)]
    pub critical: Option<Channel>,
    #[serde(default)]
    pub high: Option<Channel>,
    #[serde(default)]
    pub low: Option<Channel>,
}

impl OncallTeam {
    /// Whether the team configures `channel`.
    pub fn has(&self, channel: Channel) -> bool {
        match channel {
            Channel::Pager => self.pager.is_some(),
            Channel::Chat => self.chat.is_some(),
            Channel::Digest => self.digest.is_some(),
        }
    }

    /// Where this team gets `tier`'s alerts: its `route`, else the first configured channel
    /// of the tier's preference. `None`: the team has no channel for it.
    pub fn channel_for(&self, tier: Tier) -> Option<Channel> {
        let (explicit, preference): (Option<Channel>, &[Channel]) = match tier {
            Tier::Critical => (
                self.route.critical,
                &[Channel::Pager, Channel::Chat, Channel::Digest],
            ),
            Tier::High => (self.route.high, &[Channel::Chat, Channel::Digest]),
            Tier::Low => (self.route.low, &[Channel::Digest, Channel::Chat]),
        };
        match explicit {
            Some(c) => self.has(c).then_some(c),
            None => preference.iter().copied().find(|c| self.has(*c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let settings: AlertSettings = serde_saphyr::from_str(
            "tiers:\n  critical:\n    for: 0s\n    failure_ratio: { above: 0.5, window: 2s }\n    backlog_age: { enabled: false }\n",
        )
        .unwrap();
        let rules = settings.rules(Tier::Critical);
        let ratio = rules.failure_ratio.unwrap();
        assert_eq!(ratio.above, 0.5);
        assert_eq!(ratio.window, Duration::from_secs(2));
        assert_eq!(ratio.min_attempts, 5);
        assert_eq!(ratio.pending_for, Duration::ZERO);
        assert!(rules.backlog_age.is_none());
        assert_eq!(rules.breaker_open, Some(mins(2)));
        assert_eq!(rules.freshness, Some(Duration::ZERO));
        // The other tiers keep their defaults.
        assert_eq!(settings.rules(Tier::Low), default_rules(Tier::Low).1);
    }

    #[test]
    fn routes_by_tier_to_configured_channels() {
        let team: OncallTeam = serde_saphyr::from_str(
            "pager: { url: 'http://p', routing_key: { env: K } }\ndigest: { url: 'http://d' }\n",
        )
        .unwrap();
        assert_eq!(team.channel_for(Tier::Critical), Some(Channel::Pager));
        assert_eq!(team.channel_for(Tier::High), Some(Channel::Digest));
        assert_eq!(team.channel_for(Tier::Low), Some(Channel::Digest));
        let only_chat: OncallTeam =
            serde_saphyr::from_str("chat: { url: 'http://c' }\nroute: { low: pager }\n").unwrap();
        assert_eq!(only_chat.channel_for(Tier::Critical), Some(Channel::Chat));
        assert_eq!(only_chat.channel_for(Tier::Low), None);
    }
}
