//! What an HTTP response means for a delivery: delivered, retry later, or give up; and which
//! failed calls never reached the destination because this host ran out of a resource.

use std::error::Error;
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
    /// The call could not be made because this host ran out of a resource (file
    /// descriptors, socket buffers, memory): the destination was not asked, so the attempt
    /// does not count. Try again soon.
    Local {
        /// The resource that ran out.
        cause: LocalFailure,
    },
}

impl Verdict {
    /// The local cause, when the call failed on this host rather than at the destination.
    pub fn local_failure(self) -> Option<LocalFailure> {
        match self {
            Verdict::Local { cause } => Some(cause),
            _ => None,
        }
    }
}

/// The error class recorded for a call that failed on this host ([`Verdict::Local`]).
pub const LOCAL_FAILURE: &str = "local_failure";

/// `errno` values of the local resource exhaustions, as [`std::io::Error::raw_os_error`]
/// reports them. `libc` is not a dependency of this crate, so they are spelt out here, from
/// the C headers of the systems Ferry runs on.
mod errno {
    /// `ENOMEM`: out of memory (the same on Linux, macOS and the BSDs).
    pub const ENOMEM: i32 = 12;
    /// `ENFILE`: the system-wide table of open files is full (same everywhere).
    pub const ENFILE: i32 = 23;
    /// `EMFILE`: this process has as many descriptors open as its limit allows (same
    /// everywhere).
    pub const EMFILE: i32 = 24;
    /// `ENOBUFS`: no buffer space for the socket (Linux and Android).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub const ENOBUFS: i32 = 105;
    /// `ENOBUFS`: no buffer space for the socket (macOS and the BSDs).
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub const ENOBUFS: i32 = 55;
}

/// A resource of this host whose exhaustion made a call fail before it reached the
/// destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalFailure {
    /// `EMFILE`: the process's file-descriptor limit is reached.
    ProcessFileLimit,
    /// `ENFILE`: the system's file table is full.
    SystemFileLimit,
    /// `ENOBUFS`: no socket buffer space.
    NoBufferSpace,
    /// `ENOMEM`: out of memory.
    OutOfMemory,
}

impl LocalFailure {
    /// The stable name, used as the metrics label `reason`: `emfile`, `enfile`, `enobufs`
    /// or `enomem`.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalFailure::ProcessFileLimit => "emfile",
            LocalFailure::SystemFileLimit => "enfile",
            LocalFailure::NoBufferSpace => "enobufs",
            LocalFailure::OutOfMemory => "enomem",
        }
    }

    /// The exhaustion an OS error code stands for, if it is one. Only Unix codes are known:
    /// elsewhere this is always `None`.
    pub fn from_os_error(code: i32) -> Option<Self> {
        if !cfg!(unix) {
            return None;
        }
        match code {
            errno::EMFILE => Some(LocalFailure::ProcessFileLimit),
            errno::ENFILE => Some(LocalFailure::SystemFileLimit),
            errno::ENOBUFS => Some(LocalFailure::NoBufferSpace),
            errno::ENOMEM => Some(LocalFailure::OutOfMemory),
            _ => None,
        }
    }
}

/// The local resource exhaustion behind `err`, if that is why it failed: the first
/// [`std::io::Error`] in its [`source`](Error::source) chain whose OS error code is
/// `EMFILE`, `ENFILE`, `ENOBUFS` or `ENOMEM`. An `io::Error` that wraps another error is
/// looked into as well (its own `source` skips the wrapped error).
pub fn local_failure(err: &(dyn Error + 'static)) -> Option<LocalFailure> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(found) = io.raw_os_error().and_then(LocalFailure::from_os_error) {
                return Some(found);
            }
            if let Some(found) = io.get_ref().and_then(|inner| local_failure(inner)) {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
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
    use std::fmt;
    use std::io;

    /// An error with a message and a cause, like hyper's and reqwest's wrappers.
    #[derive(Debug)]
    struct Wrapper(&'static str, Box<dyn Error + Send + Sync>);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.1)
        }
    }

    /// `reqwest::Error` -> hyper's client error -> `ConnectError("tcp open error")` ->
    /// `io::Error`, the chain of a connect that failed for lack of a descriptor.
    fn connect_chain(io: io::Error) -> Wrapper {
        Wrapper(
            "error sending request",
            Box::new(Wrapper(
                "client error (Connect)",
                Box::new(Wrapper("tcp open error", Box::new(io))),
            )),
        )
    }

    #[test]
    fn resource_exhaustion_is_found_down_the_chain() {
        let cases = [
            (errno::EMFILE, LocalFailure::ProcessFileLimit, "emfile"),
            (errno::ENFILE, LocalFailure::SystemFileLimit, "enfile"),
            (errno::ENOBUFS, LocalFailure::NoBufferSpace, "enobufs"),
            (errno::ENOMEM, LocalFailure::OutOfMemory, "enomem"),
        ];
        for (code, cause, name) in cases {
            let err = connect_chain(io::Error::from_raw_os_error(code));
            assert_eq!(local_failure(&err), Some(cause), "{code}");
            assert_eq!(cause.as_str(), name);
            // The io::Error itself, at the top of the chain.
            assert_eq!(
                local_failure(&io::Error::from_raw_os_error(code)),
                Some(cause)
            );
        }
        #[cfg(target_os = "linux")]
        assert_eq!(
            io::Error::from_raw_os_error(errno::EMFILE).to_string(),
            "Too many open files (os error 24)",
            "the constant is the system's"
        );
    }

    #[test]
    fn an_io_error_wrapping_the_os_error_is_looked_into() {
        let wrapped = io::Error::other(Wrapper(
            "accept",
            Box::new(io::Error::from_raw_os_error(errno::EMFILE)),
        ));
        assert_eq!(
            local_failure(&connect_chain(wrapped)),
            Some(LocalFailure::ProcessFileLimit)
        );
        let direct = io::Error::other(io::Error::from_raw_os_error(errno::ENOBUFS));
        assert_eq!(local_failure(&direct), Some(LocalFailure::NoBufferSpace));
    }

    #[test]
    fn other_failures_are_the_destination_s() {
        for err in [
            io::Error::from(io::ErrorKind::ConnectionRefused),
            io::Error::from_raw_os_error(111), // ECONNREFUSED on Linux
            io::Error::from_raw_os_error(110), // ETIMEDOUT on Linux
            io::Error::other("Too many open files"), // words are not an OS error
        ] {
            assert_eq!(local_failure(&connect_chain(err)), None);
        }
        assert_eq!(local_failure(&Wrapper("no io", Box::new(fmt::Error))), None);
    }

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
