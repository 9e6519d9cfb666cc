//! The individual value rules, as pure functions: `Err((message, help))` when broken.

use std::time::Duration;

/// A broken rule: what is wrong, and optionally what to do.
pub(crate) type Broken = (String, Option<String>);

/// Longest name of a system, flow or destination.
pub(crate) const MAX_NAME_LEN: usize = 64;
/// Smallest allowed `max_body_bytes` (1 KiB).
pub(crate) const MIN_BODY_BYTES: usize = 1024;
/// Largest allowed `max_body_bytes` (64 MiB).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Largest allowed destination `concurrency`.
pub(crate) const MAX_CONCURRENCY: usize = 1024;

/// Names of systems, flows and destinations: `[a-z0-9][a-z0-9_.-]*`, at most 64 characters.
pub(crate) fn name(what: &str, name: &str) -> Result<(), Broken> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= MAX_NAME_LEN {
        return Ok(());
    }
    let shown: String = name.chars().take(MAX_NAME_LEN + 1).collect();
    Err((
        format!("invalid {what} name `{shown}`"),
        Some(format!(
            "names use lowercase letters, digits, `-`, `_` and `.`, start with a letter or \
             digit, and are at most {MAX_NAME_LEN} characters"
        )),
    ))
}

/// A webhook path segment: `[A-Za-z0-9._-]+`, and not `.` or `..`.
pub(crate) fn webhook_path(path: &str) -> Result<(), Broken> {
    let chars_ok = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if chars_ok && path != "." && path != ".." {
        return Ok(());
    }
    Err((
        format!("invalid webhook path `{path}`"),
        Some(
            "a webhook path is one URL segment of letters, digits, `-`, `_` and `.` \
             (events are posted to `/ingest/{path}`)"
                .to_string(),
        ),
    ))
}

/// A JSON pointer (RFC 6901): empty (the whole document) or `/`-separated tokens, where `~`
/// is only used as `~0` or `~1`.
pub(crate) fn json_pointer(pointer: &str) -> Result<(), Broken> {
    let escapes_ok = pointer
        .split('~')
        .skip(1)
        .all(|after| after.starts_with(['0', '1']));
    if (pointer.is_empty() || pointer.starts_with('/')) && escapes_ok {
        return Ok(());
    }
    Err((
        format!("`{pointer}` is not a JSON pointer"),
        Some(
            "JSON pointers start with `/`, e.g. `/type` or `/data/id` (`~0` is `~`, `~1` is `/`)"
                .to_string(),
        ),
    ))
}

/// An HTTP header name.
pub(crate) fn header_name(name: &str) -> Result<(), Broken> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(drop)
        .map_err(|_| {
            (
                format!("invalid header name `{name}`"),
                Some("header names are tokens: letters, digits and `!#$%&'*+-.^_`|~`".to_string()),
            )
        })
}

/// A literal HTTP header value.
pub(crate) fn header_value(value: &str) -> Result<(), Broken> {
    http::HeaderValue::from_str(value).map(drop).map_err(|_| {
        (
            "invalid header value".to_string(),
            Some("header values cannot hold control characters or line breaks".to_string()),
        )
    })
}

/// An HTTP method token. Methods are case-sensitive, so `post` is refused in favour of `POST`.
pub(crate) fn method(method: &str) -> Result<(), Broken> {
    let parsed = http::Method::from_bytes(method.as_bytes()).map_err(|_| {
        (
            format!("`{method}` is not a valid HTTP method"),
            Some("use `POST`, `PUT`, `PATCH`, `GET` or `DELETE`".to_string()),
        )
    })?;
    let upper = method.to_ascii_uppercase();
    let standard = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    if parsed.as_str() != upper && standard.contains(&upper.as_str()) {
        return Err((
            format!("HTTP methods are case-sensitive: `{method}` is not `{upper}`"),
            Some(format!("write `{upper}`")),
        ));
    }
    Ok(())
}

