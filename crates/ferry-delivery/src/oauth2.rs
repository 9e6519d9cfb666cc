//! OAuth2 access tokens for an HTTP destination (RFC 6749): the client-credentials grant
//! (§4.4), or the refresh-token grant (§6) when a refresh token is given.
//!
//! A [`TokenSource`] belongs to one destination's connector and caches its token. The token
//! is fetched at the first attempt, again once 80 % of its `expires_in` has passed (at most
//! 60 s before it expires), and again when the destination answers `401` to it. Every fetch
//! is shared: attempts that need a token while one is being fetched wait for that fetch and
//! take its outcome (a token, or its failure), so N concurrent attempts that all got a `401`
//! cause one token request. A rejected token is dropped at once, so no new attempt sends it.
//!
//! Token requests go through the destination's egress guard, form-encoded, the client
//! authenticated with HTTP Basic (§2.3.1). A refresh token the server rotates replaces the
//! configured one in memory. A failed token request fails the attempt, retryably, with
//! class [`AUTH_FAILED`] and the endpoint's status; a token due for refresh that has not
//! expired is still used while the endpoint fails. Errors and logs never hold the client
//! secret, a refresh token or an access token.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::classify::{LOCAL_FAILURE, Verdict};
use crate::egress::{EGRESS_REFUSED, EgressPolicy, EgressRefused, guarded_client_builder};
use crate::outcome::AttemptResult;

/// The error class of an attempt that failed because no access token could be had.
pub const AUTH_FAILED: &str = "auth_failed";

/// The largest token response read (an access token, perhaps a JWT, and a few fields).
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// A token is refreshed this long before it expires at most...
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// ...and at least when this fraction of its life (in fifths) has passed: at 80 %.
const REFRESH_AT_FIFTHS: u32 = 4;

/// How an HTTP destination obtains its OAuth2 access tokens.
pub struct OAuth2Grant {
    /// The token endpoint.
    pub token_url: Url,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// Scopes to ask for (`scope`), space-separated.
    pub scope: Option<String>,
    /// The API the token is for (`audience`).
    pub audience: Option<String>,
    /// With a refresh token, the refresh-token grant; without, client credentials.
    pub refresh_token: Option<SecretString>,
}

impl fmt::Debug for OAuth2Grant {
    /// Shows no secrets: the token endpoint's origin and path, the client id, the grant.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Grant")
            .field("token_url", &endpoint(&self.token_url))
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("grant", &grant_name(self.refresh_token.is_some()))
            .finish()
    }
}

fn grant_name(refresh: bool) -> &'static str {
    if refresh {
        "refresh_token"
    } else {
        "client_credentials"
    }
}

