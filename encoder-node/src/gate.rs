//! Queries first, inside a forward pass: a document pass calls [`Gate::pause`] between its
//! steps (`Bert::forward`), and waits there while a query pass holds the gate. Waiting before a
//! layer's next op rather than between whole chunks bounds what a query shares the cores with
//! to the one step running as it arrived (on bert-base, a few ms rather than a chunk's
//! hundreds).
//!
//! A document pass waits only for the query pass running when it reached the pause, not for the
//! ones after it: under queries without end it still runs one step between two query passes.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::batcher::Counters;

/// Counts into `Counters::document_steps` (a pause follows each step) and
/// `Counters::query_overlap_steps`.
pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Condvar,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct State {
    /// Query passes holding the gate.
    held: usize,
    /// Query passes that have let go of it.
    released: u64,
}

/// A query pass's hold on the gate, let go when dropped.
pub(crate) struct Held<'a> {
    gate: &'a Gate,
    steps_at_start: u64,
}

impl Gate {
    pub(crate) fn new(counters: Arc<Counters>) -> Gate {
        Gate { state: Mutex::default(), changed: Condvar::new(), counters }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while a query pass is gathered and runs.
    pub(crate) fn hold(&self) -> Held<'_> {
        let mut state = self.state();
        state.held += 1;
        Held { gate: self, steps_at_start: self.counters.document_steps.load(Ordering::SeqCst) }
    }

    /// Between two steps of a document pass: waits while a query pass holds the gate, until
    /// one lets go of it.
    pub(crate) fn pause(&self) {
        let mut state = self.state();
        let released = state.released;
        // Counted under the lock: a query pass that sees the step also sees this pause waiting.
        self.counters.document_steps.fetch_add(1, Ordering::SeqCst);
        while state.held > 0 && state.released == released {
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state();
        // Read before letting go: the steps of a document pass this release lets on are not
        // this query pass's.
        let counters = &self.gate.counters;
        let overlap = counters.document_steps.load(Ordering::SeqCst) - self.steps_at_start;
        counters.query_overlap_steps.fetch_max(overlap, Ordering::Relaxed);
        state.held -= 1;
        state.released += 1;
        drop(state);
        self.gate.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    #[test]
    fn a_document_pass_waits_for_the_query_pass_it_meets_and_no_longer() {
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(Gate::new(counters.clone()));
        let held = gate.hold();
        let (g, stepped) = (gate.clone(), Arc::new(AtomicU64::new(0)));
        let s = stepped.clone();
        let pass = std::thread::spawn(move || {
            for _ in 0..3 {
                g.pause();
                s.fetch_add(1, Ordering::SeqCst);
            }
        });
        let until = |done: &dyn Fn() -> bool| {
            let waited = std::time::Instant::now();
            while !done() && waited.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        until(&|| counters.document_steps.load(Ordering::SeqCst) == 1);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(stepped.load(Ordering::SeqCst), 0, "the document pass ran on while a query pass held the gate");
        // A second query pass takes the gate before the first lets go (taken after it, the
        // document pass could run all its steps in between): the document pass still gets past
        // the pause it waited at (it waited for the first pass only), and waits at its next one.
        let again = gate.hold();
        drop(held);
        until(&|| counters.document_steps.load(Ordering::SeqCst) == 2);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(stepped.load(Ordering::SeqCst), 1, "one step between two query passes, then a wait");
        drop(again);
        pass.join().unwrap();
        assert_eq!(stepped.load(Ordering::SeqCst), 3);
        let overlap = counters.query_overlap_steps.load(Ordering::SeqCst);
        assert!(overlap <= 1, "a query pass shared the cores with {overlap} steps");
    }
}
