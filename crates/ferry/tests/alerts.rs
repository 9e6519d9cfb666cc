//! Alerts routed by business impact, end to end: a real hub whose critical destination
//! fails pages the critical team's pager (PagerDuty Events API v2 shape, signed) once,
//! resolves once after recovery; a low-tier destination's failure goes to the team's
//! digest, never its pager; `ferry alerts` (the binary) lists what fires.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ALERT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Receivers {
    ledger: TestReceiver,
    mailer: TestReceiver,
    pager: TestReceiver,
    chat: TestReceiver,
    digest: TestReceiver,
    marketing_pager: TestReceiver,
    marketing_digest: TestReceiver,
}

impl Receivers {
    async fn start() -> Self {
        Receivers {
            ledger: TestReceiver::start().await,
            mailer: TestReceiver::start().await,
            pager: TestReceiver::start().await,
            chat: TestReceiver::start().await,
            digest: TestReceiver::start().await,
            marketing_pager: TestReceiver::start().await,
            marketing_digest: TestReceiver::start().await,
        }
    }
}

fn write_alerting_config(dir: &Path, rx: &Receivers) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.join("source-secret"), SOURCE_SECRET).unwrap();
    std::fs::write(dir.join("alert-secret"), ALERT_SECRET).unwrap();
    std::fs::write(dir.join("pd-key"), "R0UT1NGKEY-payments").unwrap();
    // Fast rules: evaluated every 100 ms, fire at once, resolve after 1 s clear, a 2 s window.
    let tier = "{ for: 0s, keep_firing_for: 1s, failure_ratio: { window: 2s, min_attempts: 3 }, dead_letters_growing: { enabled: false } }";
    let settings = format!(
        "settings:
  listen: 127.0.0.1:0
  admin:
    token: {{ file: admin-token }}
  delivery:
    shutdown_grace: 2s
    egress_allow: [127.0.0.0/8]
  alerts:
    evaluate_every: 100ms
    runbooks: https://runbooks.example/ferry.md
    tiers:
      critical: {tier}
      low: {tier}
  oncall:
    payments:
      pager: {{ url: '{}', routing_key: {{ file: pd-key }}, secret: {{ file: alert-secret }} }}
      chat: {{ url: '{}' }}
      digest: {{ url: '{}', every: 1s }}
    marketing:
      pager: {{ url: '{}', routing_key: {{ file: pd-key }} }}
      digest: {{ url: '{}', every: 1s }}
systems:
  shop: {{ owner: payments }}
  billing: {{ owner: payments, tier: critical }}
  newsletter: {{ owner: marketing, tier: low }}
",
        rx.pager.url("/v2/enqueue"),
        rx.chat.url("/services/T0/B0/x"),
        rx.digest.url("/digest"),
        rx.marketing_pager.url("/v2/enqueue"),
        rx.marketing_digest.url("/digest"),
    );
    std::fs::write(dir.join("ferry.yaml"), settings).unwrap();
    let destination = |name: &str, system: &str, url: String| {
        format!(
            "      {name}:\n        system: {system}\n        http: {{ url: '{url}', timeout: 2s, connect_timeout: 1s }}\n        retry: {{ max_attempts: 3, initial_backoff: 20ms, max_backoff: 50ms }}\n        circuit_breaker: {{ enabled: false }}\n"
        )
    };
    std::fs::write(
        dir.join("flows.yaml"),
        format!(
            "flows:\n  orders:\n    source:\n      webhook:\n        system: shop\n        signature:\n          standard_webhooks: {{ secret: {{ file: source-secret }} }}\n    destinations:\n{}{}",
            destination("ledger", "billing", rx.ledger.url("/ledger")),
            destination("mailer", "newsletter", rx.mailer.url("/mailer")),
        ),
    )
    .unwrap();
}

