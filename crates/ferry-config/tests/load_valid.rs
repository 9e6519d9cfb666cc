//! A valid multi-file directory loads, with every value and default where it should be.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{SYSTEMS, WHSEC, dir, load};
use ferry_config::{
    EventIdSource, HeaderValue, HmacEncoding, SecretRef, SignatureConfig, Source, Tier,
    webhook_path,
};

const SETTINGS: &str = "\
# ferry.yaml
settings:
  listen: 0.0.0.0:9090
  admin:
    token: { env: PATH }
";

const FLOWS: &str = "\
flows:
  billing-to-crm:
    source:
      webhook:
        system: billing
        signature:
          standard_webhooks: { secret: { file: secrets/billing } }
        event_type: /type
    destinations:
      crm:
        system: crm
        http:
          url: \"http://127.0.0.1:9101/hooks\"
          timeout: 10s
          egress_allow: [127.0.0.0/8]
          headers:
            X-Source: ferry
            X-Token: { file: secrets/crm-token }
        retry: { max_attempts: 8, max_backoff: 10m }
  crm-echo:
    owner: team-growth
    source:
      webhook:
        system: crm
        path: CrmEcho.v2
        event_id: { json_pointer: /id }
        signature:
          hmac: { secret: { file: secrets/crm-token }, header: X-Sig, encoding: base64 }
    destinations:
      back:
        system: billing
        concurrency: 2
        http: { url: \"https://billing.example.com/in\", method: PUT, connect_timeout: 1s }
";

fn valid_dir() -> tempfile::TempDir {
    dir(&[
        ("ferry.yaml", SETTINGS),
        ("systems.yml", SYSTEMS),
        ("flows/billing.yaml", FLOWS),
        ("flows/README.md", "not yaml: [ignored"),
        (".hidden.yaml", "this: [is not loaded"),
        ("secrets/billing", &format!("{WHSEC}\n")),
        ("secrets/crm-token", "t0ken-crm-0123456789"),
    ])
}

#[test]
fn loads_values_and_defaults() {
    let tmp = valid_dir();
    let loaded = match load(tmp.path()) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{e}"),
    };
    // Only the retries draw warnings: 8 attempts up to 10m are short for the `high`-tier
    // CRM, the default 12 short for the `critical` billing system.
    let fields: Vec<&str> = loaded.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "flows.billing-to-crm.destinations.crm.retry",
            "flows.crm-echo.destinations.back.retry"
        ],
        "{:#?}",
        loaded.warnings
    );
    let config = loaded.config;
    assert_eq!(config.root, tmp.path());

    // Settings, with defaults for what is not written.
    assert_eq!(
        config.settings.listen,
        "0.0.0.0:9090".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.settings.admin.token,
        Some(SecretRef::Env("PATH".into()))
    );
    assert_eq!(config.settings.ingress.max_body_bytes, 1024 * 1024);
    assert_eq!(
        config.settings.delivery.shutdown_grace,
        Duration::from_secs(10)
    );
    assert_eq!(config.settings.data_dir, None);

    // Systems.
    assert_eq!(config.systems.len(), 2);
    assert_eq!(config.systems["billing"].tier, Tier::Critical);
    assert_eq!(config.systems["crm"].records, ["customer"]);

    // The first flow: written values and defaults.
    let flow = &config.flows["billing-to-crm"];
    let Source::Webhook(src) = &flow.source else {
        panic!("expected a webhook source")
    };
    assert_eq!(src.system, "billing");
    assert_eq!(src.event_type.as_deref(), Some("/type"));
    assert_eq!(webhook_path("billing-to-crm", src), "billing-to-crm");
    match &src.signature {
        SignatureConfig::StandardWebhooks { secret, tolerance } => {
            assert_eq!(secret, &SecretRef::File("secrets/billing".into()));
            assert_eq!(*tolerance, Duration::from_secs(300));
        }
        other => panic!("{other:?}"),
    }
    let crm = &flow.destinations["crm"];
    assert_eq!(crm.concurrency, 16);
    assert_eq!(crm.http.as_ref().unwrap().method, "POST");
    assert_eq!(crm.http.as_ref().unwrap().timeout, Duration::from_secs(10));
    assert_eq!(
        crm.http.as_ref().unwrap().connect_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(crm.http.as_ref().unwrap().egress_allow, ["127.0.0.0/8"]);
    assert!(
        matches!(&crm.http.as_ref().unwrap().headers["X-Source"], HeaderValue::Literal(v) if v == "ferry")
    );
    assert!(matches!(
        &crm.http.as_ref().unwrap().headers["X-Token"],
        HeaderValue::Secret(SecretRef::File(_))
    ));
    assert_eq!(crm.retry.max_attempts, 8);
    assert_eq!(crm.retry.max_backoff, Duration::from_secs(600));
    assert_eq!(crm.retry.initial_backoff, Duration::from_secs(1));
    assert_eq!(crm.retry.max_age, Duration::from_secs(24 * 3600));

    // The second flow: explicit path, event id, hmac, method.
    let echo = &config.flows["crm-echo"];
    let Source::Webhook(src) = &echo.source else {
        panic!("expected a webhook source")
    };
    assert_eq!(webhook_path("crm-echo", src), "CrmEcho.v2");
    assert!(matches!(&src.event_id, Some(EventIdSource::JsonPointer(p)) if p == "/id"));
    assert!(matches!(
        &src.signature,
        SignatureConfig::Hmac { header, encoding: HmacEncoding::Base64, prefix: None, .. } if header == "X-Sig"
    ));
    let back = &echo.destinations["back"];
    assert_eq!(back.http.as_ref().unwrap().method, "PUT");
    assert_eq!(back.concurrency, 2);
    assert_eq!(back.retry.max_attempts, 12);
}

#[test]
fn settings_default_when_no_file_has_them() {
    let tmp = dir(&[(
        "all.yaml",
        &format!("{SYSTEMS}{}", common::flow("f", "http://hook.test/x")),
    )]);
    let loaded = load(tmp.path()).expect("loads");
    assert_eq!(
        loaded.config.settings.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(loaded.config.flows.len(), 1);
}

#[test]
fn empty_sections_and_comment_only_files_are_fine() {
    let tmp = dir(&[
        ("a.yaml", SYSTEMS),
        ("b.yaml", "# nothing here yet\n"),
        ("c.yaml", "flows:\n  # billing-to-crm: ...\n"),
        ("d.yaml", &common::flow("f", "http://hook.test/x")),
    ]);
    let loaded = load(tmp.path()).expect("loads");
    assert_eq!(loaded.config.flows.len(), 1);
}