/// The URL without credentials or query: what logs may show.
fn endpoint(url: &Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

/// An access token in use.
#[derive(Debug)]
pub(crate) struct AccessToken {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    /// Which fetch made it (1, 2, …): a `401` to an older token does not refresh again.
    generation: u64,
    /// When to fetch the next one (`None`: the server gave no `expires_in`; until a `401`).
    refresh_at: Option<Instant>,
    /// When it stops working.
    expires_at: Option<Instant>,
}

impl AccessToken {
    /// The `Authorization` value.
    pub(crate) fn header(&self) -> &HeaderValue {
        &self.header
    }

    fn fresh(&self, now: Instant) -> bool {
        self.refresh_at.is_none_or(|at| now < at)
    }

    fn unexpired(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// Why no token could be had. Never holds a secret or a token.
#[derive(Debug, Clone)]
pub(crate) struct TokenError {
    class: &'static str,
    verdict: Verdict,
    /// The token endpoint's status, when it answered.
    status: Option<u16>,
    /// The OAuth2 `error` code of its answer (`invalid_client`…), when it gave one.
    code: Option<String>,
    message: String,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OAuth2 token request failed: ")?;
        f.write_str(&self.message)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        Ok(())
    }
}

impl TokenError {
    /// The failed attempt this is: no call to the destination was made.
    pub(crate) fn attempt(&self, started_at: i64, clock: Instant) -> AttemptResult {
        AttemptResult {
            started_at,
            latency: clock.elapsed(),
            status: None,
            verdict: self.verdict,
            error_class: self.class,
            error: Some(crate::http::truncate(self.to_string())),
            response_excerpt: None,
        }
    }

    fn refused(refused: &EgressRefused) -> Self {
        TokenError {
            class: EGRESS_REFUSED,
            verdict: Verdict::Permanent,
            status: None,
            code: None,
            message: format!("egress refused the token endpoint: {refused}"),
        }
    }

    /// The server refuses the client or its grant: a configuration problem, worth a warning.
    fn refuses_credentials(&self) -> bool {
        matches!(self.status, Some(400 | 401))
            && matches!(
                self.code.as_deref(),
                Some("invalid_client" | "invalid_grant" | "unauthorized_client")
            )
    }
}

/// What one token request brought back.
struct Fetched {
    access_token: String,
    expires_in: Option<Duration>,
    refresh_token: Option<String>,
}

/// The state of fetching, behind the single-flight lock.
struct Flight {
    /// The refresh token to send (configured, or the server's latest).
    refresh_token: Option<SecretString>,
    /// The last fetch's generation (its token's).
    generation: u64,
    /// The last fetch's failure, shared with the attempts that waited for it.
    last_error: Option<TokenError>,
    /// The credential refusal last warned about (status, code): warned once per change.
    warned: Option<(Option<u16>, Option<String>)>,
}

/// One destination's OAuth2 tokens: cached, refreshed before expiry and after a `401`, every
/// fetch shared by the attempts waiting for it (see the module docs).
pub(crate) struct TokenSource {
    token_url: Url,
    client_id: String,
    client_secret: SecretString,
    scope: Option<String>,
    audience: Option<String>,
    client: reqwest::Client,
    /// Set when the token URL's host is an address literal the egress policy refuses.
    refused: Option<EgressRefused>,
    current: Mutex<Option<Arc<AccessToken>>>,
    /// Fetches ended so far (success or failure): an attempt that waited for the lock while
    /// one ended takes its outcome instead of fetching again.
    fetches: AtomicU64,
    flight: tokio::sync::Mutex<Flight>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &endpoint(&self.token_url))
            .field("client_id", &self.client_id)
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// Tokens per `grant`, requested through a client guarded by `egress` with the
    /// destination's timeouts.
    pub(crate) fn new(
        grant: OAuth2Grant,
        egress: EgressPolicy,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let refused = egress.check_literal(&grant.token_url).err();
        let client = guarded_client_builder(egress)
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(TokenSource {
            token_url: grant.token_url,
            client_id: grant.client_id,
            client_secret: grant.client_secret,
            scope: grant.scope,
            audience: grant.audience,
            client,
            refused,
            current: Mutex::new(None),
            fetches: AtomicU64::new(0),
            flight: tokio::sync::Mutex::new(Flight {
                refresh_token: grant.refresh_token,
                generation: 0,
                last_error: None,
                warned: None,
            }),
        })
    }

    /// A token to send: the cached one while fresh, else a new one.
    pub(crate) async fn token(&self) -> Result<Arc<AccessToken>, TokenError> {
        let seen = self.fetches.load(Ordering::Acquire);
        if let Some(token) = self.current()
            && token.fresh(Instant::now())
        {
            return Ok(token);
        }
        self.refresh(seen, None).await
    }

    /// The destination answered `401` to `used`: drop it and get another, unless a newer
    /// one exists already (a stale `401` refreshes nothing).
    pub(crate) async fn rejected(
        &self,
        used: &AccessToken,
    ) -> Result<Arc<AccessToken>, TokenError> {
        let seen = self.fetches.load(Ordering::Acquire);
        {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if current
                .as_ref()
                .is_some_and(|t| t.generation == used.generation)
            {
                *current = None;
            }
        }
        self.refresh(seen, Some(used.generation)).await
    }

    fn current(&self) -> Option<Arc<AccessToken>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fetch a token, one fetch at a time. `seen`: fetches ended when the caller looked;
    /// `rejected`: the generation a `401` refused, if that is why.
    async fn refresh(
        &self,
        seen: u64,
        rejected: Option<u64>,
    ) -> Result<Arc<AccessToken>, TokenError> {
        let mut flight = self.flight.lock().await;
        let now = Instant::now();
        let current = self.current();
        let usable = |token: &Option<Arc<AccessToken>>| -> Option<Arc<AccessToken>> {
            token
                .as_ref()
                .filter(|t| rejected != Some(t.generation) && t.unexpired(now))
                .cloned()
        };
        if self.fetches.load(Ordering::Acquire) != seen {
            // A fetch ended while this caller waited: take its outcome.
            match (&flight.last_error, usable(&current)) {
                (None, Some(token)) => return Ok(token),
                (Some(_), Some(token)) if rejected.is_none() => return Ok(token),
                (Some(error), _) => return Err(error.clone()),
                (None, None) => {}
            }
        } else if let Some(token) = current.as_ref().filter(|t| t.fresh(now))
            && rejected.is_some_and(|g| g != token.generation)
        {
            // The 401 was to an older token; this one is newer.
            return Ok(token.clone());
        }
        let generation = flight.generation + 1;
        let result = self
            .request(flight.refresh_token.as_ref())
            .await
            .and_then(|fetched| {
                let token = self.token_of(&fetched, generation, Instant::now())?;
                Ok((fetched, token))
            });
        let outcome = match result {
            Ok((fetched, token)) => {
                flight.generation = generation;
                if let Some(rotated) = fetched.refresh_token
                    && flight.refresh_token.is_some()
                {
                    flight.refresh_token = Some(SecretString::from(rotated));
                }
                if flight.warned.take().is_some() {
                    tracing::info!(token_url = %endpoint(&self.token_url), "the OAuth2 token endpoint issues tokens again");
                }
                flight.last_error = None;
                let token = Arc::new(token);
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
                Ok(token)
            }
            Err(error) => {
                self.log_failure(&mut flight, &error);
                flight.last_error = Some(error.clone());
                // A token due for refresh that has not expired still works meanwhile.
                match usable(&self.current()) {
                    Some(token) if rejected.is_none() => Ok(token),
                    _ => Err(error),
                }
            }
        };
        self.fetches.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    fn token_of(
        &self,
        fetched: &Fetched,
        generation: u64,
        now: Instant,
    ) -> Result<AccessToken, TokenError> {
        let mut header = HeaderValue::from_str(&format!("Bearer {}", fetched.access_token))
            .map_err(|_| TokenError {
                class: AUTH_FAILED,
                verdict: Verdict::Retry { retry_after: None },
                status: None,
                code: None,
                message: "the access token is not a valid header value".to_string(),
            })?;
        header.set_sensitive(true);
        let (refresh_at, expires_at) = match fetched.expires_in {
            Some(life) => {
                let margin = (life - life * REFRESH_AT_FIFTHS / 5).min(MAX_REFRESH_MARGIN);
                (Some(now + (life - margin)), Some(now + life))
            }
            None => (None, None),
        };
        Ok(AccessToken {
            header,
            generation,
            refresh_at,
            expires_at,
        })
    }

    /// Warn once per change when the server refuses the credentials; other failures (an
    /// endpoint down) show in the attempts' errors.
    fn log_failure(&self, flight: &mut Flight, error: &TokenError) {
        if !error.refuses_credentials() {
            tracing::debug!(token_url = %endpoint(&self.token_url), error = %error, "OAuth2 token request failed");
            return;
        }
        let key = (error.status, error.code.clone());
        if flight.warned.as_ref() != Some(&key) {
            tracing::warn!(
                token_url = %endpoint(&self.token_url),
                client_id = %self.client_id,
                status = error.status,
                code = error.code.as_deref().unwrap_or(""),
                "the OAuth2 token endpoint refuses the client or its grant; deliveries are retried"
            );
            flight.warned = Some(key);
        }
    }

    /// One token request: form-encoded, the client by HTTP Basic.
    async fn request(&self, refresh_token: Option<&SecretString>) -> Result<Fetched, TokenError> {
        if let Some(refused) = &self.refused {
            return Err(TokenError::refused(refused));
        }
        let body = SecretString::from(self.form(refresh_token));
        let sent = self
            .client
            .post(self.token_url.clone())
            .header(AUTHORIZATION, self.client_authorization()?)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body.expose_secret().to_owned())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => return Err(unreachable(err)),
        };
        let status = response.status().as_u16();
        let (_, whole) = crate::http::read_body(&mut response, MAX_TOKEN_RESPONSE).await;
        if !(200..300).contains(&status) {
            return Err(TokenError {
                class: AUTH_FAILED,
                verdict: Verdict::Retry { retry_after: None },
                status: Some(status),
                code: whole.as_deref().and_then(error_code),
                message: format!(
                    "the token endpoint answered {}",
                    crate::http::describe_status(status)
                ),
            });
        }
        let invalid = |what: &str| TokenError {
            class: AUTH_FAILED,
            verdict: Verdict::Retry { retry_after: None },
            status: Some(status),
            code: None,
            message: format!("the token endpoint's answer (HTTP {status}) {what}"),
        };
        let whole = whole.ok_or_else(|| invalid("is larger than 64 KiB or was cut off"))?;
        let answer: TokenAnswer = serde_json::from_slice(&whole)
            .map_err(|_| invalid("is not a JSON token response with an `access_token`"))?;
        if answer.access_token.is_empty() {
            return Err(invalid("has an empty `access_token`"));
        }
        if let Some(kind) = &answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(invalid("is not a bearer token (`token_type`)"));
        }
        Ok(Fetched {
            access_token: answer.access_token,
            expires_in: answer.expires_in.as_ref().and_then(seconds),
            refresh_token: answer.refresh_token.filter(|t| !t.is_empty()),
        })
    }

    /// The token request's body: the grant, and `scope` and `audience` when set.
    fn form(&self, refresh_token: Option<&SecretString>) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        match refresh_token {
            Some(token) => form
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", token.expose_secret()),
            None => form.append_pair("grant_type", "client_credentials"),
        };
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        if let Some(audience) = &self.audience {
            form.append_pair("audience", audience);
        }
        form.finish()
    }

    /// `Basic base64(urlencode(client_id):urlencode(client_secret))` (RFC 6749 §2.3.1).
    fn client_authorization(&self) -> Result<HeaderValue, TokenError> {
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = SecretString::from(format!(
            "{}:{}",
            encode(&self.client_id),
            encode(self.client_secret.expose_secret())
        ));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair.expose_secret());
        let mut value =
            HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| TokenError {
                class: AUTH_FAILED,
                verdict: Verdict::Permanent,
                status: None,
                code: None,
                message: "the client credentials make no valid header".to_string(),
            })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// A token request that got no answer.
