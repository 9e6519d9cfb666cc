//! A bounded map that keeps what was used recently: two generations, the current one and
//! the one before. A hit in the older generation moves the entry to the current one; when
//! the current generation is full it becomes the older one and the older one is dropped
//! (with every entry nobody used since). O(1) per call, at most `capacity` entries, close to
//! least-recently-used in what it keeps.

use std::collections::HashMap;
use std::hash::Hash;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Recent<K, V> {
    current: HashMap<K, V>,
    older: HashMap<K, V>,
    half: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Recent<K, V> {
    /// A map of at most `capacity` entries (at least 2).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            current: HashMap::new(),
            older: HashMap::new(),
            half: (capacity / 2).max(1),
        }
    }

    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        if let Some(v) = self.current.get(key) {
            return Some(v.clone());
        }
        let v = self.older.remove(key)?;
        self.insert(key.clone(), v.clone());
        Some(v)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.current.len() >= self.half && !self.current.contains_key(&key) {
            self.older = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }

    /// Drop every entry `drop` answers true for.
    pub(crate) fn remove_where(&mut self, mut drop: impl FnMut(&K, &V) -> bool) {
        self.current.retain(|k, v| !drop(k, v));
        self.older.retain(|k, v| !drop(k, v));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_entries_within_capacity() {
        let mut c = Recent::new(4);
        for i in 0..100 {
            c.insert(i, i * 10);
            // Entry 0 is used all the time: it stays.
            assert_eq!(c.get(&0), Some(0));
            assert!(c.len() <= 4, "{}", c.len());
        }
        assert_eq!(c.get(&99), Some(990));
        assert_eq!(c.get(&50), None);
        c.remove_where(|k, _| *k == 0);
        assert_eq!(c.get(&0), None);
    }
}
