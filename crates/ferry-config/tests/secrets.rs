//! Secret references: resolved when asked, each failure located at the secret's field.

mod common;

use common::{SYSTEMS, UNSET_VAR, WHSEC, dir, error_at, errors, load, load_unresolved};

fn flow_with_signature(signature: &str) -> String {
    format!(
        "\
flows:
  f:
    source:
      webhook:
        system: billing
        signature: {signature}
    destinations:
      crm:
        system: crm
        http: {{ url: \"http://hook.test/x\" }}
"
    )
}

#[test]
fn missing_env_var_is_an_error_only_when_resolving() {
    let settings = format!("settings:\n  admin:\n    token: {{ env: {UNSET_VAR} }}\n");
    let tmp = dir(&[("ferry.yaml", &settings)]);

    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "settings.admin.token");
    assert_eq!((e.line, e.column), (3, 12));
    assert!(e.message.contains(UNSET_VAR), "{}", e.message);

    let loaded = load_unresolved(tmp.path()).expect("loads without resolving");
    assert!(loaded.warnings.is_empty());
}

#[test]
fn file_secret_resolves_relative_to_the_config_dir() {
    let sig = "{ github: { secret: { file: secrets/github } } }";
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("flows/f.yaml", &flow_with_signature(sig)),
        ("secrets/github", "s3cret\n"),
    ]);
    load(tmp.path()).expect("the file is found relative to the config dir, not the flow file");

    std::fs::remove_file(tmp.path().join("secrets/github")).unwrap();
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.source.webhook.signature.github.secret");
    assert_eq!(e.file, tmp.path().join("flows/f.yaml"));
    assert_eq!((e.line, e.column), (6, 40));
    assert!(e.message.contains("secrets/github"), "{}", e.message);
}

#[test]
fn standard_webhooks_secret_must_be_base64() {
    let sig = "{ standard_webhooks: { secret: { file: whsec } } }";
    let good = dir(&[
        ("systems.yaml", SYSTEMS),
        ("f.yaml", &flow_with_signature(sig)),
        ("whsec", WHSEC),
    ]);
    load(good.path()).expect("a whsec_ secret is accepted");

    let bad = dir(&[
        ("systems.yaml", SYSTEMS),
        ("f.yaml", &flow_with_signature(sig)),
        ("whsec", "whsec_this is not base64!"),
    ]);
    let errs = errors(load(bad.path()));
    let e = error_at(
        &errs,
        "flows.f.source.webhook.signature.standard_webhooks.secret",
    );
    assert!(e.message.contains("not valid base64"), "{}", e.message);
    assert!(
        !e.message.contains("this is not"),
        "the secret must not be echoed"
    );
}

#[test]
fn outbound_signing_and_header_secrets_are_resolved() {
    let text = format!(
        "\
flows:
  f:
    source:
      webhook: {{ system: billing, signature: {{ none: {{}} }} }}
    destinations:
      crm:
        system: crm
        http:
          url: \"http://hook.test/x\"
          headers: {{ Authorization: {{ env: {UNSET_VAR} }} }}
          signing: {{ standard_webhooks: {{ secret: {{ file: nope }} }} }}
"
    );
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("f.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        error_at(&errs, "flows.f.destinations.crm.http.headers.Authorization").line,
        10
    );
    assert_eq!(
        error_at(
            &errs,
            "flows.f.destinations.crm.http.signing.standard_webhooks.secret"
        )
        .line,
        11
    );
    load_unresolved(tmp.path()).expect("fine without resolving");
}
