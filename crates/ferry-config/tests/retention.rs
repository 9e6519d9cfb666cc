//! Retention durations: `systems.X.retention` and `settings.protection.retention` must be
//! positive and `settings.protection.purge_every` at least 1s, each refused at its line.

mod common;

use common::{deduped_flow, dir, error_at, errors, load};

const SYSTEMS: &str = "\
systems:
  billing: { owner: team-payments, retention: 30d }
  crm: { owner: team-growth, retention: 0s }
";

const SETTINGS: &str = "\
settings:
  protection:
    retention:
      user.contact: 90d
      user.financial: 0s
    purge_every: 500ms
";

#[test]
fn zero_retentions_and_a_sub_second_purge_are_refused_where_they_are() {
    let tmp = dir(&[
        ("systems.yaml", SYSTEMS),
        ("settings.yaml", SETTINGS),
        ("f.yaml", &deduped_flow("f", "http://hook.test/x")),
    ]);
    let errs = errors(load(tmp.path()));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let system = error_at(&errs, "systems.crm.retention");
    assert!(
        system.file.ends_with("systems.yaml"),
        "{}",
        system.file.display()
    );
    assert_eq!(system.line, 3);
    assert!(
        system.message.contains("retention of 0"),
        "{}",
        system.message
    );
    let category = error_at(&errs, "settings.protection.retention.user.financial");
    assert!(
        category.file.ends_with("settings.yaml"),
        "{}",
        category.file.display()
    );
    assert_eq!(category.line, 5);
    assert!(
        category.message.contains("`user.financial`"),
        "{}",
        category.message
    );
    let purge = error_at(&errs, "settings.protection.purge_every");
    assert_eq!(purge.line, 6);
    assert!(purge.message.contains("500ms"), "{}", purge.message);
}

#[test]
fn positive_retentions_load() {
    let tmp = dir(&[
        ("systems.yaml", &SYSTEMS.replace("0s", "12h")),
        (
            "settings.yaml",
            &SETTINGS.replace("0s", "7d").replace("500ms", "1s"),
        ),
        ("f.yaml", &deduped_flow("f", "http://hook.test/x")),
    ]);
    let loaded = load(tmp.path()).unwrap_or_else(|e| panic!("valid: {e}"));
    let p = &loaded.config.settings.protection;
    assert_eq!(p.purge_every, std::time::Duration::from_secs(1));
    assert_eq!(p.retention.len(), 2);
}
