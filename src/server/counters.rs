//! Per-key connection counters: sessions per user and connections per address. A slot is
//! held by a guard for as long as the connection lives.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Counts live holders per key.
#[derive(Debug)]
pub(crate) struct Counter<K: Eq + Hash + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone> Default for Counter<K> {
    fn default() -> Self {
        Counter {
            counts: Arc::default(),
        }
    }
}

impl<K: Eq + Hash + Clone> Counter<K> {
    /// Takes a slot for `key` if fewer than `max` are held.
    pub(crate) fn try_acquire(&self, key: &K, max: usize) -> Option<Place<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key.clone()).or_default();
        if *count >= max {
            if *count == 0 {
                counts.remove(key);
            }
            return None;
        }
        *count += 1;
        Some(Place {
            counts: Arc::clone(&self.counts),
            key: key.clone(),
        })
    }
}

/// One held slot; released on drop.
#[derive(Debug)]
pub(crate) struct Place<K: Eq + Hash + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for Place<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_key_and_released() {
        let counter = Counter::default();
        let a1 = counter.try_acquire(&"a", 2).unwrap();
        let _a2 = counter.try_acquire(&"a", 2).unwrap();
        assert!(counter.try_acquire(&"a", 2).is_none());
        let _b = counter.try_acquire(&"b", 2).unwrap();
        drop(a1);
        assert!(counter.try_acquire(&"a", 2).is_some());
        assert!(counter.try_acquire(&"c", 0).is_none());
        assert!(!counter.counts.lock().unwrap().contains_key("c"));
    }
}
