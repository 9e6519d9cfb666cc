//! [`ferry_metrics::describe`] gives a Prometheus recorder the HELP text of every family:
//! with one series of each family recorded, the rendered page has one `# HELP` and one
//! `# TYPE` line per family, as the table says.

use metrics_exporter_prometheus::PrometheusBuilder;

use ferry_metrics::{FAMILIES, Kind};

#[test]
fn every_family_renders_with_its_help_and_type() {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[1.0])
        .expect("buckets")
        .build_recorder();
    ferry_metrics::describe(&recorder);
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for f in FAMILIES {
            let labels: Vec<(&str, &str)> = f.labels.iter().map(|l| (*l, "x")).collect();
            match f.kind {
                Kind::Counter => metrics::counter!(f.name, &labels).increment(1),
                Kind::Gauge => metrics::gauge!(f.name, &labels).set(1.0),
                Kind::Histogram => metrics::histogram!(f.name, &labels).record(0.5),
            }
        }
    });
    let page = handle.render();
    for f in FAMILIES {
        let help = format!("# HELP {} {}\n", f.name, f.help);
        assert!(page.contains(&help), "no `{}` in:\n{page}", help.trim_end());
        let kind = format!("# TYPE {} {}\n", f.name, f.kind.as_str());
        assert!(page.contains(&kind), "no `{}` in:\n{page}", kind.trim_end());
    }
    let helps = page.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(helps, FAMILIES.len());
}
