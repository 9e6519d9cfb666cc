//! Tenants and regions, through the real binary: a flow run per tenant takes each tenant's
//! webhooks at `/ingest/<tenant>/<path>` with that tenant's inbound secret and delivers with
//! that tenant's credentials; a tenant's admin token sees only its tenant; a node of one
//! region answers the other regions' webhooks `421` and never delivers their events.
//!
//! The last test needs `FERRY_TEST_POSTGRES_URL` (several nodes on one database) and skips
//! with a printed reason without it.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use common::pg::Schema;
use common::*;
use serde_json::{Value, json};

const ACME_IN: &str = "acme-inbound-7f3a9c1e5b";
const ACME_CRM: &str = "acme-crm-token-1";
const ACME_ADMIN: &str = "acme-admin-7c0d9e8f1a2b3c4d5e6f7a8b9c0d1e2f";
const GLOBEX_IN: &str = "globex-inbound-2b8d4f6a0c";
const GLOBEX_CRM: &str = "globex-crm-token-2";
const GLOBEX_ADMIN: &str = "globex-admin-3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b";

/// A config dir: tenants `acme` (region `us`) and `globex` (region `eu`), each with its
/// inbound token, CRM token and admin token, and flow `orders` run for both, delivering to
/// `rx` with the tenant's CRM token. `store` adds lines under `settings:`, `more_flows`
/// flows after `orders`.
fn configure(dir: &Path, rx: &TestReceiver, store: &str, more_flows: &str) {
    for (file, value) in [
        ("admin-token", ADMIN_TOKEN),
        ("acme-in", ACME_IN),
        ("acme-crm", ACME_CRM),
        ("acme-admin", ACME_ADMIN),
        ("globex-in", GLOBEX_IN),
        ("globex-crm", GLOBEX_CRM),
        ("globex-admin", GLOBEX_ADMIN),
    ] {
        std::fs::write(dir.join(file), value).unwrap();
    }
    let url = rx.url("/crm");
    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "\
settings:
  listen: 127.0.0.1:0
  admin: {{ token: {{ file: admin-token }} }}
  delivery: {{ egress_allow: [127.0.0.0/8] }}
{store}
systems:
  shop: {{ owner: team-shop }}
  crm: {{ owner: team-crm }}
tenants:
  acme:
    region: us
    admin_token: {{ file: acme-admin }}
    secrets:
      inbound: {{ file: acme-in }}
      crm: {{ file: acme-crm }}
  globex:
    region: eu
    admin_token: {{ file: globex-admin }}
    secrets:
      inbound: {{ file: globex-in }}
      crm: {{ file: globex-crm }}
flows:
  orders:
    tenants: [acme, globex]
    source:
      webhook:
        system: shop
        signature: {{ bearer: {{ token: {{ tenant: inbound }} }} }}
        event_id: {{ header: X-Event-Id }}
    destinations:
      crm:
        system: crm
        retry: {{ max_attempts: 3 }}
        http:
          url: \"{url}\"
          auth: {{ bearer: {{ token: {{ tenant: crm }} }} }}
          headers: {{ x-tenant: \"{{{{ tenant }}}}\" }}
{more_flows}"
        ),
    )
    .unwrap();
}

/// Post `sid`'s event to `tenant`'s orders endpoint with `token`.
async fn post(hub: SocketAddr, tenant: &str, token: &str, sid: &str) -> reqwest::Response {
    client()
        .post(format!("http://{hub}/ingest/{tenant}/orders"))
        .bearer_auth(token)
        .header("X-Event-Id", sid)
        .header("content-type", "application/json")
        .body(json!({ "sid": sid, "tenant": tenant }).to_string())
        .send()
        .await
        .unwrap()
}

