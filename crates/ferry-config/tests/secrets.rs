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
        ("secrets/github", "s3cret-github-webhook-key\n"),
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

/// Every secret-bearing field of the config, with the YAML that sets it from the file
/// `s` (relative to the config dir), and its field path.
fn every_secret_field() -> Vec<(&'static str, String, String)> {
    let flow = |signature: &str| flow_with_signature(signature);
    let dest = |http_extra: &str| {
        format!(
            "\
flows:
  f:
    source:
      webhook: {{ system: billing, signature: {{ none: {{}} }} }}
    destinations:
      crm:
        system: crm
        http: {{ url: \"http://hook.test/x\", {http_extra} }}
"
        )
    };
    vec![
        (
            "settings.admin.token",
            "settings:\n  admin:\n    token: { file: s }\n".to_string(),
            String::new(),
        ),
        (
            "settings.metrics.token",
            "settings:\n  metrics:\n    token: { file: s }\n".to_string(),
            String::new(),
        ),
        (
            "flows.f.source.webhook.signature.github.secret",
            flow("{ github: { secret: { file: s } } }"),
            SYSTEMS.to_string(),
        ),
        (
            "flows.f.source.webhook.signature.stripe.secret",
            flow("{ stripe: { secret: { file: s } } }"),
            SYSTEMS.to_string(),
        ),
        (
            "flows.f.source.webhook.signature.hmac.secret",
            flow("{ hmac: { secret: { file: s }, header: x-sig } }"),
            SYSTEMS.to_string(),
        ),
        (
            "flows.f.source.webhook.signature.bearer.token",
            flow("{ bearer: { token: { file: s } } }"),
            SYSTEMS.to_string(),
        ),
        (
            "flows.f.source.webhook.signature.basic.password",
            flow("{ basic: { username: u, password: { file: s } } }"),
            SYSTEMS.to_string(),
        ),
        (
            "flows.f.source.webhook.signature.standard_webhooks.secret",
            flow("{ standard_webhooks: { secret: { file: s } } }"),
            SYSTEMS.to_string(),
        ),
        (
            "flows.f.destinations.crm.http.headers.x-api-key",
            dest("headers: { x-api-key: { file: s } }"),
            SYSTEMS.to_string(),
        ),
        (
            "flows.f.destinations.crm.http.signing.standard_webhooks.secret",
            dest("signing: { standard_webhooks: { secret: { file: s } } }"),
            SYSTEMS.to_string(),
        ),
    ]
}

/// An empty secret (or one of only whitespace) lets anyone in: every secret-bearing field
/// refuses it, naming the file and the field.
#[test]
fn an_empty_secret_is_refused_in_every_field() {
    for (field, yaml, systems) in every_secret_field() {
        for empty in ["", "\n", "  \t \n"] {
            let tmp = dir(&[("systems.yaml", &systems), ("f.yaml", &yaml), ("s", empty)]);
            let errs = errors(load(tmp.path()));
            let e = error_at(&errs, field);
            assert_eq!(e.file, tmp.path().join("f.yaml"), "{field}");
            assert!(e.message.contains("empty"), "{field}: {}", e.message);
        }
    }
}

/// A secret too short for what it guards is refused; the message says how long it must be
/// and never echoes the value.
#[test]
fn a_short_secret_is_refused_where_it_guards_access() {
    for (field, yaml, systems) in every_secret_field() {
        let short = if field.contains("standard_webhooks") {
            "whsec_c2hvcnQ=" // base64 of "short": valid, but 5 bytes
        } else {
            "k3y-sh0rt"
        };
        let tmp = dir(&[("systems.yaml", &systems), ("f.yaml", &yaml), ("s", short)]);
        let result = load(tmp.path());
        if field.contains("headers") {
            // A vendor's API key is the vendor's business: any non-empty value goes.
            result.expect("a short header value is accepted");
            continue;
        }
        let errs = errors(result);
        let e = error_at(&errs, field);
        assert!(e.message.contains("at least"), "{field}: {}", e.message);
        assert!(!e.message.contains(short), "{field} echoes the secret");
    }
}

#[test]
fn admin_tokens_need_32_bytes_of_entropy() {
    let settings = "settings:\n  admin:\n    token: { file: s }\n";
    for (token, ok) in [
        ("0123456789abcdef0123456789abcdef", true),
        ("0123456789abcdef0123456789abcde", false),
        (&"a".repeat(64), false),
        ("abababababababababababababababababab", false),
    ] {
        let tmp = dir(&[("ferry.yaml", settings), ("s", token)]);
        match load(tmp.path()) {
            Ok(_) => assert!(ok, "{token} was accepted"),
            Err(errs) => {
                assert!(!ok, "{token} was refused: {errs:?}");
                let e = error_at(&errs.errors, "settings.admin.token");
                assert!(e.message.contains("32 bytes of entropy"), "{}", e.message);
            }
        }
    }
}
