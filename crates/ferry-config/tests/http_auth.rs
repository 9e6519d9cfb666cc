//! An HTTP destination's `auth: oauth2`: each mistake reported at its field, file and line.

mod common;

use common::{SYSTEMS, UNSET_VAR, dir, error_at, errors, load, load_unresolved};

/// A flow whose destination authenticates with `oauth2` (the block's lines, indented to sit
/// under `oauth2:`), `headers` being the destination's extra `headers:` line, if any.
fn flow(oauth2: &str, headers: &str) -> String {
    format!(
        "\
flows:
  f:
    source:
      webhook:
        system: billing
        signature: {{ none: {{}} }}
    destinations:
      crm:
        system: crm
        http:
          url: https://api.crm.example/hooks
{headers}          auth:
            oauth2:
{oauth2}"
    )
}

const GOOD: &str = concat!(
    "              token_url: https://auth.crm.example/oauth/token\n",
    "              client_id: ferry\n",
    "              client_secret: { file: client-secret }\n",
);

fn config(oauth2: &str, headers: &str) -> tempfile::TempDir {
    dir(&[
        ("systems.yaml", SYSTEMS),
        ("flows/f.yaml", &flow(oauth2, headers)),
        ("client-secret", "s3cret\n"),
        ("empty", "  \n"),
    ])
}

const BASE: &str = "flows.f.destinations.crm.http.auth";

#[test]
fn a_complete_oauth2_block_loads() {
    let extra = format!(
        "{GOOD}              scope: orders:write\n              audience: https://api.crm.example\n              refresh_token: {{ file: client-secret }}\n"
    );
    let loaded = load(config(&extra, "").path()).expect("valid");
    let http = loaded.config.flows["f"].destinations["crm"]
        .http
        .clone()
        .unwrap();
    let Some(ferry_config::HttpAuth::Oauth2(oauth2)) = http.auth else {
        panic!("oauth2 expected");
    };
    assert_eq!(oauth2.client_id, "ferry");
    assert_eq!(oauth2.scope.as_deref(), Some("orders:write"));
    assert!(oauth2.refresh_token.is_some());
}

#[test]
fn a_bad_token_url_is_located() {
    let block = GOOD.replace(
        "https://auth.crm.example/oauth/token",
        "ftp://auth.crm.example/t",
    );
    let errs = errors(load(config(&block, "").path()));
    let e = error_at(&errs, &format!("{BASE}.oauth2.token_url"));
    assert!(e.file.ends_with("flows/f.yaml"));
    assert_eq!(e.line, 14);
    assert!(e.message.contains("`http` or `https`"), "{}", e.message);
}

#[test]
fn a_token_url_the_egress_guard_refuses_is_located() {
    let block = GOOD.replace("auth.crm.example", "169.254.169.254");
    let errs = errors(load(config(&block, "").path()));
    let e = error_at(&errs, &format!("{BASE}.oauth2.token_url"));
    assert_eq!(e.line, 14);
    assert!(e.message.contains("would be refused"), "{}", e.message);
}

#[test]
fn a_missing_or_empty_secret_is_located_when_resolving() {
    let block = GOOD.replace(
        "{ file: client-secret }",
        &format!("{{ env: {UNSET_VAR} }}"),
    );
    let tmp = config(&block, "");
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, &format!("{BASE}.oauth2.client_secret"));
    assert_eq!(e.line, 16);
    assert!(e.message.contains(UNSET_VAR), "{}", e.message);
    load_unresolved(tmp.path()).expect("not resolved, not checked");

    let block = format!("{GOOD}              refresh_token: {{ file: empty }}\n");
    let errs = errors(load(config(&block, "").path()));
    let e = error_at(&errs, &format!("{BASE}.oauth2.refresh_token"));
    assert_eq!(e.line, 17);
    assert!(e.message.contains("empty"), "{}", e.message);
}

#[test]
fn an_inline_secret_is_refused() {
    let block = GOOD.replace("{ file: client-secret }", "hunter2-inline");
    let errs = errors(load(config(&block, "").path()));
    let e = error_at(&errs, &format!("{BASE}.oauth2.client_secret"));
    assert_eq!(e.line, 16);
    assert!(e.message.contains("by reference"), "{}", e.message);
}

#[test]
fn an_unknown_field_is_located() {
    let block = format!("{GOOD}              scopes: orders:write\n");
    let errs = errors(load(config(&block, "").path()));
    let e = error_at(&errs, &format!("{BASE}.oauth2.scopes"));
    assert_eq!(e.line, 17);
    assert!(
        e.message.contains("unknown field `scopes`"),
        "{}",
        e.message
    );
}

#[test]
fn an_empty_client_id_is_refused() {
    let block = GOOD.replace("client_id: ferry", "client_id: ''");
    let errs = errors(load(config(&block, "").path()));
    let e = error_at(&errs, &format!("{BASE}.oauth2.client_id"));
    assert_eq!(e.line, 15);
}

#[test]
fn oauth2_next_to_a_literal_authorization_header_is_refused() {
    let headers = "          headers: { Authorization: 'Bearer abc' }\n";
    let errs = errors(load(config(GOOD, headers).path()));
    let e = error_at(&errs, BASE);
    assert_eq!(e.line, 13);
    assert!(e.message.contains("Authorization"), "{}", e.message);
}
