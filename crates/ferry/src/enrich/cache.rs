//! The lookup cache of one destination's `enrich`: responses by URL, each kept for the
//! destination's `cache` duration, bounded in entries and bytes, with concurrent misses for
//! one URL coalesced into one request.
//!
//! Why not an LRU crate: every entry of a cache lives the same time-to-live, so insertion
//! order *is* expiry order. A FIFO queue therefore evicts exactly what expires first and,
//! when the bounds are reached, the oldest entry — which an LRU would also refetch within
//! one TTL at most. A hot URL is looked up again once per TTL either way. That is a
//! `HashMap` and a `VecDeque` under a mutex held for microseconds (never across a request),
//! with no new dependency in the binary.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferry_delivery::RenderError;
use serde_json::Value;
use tokio::sync::OnceCell;

/// Most responses one destination's cache keeps.
pub const MAX_ENTRIES: usize = 10_000;
/// Most response bytes (as received) one destination's cache keeps.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// One lookup's result, shared by the requests that waited for it.
type Shared = Result<Arc<Value>, RenderError>;

/// How a value was had.
#[derive(Debug, Clone, PartialEq)]
pub enum Looked {
    /// From the cache, or from another request's lookup of the same URL that was under way.
    Hit(Arc<Value>),
    /// Looked up by this request.
    Miss(Arc<Value>),
}

/// Responses by URL, for one destination.
#[derive(Debug)]
pub struct LookupCache {
    bounds: Bounds,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// (sequence number, key), oldest first. An item whose entry was replaced or removed is
    /// stale (its sequence number no longer matches) and skipped.
    order: VecDeque<(u64, String)>,
    next_seq: u64,
    bytes: usize,
    /// Lookups under way, by URL: requests for the same URL wait for the same one.
    in_flight: HashMap<String, Arc<OnceCell<Shared>>>,
}

#[derive(Debug)]
struct Entry {
    value: Arc<Value>,
    expires: Instant,
    size: usize,
    seq: u64,
}

impl LookupCache {
    /// A cache keeping each response for `ttl` (zero: nothing is kept, but concurrent
    /// lookups of one URL are still coalesced), within [`MAX_ENTRIES`] and [`MAX_BYTES`].
    pub fn new(ttl: Duration) -> Self {
        Self::bounded(ttl, MAX_ENTRIES, MAX_BYTES)
    }

    /// [`LookupCache::new`] with other bounds.
    pub fn bounded(ttl: Duration, max_entries: usize, max_bytes: usize) -> Self {
        Self {
            bounds: Bounds {
                ttl,
                max_entries: max_entries.max(1),
                max_bytes,
            },
            state: Mutex::new(State::default()),
        }
    }