/// A destination URL: parses, `http` or `https`, has a host, and no password in it (secrets
/// are given by reference).
pub(crate) fn destination_url(raw: &str) -> Result<(), Broken> {
    let url = url::Url::parse(raw).map_err(|e| {
        (
            format!("invalid URL: {e}"),
            Some("write a full URL, e.g. `https://api.example.com/hooks`".to_string()),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err((
            format!(
                "URL scheme must be `http` or `https`, not `{}`",
                url.scheme()
            ),
            None,
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(("URL has no host".to_string(), None));
    }
    if url.password().is_some() {
        return Err((
            "URL holds a password: secrets must be given by reference".to_string(),
            Some(
                "send credentials in a header instead, e.g. `Authorization: { env: VAR_NAME }`"
                    .to_string(),
            ),
        ));
    }
    Ok(())
}

/// A body size limit between 1 KiB and 64 MiB.
pub(crate) fn body_bytes(n: usize) -> Result<(), Broken> {
    if (MIN_BODY_BYTES..=MAX_BODY_BYTES).contains(&n) {
        return Ok(());
    }
    Err((
        format!(
            "max_body_bytes must be between {MIN_BODY_BYTES} (1 KiB) and {MAX_BODY_BYTES} (64 MiB), not {n}"
        ),
        None,
    ))
}

/// A duration that must be more than zero.
pub(crate) fn positive(what: &str, d: Duration) -> Result<(), Broken> {
    if d.is_zero() {
        return Err((
            format!("{what} must be more than zero"),
            Some("e.g. `500ms`, `10s`, `5m`".to_string()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("flow", "billing-to-crm").is_ok());
        assert!(name("flow", "a.b_c-1").is_ok());
        assert!(name("flow", "9lives").is_ok());
        assert!(name("flow", "").is_err());
        assert!(name("flow", "Billing").is_err());
        assert!(name("flow", "-x").is_err());
        assert!(name("flow", "a b").is_err());
        assert!(name("flow", &"a".repeat(64)).is_ok());
        assert!(name("flow", &"a".repeat(65)).is_err());
        assert!(name("flow", "é").is_err());
    }

    #[test]
    fn paths_and_pointers() {
        assert!(webhook_path("Billing.v2_x-y").is_ok());
        assert!(webhook_path("a/b").is_err());
        assert!(webhook_path("..").is_err());
        assert!(webhook_path("").is_err());
        assert!(json_pointer("").is_ok());
        assert!(json_pointer("/type").is_ok());
        assert!(json_pointer("/a~1b/~0").is_ok());
        assert!(json_pointer("type").is_err());
        assert!(json_pointer("/a~2").is_err());
    }

    #[test]
    fn http_rules() {
        assert!(method("POST").is_ok());
        assert!(method("PROPFIND").is_ok());
        assert!(method("post").is_err());
        assert!(method("PO ST").is_err());
        assert!(header_name("X-Api-Key").is_ok());
        assert!(header_name("Bad Header").is_err());
        assert!(header_value("ok").is_ok());
        assert!(header_value("a\nb").is_err());
        assert!(destination_url("https://example.com/x").is_ok());
        assert!(destination_url("http://127.0.0.1:9101/hooks").is_ok());
        assert!(destination_url("ftp://example.com").is_err());
        assert!(destination_url("not a url").is_err());
        assert!(destination_url("https://user:pw@example.com").is_err());
        assert!(
            destination_url("http:///path").is_ok()
                == url::Url::parse("http:///path").is_ok_and(|u| u.host_str().is_some())
        );
    }

    #[test]
    fn limits() {
        assert!(body_bytes(1024).is_ok());
        assert!(body_bytes(1023).is_err());
        assert!(body_bytes(64 * 1024 * 1024 + 1).is_err());
        assert!(positive("timeout", Duration::ZERO).is_err());
    }
}