fn json_bodies(rx: &TestReceiver) -> Vec<Value> {
    rx.received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// The pager events about `dedup_key`, by action.
fn pager_events(rx: &TestReceiver, dedup_key: &str) -> Vec<String> {
    json_bodies(rx)
        .iter()
        .filter(|e| e["dedup_key"] == dedup_key)
        .map(|e| e["event_action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_critical_destination_pages_once_and_resolves_once() {
    let rx = Receivers::start().await;
    rx.ledger.set_default(Answer::status(500));
    rx.mailer.set_default(Answer::status(500));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    write_alerting_config(&cfg, &rx);
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let addr = hub.addr();

    for i in 0..4 {
        let id = format!("evt_fail_{i}");
        let res = send(addr, &id, r#"{"type":"order.paid","amount":1}"#).await;
        assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    }
    let key = "ferry/failure_ratio/orders/ledger";
    wait_until(15, "the critical team paged", || async {
        pager_events(&rx.pager, key).contains(&"trigger".to_string())
    })
    .await;

    // The trigger: Events API v2, routed with the team's key, signed, with the runbook.
    let trigger = json_bodies(&rx.pager)
        .into_iter()
        .find(|e| e["dedup_key"] == key)
        .unwrap();
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY-payments");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "ferry");
    assert_eq!(trigger["payload"]["class"], "failure_ratio");
    assert_eq!(trigger["payload"]["component"], "billing");
    assert_eq!(trigger["payload"]["custom_details"]["team"], "payments");
    assert_eq!(trigger["payload"]["custom_details"]["owner"], "payments");
    assert_eq!(
        trigger["links"][0]["href"],
        "https://runbooks.example/ferry.md#alert-failure-ratio"
    );
    let summary = trigger["payload"]["summary"].as_str().unwrap();
    assert!(summary.contains("orders → ledger"), "{summary}");
    assert!(summary.contains("100% of"), "{summary}");
    let request = rx
        .pager
        .received()
        .into_iter()
        .find(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["dedup_key"] == key)
        .unwrap();
    let header = |name: &str| request.headers[name].to_str().unwrap().to_string();
    let signing = ferry_signature::SigningKey::from_standard_webhooks(ALERT_SECRET).unwrap();
    let expected = ferry_signature::standard_webhooks::sign(
        &signing,
        &header("webhook-id"),
        header("webhook-timestamp").parse().unwrap(),
        &request.body,
    );
    assert_eq!(header("webhook-signature"), expected);

    // `ferry alerts`, the binary, lists it as firing, routed to the team's pager.
    let url = format!("http://{addr}");
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run_ferry(&["alerts", "--url", &url, "--token", ADMIN_TOKEN])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("failure_ratio") && l.contains("ledger"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("firing"), "{out}");
    assert!(line.contains("payments (pager)"), "{out}");
    assert!(
        out.contains("failure_ratio/orders/ledger: runbook https://runbooks.example/ferry.md#alert-failure-ratio"),
        "{out}"
    );

    // The low-tier destination's failure: to the marketing digest, never a pager.
    wait_until(15, "the marketing digest", || async {
        json_bodies(&rx.marketing_digest).iter().any(|d| {
            d["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["id"] == "failure_ratio/orders/mailer" && a["state"] == "firing")
        })
    })
    .await;
    let digest = &json_bodies(&rx.marketing_digest)[0];
    assert_eq!(digest["type"], "ferry.alerts.digest");
    assert_eq!(digest["team"], "marketing");
    assert_eq!(rx.marketing_pager.count(), 0, "a low-tier alert paged");
    assert!(
        json_bodies(&rx.pager)
            .iter()
            .all(|e| !e["dedup_key"].as_str().unwrap().ends_with("/mailer")),
        "the low-tier alert reached the payments pager"
    );
    // Critical alerts page; they are not posted to the team's chat.
    assert_eq!(rx.chat.count(), 0);

    // Recovery: deliveries succeed, the failures leave the 2 s window, 1 s later resolved.
    rx.ledger.set_default(Answer::status(200));
    for i in 0..6 {
        let id = format!("evt_ok_{i}");
        send(addr, &id, r#"{"type":"order.paid","amount":2}"#).await;
    }
    wait_until(15, "the page resolved", || async {
        pager_events(&rx.pager, key).contains(&"resolve".to_string())
    })
    .await;
    let resolve = json_bodies(&rx.pager)
        .into_iter()
        .find(|e| e["dedup_key"] == key && e["event_action"] == "resolve")
        .unwrap();
    assert_eq!(resolve["routing_key"], "R0UT1NGKEY-payments");

    // Many evaluations later: still one trigger and one resolve (edges, not evaluations).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pager_events(&rx.pager, key), ["trigger", "resolve"]);

    // The admin API keeps the resolved alert for `ferry alerts --all`.
    let alerts = admin_get(addr, "/admin/v1/alerts").await;
    let resolved = alerts["resolved"].as_array().unwrap();
    let ledger = resolved
        .iter()
        .find(|a| a["id"] == "failure_ratio/orders/ledger")
        .unwrap_or_else(|| panic!("{alerts}"));
    assert_eq!(ledger["state"], "resolved");
    assert!(ledger["fired_at"].as_i64().unwrap() <= ledger["resolved_at"].as_i64().unwrap());
    assert!(
        alerts["active"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != "failure_ratio/orders/ledger"),
        "{alerts}"
    );
    hub.shutdown().await.unwrap();
}

/// A config routing a tier to a channel its team lacks is refused, at the field.
#[test]
fn a_route_to_a_missing_channel_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &http_destination("crm", "http://127.0.0.1:9/x", 3),
    );
    add_settings(
        dir.path(),
        "  oncall:\n    team-b:\n      chat: { url: 'http://127.0.0.1:9/chat' }\n      route: { critical: pager }\n",
    );
    let (code, _out, err) = ferry_on_dir(&["validate"], dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("team `team-b` routes critical alerts to its pager but has no `pager`"),
        "{err}"
    );
    assert!(err.contains("ferry.yaml"), "{err}");
}

/// Every `ferry_…` metric an expression reads, histogram series folded into their family.
fn metrics_read(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("ferry_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| ferry_metrics::family(f).is_some())
            })
            .unwrap_or(&name)
            .to_string();
        out.push(family);
    }
    out
}

/// `ferry export prometheus-rules` (the binary) writes the hub's rules with the tier's
/// thresholds, routing labels and runbooks, over metrics the hub exposes; promtool (when
/// `FERRY_TEST_PROMTOOL` names it) checks the file and proves the critical rule fires on a
/// failing lane's series and routes to the team's pager.
#[tokio::test]
async fn the_prometheus_rules_hold_the_tiers_thresholds_and_fire_in_promtool() {
    let rx = Receivers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    write_alerting_config(&cfg, &rx);
    std::fs::write(
        cfg.join("pulls.yaml"),
        "flows:\n  invoices:\n    source:\n      pull:\n        system: billing\n        url: http://127.0.0.1:9/invoices\n        schedule: \"*/5 * * * *\"\n        records: /data\n        record_id: /id\n        cursor: { page_token: { next: /next, param: page } }\n        freshness: 1h\n    destinations:\n      books:\n        system: newsletter\n        http: { url: 'http://127.0.0.1:9/books' }\n",
    )
    .unwrap();
    let out = dir.path().join("ferry-rules.yml");
    let (code, _, err) = run_ferry(&[
        "export",
        "prometheus-rules",
        cfg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    let file: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let groups = file["groups"].as_array().unwrap();
    let rules: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    for rule in &rules {
        for field in ["alert", "expr", "for", "keep_firing_for"] {
            assert!(rule[field].is_string(), "{field} missing: {rule}");
        }
        let read = metrics_read(rule["expr"].as_str().unwrap());
        assert!(!read.is_empty(), "{rule}");
        for family in read {
            assert!(
                ferry_metrics::family(&family).is_some(),
                "unknown metric {family} in {rule}"
            );
        }
        let runbook = rule["annotations"]["runbook_url"].as_str().unwrap();
        assert!(
            runbook.starts_with("https://runbooks.example/ferry.md#alert-"),
            "{rule}"
        );
    }
    let find = |alert: &str, destination: &str| {
        rules
            .iter()
            .find(|r| r["alert"] == alert && r["labels"]["destination"] == destination)
            .unwrap_or_else(|| panic!("{alert} for {destination} in\n{text}"))
    };
    // The critical lane: the tier's overrides (`for: 0s`, a 2 s window) and its pager.
    let critical = find("FerryFailureRatio", "ledger");
    assert_eq!(critical["for"], "0s");
    assert_eq!(critical["keep_firing_for"], "1s");
    assert!(
        critical["expr"].as_str().unwrap().contains("[2s]"),
        "{critical}"
    );
    assert_eq!(critical["labels"]["severity"], "critical");
    assert_eq!(critical["labels"]["team"], "payments");
    assert_eq!(critical["labels"]["channel"], "pager");
    // The low lane goes to the digest; the default `breaker_open` of a low tier holds 15m.
    assert_eq!(
        find("FerryFailureRatio", "mailer")["labels"]["channel"],
        "digest"
    );
    assert_eq!(find("FerryBreakerOpen", "mailer")["for"], "15m");
    // Turned off for both tiers in the config.
    assert!(
        rules
            .iter()
            .all(|r| r["alert"] != "FerryDeadLettersGrowing")
    );
    // The pull flow's SLA, from its source system's (critical) tier.
    let fresh = rules
        .iter()
        .find(|r| r["alert"] == "FerryFreshness")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(fresh["labels"]["flow"], "invoices");
    assert!(
        fresh["expr"].as_str().unwrap().ends_with("> 3600"),
        "{fresh}"
    );

    let Ok(promtool) = std::env::var("FERRY_TEST_PROMTOOL") else {
        eprintln!("skipping promtool checks: FERRY_TEST_PROMTOOL is not set (.ci/run sets it)");
        return;
    };
    let check = std::process::Command::new(&promtool)
        .args(["check", "rules", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // The critical rule fires on a lane whose attempts mostly fail, with its routing labels.
    let labels = &critical["labels"];
    let annotations = &critical["annotations"];
    let unit = format!(
        "rule_files: [{rules}]\nevaluation_interval: 1s\ntests:\n  - interval: 1s\n    input_series:\n      - series: 'ferry_delivery_attempts_total{{flow=\"orders\",destination=\"ledger\",outcome=\"retry\"}}'\n        values: '0+10x30'\n      - series: 'ferry_delivery_attempts_total{{flow=\"orders\",destination=\"ledger\",outcome=\"delivered\"}}'\n        values: '0+1x30'\n    alert_rule_test:\n      - eval_time: 20s\n        alertname: FerryFailureRatio\n        exp_alerts:\n          - exp_labels: {labels}\n            exp_annotations: {annotations}\n      - eval_time: 20s\n        alertname: FerryBacklogAge\n        exp_alerts: []\n",
        rules = serde_json::to_string(out.to_str().unwrap()).unwrap(),
    );
    let unit_file = dir.path().join("unit.yml");
    std::fs::write(&unit_file, unit).unwrap();
    let test = std::process::Command::new(&promtool)
        .args(["test", "rules", unit_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

/// The Grafana dashboard in docs/ is a dashboard whose every query reads metrics the hub
/// exposes, and it shows the alerts.
#[test]
fn the_grafana_dashboard_reads_only_metrics_the_hub_exposes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana-dashboard.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut seen = std::collections::BTreeSet::new();
    for panel in panels {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        for target in panel["targets"].as_array().unwrap() {
            for family in metrics_read(target["expr"].as_str().unwrap()) {
                assert!(
                    ferry_metrics::family(&family).is_some(),
                    "unknown metric {family} in panel {}",
                    panel["title"]
                );
                seen.insert(family);
            }
        }
    }
    for needed in [
        ferry_metrics::DELIVERY_ATTEMPTS_TOTAL,
        ferry_metrics::DEAD_LETTER_DEPTH,
        ferry_metrics::BACKLOG_OLDEST_AGE_SECONDS,
        ferry_metrics::ALERTS_FIRING,
        ferry_metrics::PULL_SECONDS_SINCE_SUCCESS,
    ] {
        assert!(
            seen.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

/// Every alert links a runbook section that exists.
#[test]
fn every_alert_kind_has_its_runbook_section() {
    let runbooks = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/runbooks.md"
    ))
    .unwrap();
    let anchors: Vec<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    for kind in ferry::alerts::AlertKind::ALL {
        assert!(
            anchors.iter().any(|a| a == kind.anchor()),
            "docs/runbooks.md has no section for {} (#{})",
            kind.as_str(),
            kind.anchor()
        );
    }
}

/// The metric value of `family{labels…}` on `/metrics` (0 when absent).
async fn metric(hub: std::net::SocketAddr, family: &str, labels: &[&str]) -> f64 {
    let text = metrics_text(hub).await;
    text.lines()
        .filter(|l| l.starts_with(family) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Synthetic transactions through the binary: `ferry probe` passes on a healthy flow,
/// marks the event (`Ferry-Synthetic: true`), sends it to a destination's sandbox when it
/// has one, and leaves the usage counters alone; with the destination broken it exits 1 and
/// the `synthetic` alert pages the owning team — and the broken deliveries of the probe do
/// not count in the lane's failure ratio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_probe_passes_when_healthy_fails_when_broken_and_pages() {
    let rx = Receivers::start().await;
    let sandbox = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    write_alerting_config(&cfg, &rx);
    std::fs::write(
        cfg.join("synthetic.json"),
        r#"{"type":"order.paid","amount":0}"#,
    )
    .unwrap();
    let flows = std::fs::read_to_string(cfg.join("flows.yaml"))
        .unwrap()
        // Its own flow name: the metrics recorder is shared with the other tests.
        .replace("  orders:\n", "  probed:\n")
        .replace(
            "    destinations:\n",
            "    synthetic: { payload: synthetic.json, expect_within: 2s }\n    destinations:\n",
        )
        .replace(
            "      mailer:\n",
            &format!(
                "      mailer:\n        synthetic: {{ sandbox_url: '{}' }}\n",
                sandbox.url("/sandbox")
            ),
        );
    std::fs::write(cfg.join("flows.yaml"), flows).unwrap();
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    let url = format!("http://{}", hub.addr());
    let probe = |url: String| async move {
        tokio::task::spawn_blocking(move || {
            run_ferry(&["probe", "probed", "--url", &url, "--token", ADMIN_TOKEN])
        })
        .await
        .unwrap()
    };

    // Healthy: passes; the ledger got it marked, the mailer's copy went to its sandbox.
    let (code, out, err) = probe(url.clone()).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("passed"), "{out}");
    let got = rx.ledger.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["ferry-synthetic"], "true");
    assert_eq!(
        rx.mailer.count(),
        0,
        "the synthetic went to the real mailer"
    );
    assert_eq!(sandbox.count(), 1);
    assert_eq!(sandbox.received()[0].headers["ferry-synthetic"], "true");
    // Absent from the usage counters.
    let addr = hub.addr();
    assert_eq!(
        metric(addr, "ferry_ingress_accepted_total", &["flow=\"probed\""]).await,
        0.0
    );
    assert_eq!(
        metric(addr, "ferry_delivery_attempts_total", &["flow=\"probed\""]).await,
        0.0
    );

    // Broken: the ledger answers 500; the probe fails and exits 1.
    rx.ledger.set_default(Answer::status(500));
    let (code, out, err) = probe(url.clone()).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("FAILED"), "{out}");
    // Three attempts, fast backoff: the ledger's delivery dies within the 2 s.
    assert!(out.contains("the delivery to `ledger` died"), "{out}");
    wait_until(10, "the synthetic alert paged", || async {
        pager_events(&rx.pager, "ferry/synthetic/probed").contains(&"trigger".to_string())
    })
    .await;
    let trigger = json_bodies(&rx.pager)
        .into_iter()
        .find(|e| e["dedup_key"] == "ferry/synthetic/probed")
        .unwrap();
    assert_eq!(trigger["payload"]["class"], "synthetic");
    assert_eq!(trigger["payload"]["severity"], "critical");
    // The probe's failed attempts are not the lane's: no failure-ratio page.
    assert!(
        pager_events(&rx.pager, "ferry/failure_ratio/probed/ledger").is_empty(),
        "synthetic failures counted in the failure ratio"
    );
    // Fixed: the next probe passes and the alert resolves.
    rx.ledger.set_default(Answer::status(200));
    let (code, out, _) = probe(url.clone()).await;
    assert_eq!(code, Some(0), "{out}");
    wait_until(10, "the synthetic alert resolved", || async {
        pager_events(&rx.pager, "ferry/synthetic/probed").contains(&"resolve".to_string())
    })
    .await;
    hub.shutdown().await.unwrap();
}

/// A pull flow's synthetic record enters as a pulled record does: through the flow's steps
/// to its destination, marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_flow_is_probed_with_a_record() {
    let api = common::pages::PageServer::start(common::pages::Paging::Token, 0, 10).await;
    let rx = TestReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    common::pages::write_token_pull_to(&cfg, &api, "0 0 1 1 *", &rx.url("/in"));
    std::fs::write(
        cfg.join("record.json"),
        r#"{"id":"probe","type":"probe.record"}"#,
    )
    .unwrap();
    let flow = cfg.join("flows/pulled.yaml");
    let text = std::fs::read_to_string(&flow).unwrap().replace(
        "    destinations:\n",
        "    synthetic: { payload: record.json, expect_within: 5s }\n    destinations:\n",
    );
    std::fs::write(&flow, text).unwrap();
    let hub = start_hub(&cfg, &dir.path().join("data")).await;
    // Twice: each probe is its own event, never a duplicate of the last.
    for _ in 0..2 {
        let answer = admin_post(hub.addr(), "/admin/v1/probe", serde_json::json!({})).await;
        let result = &answer["results"][0];
        assert_eq!(result["flow"], "pulled", "{answer}");
        assert_eq!(result["passed"], true, "{answer}");
        assert_eq!(result["deliveries"][0]["state"], "delivered", "{answer}");
    }
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.headers["ferry-synthetic"] == "true"));
    assert_eq!(got[0].body, got[1].body);
    let last = admin_get(hub.addr(), "/admin/v1/probe").await;
    assert_eq!(last["results"][0]["passed"], true, "{last}");
    hub.shutdown().await.unwrap();
}
