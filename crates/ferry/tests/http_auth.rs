//! An HTTP destination's `auth`: Basic or Bearer credentials given by reference and sent as
//! `Authorization` on every delivery; refused next to a literal `Authorization` header.

mod common;

use base64::Engine as _;
use common::*;

fn destination_with_auth(url: &str, auth: &str) -> String {
    http_destination("crm", url, 3).replace(
        "          timeout: 2s\n",
        &format!("          timeout: 2s\n          auth: {auth}\n"),
    )
}

#[tokio::test]
async fn basic_and_bearer_credentials_are_sent_from_their_references() {
    let receiver = TestReceiver::start().await;
    for (auth, expected) in [
        (
            "{ basic: { username: ferry, password: { file: crm-password } } }",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("ferry:s3cret-pass")
            ),
        ),
        (
            "{ bearer: { token: { file: crm-password } } }",
            "Bearer s3cret-pass".to_string(),
        ),
    ] {
        let cfg = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        write_config(
            cfg.path(),
            &destination_with_auth(&receiver.url("/crm"), auth),
        );
        std::fs::write(cfg.path().join("crm-password"), "s3cret-pass\n").unwrap();
        let before = receiver.count();
        let hub = start_hub(cfg.path(), data.path()).await;
        let id = format!("auth-{}", before);
        assert_eq!(send(hub.addr(), &id, r#"{"type":"t"}"#).await.status(), 202);
        wait_until(30, "the delivery arrives", || async {
            receiver.count() == before + 1
        })
        .await;
        let got = receiver.received().pop().unwrap();
        assert_eq!(
            got.headers.get("authorization").unwrap().to_str().unwrap(),
            expected
        );
        hub.shutdown().await.unwrap();
    }
}

#[test]
fn auth_next_to_an_authorization_header_is_refused() {
    let cfg = tempfile::tempdir().unwrap();
    let destination = destination_with_auth(
        "http://127.0.0.1:9/crm",
        "{ bearer: { token: { file: crm-password } } }",
    )
    .replace(
        "          timeout: 2s\n",
        "          timeout: 2s\n          headers: { Authorization: { file: crm-password } }\n",
    );
    write_config(cfg.path(), &destination);
    std::fs::write(cfg.path().join("crm-password"), "s3cret-pass").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("validate")
        .arg(cfg.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("http.auth"), "{err}");
    assert!(err.contains("Authorization"), "{err}");
}
