//! The event body: JSON that carries the send time, the run id and the event's sequence
//! number at fixed offsets, so each request patches a copy of one template in place and
//! the receiver reads them back without a full JSON parse.
//!
//! ```text
//! {"sent_ns": 1767225600123456789,"run":"0123456789abcdef","seq":                  42,"type":"bench.event","pad":"xxxx…"}
//! ```
//! Numbers are right-aligned in 20-character fields with leading spaces (valid JSON
//! whitespace), so the body length never changes.

use std::hash::{BuildHasher, Hasher};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

const NUM_WIDTH: usize = 20;
const PREFIX: &str = "{\"sent_ns\":";
const RUN_KEY: &str = ",\"run\":\"";
const SEQ_KEY: &str = "\",\"seq\":";
const TAIL_KEY: &str = ",\"type\":\"bench.event\",\"pad\":\"";
const END: &str = "\"}";
const RUN_LEN: usize = 16;

const SENT_AT: usize = PREFIX.len();
const RUN_AT: usize = SENT_AT + NUM_WIDTH + RUN_KEY.len();
const SEQ_AT: usize = RUN_AT + RUN_LEN + SEQ_KEY.len();
/// Smallest body: every field, an empty pad.
pub const MIN_BODY: usize = SEQ_AT + NUM_WIDTH + TAIL_KEY.len() + END.len();

/// A fresh 16-hex-digit id for this run, so deliveries of other runs can be told apart.
pub fn new_run_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Builds event bodies of one run.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
}

impl Template {
    /// A template of exactly `body_bytes` bytes (at least [`MIN_BODY`]) for run `run`
    /// (16 hex digits).
    pub fn new(run: &str, body_bytes: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            body_bytes >= MIN_BODY,
            "--body-bytes must be at least {MIN_BODY} (the bench fields need that much)"
        );
        anyhow::ensure!(run.len() == RUN_LEN, "run id must be {RUN_LEN} characters");
        let mut s = String::with_capacity(body_bytes);
        s.push_str(PREFIX);
        s.push_str(&" ".repeat(NUM_WIDTH));
        s.push_str(RUN_KEY);
        s.push_str(run);
        s.push_str(SEQ_KEY);
        s.push_str(&" ".repeat(NUM_WIDTH));
        s.push_str(TAIL_KEY);
        s.push_str(&"x".repeat(body_bytes - MIN_BODY));
        s.push_str(END);
        debug_assert_eq!(s.len(), body_bytes);
        Ok(Self {
            bytes: s.into_bytes(),
        })
    }

    /// The body of event `seq`, sent (or meant to be sent) at `sent_ns`.
    pub fn body(&self, sent_ns: u64, seq: u64) -> Bytes {
        let mut b = BytesMut::from(&self.bytes[..]);
        write_num(&mut b[SENT_AT..SENT_AT + NUM_WIDTH], sent_ns);
        write_num(&mut b[SEQ_AT..SEQ_AT + NUM_WIDTH], seq);
        b.freeze()
    }
}

/// A 64-bit hash of a whole body, to tell that a delivered body is the one that was sent.
/// Sender and receiver live in one process, so the (fixed-key) std hasher suffices.
pub fn body_hash(body: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(body);
    h.finish()
}

/// Right-align `n` in `field` (pre-filled with spaces).
fn write_num(field: &mut [u8], mut n: u64) {
    let mut i = field.len();
    loop {
        i -= 1;
        field[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
}

/// What the receiver reads back from a delivered body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe<'a> {
    pub sent_ns: u64,
    pub run: &'a [u8],
    pub seq: u64,
}

#[derive(Deserialize)]
struct JsonProbe<'a> {
    sent_ns: u64,
    #[serde(borrow)]
    run: &'a str,
    seq: u64,
}

/// Read the bench fields of a body: at their fixed offsets when the body is untouched,
/// else by parsing it as JSON (a hub could re-serialise it). `None` if neither works.
pub fn probe(body: &[u8]) -> Option<Probe<'_>> {
    fast_probe(body).or_else(|| {
        let p: JsonProbe<'_> = serde_json::from_slice(body).ok()?;
        Some(Probe {
            sent_ns: p.sent_ns,
            run: p.run.as_bytes(),
            seq: p.seq,
        })
    })
}

fn fast_probe(body: &[u8]) -> Option<Probe<'_>> {
    if body.len() < MIN_BODY
        || !body.starts_with(PREFIX.as_bytes())
        || &body[SENT_AT + NUM_WIDTH..RUN_AT] != RUN_KEY.as_bytes()
        || &body[RUN_AT + RUN_LEN..SEQ_AT] != SEQ_KEY.as_bytes()
        || &body[SEQ_AT + NUM_WIDTH..SEQ_AT + NUM_WIDTH + TAIL_KEY.len()] != TAIL_KEY.as_bytes()
    {
        return None;
    }
    Some(Probe {
        sent_ns: read_num(&body[SENT_AT..SENT_AT + NUM_WIDTH])?,
        run: &body[RUN_AT..RUN_AT + RUN_LEN],
        seq: read_num(&body[SEQ_AT..SEQ_AT + NUM_WIDTH])?,
    })
}

fn read_num(field: &[u8]) -> Option<u64> {
    let digits = field.trim_ascii_start();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_exact_size_is_json_and_round_trips() {
        let run = new_run_id();
        let t = Template::new(&run, 1024).unwrap();
        let body = t.body(1_767_225_600_123_456_789, 42);
        assert_eq!(body.len(), 1024);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["sent_ns"], 1_767_225_600_123_456_789_u64);
        let p = probe(&body).unwrap();
        assert_eq!(
            p,
            Probe {
                sent_ns: 1_767_225_600_123_456_789,
                run: run.as_bytes(),
                seq: 42
            }
        );
    }

    #[test]
    fn extremes_and_minimum_size() {
        let t = Template::new("0123456789abcdef", MIN_BODY).unwrap();
        for (sent, seq) in [(0, 0), (u64::MAX, u64::MAX), (7, 1_000_000)] {
            let body = t.body(sent, seq);
            assert_eq!(body.len(), MIN_BODY);
            let p = probe(&body).unwrap();
            assert_eq!((p.sent_ns, p.seq), (sent, seq));
        }
        assert!(Template::new("0123456789abcdef", MIN_BODY - 1).is_err());
    }

    #[test]
    fn reserialised_body_is_still_understood() {
        let t = Template::new("0123456789abcdef", 300).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t.body(5, 6)).unwrap();
        let re = serde_json::to_vec(&v).unwrap();
        let p = probe(&re).unwrap();
        assert_eq!((p.sent_ns, p.run, p.seq), (5, &b"0123456789abcdef"[..], 6));
        assert!(probe(b"not json").is_none());
        assert!(probe(b"{\"sent_ns\":1}").is_none());
    }

    #[test]
    fn body_hash_tells_bodies_apart() {
        let t = Template::new("0123456789abcdef", 300).unwrap();
        let a = t.body(5, 6);
        assert_eq!(body_hash(&a), body_hash(&t.body(5, 6)));
        assert_ne!(body_hash(&a), body_hash(&t.body(5, 7)));
        let mut flipped = a.to_vec();
        flipped[200] ^= 1;
        assert_ne!(body_hash(&a), body_hash(&flipped));
    }
}
