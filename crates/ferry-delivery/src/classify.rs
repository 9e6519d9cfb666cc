//! What an HTTP response means for a delivery: delivered, retry later, or give up.

use std::time::{Duration, SystemTime};

/// The longest wait a receiver's `Retry-After` can impose (larger values are capped).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// What one attempt's result means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver accepted the delivery.
    Delivered,
    /// A transient failure: try again, no earlier than `retry_after` if the receiver said so.
    Retry {
        /// The receiver's `Retry-After`, when it sent a valid one.
        retry_after: Option<Duration>,
    },
    /// The receiver refused the delivery for good: retrying cannot help.
    Permanent,
}

/// Classify an HTTP status.
///
/// `2xx` is [`Verdict::Delivered`]; `408`, `409`, `425`, `429` and `5xx` are
/// [`Verdict::Retry`]; `3xx` (redirects are not followed) and the other `4xx` are
/// [`Verdict::Permanent`]. Anything else (`1xx` as a final answer, codes above 599) is a
/// misbehaving receiver and is retried like a `5xx`.
pub fn classify_status(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 409 | 425 | 429 => Verdict::Retry { retry_after: None },
        300..=499 => Verdict::Permanent,
        _ => Verdict::Retry { retry_after: None },
    }
}

/// The stable error class recorded for an HTTP status: `ok` for `2xx`, then `http_429`,
/// `http_3xx`, `http_4xx`, `http_5xx`, or `http_other` for anything else.
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        429 => "http_429",
        300..=399 => "http_3xx",
        400..=499 => "http_4xx",
        500..=599 => "http_5xx",
        _ => "http_other",
    }
}

/// Parse a `Retry-After` header value: delta-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`), relative to `now`.
///
/// Returns `None` for garbage, negative numbers and dates in the past (the caller then
/// falls back to its own backoff). Results are capped at [`MAX_RETRY_AFTER`] (one day).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only too-large values fail to parse, and those are capped anyway.
        value
            .parse::<u64>()
            .map(Duration::from_secs)
            .unwrap_or(MAX_RETRY_AFTER)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).ok()?
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let retry = Verdict::Retry { retry_after: None };
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify_status(s), Verdict::Delivered, "{s}");
            assert_eq!(status_class(s), "ok");
        }
        for s in [408, 409, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(s), retry, "{s}");
        }
        for s in [
            300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 410, 413, 422, 451, 499,
        ] {
            assert_eq!(classify_status(s), Verdict::Permanent, "{s}");
        }
        for s in [100, 101, 600, 999] {
            assert_eq!(classify_status(s), retry, "{s}");
            assert_eq!(status_class(s), "http_other");
        }
        assert_eq!(status_class(429), "http_429");
        assert_eq!(status_class(408), "http_4xx");
        assert_eq!(status_class(301), "http_3xx");
        assert_eq!(status_class(404), "http_4xx");
        assert_eq!(status_class(503), "http_5xx");
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
        // In the past: no instruction, fall back to backoff.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            None
        );
        // Far future: capped.
        assert_eq!(
            parse_retry_after("Fri, 21 Oct 2016 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        // Obsolete RFC 850 form is accepted by httpdate too.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn retry_after_garbage() {
        let now = SystemTime::now();
        for v in [
            "",
            "  ",
            "-1",
            "-0",
            "1.5",
            "+3",
            "soon",
            "0x10",
            "1 2",
            "Wed, 99 Foo",
            "🙃",
        ] {
            assert_eq!(parse_retry_after(v, now), None, "{v:?}");
        }
    }
}
