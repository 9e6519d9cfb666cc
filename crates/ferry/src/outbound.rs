//! The hub's own outbound posts (owner notifications, alerts): a JSON body POSTed to a
//! configured URL through the egress guard, signed per Standard Webhooks when a secret is
//! configured, with a few in-process retries. The URL is never logged: a chat service's
//! incoming-webhook path often is its secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_delivery::GuardedClient;
use ferry_delivery::egress::{EgressRefused, refusal_of};
use ferry_signature::SigningKey;
use tokio_util::sync::CancellationToken;

/// Tries per post.
const TRIES: u32 = 5;
/// Pause after the first failed try (doubling).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Timeout of one try.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Posts JSON bodies to one endpoint.
pub struct Poster {
    pub(crate) client: GuardedClient,
    url: reqwest::Url,
    key: Option<SigningKey>,
    /// What is posted, in log lines (`owner notification`).
    what: &'static str,
    /// What the endpoint is, in the egress guard's advice (`notification webhook`).
    endpoint: &'static str,
}

impl Poster {
    /// A poster of `what` to `url`, signing with `key` when given.
    pub fn new(
        client: GuardedClient,
        url: reqwest::Url,
        key: Option<SigningKey>,
        what: &'static str,
        endpoint: &'static str,
    ) -> Self {
        Poster {
            client,
            url,
            key,
            what,
            endpoint,
        }
    }

    /// POST `body` (JSON), retrying failures with backoff until it is accepted (2xx), the
    /// egress guard refuses the address (not retried: only a config change helps), the
    /// tries run out or `stop` is cancelled. `kind` names the post in log lines.
    pub async fn post(&self, kind: &str, body: &[u8], stop: &CancellationToken) -> bool {
        let what = self.what;
        let id = format!("ntf_{}", uuid::Uuid::now_v7().simple());
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=TRIES {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let request = match self.client.request(reqwest::Method::POST, self.url.clone()) {
                Ok(request) => request,
                Err(refused) => {
                    self.log_refused(kind, &refused);
                    return false;
                }
            };
            let mut request = request
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string());
            if let Some(key) = &self.key {
                request = request.header(
                    "webhook-signature",
                    ferry_signature::standard_webhooks::sign(key, &id, timestamp as i64, body),
                );
            }
            match request.body(body.to_vec()).send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(kind, "{what} sent");
                    return true;
                }
                Ok(r) => tracing::warn!(
                    kind,
                    attempt,
                    status = r.status().as_u16(),
                    "{what} refused"
                ),
                Err(e) => {
                    // A host name whose addresses the guard refuses fails at connect time.
                    if let Some(refused) = refusal_of(&e) {
                        self.log_refused(kind, refused);
                        return false;
                    }
                    tracing::warn!(kind, attempt, error = %describe(e), "{what} failed");
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
        tracing::error!(kind, "{what} could not be delivered");
        false
    }

    /// Log that the egress guard refused the endpoint's address, with the reason.
    fn log_refused(&self, kind: &str, refused: &EgressRefused) {
        let what = self.what;
        tracing::error!(
            kind,
            reason = %refusal_reason(refused, self.endpoint),
            "{what} refused by the egress guard; not retried"
        );
    }
}

/// A failed try's error and its causes on one line, without the URL.
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

/// Why the guard refused the endpoint: the address and its network (from the guard), that
/// it is not allow-listed, and the entry that would allow it in
/// `settings.delivery.egress_allow` (the hub-wide list, which the hub's own posts obey).
pub(crate) fn refusal_reason(refused: &EgressRefused, endpoint: &str) -> String {
    let or = if refused.literal {
        "or a network containing it"
    } else {
        "or the network of its addresses"
    };
    format!(
        "{refused}. It is not on the hub's egress allow-list; if the {endpoint} is meant to be internal, add `{}` ({or}) to `settings.delivery.egress_allow`",
        refused.suggestion()
    )
}
