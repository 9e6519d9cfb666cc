//! The SSRF guard on outbound calls.
//!
//! Outbound calls to loopback, private, link-local, CGNAT, cloud-metadata and other
//! non-public addresses (IPv4 and IPv6) are refused unless the operator allow-listed the
//! network or the URL's host name ([`EgressPolicy`]; the rules live in
//! [`ferry_config::egress`] so that `ferry validate` applies the same ones).
//!
//! Enforcement happens where the address is chosen: a client built with
//! [`guarded_client_builder`] resolves host names through [`GuardedResolver`], which drops
//! every refused address and fails with an [`EgressRefused`] when none is left. reqwest only
//! ever connects to the addresses its resolver returns, so a DNS answer that changes between
//! a check and the connect (DNS rebinding) cannot get past the guard. Address-literal URLs
//! (`http://10.0.0.5/`) never reach a resolver: [`EgressPolicy::check_literal`] judges them
//! before the request is sent ([`crate::HttpConnector`] and [`GuardedClient`] do).

use std::collections::HashSet;
use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use ferry_config::egress::{
    EgressPolicy, EgressRefused, Embedding, Forbidden, Range, forbidden,
};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, Url};

use crate::http::USER_AGENT;

/// The error class recorded for an attempt the guard refused. Permanent: retrying cannot
/// help until the configuration changes.
pub const EGRESS_REFUSED: &str = "egress_refused";

/// A DNS resolver that returns only the addresses `policy` allows.
///
/// Resolution itself is the system's (`getaddrinfo` on a blocking thread, like reqwest's
/// default resolver). Refused addresses are dropped; when none is left, resolution fails
/// with an [`EgressRefused`] naming the host, the addresses and the rule that refused them.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: EgressPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's default) in its place.
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            match screen(&policy, &host, addrs)? {
                allowed if allowed.is_empty() => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("`{host}` resolved to no address"),
                )
                .into()),
                allowed => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// The addresses of `host` that `policy` allows, in resolver order and without duplicates;
/// an [`EgressRefused`] when there were addresses and every one was refused.
pub fn screen(
    policy: &EgressPolicy,
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, EgressRefused> {
    let mut seen = HashSet::new();
    let mut allowed = Vec::new();
    let mut refused = Vec::new();
    for addr in addrs {
        if !seen.insert(addr.ip()) {
            continue;
        }
        match policy.refuses(Some(host), addr.ip()) {
            None => allowed.push(addr),
            Some(rule) => refused.push((addr.ip(), rule)),
        }
    }
    if allowed.is_empty() && !refused.is_empty() {
        return Err(EgressRefused::resolved(host, refused));
    }
    if !refused.is_empty() {
        tracing::debug!(
            host,
            refused = refused.len(),
            "egress guard dropped some of the host's addresses"
        );
    }
    Ok(allowed)
}

/// A client builder whose connections obey `policy`: host names resolve through a
/// [`GuardedResolver`], proxies are off (a proxy would resolve the host itself) and
/// redirects are not followed (a redirect to an address literal would skip the resolver).
///
/// Address-literal URLs do not go through any resolver: check each request's URL with
/// [`EgressPolicy::check_literal`] first, or use [`GuardedClient`], which does. Do not
/// re-enable proxies or redirects, or add `resolve` overrides, on the returned builder.
pub fn guarded_client_builder(policy: EgressPolicy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver::new(policy))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
}

/// A reqwest client for the hub's other outbound calls (owner notifications...), guarded
/// like the delivery lanes: [`GuardedClient::request`] refuses address-literal URLs the
/// policy refuses, and host names are screened at connect time.
#[derive(Clone, Debug)]
pub struct GuardedClient {
    client: reqwest::Client,
    policy: EgressPolicy,
}

impl GuardedClient {
    /// A client enforcing `policy` whose requests time out after `timeout`.
    pub fn new(policy: EgressPolicy, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = guarded_client_builder(policy.clone())
            .timeout(timeout)
            .build()?;
        Ok(Self { client, policy })
    }

    /// Start a request to `url`, unless its host is an address literal the policy refuses.
    pub fn request(&self, method: Method, url: Url) -> Result<RequestBuilder, EgressRefused> {
        self.policy.check_literal(&url)?;
        Ok(self.client.request(method, url))
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }
}

/// The guard's refusal inside a failed request's error chain, if that is why it failed.
pub fn refusal_of<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a EgressRefused> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<EgressRefused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().expect("ip"), 0)
    }

    fn policy(entries: &[&str]) -> EgressPolicy {
        EgressPolicy::from_entries(entries).expect("entries")
    }

    #[test]
    fn screen_keeps_allowed_addresses_in_order() {
        let mixed = [
            addr("10.0.0.5"),
            addr("93.184.216.34"),
            addr("::1"),
            addr("2606:2800:220:1::1"),
            addr("93.184.216.34"),
        ];
        let kept = screen(&EgressPolicy::new(), "mixed.example", mixed).expect("public ones");
        assert_eq!(kept, [addr("93.184.216.34"), addr("2606:2800:220:1::1")]);
    }

    #[test]
    fn screen_refuses_when_nothing_is_left() {
        let err = screen(
            &EgressPolicy::new(),
            "internal.example",
            [addr("10.0.0.5"), addr("10.0.0.5")],
        )
        .expect_err("private only");
        assert_eq!(
            err.to_string(),
            "destination host `internal.example` resolves only to 10.0.0.5 (private network); allow it with `egress_allow`"
        );
        assert_eq!(err.refused.len(), 1, "duplicates are listed once");
    }

    #[test]
    fn screen_honours_networks_and_hosts() {
        let loopback = [addr("127.0.0.1"), addr("::1")];
        assert_eq!(
            screen(&policy(&["127.0.0.0/8"]), "localhost", loopback).expect("v4 allowed"),
            [addr("127.0.0.1")]
        );
        assert_eq!(
            screen(&policy(&["localhost"]), "localhost", loopback).expect("host allowed"),
            loopback
        );
        assert!(screen(&policy(&["localhost"]), "other.example", loopback).is_err());
    }

    #[test]
    fn screen_passes_an_empty_answer_through() {
        assert_eq!(
            screen(&EgressPolicy::new(), "nothing.example", []),
            Ok(vec![])
        );
    }

    #[test]
    fn refusal_is_found_in_an_error_chain() {
        #[derive(Debug)]
        struct Outer(EgressRefused);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connect failed")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = EgressRefused::literal(
            "10.0.0.1".parse().expect("ip"),
            forbidden("10.0.0.1".parse().expect("ip")).expect("private"),
        );
        let outer = Outer(refused.clone());
        assert_eq!(refusal_of(&outer), Some(&refused));
        let other = io::Error::other("nope");
        assert_eq!(refusal_of(&other), None);
    }
}
