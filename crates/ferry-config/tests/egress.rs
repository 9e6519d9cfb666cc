//! The early SSRF check of `ferry validate`: destination URLs whose host is an address
//! literal or `localhost` in a refused range fail, located at the URL, unless allow-listed.

mod common;

use common::{SYSTEMS, dir, error_at, errors, flow, load};

const URL_FIELD: &str = "flows.f.destinations.crm.http.url";

#[test]
fn metadata_and_private_literals_are_rejected_at_the_url() {
    for (url, needle) in [
        (
            "http://169.254.169.254/",
            "169.254.169.254 (cloud metadata service)",
        ),
        ("http://10.0.0.1/", "10.0.0.1 (private network)"),
        ("http://127.0.0.1:9101/hooks", "127.0.0.1 (loopback)"),
        ("http://[::1]:9101/", "::1 (loopback)"),
        (
            "http://[fd00:ec2::254]/",
            "fd00:ec2::254 (cloud metadata service)",
        ),
        ("http://100.64.1.1/", "100.64.1.1 (carrier-grade NAT)"),
        (
            "http://[::ffff:192.168.1.1]/",
            "private network via IPv4-mapped",
        ),
        (
            "http://localhost:9101/x",
            "`localhost` resolves only to 127.0.0.1",
        ),
    ] {
        let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flow("f", url))]);
        let errs = errors(load(tmp.path()));
        assert_eq!(errs.len(), 1, "{url}: {errs:#?}");
        let e = error_at(&errs, URL_FIELD);
        assert_eq!(e.file, tmp.path().join("flows.yaml"));
        assert_eq!((e.line, e.column), (10, 22), "{url}");
        assert!(e.message.contains(needle), "{url}: {}", e.message);
        let help = e.help.as_deref().unwrap_or_default();
        assert!(help.contains("egress_allow"), "{url}: {help}");
    }
}

#[test]
fn the_help_names_the_entry_to_add() {
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("flows.yaml", &flow("f", "http://10.0.0.1/")),
    ]);
    let errs = errors(load(tmp.path()));
    let help = error_at(&errs, URL_FIELD).help.clone().unwrap_or_default();
    assert!(help.contains("add `10.0.0.1`"), "{help}");
    assert!(help.contains("`http.egress_allow`"), "{help}");
    assert!(help.contains("`settings.delivery.egress_allow`"), "{help}");
}

#[test]
fn public_and_unresolved_hosts_pass() {
    for url in [
        "https://api.example.com/hooks",
        "http://8.8.8.8/",
        "http://[2606:4700:4700::1111]/",
        // A name is judged when it is resolved, at connect time.
        "http://internal.corp.example/",
    ] {
        let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flow("f", url))]);
        if let Err(e) = load(tmp.path()) {
            panic!("{url}: {e}");
        }
    }
}

/// `flow("f", url)` with `egress_allow` on the destination.
fn flow_allowing(url: &str, allow: &str) -> String {
    flow("f", url).replace(
        &format!("http: {{ url: \"{url}\" }}"),
        &format!("http: {{ url: \"{url}\", egress_allow: [{allow}] }}"),
    )
}

#[test]
fn allow_lists_admit_what_they_name() {
    for (url, allow) in [
        ("http://10.0.0.1/", "10.0.0.0/8"),
        ("http://10.0.0.1/", "10.0.0.1"),
        ("http://169.254.169.254/", "169.254.169.254/32"),
        ("http://[::1]:1/", "\"::1\""),
        ("http://localhost:1/", "localhost"),
        ("http://localhost:1/", "127.0.0.0/8"),
    ] {
        let text = flow_allowing(url, allow);
        assert!(text.contains("egress_allow"), "{text}");
        let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &text)]);
        if let Err(e) = load(tmp.path()) {
            panic!("{url} with {allow}: {e}");
        }
    }
    // A network that does not contain the address does not help.
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        (
            "flows.yaml",
            &flow_allowing("http://10.0.0.1/", "10.1.0.0/16"),
        ),
    ]);
    error_at(&errors(load(tmp.path())), URL_FIELD);
}

#[test]
fn the_hub_wide_allow_list_applies_to_every_destination() {
    let settings = "settings:\n  delivery:\n    egress_allow: [127.0.0.0/8, localhost]\n";
    for url in ["http://127.0.0.1:9101/", "http://localhost:9101/"] {
        let tmp = dir(&[
            ("ferry.yaml", settings),
            ("systems.yaml", SYSTEMS),
            ("flows.yaml", &flow("f", url)),
        ]);
        if let Err(e) = load(tmp.path()) {
            panic!("{url}: {e}");
        }
    }
}

#[test]
fn the_notification_webhook_is_checked_against_the_hub_wide_list() {
    let settings =
        "settings:\n  notifications:\n    webhook:\n      url: http://169.254.169.254/x\n";
    let tmp = dir(&[
        ("ferry.yaml", settings),
        ("systems.yaml", SYSTEMS),
        ("flows.yaml", &flow("f", "https://api.example.com/")),
    ]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "settings.notifications.webhook.url");
    assert_eq!((e.line, e.column), (4, 12));
    assert!(e.message.contains("cloud metadata"), "{}", e.message);

    let allowed = format!("{settings}  delivery:\n    egress_allow: [169.254.169.254]\n");
    let tmp = dir(&[
        ("ferry.yaml", &allowed),
        ("systems.yaml", SYSTEMS),
        ("flows.yaml", &flow("f", "https://api.example.com/")),
    ]);
    if let Err(e) = load(tmp.path()) {
        panic!("{e}");
    }
}
