//! The HTTP connector against hostile and odd receivers: it must never panic, never buffer
//! an unbounded body, and classify every failure.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ferry_delivery::{HttpConnector, Verdict};
use ferry_store::{ClaimedDelivery, DeliveryId, EventId};
use reqwest::Url;

fn claimed(headers: &[(&str, &str)]) -> ClaimedDelivery {
    ClaimedDelivery {
        id: DeliveryId::new(),
        event_id: EventId::new(),
        lane: lane("f", "d"),
        event_type: None,
        received_at: now_millis(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        payload: Bytes::from_static(b"{\"a\":1}"),
        attempts: 0,
        round_attempts: 0,
        round_started_at: now_millis(),
        clear_payload: None,
    }
}

fn connector(url: Url) -> HttpConnector {
    HttpConnector::new(target(url), 2).unwrap()
}

fn raw_url(addr: std::net::SocketAddr) -> Url {
    Url::parse(&format!("http://{addr}/")).unwrap()
}

#[tokio::test]
async fn endless_body_is_not_buffered() {
    let (addr, streamed) = raw_server_watched(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
        true,
    )
    .await;
    let result = connector(raw_url(addr)).send(&claimed(&[])).await;
    assert_eq!(result.status, Some(200));
    assert_eq!(result.verdict, Verdict::Delivered);
    let excerpt = result.response_excerpt.unwrap();
    assert_eq!(excerpt.len(), 512);
    assert!(excerpt.bytes().all(|b| b == b'a'));
    // It stopped reading and hung up: the server's writes failed once the socket buffers
    // were full, far short of its cap. A connector reading on (until its 5 s time-out)
    // would have taken the whole cap. (Counted in bytes, not time.)
    eventually("the server to stop writing", || {
        streamed.ended.load(Ordering::SeqCst)
    })
    .await;
    let written = streamed.written.load(Ordering::SeqCst);
    assert!(written < ENDLESS_CAP, "the connector read {written} bytes");
}

#[tokio::test]
async fn large_body_excerpt_is_bounded() {
    let receiver = Receiver::start(vec![Reply::status(500).body(vec![b'x'; 4 << 20])]).await;
    let result = connector(receiver.url("/")).send(&claimed(&[])).await;
    assert_eq!(result.status, Some(500));
    assert_eq!(result.error_class, "http_5xx");
    assert_eq!(result.verdict, Verdict::Retry { retry_after: None });
    assert_eq!(result.response_excerpt.unwrap().len(), 512);
}

#[tokio::test]
async fn non_utf8_body_and_header_do_not_break_anything() {
    let addr = raw_server(
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: \xff\xfe\r\nx-junk: \x80\x81\r\ncontent-length: 4\r\n\r\n\xff\xfeok",
        false,
    )
    .await;
    let result = connector(raw_url(addr)).send(&claimed(&[])).await;
    assert_eq!(result.status, Some(503));
    assert_eq!(result.verdict, Verdict::Retry { retry_after: None });
    assert_eq!(
        result.response_excerpt.as_deref(),
        Some("\u{fffd}\u{fffd}ok")
    );
    assert_eq!(
        result.error.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
}

#[tokio::test]
async fn garbage_response_is_a_retryable_request_error() {
    let addr = raw_server(b"THIS IS NOT HTTP\r\n\r\n", false).await;
    let result = connector(raw_url(addr)).send(&claimed(&[])).await;
    assert_eq!(result.status, None);
    assert_eq!(result.error_class, "request");
    assert_eq!(result.verdict, Verdict::Retry { retry_after: None });
    assert!(result.error.is_some());
}

#[tokio::test]
async fn retry_after_values() {
    // An HTTP date keeps whole seconds: `at` is the instant the header names.
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
    let at = httpdate::parse_http_date(&date).unwrap();
    let receiver = Receiver::start(vec![
        Reply::status(429).header("retry-after", "7"),
        Reply::status(503).header("retry-after", &date),
        Reply::status(503).header("retry-after", "tomorrow-ish"),
        Reply::status(503).header("retry-after", "-3"),
        Reply::status(400).header("retry-after", "7"),
    ])
    .await;
    let c = connector(receiver.url("/"));
    let d = claimed(&[]);
    assert_eq!(
        c.send(&d).await.verdict,
        Verdict::Retry {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    // The wait is `at` minus the clock when the answer was read: between these two.
    let before = std::time::SystemTime::now();
    let Verdict::Retry {
        retry_after: Some(wait),
    } = c.send(&d).await.verdict
    else {
        panic!("date not parsed")
    };
    let after = std::time::SystemTime::now();
    let longest = at.duration_since(before).unwrap();
    let shortest = at.duration_since(after).unwrap_or_default();
    assert!(
        shortest <= wait && wait <= longest && wait <= Duration::from_secs(120),
        "{wait:?} not within {shortest:?}..={longest:?}"
    );

    assert_eq!(
        c.send(&d).await.verdict,
        Verdict::Retry { retry_after: None }
    );
    assert_eq!(
        c.send(&d).await.verdict,
        Verdict::Retry { retry_after: None }
    );
    // Retry-After on a permanent failure changes nothing.
    assert_eq!(c.send(&d).await.verdict, Verdict::Permanent);
}

#[tokio::test]
async fn invalid_stored_headers_are_skipped() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let d = claimed(&[("content-type", "bad\nvalue"), ("traceparent", "x\r\ny")]);
    let result = connector(receiver.url("/")).send(&d).await;
    assert_eq!(result.verdict, Verdict::Delivered);
    let req = &receiver.received()[0];
    assert_eq!(req.headers["content-type"], "application/json");
    assert!(req.headers.get("traceparent").is_none());
}

#[tokio::test]
async fn configured_content_type_is_used_when_the_event_has_none() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let mut t = target(receiver.url("/"));
    t.headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/cloudevents+json"),
    );
    // Headers named like the delivery headers are overridden, never duplicated.
    t.headers.insert(
        "webhook-id",
        reqwest::header::HeaderValue::from_static("spoofed"),
    );
    let c = HttpConnector::new(t, 1).unwrap();
    let d = claimed(&[]);
    c.send(&d).await;
    let req = &receiver.received()[0];
    assert_eq!(req.headers["content-type"], "application/cloudevents+json");
    let ids: Vec<_> = req.headers.get_all("webhook-id").iter().collect();
    assert_eq!(ids, vec![d.id.to_string().as_str()]);
}

#[test]
fn target_debug_hides_secrets() {
    let mut t = target(Url::parse("https://user:pw@example.com:8443/hook?token=s3cret").unwrap());
    t.headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer s3cret"),
    );
    t.signing_key = Some(ferry_signature::SigningKey::from_bytes(b"s3cret-key-bytes"));
    let shown = format!("{t:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(!shown.contains("pw"), "{shown}");
    assert!(shown.contains("example.com:8443/hook"), "{shown}");
    assert!(shown.contains("authorization"), "{shown}");
}
