//! Broken configurations: every error reported, each at its file, line, column and field.

mod common;

use common::{SYSTEMS, dir, error_at, errors, flow, load, load_unresolved};
use ferry_config::{INLINE_SECRET_MESSAGE, Severity};

#[test]
fn unknown_field_is_located_with_its_name_and_the_expected_ones() {
    let flows = "\
flows:
  f:
    source:
      webhook:
        system: billing
        signature: { none: {} }
    destinations:
      crm:
        system: crm
        http: { url: \"http://hook.test/x\" }
        retyr: { max_attempts: 3 }
";
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", flows)]);
    let errs = errors(load(tmp.path()));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = &errs[0];
    assert_eq!(e.severity, Severity::Error);
    assert_eq!(e.file, tmp.path().join("flows.yaml"));
    assert_eq!((e.line, e.column), (11, 9));
    assert_eq!(e.field, "flows.f.destinations.crm.retyr");
    assert!(e.message.contains("unknown field `retyr`"), "{}", e.message);
    assert!(
        e.message.contains("`retry`") && e.message.contains("`concurrency`"),
        "{}",
        e.message
    );
    assert_eq!(e.help.as_deref(), Some("did you mean `retry`?"));
}

#[test]
fn unknown_top_level_key() {
    let tmp = dir(&[("a.yaml", "sytems:\n  a: {}\n")]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "sytems");
    assert_eq!((e.line, e.column), (1, 1));
    assert_eq!(e.help.as_deref(), Some("did you mean `systems`?"));
}

#[test]
fn errors_in_two_files_are_both_reported() {
    let tmp = dir(&[
        ("a.yaml", "systems:\n  billing: { owner: x, tier: mega }\n"),
        ("b.yaml", "systems:\n  crm: { ownr: y }\n"),
    ]);
    let errs = errors(load(tmp.path()));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    let tier = error_at(&errs, "systems.billing.tier");
    assert_eq!(tier.file, tmp.path().join("a.yaml"));
    assert_eq!((tier.line, tier.column), (2, 30));
    assert!(
        tier.message.contains("unknown variant `mega`"),
        "{}",
        tier.message
    );
    let owner = error_at(&errs, "systems.crm.ownr");
    assert_eq!(owner.file, tmp.path().join("b.yaml"));
    assert_eq!((owner.line, owner.column), (2, 10));
}

#[test]
fn two_broken_flows_in_one_file_are_both_reported() {
    let text = "\
flows:
  a:
    source:
      webhook: { system: billing, signature: { none: {} }, bogus: 1 }
    destinations:
      crm: { system: crm, http: { url: \"http://hook.test/x\" } }
  ok:
    source:
      webhook: { system: billing, signature: { none: {} } }
    destinations:
      crm: { system: crm, http: { url: \"http://hook.test/y\" } }
  b:
    source:
      webhook: { system: billing, signature: { none: {} } }
    destinations:
      crm: { system: crm, http: { url: \"http://hook.test/z\", timeout: soon } }
";
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", text)]);
    let errs = errors(load(tmp.path()));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    let a = error_at(&errs, "flows.a.source.webhook.bogus");
    assert_eq!(a.line, 4);
    let b = error_at(&errs, "flows.b.destinations.crm.http.timeout");
    assert_eq!(b.line, 16);
    assert!(
        b.help.as_deref().unwrap_or_default().contains("10s"),
        "{b:?}"
    );
}

#[test]
fn syntax_error_is_located() {
    let tmp = dir(&[
        ("a.yaml", "systems:\n  a: { owner: x\n  b: {}\n"),
        ("b.yaml", SYSTEMS),
    ]);
    let errs = errors(load(tmp.path()));
    assert!(!errs.is_empty());
    assert!(
        errs.iter()
            .all(|e| e.file == tmp.path().join("a.yaml") && e.line >= 2),
        "{errs:#?}"
    );
}

#[test]
fn missing_field_names_the_field() {
    let text =
        "flows:\n  f:\n    source:\n      webhook: { system: billing, signature: { none: {} } }\n";
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", text)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations");
    assert_eq!(e.message, "missing field `destinations`");
    assert_eq!(e.line, 3);
}

#[test]
fn inline_secret_gets_the_reference_message() {
    let text = "settings:\n  admin:\n    token: hunter2\n";
    let tmp = dir(&[("ferry.yaml", text)]);
    let errs = errors(load_unresolved(tmp.path()));
    let e = error_at(&errs, "settings.admin.token");
    assert_eq!(e.message, INLINE_SECRET_MESSAGE);
    assert_eq!(
        e.message,
        "secrets must be given by reference, not inline: write `{ env: VAR_NAME }` or `{ file: path/to/secret }`"
    );
    assert_eq!((e.line, e.column), (3, 12));
    assert!(
        !format!("{errs:?}").contains("hunter2"),
        "the secret must not be echoed"
    );
}

#[test]
fn inline_secret_in_a_signature_and_a_bad_reference() {
    let text = "\
flows:
  f:
    source:
      webhook:
        system: billing
        signature: { github: { secret: 12345 } }
    destinations:
      crm:
        system: crm
        http:
          url: \"http://hook.test/x\"
          headers: { X-Key: { vault: x } }
";
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", text)]);
    let errs = errors(load_unresolved(tmp.path()));
    let e = error_at(&errs, "flows.f.source.webhook.signature.github.secret");
    assert_eq!(e.message, INLINE_SECRET_MESSAGE);
    // Entries are units: the second problem is in the same flow, so one error per flow.
    assert_eq!(errs.len(), 1, "{errs:#?}");
}

#[test]
fn header_value_that_is_neither_string_nor_reference() {
    let text = "\
flows:
  f:
    source:
      webhook: { system: billing, signature: { none: {} } }
    destinations:
      crm:
        system: crm
        http:
          url: \"http://hook.test/x\"
          headers: { X-Key: { vault: x } }
";
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", text)]);
    let errs = errors(load_unresolved(tmp.path()));
    let e = error_at(&errs, "flows.f.destinations.crm.http.headers.X-Key");
    assert!(e.message.contains("string or a secret reference"), "{e:?}");
}

#[test]
fn undeclared_system_is_located_at_the_reference() {
    let text = flow("f", "http://hook.test/x").replace("system: billing", "system: biling");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &text)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f.source.webhook.system");
    assert_eq!((e.line, e.column), (5, 17));
    assert!(
        e.message.contains("`biling` is not declared"),
        "{}",
        e.message
    );
    assert_eq!(e.help.as_deref(), Some("did you mean `billing`?"));
}

#[test]
fn duplicate_webhook_path_across_files() {
    let a = flow("a", "http://hook.test/a");
    let b = flow("b", "http://hook.test/b")
        .replace("system: billing", "system: billing\n        path: a");
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("a.yaml", &a), ("b.yaml", &b)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.b.source.webhook.path");
    assert_eq!(e.file, tmp.path().join("b.yaml"));
    assert_eq!((e.line, e.column), (6, 15));
    assert!(
        e.message.contains("`a` is already used by flow `a`"),
        "{}",
        e.message
    );
}

#[test]
fn bad_urls() {
    for (url, needle) in [
        ("not a url", "invalid URL"),
        ("ftp://example.com/x", "`http` or `https`"),
        ("https://u:p@example.com/", "password"),
    ] {
        let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", &flow("f", url))]);
        let errs = errors(load(tmp.path()));
        let e = error_at(&errs, "flows.f.destinations.crm.http.url");
        assert_eq!((e.line, e.column), (10, 22), "{url}");
        assert!(e.message.contains(needle), "{url}: {}", e.message);
    }
}

#[test]
fn flow_defined_in_two_files() {
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("a.yaml", &flow("f", "http://hook.test/a")),
        ("b.yaml", &flow("f", "http://hook.test/b")),
    ]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "flows.f");
    assert_eq!(e.file, tmp.path().join("b.yaml"));
    assert_eq!((e.line, e.column), (2, 3));
    let first = tmp.path().join("a.yaml");
    assert!(
        e.message.contains(&format!("{}:2", first.display())),
        "{}",
        e.message
    );
}

#[test]
fn name_written_twice_in_one_file() {
    let text = "systems:\n  a: { owner: x }\n  b: {}\n  a: { owner: y }\n";
    let tmp = dir(&[("a.yaml", text)]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "systems.a");
    assert_eq!((e.line, e.column), (4, 3));
    assert!(e.message.contains("first at line 2"), "{}", e.message);
}

#[test]
fn second_settings_file() {
    let tmp = dir(&[
        ("a.yaml", "settings:\n  listen: 127.0.0.1:1\n"),
        ("b.yaml", "# more\nsettings:\n  listen: 127.0.0.1:2\n"),
    ]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "settings");
    assert_eq!(e.file, tmp.path().join("b.yaml"));
    assert_eq!((e.line, e.column), (2, 1));
    // Both files are named.
    let a = format!("{}:1", tmp.path().join("a.yaml").display());
    let b = format!("{}:2", tmp.path().join("b.yaml").display());
    assert!(
        e.message.contains(&a) && e.message.contains(&b),
        "{}",
        e.message
    );
}

#[test]
fn semantic_checks_are_all_collected() {
    let text = "\
flows:
  Bad_Name:
    source:
      webhook:
        system: billing
        path: \"a/b\"
        event_type: type
        event_id: { header: \"bad header\" }
        max_body_bytes: 10
        signature: { hmac: { secret: { env: X }, header: \"x y\" } }
    destinations: {}
  ok:
    source:
      webhook: { system: billing, signature: { none: {} } }
    destinations:
      dest:
        system: nowhere
        concurrency: 0
        http:
          url: \"http://hook.test/x\"
          method: post
          timeout: 1s
          connect_timeout: 2s
          headers: { \"Bad Header\": x, X-Ok: \"a\\nb\" }
        retry: { max_attempts: 0, initial_backoff: 2h, max_backoff: 1h, max_age: 0s }
";
    let tmp = dir(&[("systems.yaml", SYSTEMS), ("flows.yaml", text)]);
    let errs = errors(load_unresolved(tmp.path()));
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    for expected in [
        "flows.Bad_Name",
        "flows.Bad_Name.destinations",
        "flows.Bad_Name.source.webhook.path",
        "flows.Bad_Name.source.webhook.event_type",
        "flows.Bad_Name.source.webhook.event_id.header",
        "flows.Bad_Name.source.webhook.max_body_bytes",
        "flows.Bad_Name.source.webhook.signature.hmac.header",
        "flows.ok.destinations.dest.system",
        "flows.ok.destinations.dest.concurrency",
        "flows.ok.destinations.dest.http.method",
        "flows.ok.destinations.dest.http.connect_timeout",
        "flows.ok.destinations.dest.http.headers.Bad Header",
        "flows.ok.destinations.dest.http.headers.X-Ok",
        "flows.ok.destinations.dest.retry.max_attempts",
        "flows.ok.destinations.dest.retry.initial_backoff",
        "flows.ok.destinations.dest.retry.max_age",
    ] {
        assert!(fields.contains(&expected), "missing {expected}: {errs:#?}");
    }
    assert_eq!(errs.len(), 16, "{errs:#?}");
    // Each is at its own line.
    assert_eq!(
        error_at(&errs, "flows.ok.destinations.dest.http.method").line,
        21
    );
    assert_eq!(
        error_at(&errs, "flows.ok.destinations.dest.retry.max_age").line,
        25
    );
    assert_eq!(error_at(&errs, "flows.Bad_Name").line, 2);
}

#[test]
fn body_size_limits_in_settings() {
    let tmp = dir(&[(
        "ferry.yaml",
        "settings:\n  ingress:\n    max_body_bytes: 1000000000\n",
    )]);
    let errs = errors(load(tmp.path()));
    let e = error_at(&errs, "settings.ingress.max_body_bytes");
    assert_eq!((e.line, e.column), (3, 21));
}

#[test]
fn directory_problems() {
    let tmp = dir(&[]);
    let errs = errors(load(tmp.path()));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].message.contains("no `.yaml` or `.yml` files"),
        "{errs:?}"
    );
    assert_eq!(errs[0].file, tmp.path());

    let missing = tmp.path().join("nope");
    let errs = errors(load(&missing));
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].file, missing);
    assert!(
        errs[0].message.contains("cannot open the config directory"),
        "{errs:?}"
    );

    let file = dir(&[("x.yaml", SYSTEMS)]);
    let errs = errors(load(&file.path().join("x.yaml")));
    assert!(errs[0].message.contains("not a directory"), "{errs:?}");
}
