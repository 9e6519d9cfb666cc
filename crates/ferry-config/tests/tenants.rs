//! Tenants: a flow run per tenant expands into one flow per tenant, each with the tenant's
//! secrets, limits and webhook path; mistakes are refused where they are written.

mod common;

use std::time::Duration;

use common::{SYSTEMS, dir, error_at, errors, load};
use ferry_config::{HttpAuth, SecretRef, SignatureConfig, Source, tenants};

const TENANTS: &str = "\
tenants:
  acme:
    region: us
    admin_token: { file: secrets/acme-admin }
    secrets:
      inbound: { file: secrets/acme-in }
      crm: { file: secrets/acme-crm }
    limits:
      crm: { concurrency: 2, rate_limit: { requests: 5, per: 1s } }
  globex:
    region: eu
    secrets:
      inbound: { file: secrets/globex-in }
      crm: { file: secrets/globex-crm }
";

const FLOW: &str = "\
flows:
  orders:
    tenants: [acme, globex]
    source:
      webhook:
        system: billing
        signature: { bearer: { token: { tenant: inbound } } }
        event_id: { header: X-Event-Id }
    destinations:
      crm:
        system: crm
        concurrency: 8
        http:
          url: \"https://crm.example.com/in\"
          auth: { bearer: { token: { tenant: crm } } }
";

const SECRETS: &[(&str, &str)] = &[
    (
        "secrets/acme-admin",
        "acme-admin-0123456789abcdefghijklmnop",
    ),
    ("secrets/acme-in", "acme-inbound-0123456789"),
    ("secrets/acme-crm", "acme-crm-token"),
    ("secrets/globex-in", "globex-inbound-0123456789"),
    ("secrets/globex-crm", "globex-crm-token"),
];

fn files<'a>(flow: &'a str, tenants: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut out = vec![
        ("systems.yaml", SYSTEMS),
        ("flows.yaml", flow),
        ("tenants.yaml", tenants),
    ];
    out.extend_from_slice(SECRETS);
    out
}

#[test]
fn a_flow_run_per_tenant_becomes_one_flow_per_tenant() {
    let tmp = dir(&files(FLOW, TENANTS));
    let loaded = load(tmp.path()).expect("loads");
    let flows = &loaded.config.flows;
    let names: Vec<&str> = flows.keys().map(String::as_str).collect();
    assert_eq!(names, ["orders@acme", "orders@globex"]);

    let acme = &flows["orders@acme"];
    assert_eq!(acme.tenant.as_deref(), Some("acme"));
    assert!(acme.tenants.is_empty());
    let Source::Webhook(src) = &acme.source else {
        panic!("webhook")
    };
    assert_eq!(src.path.as_deref(), Some("acme/orders"));
    assert_eq!(
        ferry_config::webhook_path("orders@acme", src),
        "acme/orders"
    );
    let SignatureConfig::Bearer { token } = &src.signature else {
        panic!("bearer")
    };
    assert_eq!(token, &SecretRef::File("secrets/acme-in".into()));
    let crm = &acme.destinations["crm"];
    let Some(HttpAuth::Bearer { token }) = &crm.http.as_ref().unwrap().auth else {
        panic!("bearer auth")
    };
    assert_eq!(token, &SecretRef::File("secrets/acme-crm".into()));
    // acme's own limits replace the destination's.
    assert_eq!(crm.concurrency, 2);
    let rate = crm.rate_limit.as_ref().expect("acme's rate limit");
    assert_eq!((rate.requests, rate.per), (5, Duration::from_secs(1)));

    // globex has no limits of its own: the destination's stand.
    let globex = &flows["orders@globex"];
    let crm = &globex.destinations["crm"];
    assert_eq!(crm.concurrency, 8);
    assert!(crm.rate_limit.is_none());
    let Some(HttpAuth::Bearer { token }) = &crm.http.as_ref().unwrap().auth else {
        panic!("bearer auth")
    };
    assert_eq!(token, &SecretRef::File("secrets/globex-crm".into()));

    // Which node serves which copy.
    let config = &loaded.config;
    assert!(tenants::serves(config, Some("us"), acme));
    assert!(!tenants::serves(config, Some("eu"), acme));
    assert!(tenants::serves(config, Some("eu"), globex));
    assert!(tenants::serves(config, None, globex));
    assert_eq!(
        tenants::split_tenant_flow("orders@acme"),
        Some(("orders", "acme"))
    );
}

