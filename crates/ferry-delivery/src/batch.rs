//! Batching, the pure parts: how a lane groups claimed deliveries into calls, the body and
//! the id of one batch call, and what a batch response means for each record in it.
//!
//! A batch body is built from the stored payloads without parsing them (ingress only stores
//! JSON documents): `[p1,p2,...]`, or `{"<wrap>":[p1,p2,...]}` with `wrap`. A batch's
//! `webhook-id` is derived from its members' delivery ids, so the same records sent again
//! as the same batch carry the same id.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::classify::Verdict;
use crate::outcome::AttemptResult;

/// The error class recorded for a record that a `2xx` batch response names as failed.
pub const BATCH_ITEM_FAILED: &str = "batch_item";

/// The longest excerpt kept of a failed record's entry in a batch response (in bytes).
const ITEM_EXCERPT_BYTES: usize = 512;

/// How a lane batches, from the destination's `batch` config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSpec {
    /// Most records per call (at least 1).
    pub max_items: usize,
    /// Most body bytes per call; a single larger record is sent alone.
    pub max_bytes: usize,
    /// How long a partial batch waits, from its first record, for more records.
    pub linger: Duration,
    /// `None`: the body is a JSON array of the payloads; `Some(field)`: an object with that
    /// field holding the array.
    pub wrap: Option<String>,
    /// What a failed batch call does.
    pub on_failure: BatchFailure,
    /// JSON pointer into a `2xx` response body to an array naming the failed records, as
    /// zero-based indexes or objects with an `index` field.
    pub failed_items: Option<String>,
}

/// What a failed batch call (no `2xx`) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchFailure {
    /// Every record takes the call's result: retried later (in a batch) or dead-lettered
    /// together.
    #[default]
    RetryBatch,
    /// Each record is sent again at once in a call of its own and takes that call's
    /// result, so one bad record cannot hold back the others. A `429` and transport errors
    /// (time-out, connection) are not split: they say nothing about the records.
    Split,
}

impl BatchSpec {
    /// Body bytes around the records: `[` `]`, or `{"<wrap>":[` `]}`.
    fn overhead(&self) -> usize {
        match &self.wrap {
            None => 2,
            Some(field) => json_string(field).len() + 5,
        }
    }
}

/// Collects records into batches of at most `max_items` records and `max_bytes` body bytes.
#[derive(Debug)]
pub(crate) struct Batcher<T> {
    max_items: usize,
    max_bytes: usize,
    overhead: usize,
    linger: Duration,
    current: Vec<T>,
    /// Body size of `current`.
    bytes: usize,
    /// When the first record of `current` arrived.
    since: Option<Instant>,
}

impl<T> Batcher<T> {
    pub(crate) fn new(spec: &BatchSpec) -> Self {
        Self {
            max_items: spec.max_items.max(1),
            max_bytes: spec.max_bytes,
            overhead: spec.overhead(),
            linger: spec.linger,
            current: Vec::new(),
            bytes: 0,
            since: None,
        }
    }

    /// Add a record whose payload has `size` bytes, at `now`. Returns the batches that are
    /// complete now (none, one, or two when a record too large to share a call closes the
    /// open batch and then its own).
    pub(crate) fn push(&mut self, item: T, size: usize, now: Instant) -> Vec<Vec<T>> {
        let size = record_len(size);
        let mut done = Vec::new();
        if !self.current.is_empty() && self.bytes + 1 + size > self.max_bytes {
            done.push(self.take());
        }
        if self.current.is_empty() {
            self.bytes = self.overhead + size;
            self.since = Some(now);
        } else {
            self.bytes += 1 + size;
        }
        self.current.push(item);
        if self.current.len() >= self.max_items || self.bytes >= self.max_bytes {
            done.push(self.take());
        }
        done
    }

    /// Take the open batch (empty when there is none).
    pub(crate) fn take(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.current)
    }

    /// When the open batch must go even if not full (`None`: no open batch).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.map(|s| s + self.linger)
    }

    /// The first record of the open batch.
    pub(crate) fn first(&self) -> Option<&T> {
        self.current.first()
    }
}

