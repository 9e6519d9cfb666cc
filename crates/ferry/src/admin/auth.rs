//! Bearer-token gates for the admin API and `/metrics`: the token compared in constant time,
//! the `Bearer` scheme matched case-insensitively (RFC 9110), an empty token refused before
//! any comparison, and a client that keeps presenting wrong tokens locked out with `429`.
//! The admin API also takes the tenants' tokens: each sees only its tenant's lanes, pulls,
//! deliveries and events ([`AdminScope`]), and is refused every other route.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::problem::Problem;

/// Wrong tokens a client may present within [`LOCKOUT_WINDOW`] before it is refused `429`.
pub const MAX_FAILURES: u32 = 10;
/// The window over which wrong tokens are counted, and how long a lockout lasts.
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(60);
/// Most client addresses remembered at once; beyond it, expired entries are dropped first
/// and, if none has expired, the table is cleared (memory stays bounded under a flood).
const MAX_CLIENTS: usize = 10_000;

/// One gate: what it guards (for messages and metric labels) and the token it requires.
#[derive(Clone)]
pub struct TokenGate {
    inner: Arc<GateInner>,
}

struct GateInner {
    /// `admin` or `metrics`.
    what: &'static str,
    /// `None`: no token configured. The admin API then refuses every call; `/metrics` is
    /// then open (see `settings.metrics.token`).
    token: Option<SecretString>,
    /// Whether a missing configured token means "refuse everything" (admin) or "open".
    required: bool,
    /// Who a request that passes is, as the audit trail names it ([`token_id`]).
    caller: AdminCaller,
    /// The tenants' admin tokens (admin gate only).
    tenants: Vec<TenantGate>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// One tenant's token, and who its calls are.
struct TenantGate {
    token: SecretString,
    scope: AdminScope,
    caller: AdminCaller,
}

/// What an admin call may see: everything (the hub's token), or one tenant's flows.
#[derive(Debug, Clone)]
pub enum AdminScope {
    Hub,
    Tenant {
        tenant: String,
        flows: Arc<BTreeSet<String>>,
    },
}

impl AdminScope {
    /// Whether the caller may see `flow`'s lanes, pulls, deliveries and events.
    pub fn allows(&self, flow: &str) -> bool {
        match self {
            AdminScope::Hub => true,
            AdminScope::Tenant { flows, .. } => flows.contains(flow),
        }
    }

    /// The flows a listing is limited to: `None` for every flow.
    pub fn flows(&self) -> Option<Vec<String>> {
        match self {
            AdminScope::Hub => None,
            AdminScope::Tenant { flows, .. } => Some(flows.iter().cloned().collect()),
        }
    }
}

/// The admin routes a tenant's token may call: its lanes (and their pause), pulls,
/// deliveries, events and replays. Every other route is the operator's.
const TENANT_ROUTES: &[&str] = &[
    "/admin/v1/lanes",
    "/admin/v1/pulls",
    "/admin/v1/lanes/{flow}/{destination}/pause",
    "/admin/v1/lanes/{flow}/{destination}/resume",
    "/admin/v1/deliveries",
    "/admin/v1/deliveries/{id}",
    "/admin/v1/events",
    "/admin/v1/events/{id}",
    "/admin/v1/replay",
];

/// Wrong tokens from one client address in the current window.
#[derive(Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

impl TokenGate {
    /// The admin API's gate: without a configured token every call is refused.
    pub fn admin(token: Option<SecretString>) -> Self {
        Self::new("admin", token, true, Vec::new())
    }

    /// The admin API's gate taking the hub's token and the tenants' (each seeing only its
    /// tenant). Without any token every call is refused.
    pub fn admin_with_tenants(
        token: Option<SecretString>,
        tenants: Vec<crate::tenancy::TenantToken>,
    ) -> Self {
        let tenants = tenants
            .into_iter()
            .filter(|t| !t.token.expose_secret().trim().is_empty())
            .map(|t| TenantGate {
                caller: AdminCaller(format!(
                    "tenant {} ({})",
                    t.tenant,
                    token_id("admin", t.token.expose_secret())
                )),
                token: t.token,
                scope: AdminScope::Tenant {
                    tenant: t.tenant,
                    flows: t.flows,
                },
            })
            .collect();
        Self::new("admin", token, true, tenants)
    }

    /// `/metrics`' gate: without a configured token, `/metrics` is open.
    pub fn metrics(token: Option<SecretString>) -> Self {
        Self::new("metrics", token, false, Vec::new())
    }