    /// The value for `key`: cached, or from the lookup of `key` under way, or from `fetch`
    /// (which returns the value and its size in bytes). A successful fetch is cached;
    /// a failure is not (the requests that waited for it share it).
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<Looked, RenderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Value, usize), RenderError>>,
    {
        let cell = {
            let mut state = self.lock();
            if let Some(value) = state.fresh(key, Instant::now()) {
                return Ok(Looked::Hit(value));
            }
            state.in_flight.entry(key.to_owned()).or_default().clone()
        };
        let fetched = AtomicBool::new(false);
        let shared = cell
            .get_or_init(|| async {
                fetched.store(true, Ordering::Relaxed);
                let (value, size) = fetch().await?;
                let value = Arc::new(value);
                self.lock()
                    .insert(&self.bounds, key, value.clone(), size, Instant::now());
                Ok(value)
            })
            .await
            .clone();
        {
            let mut state = self.lock();
            if state
                .in_flight
                .get(key)
                .is_some_and(|c| Arc::ptr_eq(c, &cell))
            {
                state.in_flight.remove(key);
            }
        }
        let value = shared?;
        Ok(if fetched.load(Ordering::Relaxed) {
            Looked::Miss(value)
        } else {
            Looked::Hit(value)
        })
    }

    /// How many responses are kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a few panic-free steps.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// The value of `key` if it has not expired at `now` (an expired one is dropped).
    fn fresh(&mut self, key: &str, now: Instant) -> Option<Arc<Value>> {
        let entry = self.entries.get(key)?;
        if entry.expires > now {
            return Some(entry.value.clone());
        }
        self.remove(key);
        None
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes = self.bytes.saturating_sub(old.size);
        }
    }

    /// Keep `value` (of `size` bytes) for `key` from `now`, dropping expired entries and
    /// then the oldest ones until the bounds hold.
    fn insert(&mut self, bounds: &Bounds, key: &str, value: Arc<Value>, size: usize, now: Instant) {
        if bounds.ttl.is_zero() || size > bounds.max_bytes {
            return;
        }
        self.remove(key);
        while let Some((seq, oldest)) = self.order.front() {
            let entry = self.entries.get(oldest).filter(|e| e.seq == *seq);
            let over = self.entries.len() >= bounds.max_entries
                || self.bytes.saturating_add(size) > bounds.max_bytes;
            let live = entry.is_some();
            // A stale item (its entry was replaced or dropped) goes; a live entry goes when
            // it has expired or the bounds need room.
            if entry.is_some_and(|e| e.expires > now && !over) {
                break;
            }
            if let Some((_, oldest)) = self.order.pop_front()
                && live
            {
                self.remove(&oldest);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            key.to_owned(),
            Entry {
                value,
                expires: now + bounds.ttl,
                size,
                seq,
            },
        );
        self.order.push_back((seq, key.to_owned()));
        self.bytes = self.bytes.saturating_add(size);
        // Stale items behind live ones (entries dropped on access) are rare; keep the queue
        // within twice the entries all the same.
        if self.order.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(seq, k)| entries.get(k).is_some_and(|e| e.seq == *seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    async fn fetch_ok(calls: &AtomicUsize, v: Value) -> Result<(Value, usize), RenderError> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok((v, 10))
    }

    #[tokio::test]
    async fn a_second_lookup_is_a_hit_until_the_ttl_runs_out() {
        let ttl = Duration::from_secs(60);
        let cache = LookupCache::new(ttl);
        let calls = AtomicUsize::new(0);
        let before = Instant::now();
        let first = cache
            .get_or_fetch("u1", || fetch_ok(&calls, json!(1)))
            .await
            .unwrap();
        let after = Instant::now();
        assert_eq!(first, Looked::Miss(Arc::new(json!(1))));
        let second = cache
            .get_or_fetch("u1", || fetch_ok(&calls, json!(2)))
            .await
            .unwrap();
        assert_eq!(second, Looked::Hit(Arc::new(json!(1))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The entry was kept at some instant between `before` and `after`: it is fresh a
        // second short of the TTL after `before`, and gone once the TTL has run out after
        // `after` (explicit instants: no sleeping, however slow the machine).
        let almost = before + ttl - Duration::from_secs(1);
        assert_eq!(cache.lock().fresh("u1", almost), Some(Arc::new(json!(1))));
        assert_eq!(cache.lock().fresh("u1", after + ttl), None);
        let third = cache
            .get_or_fetch("u1", || fetch_ok(&calls, json!(3)))
            .await
            .unwrap();
        assert_eq!(third, Looked::Miss(Arc::new(json!(3))));
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = LookupCache::new(Duration::from_secs(60));
        let failed = cache
            .get_or_fetch("u", || async {
                Err(RenderError::retryable("enrich_failed", "down"))
            })
            .await;
        assert_eq!(failed.unwrap_err().class, "enrich_failed");
        let calls = AtomicUsize::new(0);
        let ok = cache
            .get_or_fetch("u", || fetch_ok(&calls, json!("up")))
            .await;
        assert!(matches!(ok, Ok(Looked::Miss(_))));
        assert!(cache.lock().in_flight.is_empty());
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_lookup() {
        let cache = Arc::new(LookupCache::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("same", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok((json!({"n": 1}), 8))
                    })
                    .await
            }));
        }
        let mut misses = 0;
        for t in tasks {
            if let Looked::Miss(_) = t.await.unwrap().unwrap() {
                misses += 1;
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(misses, 1, "one request looked it up, the others shared it");
    }

    #[test]
    fn the_oldest_entries_go_first_within_the_bounds() {
        let cache = LookupCache::bounded(Duration::from_secs(60), 3, 100);
        let now = Instant::now();
        let put = |key: &str, size: usize| {
            cache
                .lock()
                .insert(&cache.bounds, key, Arc::new(json!(key)), size, now);
        };
        for key in ["a", "b", "c"] {
            put(key, 10);
        }
        put("d", 10);
        let keys = |c: &LookupCache| {
            let mut k: Vec<String> = c.lock().entries.keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&cache), ["b", "c", "d"], "at most 3 entries");
        put("e", 75);
        assert_eq!(keys(&cache), ["c", "d", "e"], "at most 100 bytes: `b` went");
        assert_eq!(cache.lock().bytes, 95);
        put("huge", 101);
        assert_eq!(
            keys(&cache),
            ["c", "d", "e"],
            "larger than the whole cache: not kept"
        );
        // Replacing an entry leaves a stale queue item, skipped later.
        put("d", 5);
        assert_eq!(cache.lock().bytes, 90);
        put("f", 30);
        assert_eq!(keys(&cache), ["d", "f"]);
        assert_eq!(cache.lock().bytes, 35);
    }

    #[test]
    fn expired_entries_are_dropped_first() {
        let cache = LookupCache::bounded(Duration::from_secs(1), 10, 1000);
        let t0 = Instant::now();
        let b = cache.bounds;
        cache.lock().insert(&b, "old", Arc::new(json!(1)), 1, t0);
        let later = t0 + Duration::from_secs(2);
        cache.lock().insert(&b, "new", Arc::new(json!(2)), 1, later);
        assert_eq!(cache.len(), 1);
        assert!(cache.lock().fresh("old", later).is_none());
        assert!(cache.lock().fresh("new", later).is_some());
    }

    #[tokio::test]
    async fn a_zero_ttl_keeps_nothing() {
        let cache = LookupCache::new(Duration::ZERO);
        let calls = AtomicUsize::new(0);
        for _ in 0..2 {
            let got = cache.get_or_fetch("u", || fetch_ok(&calls, json!(1))).await;
            assert!(matches!(got, Ok(Looked::Miss(_))));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(cache.is_empty());
    }
}
