//! A small client of the admin API, used by `ferry dlq`, `ferry replay` and `ferry demo`.

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;

use super::dto::*;

/// Talks to a running hub's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: reqwest::Url,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of the hub at `base` (e.g. `http://127.0.0.1:8080`) using `token`.
    pub fn new(base: &str, token: impl Into<String>) -> Result<Self> {
        let base = reqwest::Url::parse(base).with_context(|| format!("hub URL `{base}`"))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            base,
            token: token.into(),
            http,
        })
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = req.bearer_auth(&self.token).send().await.with_context(|| {
            format!(
                "cannot reach the hub at {} (is `ferry serve` running?)",
                self.base
            )
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("hub answered {status}: {detail}");
        }
        serde_json::from_slice(&bytes).context("the hub's answer is not what this CLI expects")
    }

    fn url(&self, path: &str) -> Result<reqwest::Url> {
        Ok(self.base.join(path)?)
    }

    /// Lane counts.
    pub async fn lanes(&self) -> Result<LanesResponse> {
        self.send(self.http.get(self.url("/admin/v1/lanes")?)).await
    }

    /// Run the synthetic transactions of `flows` (none: all) and wait for their results.
    pub async fn probe(&self, flows: &[String]) -> Result<crate::synthetic::ProbeResponse> {
        let request = self
            .http
            .post(self.url("/admin/v1/probe")?)
            .json(&serde_json::json!({ "flows": flows }))
            // A probe waits up to its flow's `expect_within`.
            .timeout(std::time::Duration::from_secs(3600));
        self.send(request).await
    }

    /// The alerts pending and firing, and the last resolved.
    pub async fn alerts(&self) -> Result<crate::alerts::AlertsResponse> {
        self.send(self.http.get(self.url("/admin/v1/alerts")?))
            .await
    }

    /// The lanes rolled up per system, worst first.
    pub async fn systems(&self) -> Result<super::systems::SystemsResponse> {
        self.send(self.http.get(self.url("/admin/v1/systems")?))
            .await
    }

    /// The data map, selected by category and destination system.
    pub async fn datamap(
        &self,
        category: Option<&str>,
        system: Option<&str>,
    ) -> Result<ferry_protect::DataMap> {
        let query: Vec<(&str, &str)> = [("category", category), ("system", system)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        self.send(self.http.get(self.url("/admin/v1/datamap")?).query(&query))
            .await
    }

    /// Every pull flow with its cursor, runs and freshness.
    pub async fn pulls(&self) -> Result<PullsResponse> {
        self.send(self.http.get(self.url("/admin/v1/pulls")?)).await
    }

    /// A page of deliveries.
    pub async fn deliveries(&self, q: &ListQuery) -> Result<DeliveryPage> {
        self.send(self.http.get(self.url("/admin/v1/deliveries")?).query(q))
            .await
    }

    /// A page of events.
    pub async fn events(&self, q: &EventQuery) -> Result<EventPage> {
        self.send(self.http.get(self.url("/admin/v1/events")?).query(q))
            .await
    }

    /// One event.
    pub async fn event(&self, id: &str) -> Result<EventView> {
        let mut url = self.url("/admin/v1/events/")?;
        url.path_segments_mut()
            .map_err(|_| anyhow::anyhow!("the hub URL cannot take a path"))?
            .pop_if_empty()
            .push(id);
        self.send(self.http.get(url)).await
    }

    /// One delivery with attempts and event.
    pub async fn delivery(&self, id: &str) -> Result<DeliveryView> {
        self.send(
            self.http
                .get(self.url(&format!("/admin/v1/deliveries/{id}"))?),
        )
        .await
    }

    /// Pause a lane.
    pub async fn pause(
        &self,
        flow: &str,
        destination: &str,
        reason: Option<String>,
    ) -> Result<LaneControlResponse> {
        let path = format!("/admin/v1/lanes/{flow}/{destination}/pause");
        self.send(
            self.http
                .post(self.url(&path)?)
                .json(&PauseRequest { reason }),
        )
        .await
    }

    /// Resume a lane.
    pub async fn resume(&self, flow: &str, destination: &str) -> Result<LaneControlResponse> {
        let path = format!("/admin/v1/lanes/{flow}/{destination}/resume");
        self.send(self.http.post(self.url(&path)?)).await
    }

    /// Replay matching deliveries.
    pub async fn replay(&self, r: &ReplayRequest) -> Result<ReplayResponse> {
        self.send(self.http.post(self.url("/admin/v1/replay")?).json(r))
            .await
    }

    /// The retention report.
    pub async fn retention(&self) -> Result<crate::retention::RetentionReport> {
        self.send(self.http.get(self.url("/admin/v1/retention")?))
            .await
    }

    /// The observed data map: what was delivered where.
    pub async fn observed(
        &self,
        q: &super::governance::ObservedQuery,
    ) -> Result<super::governance::ObservedResponse> {
        self.send(
            self.http
                .get(self.url("/admin/v1/datamap/observed")?)
                .query(q),
        )
        .await
    }

    /// A page of rejected records, newest first.
    pub async fn rejected(
        &self,
        q: &super::rejected::RejectedQuery,
    ) -> Result<super::rejected::RejectedPage> {
        self.send(self.http.get(self.url("/admin/v1/rejected")?).query(q))
            .await
    }

    /// One rejected record with its payload.
    pub async fn rejected_one(&self, id: &str) -> Result<super::rejected::RejectedView> {
        self.send(self.http.get(self.rejected_url(id, false)?))
            .await
    }

    /// Replay a rejected record through its flow's current steps.
    pub async fn replay_rejected(&self, id: &str) -> Result<super::rejected::RejectedReplay> {
        self.send(self.http.post(self.rejected_url(id, true)?))
            .await
    }

    /// Data keys per key-encryption key.
    pub async fn keys(&self) -> Result<super::keys::KeysStatus> {
        self.send(self.http.get(self.url("/admin/v1/keys")?)).await
    }

    /// Re-wrap every data key under the current key-encryption key (may take a while on a
    /// large store: no client time-out beyond an hour).
    pub async fn rotate_keys(&self) -> Result<super::keys::RotateResponse> {
        self.send(
            self.http
                .post(self.url("/admin/v1/keys/rotate")?)
                .timeout(std::time::Duration::from_secs(3600)),
        )
        .await
    }

    /// Erase a data subject: shred its data keys.
    pub async fn erase(&self, subject: &str) -> Result<super::keys::EraseResponse> {
        let body = super::keys::EraseRequest {
            subject: subject.to_owned(),
        };
        self.send(self.http.post(self.url("/admin/v1/erase")?).json(&body))
            .await
    }

    fn rejected_url(&self, id: &str, replay: bool) -> Result<reqwest::Url> {
        let mut url = self.url("/admin/v1/rejected/")?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| anyhow::anyhow!("the hub URL cannot take a path"))?;
            segments.pop_if_empty().push(id);
            if replay {
                segments.push("replay");
            }
        }
        Ok(url)
    }
}
