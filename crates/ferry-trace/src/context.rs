//! W3C Trace Context: parse and write `traceparent`, and decide what an event keeps of an
//! inbound request's context and what a delivery sends.

use std::fmt::Write;

use crate::export;

/// A parsed `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// `trace-flags`; bit 0 is `sampled`.
    pub flags: u8,
}

impl TraceParent {
    /// Parse per W3C Trace Context level 1: `version-traceid-parentid-flags`, lower-case
    /// hex, version `ff` invalid, ids not all zero. A higher version is read by its first
    /// four fields when it has them (§4.3: "parse the fields it knows").
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_bytes::<1>(&value[0..2])?[0];
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if version > 0 && bytes.len() > 55 && bytes[55] != b'-' {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex_bytes::<16>(&value[3..35])?;
        let span_id = hex_bytes::<8>(&value[36..52])?;
        let flags = hex_bytes::<1>(&value[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Whether the caller sampled the trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The header value (version `00`).
    pub fn header(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        hex_into(&mut out, &self.trace_id);
        out.push('-');
        hex_into(&mut out, &self.span_id);
        let _ = write!(out, "-{:02x}", self.flags);
        out
    }
}

/// Lower-case hex only (W3C: "MUST be lowercase"), exactly `N` bytes.
fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?;
    }
    Some(out)
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// The ids of one of Ferry's spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The parent span (the caller's, or Ferry's own); `None` for a root.
    pub parent: Option<[u8; 8]>,
    /// Whether the parent is another process's span (the inbound request's).
    pub remote_parent: bool,
    pub sampled: bool,
}

impl SpanIds {
    /// A child span of this one, in this process.
    pub fn child(&self) -> SpanIds {
        SpanIds {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            parent: Some(self.span_id),
            remote_parent: false,
            sampled: self.sampled,
        }
    }

    /// This span as a `traceparent` value: what its children receive.
    pub fn traceparent(&self) -> String {
        TraceParent {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: u8::from(self.sampled),
        }
        .header()
    }
}

pub(crate) fn new_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

fn new_trace_id() -> [u8; 16] {
    loop {
        let id: [u8; 16] = rand::random();
        if id != [0; 16] {
            return id;
        }
    }
}

fn position(headers: &[(String, String)], name: &str) -> Option<usize> {
    headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// The trace id (hex) of the `traceparent` among `headers`, if one is valid: what log lines
/// about the event carry.
pub fn trace_id(headers: &[(String, String)]) -> Option<String> {
    let i = position(headers, "traceparent")?;
    let parent = TraceParent::parse(&headers[i].1)?;
    let mut out = String::with_capacity(32);
    hex_into(&mut out, &parent.trace_id);
    Some(out)
}

/// Put `context` (a `traceparent` and maybe a `tracestate`) in `headers` in place of theirs.
pub fn replace_context(headers: &mut Vec<(String, String)>, context: &[(String, String)]) {
    headers.retain(|(name, _)| {
        !name.eq_ignore_ascii_case("traceparent") && !name.eq_ignore_ascii_case("tracestate")
    });
    headers.extend(context.iter().cloned());
}

/// What an accepted event keeps of its request's trace context (`headers`: the kept
/// request headers, edited in place), and the ids of Ferry's ingress span when traces are
/// exported.
///
/// An invalid `traceparent` is dropped with its `tracestate`. Exporting, the kept
/// `traceparent` becomes the ingress span's (same trace id, Ferry's span id; a new trace
/// when the request had none, sampled at `sample_ratio`), and `tracestate` stays as the
/// caller sent it. Not exporting, a valid context is kept as it came.
pub fn inbound(headers: &mut Vec<(String, String)>) -> Option<SpanIds> {
    let parent = position(headers, "traceparent").and_then(|i| TraceParent::parse(&headers[i].1));
    if parent.is_none() {
        headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("traceparent") && !n.eq_ignore_ascii_case("tracestate")
        });
    }
    let exporting = export::active()?;
    let ids = match parent {
        Some(p) => SpanIds {
            trace_id: p.trace_id,
            span_id: new_span_id(),
            parent: Some(p.span_id),
            remote_parent: true,
            sampled: p.sampled(),
        },
        None => SpanIds {
            trace_id: new_trace_id(),
            span_id: new_span_id(),
            parent: None,
            remote_parent: false,
            sampled: exporting.sample(),
        },
    };
    let value = ids.traceparent();
    match position(headers, "traceparent") {
        Some(i) => headers[i].1 = value,
        None => headers.push(("traceparent".to_string(), value)),
    }
    Some(ids)
}

/// A delivery attempt's span, child of the context the event kept (`headers`, edited in
/// place: the outbound `traceparent` names the attempt span). `None` when traces are not
/// exported or the event kept no context; the headers are then sent as they are.
pub fn outbound(headers: &mut [(String, String)]) -> Option<SpanIds> {
    export::active()?;
    let i = position(headers, "traceparent")?;
    let parent = TraceParent::parse(&headers[i].1)?;
    let ids = SpanIds {
        trace_id: parent.trace_id,
        span_id: new_span_id(),
        parent: Some(parent.span_id),
        remote_parent: false,
        sampled: parent.sampled(),
    };
    headers[i].1 = ids.traceparent();
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_writes_the_w3c_example() {
        let p = TraceParent::parse(VALID).unwrap();
        assert!(p.sampled());
        assert_eq!(p.header(), VALID);
    }

    #[test]
    fn refuses_what_the_spec_calls_invalid() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        // A later version is read by the fields this one knows.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert!(TraceParent::parse(later).is_some());
    }

    #[test]
    fn not_exporting_an_invalid_context_is_dropped_and_a_valid_one_kept() {
        let mut headers = vec![
            ("traceparent".to_string(), "00-zz".to_string()),
            ("tracestate".to_string(), "congo=t61rcWkgMzE".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        assert_eq!(inbound(&mut headers), None);
        assert_eq!(headers.len(), 1);
        let mut headers = vec![
            ("traceparent".to_string(), VALID.to_string()),
            ("tracestate".to_string(), "congo=t61rcWkgMzE".to_string()),
        ];
        assert_eq!(inbound(&mut headers), None);
        assert_eq!(headers[0].1, VALID);
        assert_eq!(headers.len(), 2);
        assert_eq!(outbound(&mut headers), None);
        assert_eq!(headers[0].1, VALID);
    }
}
