//! The SSRF guard on real connections: host names are screened by the resolver at connect
//! time, address literals before the request; a refusal is a permanent `egress_refused`
//! attempt and the receiver sees nothing.

mod common;

use bytes::Bytes;
use common::*;
use ferry_delivery::egress::{EGRESS_REFUSED, refusal_of};
use ferry_delivery::{
    AttemptResult, EgressPolicy, GuardedClient, HttpConnector, HttpTarget, Verdict,
};
use ferry_store::{ClaimedDelivery, DeliveryId, EventId};
use reqwest::{Method, Url};

fn claimed() -> ClaimedDelivery {
    ClaimedDelivery {
        id: DeliveryId::new(),
        event_id: EventId::new(),
        lane: lane("f", "d"),
        event_type: None,
        received_at: now_millis(),
        headers: vec![],
        payload: Bytes::from_static(b"{\"a\":1}"),
        attempts: 0,
        round_attempts: 0,
        round_started_at: now_millis(),
        clear_payload: None,
    }
}

fn policy(entries: &[&str]) -> EgressPolicy {
    EgressPolicy::from_entries(entries).unwrap()
}

fn guarded(url: Url, egress: EgressPolicy) -> HttpConnector {
    HttpConnector::new(
        HttpTarget {
            egress,
            ..target(url)
        },
        1,
    )
    .unwrap()
}

/// The receiver's URL with `host` in place of its address.
fn url_with_host(rx: &Receiver, host: &str) -> Url {
    Url::parse(&format!("http://{host}:{}/in", rx.addr.port())).unwrap()
}

fn assert_refused(result: &AttemptResult, needle: &str) {
    assert_eq!(result.verdict, Verdict::Permanent, "{result:?}");
    assert_eq!(result.error_class, EGRESS_REFUSED, "{result:?}");
    assert_eq!(result.status, None);
    let error = result.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("egress refused: "), "{error}");
    assert!(error.contains(needle), "{error}");
    assert!(error.contains("allow it with `egress_allow`"), "{error}");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_without_an_allow_list() {
    let rx = Receiver::start(vec![Reply::status(200)]).await;
    let c = guarded(url_with_host(&rx, "localhost"), EgressPolicy::new());
    let result = c.send(&claimed()).await;
    assert_refused(
        &result,
        "destination host `localhost` resolves only to 127.0.0.1 (loopback)",
    );
    assert_eq!(rx.count(), 0, "nothing may reach the receiver");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_allowed_by_network_or_host() {
    for allow in ["127.0.0.0/8", "localhost", "LocalHost"] {
        let rx = Receiver::start(vec![Reply::status(200)]).await;
        let c = guarded(url_with_host(&rx, "localhost"), policy(&[allow]));
        let result = c.send(&claimed()).await;
        assert_eq!(result.verdict, Verdict::Delivered, "{allow}: {result:?}");
        assert_eq!(result.error_class, "ok");
        assert_eq!(rx.count(), 1, "{allow}");
    }
}

#[tokio::test]
async fn a_network_that_does_not_contain_the_address_does_not_help() {
    let rx = Receiver::start(vec![Reply::status(200)]).await;
    let other = policy(&["10.0.0.0/8", "::1", "other.example"]);
    let result = guarded(url_with_host(&rx, "localhost"), other)
        .send(&claimed())
        .await;
    assert_refused(&result, "127.0.0.1 (loopback)");
    assert_eq!(rx.count(), 0);
}

#[tokio::test]
async fn address_literals_are_refused_before_any_connection() {
    let rx = Receiver::start(vec![Reply::status(200)]).await;
    let port = rx.addr.port();
    for (url, needle) in [
        (
            format!("http://127.0.0.1:{port}/in"),
            "destination address 127.0.0.1 (loopback) is not public",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/in"),
            "loopback via IPv4-mapped 127.0.0.1",
        ),
        (
            format!("http://2130706433:{port}/in"),
            "127.0.0.1 (loopback)",
        ),
    ] {
        let c = guarded(Url::parse(&url).unwrap(), EgressPolicy::new());
        assert_refused(&c.send(&claimed()).await, needle);
        // Every attempt, not only the first.
        assert_refused(&c.send(&claimed()).await, needle);
    }
    assert_eq!(rx.count(), 0);
    let allowed = guarded(rx.url("/in"), policy(&["127.0.0.1"]));
    assert_eq!(allowed.send(&claimed()).await.verdict, Verdict::Delivered);
    assert_eq!(rx.count(), 1);
}

#[tokio::test]
async fn metadata_addresses_are_refused_with_their_rule() {
    let c = guarded(
        Url::parse("http://169.254.169.254/latest/meta-data/").unwrap(),
        policy(&["127.0.0.0/8"]),
    );
    assert_refused(
        &c.send(&claimed()).await,
        "169.254.169.254 (cloud metadata service)",
    );
}

#[tokio::test]
async fn the_guarded_client_checks_literals_and_resolved_names() {
    let rx = Receiver::start(vec![Reply::status(204)]).await;
    let strict =
        GuardedClient::new(EgressPolicy::new(), std::time::Duration::from_secs(5)).unwrap();

    let refused = strict.request(Method::POST, rx.url("/n")).unwrap_err();
    assert!(refused.literal);

    // A name goes through the resolver; the refusal is found in reqwest's error chain.
    let err = strict
        .request(Method::POST, url_with_host(&rx, "localhost"))
        .unwrap()
        .send()
        .await
        .unwrap_err();
    let refused = refusal_of(&err).expect("the guard's refusal in the error chain");
    assert_eq!(refused.host, "localhost");
    assert!(!refused.literal);
    assert_eq!(rx.count(), 0);

    let allowed =
        GuardedClient::new(policy(&["localhost"]), std::time::Duration::from_secs(5)).unwrap();
    let resp = allowed
        .request(Method::POST, url_with_host(&rx, "localhost"))
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(rx.count(), 1);
}