    fn new(
        what: &'static str,
        token: Option<SecretString>,
        required: bool,
        tenants: Vec<TenantGate>,
    ) -> Self {
        // An empty configured token is no token (fail closed); validation refuses it anyway.
        let token = token.filter(|t| !t.expose_secret().trim().is_empty());
        let caller = AdminCaller(match &token {
            Some(t) => token_id(what, t.expose_secret()),
            None => format!("{what} (no token)"),
        });
        Self {
            inner: Arc::new(GateInner {
                what,
                token,
                required,
                caller,
                tenants,
                failures: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Check one request: who it is and what it may see, else the refusal to answer with.
    fn check(
        &self,
        headers: &HeaderMap,
        client: IpAddr,
        now: Instant,
    ) -> Result<(AdminCaller, AdminScope), Problem> {
        let inner = &self.inner;
        let hub = (inner.caller.clone(), AdminScope::Hub);
        if inner.token.is_none() && inner.tenants.is_empty() {
            if !inner.required {
                return Ok(hub);
            }
            self.count_rejection("no_token_configured");
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "Admin API disabled",
                "no admin token is configured (settings.admin.token); every admin call is refused",
            ));
        }
        if let Some(retry_after) = self.locked_out(client, now) {
            self.count_rejection("locked_out");
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_bad_tokens",
                "Too many wrong tokens",
                format!(
                    "this address presented {MAX_FAILURES} wrong tokens within {}s; retry later",
                    LOCKOUT_WINDOW.as_secs()
                ),
            )
            .retry_after(retry_after.as_secs().max(1)));
        }
        let presented = bearer_token(headers);
        // Refused before any comparison: an empty token never matches.
        let same = |token: &SecretString| {
            presented.is_some_and(|p| {
                !p.is_empty() && bool::from(p.as_bytes().ct_eq(token.expose_secret().as_bytes()))
            })
        };
        if inner.token.as_ref().is_some_and(same) {
            return Ok(hub);
        }
        if let Some(t) = inner.tenants.iter().find(|t| same(&t.token)) {
            return Ok((t.caller.clone(), t.scope.clone()));
        }
        self.record_failure(client, now);
        self.count_rejection("unauthorized");
        Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            if inner.what == "admin" {
                "admin_unauthorized"
            } else {
                "metrics_unauthorized"
            },
            "Unauthorized",
            match presented {
                None => format!("{} calls need `Authorization: Bearer <token>`", inner.what),
                Some("") => "the bearer token is empty".to_string(),
                Some(_) => format!("the bearer token is not the {} token", inner.what),
            },
        ))
    }

    fn count_rejection(&self, reason: &'static str) {
        let name = if self.inner.what == "admin" {
            ferry_metrics::ADMIN_REJECTED_TOTAL
        } else {
            ferry_metrics::METRICS_REJECTED_TOTAL
        };
        metrics::counter!(name, "reason" => reason).increment(1);
    }

    /// How long until `client` may try again, if it is locked out now.
    fn locked_out(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.inner.failures.lock().ok()?;
        let f = failures.get(&client)?;
        let ends = f.since + LOCKOUT_WINDOW;
        (f.count >= MAX_FAILURES && now < ends).then(|| ends - now)
    }

    fn record_failure(&self, client: IpAddr, now: Instant) {
        let Ok(mut failures) = self.inner.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_CLIENTS && !failures.contains_key(&client) {
            failures.retain(|_, f| now < f.since + LOCKOUT_WINDOW);
            if failures.len() >= MAX_CLIENTS {
                failures.clear();
            }
        }
        let entry = failures.entry(client).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now >= entry.since + LOCKOUT_WINDOW {
            *entry = Failures {
                since: now,
                count: 0,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }
}

/// The credentials of `Authorization: Bearer <token>`, the scheme matched case-insensitively;
/// `Some("")` when the scheme is there with no token, `None` when there is no bearer header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The client's address, as the server recorded it for the connection.
fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Who made an admin call, as the audit trail names them: the id of the token presented
/// ([`token_id`]), never the token. Set on every request a gate lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCaller(pub String);

/// A token's id: `<what>-token:` and the first 12 hex digits of the SHA-256 of the token.
/// It tells tokens apart (a new token after a rotation has another id) and says nothing
/// about the token: an operator finds it with `printf %s "$TOKEN" | sha256sum | cut -c1-12`.
pub fn token_id(what: &str, token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{what}-token:{hex}")
}

/// Middleware: let the request through only if `gate` accepts it, noting who made it
/// ([`AdminCaller`]).
pub async fn require_token(
    State(gate): State<TokenGate>,
    mut req: Request,
    next: Next,
) -> Response {
    match gate.check(req.headers(), client_ip(&req), Instant::now()) {
        Ok((caller, scope)) => {
            if let AdminScope::Tenant { tenant, .. } = &scope {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str);
                if !route.is_some_and(|r| TENANT_ROUTES.contains(&r)) {
                    gate.count_rejection("tenant_forbidden");
                    return Problem::new(
                        StatusCode::FORBIDDEN,
                        "tenant_forbidden",
                        "Not for a tenant's token",
                        format!(
                            "tenant `{tenant}`'s token reads and replays its own lanes, \
                             pulls, deliveries and events only; this call needs the hub's \
                             admin token"
                        ),
                    )
                    .into_response();
                }
            }
            req.extensions_mut().insert(caller);
            req.extensions_mut().insert(scope);
            next.run(req).await
        }
        Err(problem) => problem.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn a_token_id_names_the_token_without_revealing_it() {
        let id = token_id("admin", TOKEN);
        assert!(id.starts_with("admin-token:") && id.len() == "admin-token:".len() + 12);
        assert!(!id.contains(TOKEN) && !id.contains(&TOKEN[..8]), "{id}");
        assert_eq!(id, token_id("admin", TOKEN));
        assert_ne!(id, token_id("admin", "another-token-0123456789abcdef01"));
        // `printf %s "$TOKEN" | sha256sum | cut -c1-12`
        use sha2::{Digest, Sha256};
        let full: String = Sha256::digest(TOKEN.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&id["admin-token:".len()..], &full[..12]);
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let gate = TokenGate::admin(Some(TOKEN.into()));
        let now = Instant::now();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let h = with_auth(&format!("{scheme} {TOKEN}"));
            assert!(gate.check(&h, ip(1), now).is_ok(), "{scheme}");
        }
        assert!(gate.check(&with_auth(TOKEN), ip(1), now).is_err());
    }

    #[test]
    fn an_empty_token_is_refused() {
        let gate = TokenGate::admin(Some(TOKEN.into()));
        let now = Instant::now();
        for value in ["Bearer ", "Bearer", "bearer    "] {
            let err = gate.check(&with_auth(value), ip(1), now).unwrap_err();
            assert_eq!(err.status, 401, "{value:?}");
        }
        // And an empty configured token refuses everything rather than matching "".
        let gate = TokenGate::admin(Some("  ".into()));
        let err = gate.check(&with_auth("Bearer "), ip(1), now).unwrap_err();
        assert_eq!(err.status, 403);
    }

    #[test]
    fn repeated_wrong_tokens_lock_the_address_out_even_for_the_right_token() {
        let gate = TokenGate::admin(Some(TOKEN.into()));
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            let err = gate
                .check(&with_auth("Bearer wrong"), ip(1), now)
                .unwrap_err();
            assert_eq!(err.status, 401);
        }
        let right = with_auth(&format!("Bearer {TOKEN}"));
        let err = gate.check(&right, ip(1), now).unwrap_err();
        assert_eq!(err.status, 429);
        assert_eq!(err.code, "too_many_bad_tokens");
        // Another address is not affected, and the lockout ends with its window.
        assert!(gate.check(&right, ip(2), now).is_ok());
        assert!(gate.check(&right, ip(1), now + LOCKOUT_WINDOW).is_ok());
    }

    #[test]
    fn a_tenant_token_sees_its_tenant_and_the_hub_token_everything() {
        const ACME: &str = "acme-admin-token-0123456789abcdefghij";
        let flows: BTreeSet<String> = ["orders@acme".to_string()].into();
        let gate = TokenGate::admin_with_tenants(
            Some(TOKEN.into()),
            vec![crate::tenancy::TenantToken {
                tenant: "acme".into(),
                token: ACME.into(),
                flows: Arc::new(flows),
            }],
        );
        let now = Instant::now();
        let (caller, scope) = gate
            .check(&with_auth(&format!("Bearer {ACME}")), ip(1), now)
            .expect("acme's token");
        assert!(
            caller.0.starts_with("tenant acme (admin-token:"),
            "{caller:?}"
        );
        assert!(scope.allows("orders@acme") && !scope.allows("orders@globex"));
        assert_eq!(scope.flows(), Some(vec!["orders@acme".to_string()]));
        let (_, scope) = gate
            .check(&with_auth(&format!("Bearer {TOKEN}")), ip(1), now)
            .expect("the hub's token");
        assert!(scope.allows("orders@globex") && scope.flows().is_none());
        // A prefix of a tenant's token, or another string, is no token.
        for wrong in [&ACME[..20], "orders@acme", ""] {
            let err = gate
                .check(&with_auth(&format!("Bearer {wrong}")), ip(2), now)
                .unwrap_err();
            assert_eq!(err.status, 401, "{wrong:?}");
        }
        // Tenants' tokens alone open the admin API to their tenants only.
        let gate = TokenGate::admin_with_tenants(
            None,
            vec![crate::tenancy::TenantToken {
                tenant: "acme".into(),
                token: ACME.into(),
                flows: Arc::new(BTreeSet::new()),
            }],
        );
        assert!(
            gate.check(&with_auth(&format!("Bearer {ACME}")), ip(1), now)
                .is_ok()
        );
        assert_eq!(
            gate.check(&with_auth("Bearer "), ip(1), now)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn metrics_are_open_without_a_token_and_gated_with_one() {
        let now = Instant::now();
        assert!(
            TokenGate::metrics(None)
                .check(&HeaderMap::new(), ip(1), now)
                .is_ok()
        );
        let gate = TokenGate::metrics(Some(TOKEN.into()));
        assert_eq!(
            gate.check(&HeaderMap::new(), ip(1), now)
                .unwrap_err()
                .status,
            401
        );
        assert!(
            gate.check(&with_auth(&format!("Bearer {TOKEN}")), ip(1), now)
                .is_ok()
        );
    }
}
