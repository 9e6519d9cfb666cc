//! The VRL functions Ferry offers to users' programs.
//!
//! Ferry builds VRL with its base standard library only (`stdlib-base`): the functions that
//! read environment variables, the host name or files (`get_env_var`, `get_hostname`,
//! `get_timezone_name`, `parse_etld`, `parse_proto`, `encode_proto`,
//! `validate_json_schema`), that use the network (`http_request`, `dns_lookup`,
//! `reverse_dns`) or that hash and encrypt (`sha2`, `hmac`, `md5`, `encrypt`, …) are not
//! compiled in at all. Of the rest, [`EXCLUDED`] are removed, each for a stated reason;
//! everything else is offered. [`function_names`] lists what is offered (docs/config.md
//! mirrors it).

use std::sync::OnceLock;

use vrl::compiler::Function;

/// Functions of VRL's base standard library that Ferry does not offer, with the reason.
pub const EXCLUDED: &[(&str, &str)] = &[
    (
        "parse_grok",
        "grok patterns run on a backtracking regex engine: one hostile input can take unbounded time",
    ),
    (
        "parse_groks",
        "grok patterns run on a backtracking regex engine: one hostile input can take unbounded time",
    ),
    (
        "log",
        "it writes into Ferry's own logs, which never carry payloads (they may hold personal data)",
    ),
    (
        "decode_gzip",
        "decompression has no output bound: a small body can expand to gigabytes",
    ),
    (
        "decode_zlib",
        "decompression has no output bound: a small body can expand to gigabytes",
    ),
    (
        "decode_zstd",
        "decompression has no output bound: a small body can expand to gigabytes",
    ),
    (
        "decode_snappy",
        "decompression has no output bound: a small body can expand to gigabytes",
    ),
    (
        "decode_lz4",
        "decompression has no output bound: a small body can expand to gigabytes",
    ),
];

/// Functions that are not part of Ferry's VRL build at all (their features are off), so a
/// program naming one gets a note saying why.
const NOT_BUILT: &[(&str, &str)] = &[
    ("get_env_var", "programs cannot read the environment"),
    ("get_hostname", "programs cannot read the host"),
    ("get_timezone_name", "programs cannot read the host"),
    ("parse_etld", "it reads a suffix list from disk"),
    ("parse_proto", "it reads descriptor files from disk"),
    ("encode_proto", "it reads descriptor files from disk"),
    (
        "validate_json_schema",
        "it reads schema files from disk; use a `validate` step or a `contract`",
    ),
    (
        "http_request",
        "programs do no network I/O; use `enrich` on the destination",
    ),
    ("dns_lookup", "programs do no network I/O"),
    ("reverse_dns", "programs do no network I/O"),
];

/// The functions offered, built once.
pub(crate) fn offered() -> &'static [Box<dyn Function>] {
    static FUNCTIONS: OnceLock<Vec<Box<dyn Function>>> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        vrl::stdlib::all()
            .into_iter()
            .filter(|f| !EXCLUDED.iter().any(|(name, _)| *name == f.identifier()))
            .collect()
    })
}

/// The names of the functions offered to programs, sorted.
pub fn function_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = offered().iter().map(|f| f.identifier()).collect();
    names.sort_unstable();
    names
}

/// Why `name` is not offered, if it is one of the functions Ferry leaves out.
pub fn why_not_offered(name: &str) -> Option<&'static str> {
    EXCLUDED
        .iter()
        .chain(NOT_BUILT)
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grok_and_io_are_left_out_and_the_basics_are_in() {
        let names = function_names();
        for left_out in ["parse_grok", "parse_groks", "log", "decode_gzip"] {
            assert!(!names.contains(&left_out), "{left_out} is offered");
        }
        for offered in [
            "to_int",
            "parse_json",
            "upcase",
            "filter",
            "for_each",
            "abort",
        ] {
            // `abort` is a keyword, not a function.
            if offered != "abort" {
                assert!(names.contains(&offered), "{offered} is missing");
            }
        }
        assert!(why_not_offered("http_request").is_some());
        assert!(why_not_offered("to_int").is_none());
    }
}
