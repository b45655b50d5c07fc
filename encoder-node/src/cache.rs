//! The query-embedding cache: a query's vectors by its exact input ids (two texts the
//! tokenizer makes the same share an entry; nothing but the ids the model would see is the
//! key), the least recently used going first when it is full.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

pub struct QueryCache {
    capacity: usize,
    inner: Mutex<Lru>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

#[derive(Default)]
struct Lru {
    /// Ids → vectors, and when they were last used.
    entries: HashMap<Vec<u32>, (Vec<f32>, u64)>,
    /// Last use → ids, oldest first.
    order: BTreeMap<u64, Vec<u32>>,
    clock: u64,
}

impl QueryCache {
    /// A cache of `capacity` queries (`None` for 0: no cache).
    pub fn new(capacity: usize) -> Option<QueryCache> {
        (capacity > 0).then(|| QueryCache {
            capacity,
            inner: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The vectors of the query whose input is `ids`, if cached (counted as a hit or a miss).
    pub fn get(&self, ids: &[u32]) -> Option<Vec<f32>> {
        let mut lru = self.lru();
        lru.clock += 1;
        let now = lru.clock;
        let found = match lru.entries.get_mut(ids) {
            Some((vectors, used)) => Some((vectors.clone(), std::mem::replace(used, now))),
            None => None,
        };
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        let (vectors, before) = found?;
        lru.order.remove(&before);
        lru.order.insert(now, ids.to_vec());
        Some(vectors)
    }

    pub fn put(&self, ids: Vec<u32>, vectors: Vec<f32>) {
        let mut lru = self.lru();
        lru.clock += 1;
        let now = lru.clock;
        if let Some((_, before)) = lru.entries.insert(ids.clone(), (vectors, now)) {
            lru.order.remove(&before);
        }
        lru.order.insert(now, ids);
        while lru.entries.len() > self.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else { break };
            lru.entries.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.lru().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_query_goes_first() {
        assert!(QueryCache::new(0).is_none());
        let cache = QueryCache::new(2).unwrap();
        assert_eq!(cache.get(&[1, 2]), None);
        cache.put(vec![1, 2], vec![0.5]);
        cache.put(vec![3], vec![0.25]);
        assert_eq!(cache.get(&[1, 2]), Some(vec![0.5]), "now the most recent");
        cache.put(vec![4], vec![1.0]);
        assert_eq!((cache.len(), cache.get(&[3])), (2, None), "[3] was the least recent");
        assert_eq!(cache.get(&[1, 2]), Some(vec![0.5]));
        cache.put(vec![4], vec![2.0]);
        assert_eq!(cache.get(&[4]), Some(vec![2.0]), "a put replaces");
        assert_eq!((cache.hits.load(Ordering::Relaxed), cache.misses.load(Ordering::Relaxed)), (3, 2));
    }
}