#[test]
fn an_undeclared_tenant_a_missing_secret_and_a_stray_tenant_secret_are_located() {
    let flow = FLOW.replace("[acme, globex]", "[acme, globex, initech, acme]");
    let tenants = TENANTS.replace("      crm: { file: secrets/globex-crm }\n", "");
    let stray = "  stray:
    source:
      webhook:
        system: billing
        signature: { bearer: { token: { tenant: inbound } } }
    destinations:
      crm: { system: crm, http: { url: \"https://crm.example.com/in\" } }
";
    let flow = format!("{flow}{stray}");
    let tmp = dir(&files(&flow, &tenants));
    let errs = errors(load(tmp.path()));
    let undeclared = error_at(&errs, "flows.orders.tenants.2");
    assert!(
        undeclared.message.contains("`initech` is not declared"),
        "{undeclared:?}"
    );
    let twice = error_at(&errs, "flows.orders.tenants.3");
    assert!(twice.message.contains("listed twice"), "{twice:?}");
    let missing = error_at(
        &errs,
        "flows.orders.destinations.crm.http.auth.bearer.token",
    );
    assert!(
        missing
            .message
            .contains("tenant `globex` has no secret `crm`"),
        "{missing:?}"
    );
    assert_eq!(missing.line, 15, "{missing:?}");
    let stray = error_at(&errs, "flows.stray.source.webhook.signature.bearer.token");
    assert!(
        stray.message.contains("not a flow run per tenant"),
        "{stray:?}"
    );
}

#[test]
fn tenant_names_regions_limits_and_tokens_are_checked() {
    let tenants = TENANTS
        .replace("region: us", "region: US-East")
        .replace(
            "crm: { concurrency: 2, rate_limit: { requests: 5, per: 1s } }",
            "crm: { concurrency: 0, rate_limit: { requests: 0, per: 1s } }\n      nowhere: { concurrency: 1 }",
        )
        .replace("  globex:", "  Globex:");
    let flow = FLOW.replace("[acme, globex]", "[acme]");
    let mut files = files(&flow, &tenants);
    // A short admin token is refused, at the tenant's entry.
    files.retain(|(p, _)| *p != "secrets/acme-admin");
    files.push(("secrets/acme-admin", "short"));
    let tmp = dir(&files);
    let errs = errors(load(tmp.path()));
    assert!(
        error_at(&errs, "tenants.acme.region")
            .message
            .contains("invalid region name")
    );
    assert!(
        error_at(&errs, "tenants.Globex")
            .message
            .contains("invalid tenant name")
    );
    assert!(
        error_at(&errs, "tenants.acme.limits.crm.concurrency")
            .message
            .contains("between 1 and")
    );
    assert!(
        error_at(&errs, "tenants.acme.limits.crm.rate_limit.requests")
            .message
            .contains("at least 1")
    );
    assert!(
        error_at(&errs, "tenants.acme.limits.nowhere")
            .message
            .contains("has a destination `nowhere`")
    );
    assert!(
        error_at(&errs, "tenants.acme.admin_token")
            .message
            .contains("admin token needs at least 32 bytes")
    );
}

#[test]
fn a_tenant_secret_is_checked_for_what_the_flow_uses_it_for() {
    // The inbound bearer token of a webhook must be at least 16 bytes: globex's is not.
    let mut files = files(FLOW, TENANTS);
    files.retain(|(p, _)| *p != "secrets/globex-in");
    files.push(("secrets/globex-in", "short"));
    let tmp = dir(&files);
    let errs = errors(load(tmp.path()));
    let weak = error_at(&errs, "tenants.globex.secrets.inbound");
    assert!(weak.message.contains("at least 16 bytes"), "{weak:?}");
}

#[test]
fn a_queue_flow_cannot_run_per_tenant() {
    let flow = "\
flows:
  events:
    tenants: [acme]
    source:
      nats: { system: billing, url: \"nats://127.0.0.1:4222\", stream: s, consumer: c }
    destinations:
      crm: { system: crm, http: { url: \"https://crm.example.com/in\" } }
";
    let tmp = dir(&files(flow, TENANTS));
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.events.tenants");
    assert!(e.message.contains("`webhook` or `pull` source"), "{e:?}");
}