/// `GET path` on the admin API with `token`: status and body.
async fn get_as(hub: SocketAddr, token: &str, path: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("http://{hub}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `POST path` on the admin API with `token`: status and body.
async fn post_as(hub: SocketAddr, token: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("http://{hub}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// What the receiver got: per sender id, the bearer tokens it was sent with. Each request
/// names its tenant in `x-tenant` (a header template), checked here against the body's.
fn received(rx: &TestReceiver) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for r in rx.received() {
        let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
            continue;
        };
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(header("x-tenant"), body["tenant"].as_str().unwrap());
        let sid = body["sid"].as_str().unwrap_or_default().to_string();
        out.entry(sid).or_default().push(header("authorization"));
    }
    out
}

/// The flows of a listing's items (`flow`, or a lane's `lane.flow`), sorted.
fn flows_of(list: &Value, key: &str) -> Vec<String> {
    let mut flows: Vec<String> = list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["flow"]
                .as_str()
                .or_else(|| d["lane"]["flow"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    flows.sort();
    flows
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_uses_its_own_credentials_and_token() {
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // And a pull flow per tenant, for each token's list of pulls (their start-up runs read
    // the receiver, whose answers carry no event; `received` skips them).
    let pull = format!(
        "  invoices:
    tenants: [acme, globex]
    source:
      pull:
        system: shop
        url: \"{}\"
        headers: {{ authorization: {{ tenant: crm }} }}
        schedule: \"0 0 1 1 *\"
        records: /data
        cursor: {{ page_token: {{ next: /next, param: page }} }}
    destinations:
      crm: {{ system: crm, http: {{ url: \"{}\" }} }}
",
        rx.url("/invoices"),
        rx.url("/crm")
    );
    configure(cfg.path(), &rx, "", &pull);
    let (child, hub) = spawn_ferry(cfg.path(), data.path(), &cfg.path().join("ferry.log"));
    let _child = KillOnDrop(child);

    // Each tenant posts with its own inbound token; another tenant's is refused.
    assert_eq!(post(hub, "acme", ACME_IN, "a-1").await.status(), 202);
    assert_eq!(post(hub, "globex", GLOBEX_IN, "g-1").await.status(), 202);
    assert_eq!(post(hub, "acme", GLOBEX_IN, "a-x").await.status(), 401);
    // The template itself takes nothing: only its tenants' copies do.
    let resp = client()
        .post(format!("http://{hub}/ingest/orders"))
        .bearer_auth(ACME_IN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Each event went out with its own tenant's CRM token.
    wait_until(30, "both events delivered", || {
        let rx = rx.clone();
        async move { received(&rx).len() == 2 }
    })
    .await;
    let got = received(&rx);
    assert_eq!(got["a-1"], [format!("Bearer {ACME_CRM}")]);
    assert_eq!(got["g-1"], [format!("Bearer {GLOBEX_CRM}")]);
    wait_until(30, "both recorded as delivered", || async move {
        deliveries(hub, "state=delivered").await.len() == 2
    })
    .await;

    // acme's token sees acme's deliveries, events and lanes only.
    let (status, list) = get_as(hub, ACME_ADMIN, "/admin/v1/deliveries").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(flows_of(&list, "deliveries"), ["orders@acme"]);
    let (_, list) = get_as(hub, ACME_ADMIN, "/admin/v1/events").await;
    assert_eq!(flows_of(&list, "events"), ["orders@acme"]);
    let (_, list) = get_as(hub, ACME_ADMIN, "/admin/v1/deliveries?flow=orders@globex").await;
    assert_eq!(list["deliveries"], json!([]));
    let (_, lanes) = get_as(hub, ACME_ADMIN, "/admin/v1/lanes").await;
    assert_eq!(flows_of(&lanes, "lanes"), ["invoices@acme", "orders@acme"]);
    let (status, pulls) = get_as(hub, ACME_ADMIN, "/admin/v1/pulls").await;
    assert_eq!(status, 200, "{pulls}");
    assert_eq!(flows_of(&pulls, "pulls"), ["invoices@acme"]);
    let (_, pulls) = get_as(hub, ADMIN_TOKEN, "/admin/v1/pulls").await;
    assert_eq!(
        flows_of(&pulls, "pulls"),
        ["invoices@acme", "invoices@globex"]
    );
    // globex's delivery and event are, to acme, not there.
    let (_, theirs) = get_as(hub, GLOBEX_ADMIN, "/admin/v1/deliveries").await;
    assert_eq!(flows_of(&theirs, "deliveries"), ["orders@globex"]);
    let theirs = &theirs["deliveries"][0];
    let id = theirs["id"].as_str().unwrap();
    let (status, _) = get_as(hub, ACME_ADMIN, &format!("/admin/v1/deliveries/{id}")).await;
    assert_eq!(status, 404);
    let event = theirs["event_id"].as_str().unwrap();
    let (status, _) = get_as(hub, ACME_ADMIN, &format!("/admin/v1/events/{event}")).await;
    assert_eq!(status, 404);
    let (status, _) = get_as(hub, GLOBEX_ADMIN, &format!("/admin/v1/deliveries/{id}")).await;
    assert_eq!(status, 200);
    let (status, _) = post_as(
        hub,
        ACME_ADMIN,
        "/admin/v1/lanes/orders@globex/crm/pause",
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    // The operator's routes are not a tenant's.
    for path in ["/admin/v1/keys", "/admin/v1/datamap", "/admin/v1/systems"] {
        let (status, body) = get_as(hub, ACME_ADMIN, path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["code"], "tenant_forbidden", "{path}");
    }
    // The hub's token sees both tenants.
    let (_, all) = get_as(hub, ADMIN_TOKEN, "/admin/v1/deliveries").await;
    assert_eq!(
        flows_of(&all, "deliveries"),
        ["orders@acme", "orders@globex"]
    );

    // A replay by acme's token replays acme's deliveries only.
    let (status, body) = post_as(
        hub,
        ACME_ADMIN,
        "/admin/v1/replay",
        json!({ "state": "delivered" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], 1);
    wait_until(30, "acme's event sent again", || {
        let rx = rx.clone();
        async move { received(&rx).get("a-1").map(Vec::len) == Some(2) }
    })
    .await;
    assert_eq!(received(&rx)["g-1"].len(), 1);
    // The replay names who asked: acme's token, never the token itself.
    let (_, mine) = get_as(hub, ACME_ADMIN, "/admin/v1/deliveries").await;
    let id = mine["deliveries"][0]["id"].as_str().unwrap();
    let (_, detail) = get_as(hub, ACME_ADMIN, &format!("/admin/v1/deliveries/{id}")).await;
    let by = detail["detail"]["replay_history"][0]["by"]
        .as_str()
        .or_else(|| detail["replay_history"][0]["by"].as_str())
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(by.contains("tenant acme (admin-token:"), "{by}");
    assert!(!by.contains(ACME_ADMIN), "{by}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_regional_node_refuses_another_regions_webhooks() {
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    configure(cfg.path(), &rx, "", "");
    let (child, hub) = spawn_ferry_env(
        cfg.path(),
        data.path(),
        &cfg.path().join("ferry.log"),
        &[("FERRY_REGION", "eu")],
    );
    let _child = KillOnDrop(child);

    let resp = post(hub, "acme", ACME_IN, "a-1").await;
    assert_eq!(resp.status(), 421);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "other_region");
    assert!(
        body["detail"].as_str().unwrap().contains("region `us`"),
        "{body}"
    );
    assert_eq!(post(hub, "globex", GLOBEX_IN, "g-1").await.status(), 202);
    wait_until(30, "globex's event delivered", || {
        let rx = rx.clone();
        async move { received(&rx).contains_key("g-1") }
    })
    .await;
    // The node runs the lanes of its region only.
    let (_, lanes) = get_as(hub, ADMIN_TOKEN, "/admin/v1/lanes").await;
    assert_eq!(flows_of(&lanes, "lanes"), ["orders@globex"]);
    let metrics = metrics_text(hub).await;
    assert!(
        metrics.contains("ferry_ingress_rejected_total{flow=\"\",reason=\"other_region\"} 1"),
        "{metrics}"
    );
    assert!(!received(&rx).contains_key("a-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eu_node_never_delivers_a_us_tenants_event() {
    let Some(schema) = Schema::new() else { return };
    let rx = TestReceiver::start().await;
    let cfg = tempfile::tempdir().unwrap();
    std::fs::write(cfg.path().join("store-url"), &schema.url).unwrap();
    let store = format!(
        "  store:\n    postgres: {{ url: {{ file: store-url }}, schema: {} }}",
        schema.name
    );
    configure(cfg.path(), &rx, &store, "");
    let log = cfg.path().join("ferry.log");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    // An api node of no region takes both tenants' webhooks; an eu node delivers.
    let (api, api_addr) =
        spawn_ferry_env(cfg.path(), dirs[0].path(), &log, &[("FERRY_ROLE", "api")]);
    let _api = KillOnDrop(api);
    let (eu, eu_addr) =
        spawn_ferry_env(cfg.path(), dirs[1].path(), &log, &[("FERRY_REGION", "eu")]);
    let _eu = KillOnDrop(eu);
    for i in 0..4 {
        let a = post(api_addr, "acme", ACME_IN, &format!("a-{i}")).await;
        assert_eq!(a.status(), 202);
        let g = post(api_addr, "globex", GLOBEX_IN, &format!("g-{i}")).await;
        assert_eq!(g.status(), 202);
    }
    wait_until(30, "globex's 4 events delivered by the eu node", || {
        let rx = rx.clone();
        async move { received(&rx).keys().filter(|k| k.starts_with("g-")).count() == 4 }
    })
    .await;
    // A us event is stored and due, yet the eu node leaves it: poll the store until the eu
    // node has had many chances (it wakes on every new delivery and polls the store).
    for _ in 0..20 {
        let pending = deliveries(api_addr, "flow=orders@acme&state=pending").await;
        assert_eq!(pending.len(), 4, "acme's deliveries wait for a us node");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !received(&rx).keys().any(|k| k.starts_with("a-")),
        "the eu node delivered a us tenant's event"
    );
    // Its admin API shows its region's lanes only, not the us lane as unconfigured.
    let (_, lanes) = get_as(eu_addr, ADMIN_TOKEN, "/admin/v1/lanes").await;
    assert_eq!(flows_of(&lanes, "lanes"), ["orders@globex"], "{lanes}");

    // A us worker delivers them, once each, with acme's credentials.
    let (us, _) = spawn_ferry_env(
        cfg.path(),
        dirs[2].path(),
        &log,
        &[("FERRY_REGION", "us"), ("FERRY_ROLE", "worker")],
    );
    let _us = KillOnDrop(us);
    wait_until(30, "acme's 4 events delivered by the us node", || {
        let rx = rx.clone();
        async move { received(&rx).keys().filter(|k| k.starts_with("a-")).count() == 4 }
    })
    .await;
    let got = received(&rx);
    for i in 0..4 {
        assert_eq!(got[&format!("a-{i}")], [format!("Bearer {ACME_CRM}")]);
        assert_eq!(got[&format!("g-{i}")], [format!("Bearer {GLOBEX_CRM}")]);
    }
}
