//! The epoch barrier: every read (Search, Get) and write holds the epoch it started under
//! until it ends, and a move waits, before a step that could make an earlier view wrong, until
//! nothing that started under an older epoch is still running.
//!
//! Why (the invariant the move rests on): a search reads the new shard and the old one at about
//! the same time. If it read the new shard before a batch was copied there and the old one after
//! that batch was deleted, it would miss the batch. The move therefore bumps the epoch after the
//! copy and deletes only once every operation that began under an earlier epoch has finished;
//! an operation that begins later reads the new shard after the copy, so it finds the batch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The epoch, the view of the cluster that goes with it (`T`), and who runs under which.
pub struct EpochGate<T> {
    inner: Mutex<Inner<T>>,
    changed: Notify,
}

struct Inner<T> {
    current: u64,
    view: Arc<T>,
    /// Operations in flight, by the epoch they started under.
    running: BTreeMap<u64, usize>,
}

/// Held by one operation for as long as it runs: the epoch and view it started under.
pub struct Entered<T> {
    gate: Arc<EpochGate<T>>,
    epoch: u64,
    view: Arc<T>,
}

impl<T> EpochGate<T> {
    pub fn new(epoch: u64, view: T) -> EpochGate<T> {
        let inner = Inner { current: epoch, view: Arc::new(view), running: BTreeMap::new() };
        EpochGate { inner: Mutex::new(inner), changed: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts an operation under the current epoch and view.
    pub fn enter(self: &Arc<Self>) -> Entered<T> {
        let mut inner = self.lock();
        let epoch = inner.current;
        *inner.running.entry(epoch).or_default() += 1;
        Entered { gate: self.clone(), epoch, view: inner.view.clone() }
    }

    /// The epoch and view now.
    pub fn current(&self) -> (u64, Arc<T>) {
        let inner = self.lock();
        (inner.current, inner.view.clone())
    }

    /// Moves to `epoch` with `view` (never back): an operation entered after this sees `view`.
    pub fn advance_to(&self, epoch: u64, view: T) {
        let mut inner = self.lock();
        if epoch > inner.current {
            inner.current = epoch;
            inner.view = Arc::new(view);
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Waits until the epoch is above `epoch`.
    pub async fn beyond(&self, epoch: u64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().current > epoch {
                return;
            }
            notified.await;
        }
    }

    /// Waits until no operation that started under an epoch before `epoch` is running.
    pub async fn drained(&self, epoch: u64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().running.range(..epoch).next().is_none() {
                return;
            }
            notified.await;
        }
    }
}

impl<T> Entered<T> {
    /// The epoch this operation started under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The view this operation started under.
    pub fn view(&self) -> &Arc<T> {
        &self.view
    }
}

impl<T> Drop for Entered<T> {
    fn drop(&mut self) {
        let mut inner = self.gate.lock();
        if let Some(n) = inner.running.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                inner.running.remove(&self.epoch);
            }
        }
        drop(inner);
        self.gate.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn drained_waits_for_older_operations_only() {
        let gate = Arc::new(EpochGate::new(0, "zero"));
        let old = gate.enter();
        gate.advance_to(1, "one");
        let epoch = 1;
        let new = gate.enter();
        assert_eq!((old.epoch(), new.epoch()), (0, 1));
        assert_eq!((**old.view(), **new.view()), ("zero", "one"));
        // The old operation holds the barrier; the new one does not.
        let wait = tokio::time::timeout(Duration::from_millis(50), gate.drained(epoch)).await;
        assert!(wait.is_err(), "drained before the older operation ended");
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.drained(epoch).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(old);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("not woken").unwrap();
        // Advancing backwards changes nothing.
        gate.advance_to(0, "back");
        assert_eq!((gate.current().0, *gate.current().1), (1, "one"));
        tokio::time::timeout(Duration::from_secs(5), gate.beyond(0)).await.unwrap();
        drop(new);
    }
}