/// Bytes a payload takes in the body (an empty payload is sent as `null`).
fn record_len(size: usize) -> usize {
    if size == 0 { 4 } else { size }
}

/// The body of one batch call: the payloads as a JSON array, wrapped in an object under
/// `wrap` when set.
pub(crate) fn body<'a>(payloads: impl IntoIterator<Item = &'a [u8]>, wrap: Option<&str>) -> Bytes {
    let mut out = BytesMut::new();
    if let Some(field) = wrap {
        out.put_u8(b'{');
        out.put_slice(json_string(field).as_bytes());
        out.put_u8(b':');
    }
    out.put_u8(b'[');
    for (i, payload) in payloads.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        if payload.is_empty() {
            out.put_slice(b"null");
        } else {
            out.put_slice(payload);
        }
    }
    out.put_u8(b']');
    if wrap.is_some() {
        out.put_u8(b'}');
    }
    out.freeze()
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The `webhook-id` (and `idempotency-key`) of a batch call: `bat_` and 32 hex digits of
/// the SHA-256 of its members' delivery ids, sorted. The same records make the same id.
pub(crate) fn batch_id<I, S>(ids: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut ids: Vec<S> = ids.into_iter().collect();
    ids.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    let mut hash = Sha256::new();
    for id in &ids {
        hash.update(id.as_ref().as_bytes());
        hash.update(b"\n");
    }
    let digest = hash.finalize();
    format!("bat_{}", hex::encode(&digest[..16]))
}

/// The records a `2xx` batch response names as failed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FailedItems {
    /// Failed records by index, with their entry in the response (for the attempt's
    /// excerpt).
    pub failed: BTreeMap<usize, String>,
    /// Entries naming no record of the batch (not an index, out of range).
    pub unknown: usize,
}

/// Read the failed records of a batch of `n` from a `2xx` response `body`, at the JSON
/// `pointer`. An empty body, a missing field and `null` name no failures.
///
/// `Err` (with the reason) when the body is not JSON or the field is not an array: the
/// caller then cannot tell which records failed.
pub(crate) fn failed_items(body: &[u8], pointer: &str, n: usize) -> Result<FailedItems, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(FailedItems::default());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the response is not JSON: {e}"))?;
    let entries = match value.pointer(pointer) {
        None | Some(serde_json::Value::Null) => return Ok(FailedItems::default()),
        Some(serde_json::Value::Array(entries)) => entries,
        Some(_) => return Err(format!("`{pointer}` in the response is not an array")),
    };
    let mut out = FailedItems::default();
    for entry in entries {
        let index = match entry {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::Object(o) => o.get("index").and_then(serde_json::Value::as_u64),
            _ => None,
        };
        match index
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < n)
        {
            Some(i) => {
                out.failed.insert(i, excerpt(&entry.to_string()));
            }
            None => out.unknown += 1,
        }
    }
    Ok(out)
}

/// Each record's result from one batch call's result: a failed call fails every record
/// alike; a delivered call delivers every record except the `failed` ones, which get a
/// retryable failure of class [`BATCH_ITEM_FAILED`] with their response entry as excerpt.
pub(crate) fn per_record(
    call: &AttemptResult,
    n: usize,
    failed: &BTreeMap<usize, String>,
) -> Vec<AttemptResult> {
    (0..n)
        .map(|i| match (call.verdict, failed.get(&i)) {
            (Verdict::Delivered, Some(entry)) => AttemptResult {
                started_at: call.started_at,
                latency: call.latency,
                status: call.status,
                verdict: Verdict::Retry { retry_after: None },
                error_class: BATCH_ITEM_FAILED,
                error: Some(format!(
                    "record {i} of {n} refused in the batch response (HTTP {})",
                    call.status
                        .map_or_else(|| "?".to_owned(), |s| s.to_string())
                )),
                response_excerpt: Some(entry.clone()),
            },
            _ => call.clone(),
        })
        .collect()
}