fn unreachable(err: reqwest::Error) -> TokenError {
    if let Some(refused) = crate::egress::refusal_of(&err) {
        return TokenError::refused(refused);
    }
    let (class, verdict) = match crate::http::classify_error(&err) {
        (LOCAL_FAILURE, verdict @ Verdict::Local { .. }) => (LOCAL_FAILURE, verdict),
        _ => (AUTH_FAILED, Verdict::Retry { retry_after: None }),
    };
    TokenError {
        class,
        verdict,
        status: None,
        code: None,
        message: format!(
            "the token endpoint is unreachable: {}",
            crate::http::describe_error(err)
        ),
    }
}

/// A token response (RFC 6749 §5.1). Unknown fields are ignored.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    /// Seconds; some servers write it as a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

fn seconds(value: &serde_json::Value) -> Option<Duration> {
    let secs = match value {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// The `error` code of an error response (RFC 6749 §5.2), if it is one: a short code of
/// the characters the RFC allows, never free text (which could echo what was sent).
fn error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        error: String,
    }
    let answer: ErrorAnswer = serde_json::from_slice(body).ok()?;
    let plain = answer.error.len() <= 64
        && answer
            .error
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    plain.then_some(answer.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_short_plain_words() {
        assert_eq!(
            error_code(br#"{"error":"invalid_client","error_description":"x"}"#),
            Some("invalid_client".to_string())
        );
        assert_eq!(error_code(br#"{"error":"bad client s3cr3t!"}"#), None);
        assert_eq!(error_code(b"<html>"), None);
    }

    #[test]
    fn expires_in_as_number_or_string() {
        assert_eq!(
            seconds(&serde_json::json!(3600)),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            seconds(&serde_json::json!("120")),
            Some(Duration::from_secs(120))
        );
        assert_eq!(seconds(&serde_json::json!(-5)), None);
    }
}
