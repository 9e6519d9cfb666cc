//! Best-effort scrape of the hub's Prometheus `/metrics`: the mean of every `*_seconds`
//! histogram or summary (summed over label sets), e.g. how long ingress waited for the
//! store's commit and how long a delivery attempt took. Also a plain GET for the admin API.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::{AUTHORIZATION, HOST};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::sender::Target;

/// Count and mean of one timing metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timing {
    pub count: f64,
    pub mean_us: f64,
}

/// `GET /metrics` on the hub (`target`'s address and path prefix); `None` on any failure.
pub async fn scrape(target: &Target) -> Option<BTreeMap<String, Timing>> {
    let text = get(target, "/metrics", None).await?;
    Some(timings(&text))
}

/// `GET {prefix}{path}` on the hub, with a bearer token if given; the body of a 2xx
/// answer, `None` on any failure.
pub async fn get(target: &Target, path: &str, bearer: Option<&str>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), fetch(target, path, bearer))
        .await
        .ok()?
}

async fn fetch(target: &Target, path: &str, bearer: Option<&str>) -> Option<String> {
    let stream = tokio::net::TcpStream::connect(target.addr).await.ok()?;
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let prefix = target.path.split("/ingest/").next().unwrap_or("");
    let mut req = Request::get(format!("{prefix}{path}")).header(HOST, target.host.clone());
    if let Some(token) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Empty::new()).ok()?;
    let resp = tx.send_request(req).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

/// Means of the `NAME_sum` / `NAME_count` pairs whose NAME ends in `_seconds`.
pub fn timings(text: &str) -> BTreeMap<String, Timing> {
    let mut sums: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series).trim();
        if let Some(base) = name.strip_suffix("_seconds_sum") {
            sums.entry(base).or_default().0 += value;
        } else if let Some(base) = name.strip_suffix("_seconds_count") {
            sums.entry(base).or_default().1 += value;
        }
    }
    sums.into_iter()
        .filter(|(_, (_, count))| *count > 0.0)
        .map(|(base, (sum, count))| {
            (
                format!("{base}_seconds"),
                Timing {
                    count,
                    mean_us: sum / count * 1e6,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_of_histograms() {
        let text = "\
# TYPE ferry_ingress_commit_seconds histogram
ferry_ingress_commit_seconds_bucket{le=\"0.005\"} 3
ferry_ingress_commit_seconds_sum 0.006
ferry_ingress_commit_seconds_count 3
ferry_delivery_attempt_duration_seconds_sum{flow=\"a\",destination=\"x\"} 1.5
ferry_delivery_attempt_duration_seconds_count{flow=\"a\",destination=\"x\"} 500
ferry_delivery_attempt_duration_seconds_sum{flow=\"b\",destination=\"y\"} 0.5
ferry_delivery_attempt_duration_seconds_count{flow=\"b\",destination=\"y\"} 500
ferry_ingress_received_total{flow=\"a\"} 9
ferry_idle_seconds_sum 0
ferry_idle_seconds_count 0
";
        let t = timings(text);
        assert_eq!(t.len(), 2);
        let c = t["ferry_ingress_commit_seconds"];
        assert_eq!(c.count, 3.0);
        assert!((c.mean_us - 2000.0).abs() < 1e-6);
        let d = t["ferry_delivery_attempt_duration_seconds"];
        assert_eq!(d.count, 1000.0);
        assert!((d.mean_us - 2000.0).abs() < 1e-6);
    }
}
