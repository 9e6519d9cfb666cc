//! The metrics contract against the real `ferry serve`: `/metrics` parses as Prometheus
//! text, every family on it carries `# HELP` and `# TYPE` as the code's table
//! (`ferry_metrics::FAMILIES`) says, with no label the table does not list; and the
//! operator metrics show a real delivery and a real dead letter: the end-to-end latency
//! histogram, the attempts by outcome per destination, the dead-letter depth.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use common::*;
use prometheus_parse::{LineInfo, Sample, SampleType, Scrape, Value};

/// Families on a scrape by name, with the type their `# TYPE` line gives; every line of
/// `text` must be a comment, a sample or empty.
fn types_of(text: &str) -> HashMap<String, SampleType> {
    let mut types = HashMap::new();
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Type {
                metric_name,
                metric_alias,
                sample_type,
            } => {
                types.insert(metric_alias.unwrap_or(metric_name), sample_type);
            }
            LineInfo::Ignored => panic!("/metrics has a line that is not Prometheus text: {line}"),
            _ => {}
        }
    }
    types
}

/// The family a sample belongs to: a histogram's `_sum` and `_count` series are its own.
fn family_of(sample: &Sample, types: &HashMap<String, SampleType>) -> String {
    for suffix in ["_sum", "_count"] {
        if let Some(base) = sample.metric.strip_suffix(suffix)
            && types.get(base) == Some(&SampleType::Histogram)
        {
            return base.to_owned();
        }
    }
    sample.metric.clone()
}

fn type_word(t: SampleType) -> &'static str {
    match t {
        SampleType::Counter => "counter",
        SampleType::Gauge => "gauge",
        SampleType::Histogram => "histogram",
        SampleType::Summary => "summary",
        SampleType::Untyped => "untyped",
    }
}

/// Check the whole scrape against the code's table; the families present.
fn check_contract(text: &str) -> BTreeSet<String> {
    let types = types_of(text);
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parse /metrics");
    let mut present = BTreeSet::new();
    for (name, t) in &types {
        let family = ferry_metrics::family(name)
            .unwrap_or_else(|| panic!("`{name}` is on /metrics but not in ferry_metrics"));
        assert_eq!(type_word(*t), family.kind.as_str(), "# TYPE of {name}");
        assert_eq!(
            scrape.docs.get(name).map(String::as_str),
            Some(family.help),
            "# HELP of {name}"
        );
    }
    for sample in &scrape.samples {
        let name = family_of(sample, &types);
        assert!(types.contains_key(&name), "{name} has no # TYPE line");
        let family = ferry_metrics::family(&name).expect("checked above");
        for (label, _) in sample.labels.iter() {
            assert!(
                family.labels.contains(&label.as_str()),
                "{name} has label `{label}`, which ferry_metrics does not list"
            );
        }
        present.insert(name);
    }
    present
}

/// The sample of `metric` whose labels include every pair of `labels`.
fn sample<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// A counter's or gauge's value (0 when the series is absent).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, metric, labels).map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(other) => panic!("{metric} is not a single value: {other:?}"),
        None => 0.0,
    }
}

/// How many observations a histogram series holds (its `+Inf` bucket).
fn observations(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(scrape, metric, labels).map(|s| &s.value) {
        Some(Value::Histogram(buckets)) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map_or(0.0, |b| b.count),
        Some(other) => panic!("{metric} is not a histogram: {other:?}"),
        None => 0.0,
    }
}

