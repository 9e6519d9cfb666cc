//! `ferry demo`: the hub on the embedded store with the quickstart example, plus simulated
//! vendors on loopback — a billing system and a shop sending signed webhooks, a CRM and a
//! warehouse receiving them (the warehouse failing now and then) — and a live view.

mod example;
mod vendors;
mod view;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use ferry_signature::SigningKey;
use ferry_store::{LaneCounts, Store};

use crate::admin::client::AdminClient;
use crate::admin::dto::ReplayRequest;
use crate::hub::{HubOptions, RunningHub};
pub use vendors::{ReceiverBehaviour, start_receiver};
use vendors::{SenderSigning, SenderStats};
use view::{LiveView, lane_line};

/// Arguments of `ferry demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to send events before draining and stopping.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Billing webhooks per second (the shop sends a quarter of that).
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// Only run the simulated CRM (127.0.0.1:9101) and warehouse (127.0.0.1:9102), printing
    /// each request: receivers for `ferry serve --config examples/quickstart` (README tour).
    #[arg(long)]
    pub receivers_only: bool,
    /// With --receivers-only: answer every request with this status (e.g. 422 to see the DLQ).
    #[arg(long, requires = "receivers_only")]
    pub fail_status: Option<u16>,
}

/// Run the demo.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    if args.receivers_only {
        return receivers_only(args.fail_status).await;
    }
    let work = tempfile::tempdir()?;
    let config_dir = work.path().join("config");
    example::write_to(&config_dir)?;
    let Some(mut config) = crate::cli::load_config(&config_dir, true) else {
        anyhow::bail!("the built-in example config is invalid");
    };

    let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
    let crm_key = SigningKey::from_standard_webhooks(&example::secret("crm-signing-secret"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let crm = start_receiver(
        "crm",
        any_port,
        ReceiverBehaviour {
            fail_ratio: 0.02,
            throttle_ratio: 0.0,
            reject_ratio: 0.0,
            always_status: None,
            latency_ms: (2, 15),
            verify_key: Some(crm_key),
            print: false,
        },
    )
    .await?;
    let warehouse = start_receiver(
        "warehouse",
        any_port,
        ReceiverBehaviour {
            fail_ratio: 0.10,
            throttle_ratio: 0.02,
            reject_ratio: 0.03,
            always_status: None,
            latency_ms: (1, 8),
            verify_key: None,
            print: false,
        },
    )
    .await?;
    // Point the example's destinations at the simulated systems' actual ports.
    for flow in config.flows.values_mut() {
        for dest in flow.destinations.values_mut() {
            let addr = if dest.system == "crm" {
                crm.addr
            } else {
                warehouse.addr
            };
            if let Some(http) = &mut dest.http {
                let mut url = reqwest::Url::parse(&http.url)?;
                let _ = url.set_port(Some(addr.port()));
                http.url = url.to_string();
            }
        }
    }
    let token = example::secret("admin-token");
    let hub = RunningHub::start(HubOptions {
        config,
        data_dir: work.path().join("data"),
        store_url: None,
        listen: Some(any_port),
        role: Default::default(),
        region: None,
    })
    .await
    .context("starting the hub")?;
    let base = format!("http://{}", hub.addr());
    println!(
        "Ferry demo: hub on {base} (embedded store in {})",
        work.path().join("data").display()
    );
    println!(
        "  billing --(Standard Webhooks)--> /ingest/billing-events --> crm, warehouse\n  shop    --(GitHub-style HMAC)---> /ingest/shop-orders    --> warehouse\n  the warehouse fails ~15% of calls (503, 429, 422): watch retries and the DLQ.\n"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let billing = Arc::new(SenderStats::default());
    let shop = Arc::new(SenderStats::default());
    let billing_key =
        SigningKey::from_standard_webhooks(&example::secret("billing-webhook-secret"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    tokio::spawn(vendors::run_sender(
        format!("{base}/ingest/billing-events"),
        SenderSigning::StandardWebhooks(billing_key),
        args.rate,
        billing.clone(),
        stop_rx.clone(),
        vendors::billing_event,
    ));
    tokio::spawn(vendors::run_sender(
        format!("{base}/ingest/shop-orders"),
        SenderSigning::GitHub(example::secret("shop-webhook-secret").into_bytes()),
        args.rate / 4.0,
        shop.clone(),
        stop_rx,
        vendors::shop_order,
    ));

    let store = hub.store();
    let admin = AdminClient::new(&base, token)?;
    let mut live = LiveView::new(2 + 3);
    let started = Instant::now();
    let mut replayed_once = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let interrupted = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break true,
        }
        let elapsed = started.elapsed();
        let lanes = store.lane_counts().await.unwrap_or_default();
        live.update(
            elapsed.as_secs(),
            &[("billing", &billing), ("shop", &shop)],
            &lanes,
        );
        if !replayed_once && elapsed >= args.duration.mul_f64(0.6) {
            replayed_once = true;
            let dead: u64 = lanes.iter().map(|l| l.dead).sum();
            let r = admin
                .replay(&ReplayRequest {
                    state: Some("dead".into()),
                    requested_by: Some("ferry demo".into()),
                    ..Default::default()
                })
                .await;
            match r {
                Ok(r) => live.note(&format!(
                    "» {dead} dead letters so far; replaying them through the admin API (ferry dlq replay --all): {} back in their lanes, same webhook-id",
                    r.replayed
                )),
                Err(e) => live.note(&format!("» replay failed: {e:#}")),
            }
        }
        if elapsed >= args.duration {
            break false;
        }
    };
    let _ = stop_tx.send(true);
    live.note("» senders stopped; letting the lanes drain (up to 10s)...");
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    let mut lanes = Vec::new();
    while !interrupted && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        lanes = store.lane_counts().await.unwrap_or_default();
        live.update(
            started.elapsed().as_secs(),
            &[("billing", &billing), ("shop", &shop)],
            &lanes,
        );
        if lanes
            .iter()
            .all(|l| l.pending + l.in_flight + l.retrying == 0)
        {
            break;
        }
    }
    live.finish();
    summary(
        &billing,
        &shop,
        &lanes,
        &crm.stats,
        &warehouse.stats,
        store.as_ref(),
    )
    .await;
    drop(store);
    hub.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

async fn summary(
    billing: &SenderStats,
    shop: &SenderStats,
    lanes: &[LaneCounts],
    crm: &vendors::ReceiverStats,
    warehouse: &vendors::ReceiverStats,
    store: &dyn Store,
) {
    let lanes = if lanes.is_empty() {
        store.lane_counts().await.unwrap_or_default()
    } else {
        lanes.to_vec()
    };
    println!("\nSummary");
    for (name, s) in [("billing", billing), ("shop", shop)] {
        println!(
            "  {name:<9} sent {} webhooks: {} accepted (2xx after fsync), {} recognised as duplicates, {} refused (bad signature)",
            s.sent.load(Relaxed),
            s.accepted.load(Relaxed),
            s.duplicates.load(Relaxed),
            s.rejected.load(Relaxed)
        );
    }
    for l in &lanes {
        println!("  {}", lane_line(l));
    }
    for (name, r) in [("crm", crm), ("warehouse", warehouse)] {
        println!(
            "  {name:<9} received {} requests: {} answered 2xx, {} failed on purpose, {} repeats of an already accepted webhook-id, {} bad signatures",
            r.requests.load(Relaxed),
            r.accepted.load(Relaxed),
            r.failed_on_purpose.load(Relaxed),
            r.repeats.load(Relaxed),
            r.bad_signatures.load(Relaxed)
        );
    }
    let dead: u64 = lanes.iter().map(|l| l.dead).sum();
    if dead > 0 {
        println!(
            "\n  {dead} deliveries are in the dead-letter queue (permanent 422s, or retries exhausted)."
        );
        println!(
            "  Against a running hub you would inspect them with `ferry dlq list` and `ferry dlq show <id>`."
        );
    }
}

/// Just the CRM and warehouse receivers on the quickstart's fixed ports, until Ctrl-C.
async fn receivers_only(fail_status: Option<u16>) -> Result<ExitCode> {
    let behaviour = |verify_key| ReceiverBehaviour {
        fail_ratio: 0.0,
        throttle_ratio: 0.0,
        reject_ratio: 0.0,
        always_status: fail_status,
        latency_ms: (0, 0),
        verify_key,
        print: true,
    };
    let crm_key = SigningKey::from_standard_webhooks(&example::secret("crm-signing-secret"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let crm = start_receiver(
        "crm",
        ([127, 0, 0, 1], 9101).into(),
        behaviour(Some(crm_key)),
    )
    .await?;
    let wh = start_receiver("warehouse", ([127, 0, 0, 1], 9102).into(), behaviour(None)).await?;
    println!(
        "simulated crm on http://{} and warehouse on http://{}{} — Ctrl-C to stop",
        crm.addr,
        wh.addr,
        fail_status
            .map(|s| format!(", answering {s} to everything"))
            .unwrap_or_default()
    );
    crate::cli::wait_for_signal().await;
    Ok(ExitCode::SUCCESS)
}
