//! A paginated JSON API on loopback for pull tests: records `r0`, `r1`… served a page at a
//! time under each cursor kind, with every request's query recorded, optional slowness and
//! scripted failures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ADMIN_TOKEN, SOURCE_SECRET, http_destination};

/// How the API pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// `?page=tok-<start>`; the body's `next` names the next page (`null` on the last).
    Token,
    /// `?since=<n>`: records with `updated >= n` (inclusive), in `updated` order.
    UpdatedSince,
    /// `?offset=<n>&limit=<k>`.
    Offset,
}

/// One record of the API.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub updated: u64,
}

#[derive(Default)]
struct Inner {
    records: Vec<Record>,
    requests: Vec<HashMap<String, String>>,
    failures: u32,
    delay: Duration,
    /// Served as is in place of every page, while set.
    raw: Option<String>,
}

/// The API.
#[derive(Clone)]
pub struct PageServer {
    pub addr: SocketAddr,
    paging: Paging,
    page_size: usize,
    inner: Arc<Mutex<Inner>>,
}

impl PageServer {
    /// Serve `records` records (`r0`… with `updated` 1000, 1001…), `page_size` per page.
    pub async fn start(paging: Paging, records: usize, page_size: usize) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let server = PageServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            paging,
            page_size,
            inner,
        };
        server.add(records);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = PageServer { addr, ..server };
        let app = Router::new().fallback(page).with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/items", self.addr)
    }

    /// Add `n` records after the last.
    pub fn add(&self, n: usize) {
        let mut g = self.inner.lock().unwrap();
        let start = g.records.len();
        let top = g.records.iter().map(|r| r.updated).max().unwrap_or(999);
        for i in 0..n {
            g.records.push(Record {
                id: format!("r{}", start + i),
                updated: top + 1 + i as u64,
            });
        }
    }

    /// Give record `id` a new `updated` value, after every other.
    pub fn touch(&self, id: &str) -> u64 {
        let mut g = self.inner.lock().unwrap();
        let top = g.records.iter().map(|r| r.updated).max().unwrap_or(999) + 1;
        let rec = g.records.iter_mut().find(|r| r.id == id).unwrap();
        rec.updated = top;
        top
    }

    /// Every record id.
    pub fn ids(&self) -> Vec<String> {
        let g = self.inner.lock().unwrap();
        g.records.iter().map(|r| r.id.clone()).collect()
    }

    /// Answer the next `n` requests with `503`.
    pub fn fail_next(&self, n: u32) {
        self.inner.lock().unwrap().failures = n;
    }

    /// Answer every request with this JSON text (`None`: the pages again), e.g. a page
    /// `serde_json::Value` cannot hold, such as one with a duplicate key.
    pub fn set_raw(&self, body: Option<&str>) {
        self.inner.lock().unwrap().raw = body.map(str::to_owned);
    }

    /// Answer each request after `d`.
    pub fn set_delay(&self, d: Duration) {
        self.inner.lock().unwrap().delay = d;
    }

    /// The query of every request so far.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Requests for the first page (no cursor parameter, or offset 0).
    pub fn first_page_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|q| match self.paging {
                Paging::Token => !q.contains_key("page"),
                Paging::UpdatedSince => !q.contains_key("since"),
                Paging::Offset => q.get("offset").map(String::as_str) == Some("0"),
            })
            .count()
    }

    fn body(&self, q: &HashMap<String, String>) -> Value {
        let g = self.inner.lock().unwrap();
        let item = |r: &Record| json!({"id": r.id, "updated": r.updated, "type": "item.changed"});
        match self.paging {
            Paging::Token => {
                let start = q
                    .get("page")
                    .and_then(|t| t.strip_prefix("tok-"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0_usize);
                let end = (start + self.page_size).min(g.records.len());
                let data: Vec<Value> = g.records[start.min(end)..end].iter().map(item).collect();
                let next = (end < g.records.len()).then(|| format!("tok-{end}"));
                json!({"data": data, "next": next})
            }
            Paging::UpdatedSince => {
                let since: u64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
                let mut found: Vec<&Record> =
                    g.records.iter().filter(|r| r.updated >= since).collect();
                found.sort_by_key(|r| r.updated);
                let data: Vec<Value> = found.into_iter().take(self.page_size).map(item).collect();
                json!({"data": data})
            }
            Paging::Offset => {
                let offset: usize = q.get("offset").and_then(|s| s.parse().ok()).unwrap_or(0);
                let limit: usize = q.get("limit").and_then(|s| s.parse().ok()).unwrap_or(10);
                let end = (offset + limit).min(g.records.len());
                let data: Vec<Value> = g.records[offset.min(end)..end].iter().map(item).collect();
                json!({"data": data})
            }
        }
    }
}

async fn page(
    State(server): State<PageServer>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (delay, fail, raw) = {
        let mut g = server.inner.lock().unwrap();
        let mut seen = q.clone();
        if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
            seen.insert("@authorization".into(), auth.into());
        }
        g.requests.push(seen);
        let fail = g.failures > 0;
        if fail {
            g.failures -= 1;
        }
        (g.delay, fail, g.raw.clone())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fail {
        return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
    }
    if let Some(raw) = raw {
        return ([("content-type", "application/json")], raw).into_response();
    }
    Json(server.body(&q)).into_response()
}

/// The `cursor:` YAML (inline) for `paging`, pages of `page_size`.
pub fn cursor_yaml(paging: Paging, page_size: usize) -> String {
    match paging {
        Paging::Token => "{ page_token: { next: /next, param: page } }".to_string(),
        Paging::UpdatedSince => "{ updated_since: { field: /updated, param: since } }".to_string(),
        Paging::Offset => {
            format!("{{ offset: {{ param: offset, limit_param: limit, limit: {page_size} }} }}")
        }
    }
}

/// Write a config directory with one pull flow `pulled` reading `api` by page token, 10
/// records a page, on `schedule`, and delivering to `receiver_url` (3 attempts).
pub fn write_token_pull_to(dir: &Path, api: &PageServer, schedule: &str, receiver_url: &str) {
    write_pull_config(
        dir,
        &api.url(),
        schedule,
        &cursor_yaml(Paging::Token, 10),
        "",
        &http_destination("sink", receiver_url, 3),
    );
}

/// Write a config directory with one pull flow `pulled` polling `url` (systems `src`,
/// `dst`; loopback allowed for egress): `source_extra` is more of the `pull:` block
/// (indented 8 spaces, e.g. `        freshness: 1h\n`), destinations as for `write_config`.
pub fn write_pull_config(
    dir: &Path,
    url: &str,
    schedule: &str,
    cursor: &str,
    source_extra: &str,
    destinations_yaml: &str,
) {
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.join("source-secret"), SOURCE_SECRET).unwrap();
    std::fs::write(
        dir.join("ferry.yaml"),
        "settings:\n  listen: 127.0.0.1:0\n  admin:\n    token: { file: admin-token }\n  delivery:\n    shutdown_grace: 2s\n    egress_allow: [127.0.0.0/8]\nsystems:\n  src: { owner: team-a }\n  dst: { owner: team-b }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("flows/pulled.yaml"),
        format!(
            "flows:\n  pulled:\n    source:\n      pull:\n        system: src\n        url: {url}\n        headers:\n          authorization: {{ file: source-secret }}\n        schedule: \"{schedule}\"\n        records: /data\n        record_id: /id\n        event_type: /type\n        cursor: {cursor}\n        timeout: 5s\n{source_extra}    destinations:\n{destinations_yaml}"
        ),
    )
    .unwrap();
}
