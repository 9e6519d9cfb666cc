//! docs/config.md lists exactly the VRL functions Ferry offers.

#[test]
fn the_config_reference_lists_every_offered_function() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md"))
        .expect("docs/config.md");
    let start = doc
        .find("<!-- vrl-functions -->")
        .expect("the function list marker in docs/config.md");
    let end = doc[start..]
        .find("<!-- /vrl-functions -->")
        .map(|i| start + i)
        .expect("the end marker of the function list");
    let mut listed: Vec<&str> = doc[start..end].split('`').skip(1).step_by(2).collect();
    listed.sort_unstable();
    let offered = ferry_transform::function_names();
    assert_eq!(
        listed,
        offered,
        "update the list in docs/config.md to:\n{}",
        offered
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
