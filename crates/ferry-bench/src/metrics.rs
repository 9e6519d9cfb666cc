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

/// The text of the hub's `/metrics` (`target`'s address and path prefix); `None` on any
/// failure.
pub async fn text(target: &Target) -> Option<String> {
    get(target, "/metrics", None).await
}

/// Every sample of a Prometheus text exposition: the series (name and labels) and its
/// value; comments and unparsable lines are skipped.
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.trim(), value.trim().parse::<f64>().ok()?))
        })
}

/// `value` of the label `name` in a series' label set (`{a="x",b="y"}`), if present.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let inner = labels.trim().strip_prefix('{')?.strip_suffix('}')?;
    // Label values here are flow and destination names: no quotes or commas inside.
    inner.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The samples of metric `name` for each `destination` label, summed over the other
/// labels (and restricted to `extra = value` when given), e.g.
/// `ferry_backlog_depth` → `{"d1": 0, "d2": 41200}`.
pub fn by_destination(
    text: &str,
    name: &str,
    extra: Option<(&str, &str)>,
) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for (series, value) in samples(text) {
        let Some(labels) = series.strip_prefix(name) else {
            continue;
        };
        if !labels.starts_with('{') {
            continue;
        }
        if let Some((k, v)) = extra
            && label(labels, k) != Some(v)
        {
            continue;
        }
        if let Some(dest) = label(labels, "destination") {
            *out.entry(dest.to_string()).or_default() += value;
        }
    }
    out
}

/// `GET {prefix}{path}` on the hub, with a bearer token if given; the body of a 2xx
/// answer, `None` on any failure.
pub async fn get(target: &Target, path: &str, bearer: Option<&str>) -> Option<String> {
    tokio::time::timeout(
        Duration::from_secs(5),
        fetch(http::Method::GET, target, path, bearer),
    )
    .await
    .ok()?
}

/// `POST` with an empty body to the admin API (e.g. pause a lane); the answer's text.
pub async fn post(target: &Target, path: &str, bearer: Option<&str>) -> Option<String> {
    tokio::time::timeout(
        Duration::from_secs(5),
        fetch(http::Method::POST, target, path, bearer),
    )
    .await
    .ok()?
}

async fn fetch(
    method: http::Method,
    target: &Target,
    path: &str,
    bearer: Option<&str>,
) -> Option<String> {
    let stream = tokio::net::TcpStream::connect(target.addr).await.ok()?;
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let prefix = target.path.split("/ingest/").next().unwrap_or("");
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{prefix}{path}"))
        .header(HOST, target.host.clone());
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

/// The store's group-commit counters at one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StoreCommits {
    /// `ferry_store_commits_total`.
    pub commits: f64,
    /// `ferry_store_commands_total`: store calls carried by those commits.
    pub commands: f64,
    /// `ferry_store_deferred_commits_total` (0 where the hub does not export it).
    pub deferred: f64,
}

/// The store's group-commit counters, when commits and commands are both there.
pub fn store_commits(text: &str) -> Option<StoreCommits> {
    let value = |name: &str| samples(text).find_map(|(series, v)| (series == name).then_some(v));
    Some(StoreCommits {
        commits: value(ferry_metrics::STORE_COMMITS_TOTAL)?,
        commands: value(ferry_metrics::STORE_COMMANDS_TOTAL)?,
        deferred: value(ferry_metrics::STORE_DEFERRED_COMMITS_TOTAL).unwrap_or(0.0),
    })
}

/// Means of the `NAME_sum` / `NAME_count` pairs whose NAME ends in `_seconds`.
pub fn timings(text: &str) -> BTreeMap<String, Timing> {
    let mut sums: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (series, value) in samples(text) {
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

    #[test]
    fn series_by_destination() {
        let text = "\
# TYPE ferry_backlog_depth gauge
ferry_backlog_depth{flow=\"bench\",destination=\"d1\"} 3
ferry_backlog_depth{flow=\"bench\",destination=\"d2\"} 41200
ferry_backlog_depth_other{flow=\"bench\",destination=\"d2\"} 7
ferry_delivery_attempts_total{flow=\"bench\",destination=\"d2\",outcome=\"retry\"} 12
ferry_delivery_attempts_total{flow=\"bench\",destination=\"d2\",outcome=\"dead\"} 1
ferry_delivery_attempts_total{outcome=\"retry\",destination=\"d1\",flow=\"bench\"} 2
ferry_backlog_depth 9
";
        let b = by_destination(text, "ferry_backlog_depth", None);
        assert_eq!(b.len(), 2);
        assert_eq!((b["d1"], b["d2"]), (3.0, 41200.0));
        let all = by_destination(text, "ferry_delivery_attempts_total", None);
        assert_eq!((all["d1"], all["d2"]), (2.0, 13.0));
        let retries = by_destination(
            text,
            "ferry_delivery_attempts_total",
            Some(("outcome", "retry")),
        );
        assert_eq!((retries["d1"], retries["d2"]), (2.0, 12.0));
        assert_eq!(label("{a=\"x\", b=\"y\"}", "b"), Some("y"));
        assert_eq!(label("{a=\"x\"}", "c"), None);
    }
}
