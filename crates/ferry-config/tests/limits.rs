//! Hostile input: refused with an error, quickly, without panics.

mod common;

use std::time::{Duration, Instant};

use common::{SYSTEMS, dir, errors, flow, load};

const BILLION_LAUGHS: &str = "\
a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
";

fn refused_quickly(text: &str) -> Vec<ferry_config::Diagnostic> {
    let tmp = dir(&[("bomb.yaml", text), ("ok.yaml", SYSTEMS)]);
    // Generous for a busy machine: unbounded expansion would take far longer (or run out of
    // memory), and the limit error below is the real proof.
    let start = Instant::now();
    let errs = errors(load(tmp.path()));
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        errs.iter().all(|e| e.file == tmp.path().join("bomb.yaml")),
        "{errs:#?}"
    );
    errs
}

fn has_limit_error(errs: &[ferry_config::Diagnostic]) -> bool {
    errs.iter().any(|e| e.message.contains("limit exceeded"))
}

#[test]
fn billion_laughs_is_refused_quickly() {
    // At the top level (an unknown key, which fails first; the bomb is still reported).
    assert!(has_limit_error(&refused_quickly(BILLION_LAUGHS)));
    // Where it is read: a system's `records`.
    let indented: String = BILLION_LAUGHS
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let text = format!("flows:\n  laughs:\n{indented}systems:\n  bomb:\n    records: *i\n");
    assert!(has_limit_error(&refused_quickly(&text)));
}

#[test]
fn bomb_by_aliases_of_lists() {
    let mut yaml = String::from(
        "systems:\n  s0: { records: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol] }\n",
    );
    for i in 1..9 {
        let items = vec![format!("*l{}", i - 1); 10].join(", ");
        yaml.push_str(&format!("  s{i}: {{ records: &l{i} [{items}] }}\n"));
    }
    let errs = refused_quickly(&yaml);
    assert!(has_limit_error(&errs), "{errs:#?}");
}

#[test]
fn deep_nesting_is_refused() {
    let flow_style = format!("description: {}x{}\n", "[".repeat(100), "]".repeat(100));
    let mut block_style = String::from("description:\n");
    for depth in 1..=100 {
        block_style.push_str(&format!("{}k:\n", "  ".repeat(depth)));
    }
    for text in [flow_style, block_style] {
        let errs = refused_quickly(&format!(
            "systems:\n  a:\n    {}",
            text.replace('\n', "\n    ")
        ));
        assert!(has_limit_error(&errs), "{errs:#?}");
    }
}

#[test]
fn files_over_4_mib_are_refused() {
    let mut big = String::from("systems:\n");
    let mut i = 0;
    while big.len() <= 4 * 1024 * 1024 {
        big.push_str(&format!(
            "  s{i}: {{ description: \"{}\" }}\n",
            "x".repeat(200)
        ));
        i += 1;
    }
    let tmp = dir(&[("big.yaml", &big)]);
    let errs = errors(load(tmp.path()));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].message.contains("larger than 4 MiB"),
        "{}",
        errs[0].message
    );
}

#[test]
fn invalid_utf8_is_located() {
    let tmp = dir(&[]);
    std::fs::write(
        tmp.path().join("bad.yaml"),
        b"systems:\n  a: { owner: \xff }\n",
    )
    .unwrap();
    let errs = errors(load(tmp.path()));
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].column), (2, 15));
}

/// Every prefix of a valid config, and a few mangled variants, loads or fails without
/// panicking.
#[test]
fn truncated_and_mangled_files_never_panic() {
    let full = format!("{SYSTEMS}{}", flow("f", "http://hook.test/x"));
    let tmp = dir(&[]);
    let path = tmp.path().join("c.yaml");
    let mut boundaries: Vec<usize> = full.char_indices().map(|(i, _)| i).collect();
    boundaries.push(full.len());
    for (n, end) in boundaries.into_iter().enumerate() {
        std::fs::write(&path, &full[..end]).unwrap();
        let _ = load(tmp.path());
        if n % 8 != 0 {
            continue;
        }
        for junk in [
            "\t",
            ": ",
            "&a ",
            "*a ",
            "[",
            "}",
            "? ",
            "!!binary ",
            "<<: ",
            "---\n",
        ] {
            let mut mangled = full.clone();
            mangled.insert_str(end, junk);
            std::fs::write(&path, &mangled).unwrap();
            if let Err(e) = load(tmp.path()) {
                let all: Vec<_> = e.all().cloned().collect();
                let _ = ferry_config::render(&all, false);
                assert!(all.iter().all(|d| d.file == path));
            }
        }
    }
}