async fn scrape(hub: SocketAddr) -> (String, Scrape) {
    let text = metrics_text(hub).await;
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parse /metrics");
    (text, parsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_contract_and_show_deliveries_and_dead_letters() {
    let ok = TestReceiver::start().await;
    // Refuses the first call (400: permanent, dead at its first attempt), then takes all.
    let refusing = TestReceiver::start().await;
    refusing.script([Answer::status(400)]);
    let dir = tempfile::tempdir().unwrap();
    let (cfg, data) = (dir.path().join("cfg"), dir.path().join("data"));
    write_config(
        &cfg,
        &format!(
            "{}{}",
            http_destination("ok", &ok.url("/in"), 3),
            http_destination("refusing", &refusing.url("/in"), 3)
        ),
    );
    let (child, hub) = spawn_ferry(&cfg, &data, &dir.path().join("ferry.log"));
    let _hub = KillOnDrop(child);

    // Before any traffic: already HELP and TYPE on every family there.
    let before = check_contract(&metrics_text(hub).await);
    assert!(
        before.contains(ferry_metrics::DELIVERY_END_TO_END_SECONDS),
        "{before:?}"
    );

    let resp = send(hub, "evt_metrics_1", r#"{"type":"order.created","n":1}"#).await;
    assert_eq!(resp.status(), 202);
    wait_until(30, "one delivered, one dead", || async {
        deliveries(hub, "state=delivered").await.len() == 1
            && deliveries(hub, "state=dead").await.len() == 1
    })
    .await;
    let lane = |destination: &'static str| [("flow", "orders"), ("destination", destination)];
    // The dead-letter depth is sampled with the backlog (every 250 ms).
    wait_until(10, "the dead-letter depth", || async {
        let (_, s) = scrape(hub).await;
        value(&s, ferry_metrics::DEAD_LETTER_DEPTH, &lane("refusing")) == 1.0
    })
    .await;

    let (text, s) = scrape(hub).await;
    let present = check_contract(&text);
    for name in [
        ferry_metrics::INGRESS_ACCEPTED_TOTAL,
        ferry_metrics::DELIVERY_ATTEMPTS_TOTAL,
        ferry_metrics::DELIVERY_END_TO_END_SECONDS,
        ferry_metrics::DEAD_LETTER_DEPTH,
        ferry_metrics::BACKLOG_DEPTH,
        ferry_metrics::STORE_COMMITS_TOTAL,
    ] {
        assert!(present.contains(name), "{name} missing from:\n{text}");
    }

    // End to end: one observation for the delivered lane, none for the dead one.
    let e2e = ferry_metrics::DELIVERY_END_TO_END_SECONDS;
    assert_eq!(observations(&s, e2e, &lane("ok")), 1.0, "{text}");
    assert_eq!(observations(&s, e2e, &lane("refusing")), 0.0, "{text}");
    let count = format!("{e2e}_count");
    assert_eq!(value(&s, &count, &lane("ok")), 1.0);

    // Failure ratio inputs: attempts by outcome per flow and destination.
    let attempts = |destination: &'static str, outcome: &'static str| {
        value(
            &s,
            ferry_metrics::DELIVERY_ATTEMPTS_TOTAL,
            &[
                ("flow", "orders"),
                ("destination", destination),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(attempts("ok", "delivered"), 1.0);
    assert_eq!(attempts("ok", "dead"), 0.0);
    assert_eq!(attempts("refusing", "dead"), 1.0);
    assert_eq!(attempts("refusing", "delivered"), 0.0);

    // DLQ depth: the dead delivery, and none where all was delivered.
    assert_eq!(
        value(&s, ferry_metrics::DEAD_LETTER_DEPTH, &lane("refusing")),
        1.0
    );
    assert_eq!(
        value(&s, ferry_metrics::DEAD_LETTER_DEPTH, &lane("ok")),
        0.0
    );

    // A replay takes it out of the dead-letter queue; delivered now, it counts end to end.
    admin_post(
        hub,
        "/admin/v1/replay",
        serde_json::json!({"flow": "orders", "state": "dead"}),
    )
    .await;
    wait_until(30, "the replayed delivery delivered", || async {
        deliveries(hub, "state=delivered").await.len() == 2
    })
    .await;
    wait_until(10, "the dead-letter depth back to 0", || async {
        let (_, s) = scrape(hub).await;
        value(&s, ferry_metrics::DEAD_LETTER_DEPTH, &lane("refusing")) == 0.0
    })
    .await;
    let (text, s) = scrape(hub).await;
    check_contract(&text);
    assert_eq!(observations(&s, e2e, &lane("refusing")), 1.0, "{text}");
    assert_eq!(
        value(
            &s,
            ferry_metrics::DELIVERY_ATTEMPTS_TOTAL,
            &[("destination", "refusing"), ("outcome", "delivered")],
        ),
        1.0
    );
}