/// Whether a failed batch call is split into single-record calls under
/// [`BatchFailure::Split`]: only answers that may be about the content (not `429`, not
/// transport errors).
pub(crate) fn splits(call: &AttemptResult) -> bool {
    call.verdict != Verdict::Delivered && call.status.is_some_and(|s| s != 429)
}

/// At most [`ITEM_EXCERPT_BYTES`], cut at a character boundary.
fn excerpt(text: &str) -> String {
    if text.len() <= ITEM_EXCERPT_BYTES {
        return text.to_owned();
    }
    let mut end = ITEM_EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(max_items: usize, max_bytes: usize, wrap: Option<&str>) -> BatchSpec {
        BatchSpec {
            max_items,
            max_bytes,
            linger: Duration::from_secs(1),
            wrap: wrap.map(str::to_owned),
            on_failure: BatchFailure::RetryBatch,
            failed_items: None,
        }
    }

    /// Push records of the given sizes; return the closed batches, then the open one.
    fn group(spec: &BatchSpec, sizes: &[usize]) -> (Vec<Vec<usize>>, Vec<usize>) {
        let mut b = Batcher::new(spec);
        let now = Instant::now();
        let mut done = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            done.extend(b.push(i, size, now));
        }
        (done, b.take())
    }

    #[test]
    fn closes_at_max_items() {
        let (done, open) = group(&spec(3, 1 << 20, None), &[10; 7]);
        assert_eq!(done, vec![vec![0, 1, 2], vec![3, 4, 5]]);
        assert_eq!(open, vec![6]);
    }

    #[test]
    fn closes_before_exceeding_max_bytes() {
        // `[` + 40 + `,` + 40 + `]` = 83 bytes fit in 90; a third record would not.
        let (done, open) = group(&spec(100, 90, None), &[40, 40, 40]);
        assert_eq!(done, vec![vec![0, 1]]);
        assert_eq!(open, vec![2]);
        // The built body is exactly as large as counted.
        let p = [b'1'; 40];
        assert_eq!(body([&p[..], &p[..]], None).len(), 83);
    }

    #[test]
    fn counts_the_wrap_overhead() {
        // `{"records":[` + 40 + `,` + 40 + `]}` = 95 bytes: over 90.
        let s = spec(100, 90, Some("records"));
        let (done, open) = group(&s, &[40, 40]);
        assert_eq!(done, vec![vec![0]]);
        assert_eq!(open, vec![1]);
        let p = [b'1'; 40];
        assert_eq!(body([&p[..], &p[..]], Some("records")).len(), 95);
        assert_eq!(s.overhead(), 14);
    }

    #[test]
    fn an_oversized_record_goes_alone() {
        let (done, open) = group(&spec(100, 100, None), &[10, 500, 10]);
        assert_eq!(done, vec![vec![0], vec![1]]);
        assert_eq!(open, vec![2]);
    }

    #[test]
    fn deadline_runs_from_the_first_record() {
        let mut b = Batcher::new(&spec(10, 1 << 20, None));
        assert_eq!(b.deadline(), None);
        let t0 = Instant::now();
        b.push(1, 1, t0);
        b.push(2, 1, t0 + Duration::from_millis(500));
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(b.first(), Some(&1));
        b.take();
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn bodies_are_json() {
        let a: &[u8] = br#"{"a":1}"#;
        let b: &[u8] = b"[2]";
        assert_eq!(&body([a, b], None)[..], br#"[{"a":1},[2]]"#);
        assert_eq!(
            &body([a], Some("rec\"ords"))[..],
            br#"{"rec\"ords":[{"a":1}]}"#
        );
        assert_eq!(&body([&b""[..], a], None)[..], br#"[null,{"a":1}]"#);
        let parsed: serde_json::Value =
            serde_json::from_slice(&body([a, b], Some("records"))).unwrap();
        assert_eq!(parsed["records"][1][0], 2);
    }

    #[test]
    fn batch_ids_are_stable_and_order_free() {
        let one = batch_id(["dlv_b", "dlv_a"]);
        assert_eq!(one, batch_id(["dlv_a", "dlv_b"]));
        assert_ne!(one, batch_id(["dlv_a"]));
        assert_ne!(one, batch_id(["dlv_a", "dlv_c"]));
        assert!(one.starts_with("bat_"));
        assert_eq!(one.len(), 4 + 32);
    }

    #[test]
    fn reads_failed_items_as_indexes_or_objects() {
        let got = failed_items(
            br#"{"errors":[1,{"index":3,"message":"bad email"},{"index":9},"x"]}"#,
            "/errors",
            5,
        )
        .unwrap();
        assert_eq!(got.failed.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(got.failed[&3], r#"{"index":3,"message":"bad email"}"#);
        assert_eq!(got.unknown, 2);
    }

    #[test]
    fn no_field_or_no_body_means_no_failures() {
        for body in [&br#"{"ok":true}"#[..], b"", b"  ", br#"{"errors":null}"#] {
            assert_eq!(failed_items(body, "/errors", 3), Ok(FailedItems::default()));
        }
        let empty = failed_items(br#"{"errors":[]}"#, "/errors", 3).unwrap();
        assert!(empty.failed.is_empty());
    }

    #[test]
    fn unreadable_responses_are_errors() {
        assert!(failed_items(b"<html>", "/errors", 3).is_err());
        assert!(failed_items(br#"{"errors":"some"}"#, "/errors", 3).is_err());
    }

    fn call(status: Option<u16>, verdict: Verdict) -> AttemptResult {
        AttemptResult {
            started_at: 1,
            latency: Duration::from_millis(5),
            status,
            verdict,
            error_class: status.map_or("timeout", crate::classify::status_class),
            error: (verdict != Verdict::Delivered).then(|| "boom".to_owned()),
            response_excerpt: None,
        }
    }

    #[test]
    fn per_record_results_of_a_partial_failure() {
        let ok = call(Some(200), Verdict::Delivered);
        let failed = BTreeMap::from([(1, r#"{"index":1}"#.to_owned())]);
        let results = per_record(&ok, 3, &failed);
        assert_eq!(results.len(), 3);
        assert_eq!(results[0], ok);
        assert_eq!(results[2], ok);
        assert_eq!(results[1].verdict, Verdict::Retry { retry_after: None });
        assert_eq!(results[1].error_class, BATCH_ITEM_FAILED);
        assert_eq!(results[1].status, Some(200));
        assert_eq!(
            results[1].response_excerpt.as_deref(),
            Some(r#"{"index":1}"#)
        );
        assert!(
            results[1]
                .error
                .as_deref()
                .unwrap()
                .contains("record 1 of 3")
        );
    }

    #[test]
    fn a_failed_call_fails_every_record() {
        let bad = call(Some(503), Verdict::Retry { retry_after: None });
        let failed = BTreeMap::from([(1, String::new())]);
        assert_eq!(per_record(&bad, 2, &failed), vec![bad.clone(), bad]);
    }

    #[test]
    fn what_splits() {
        assert!(splits(&call(
            Some(500),
            Verdict::Retry { retry_after: None }
        )));
        assert!(splits(&call(Some(400), Verdict::Permanent)));
        assert!(!splits(&call(
            Some(429),
            Verdict::Retry { retry_after: None }
        )));
        assert!(!splits(&call(None, Verdict::Retry { retry_after: None })));
        assert!(!splits(&call(Some(200), Verdict::Delivered)));
    }

    #[test]
    fn long_entries_are_cut() {
        let long = "é".repeat(400);
        let cut = excerpt(&long);
        assert!(cut.len() <= ITEM_EXCERPT_BYTES + "…".len());
        assert!(cut.ends_with('…'));
    }
}
