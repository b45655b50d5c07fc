//! Searches first: background work (encoding a write, k-means and re-encoding in a retraining)
//! waits, once per `SLICE` of CPU time it has used, while a search runs anywhere in the
//! process, for at most `give_way_ms` (`ShardConfig`) each time: a bulk write or a retraining
//! then leaves running searches alone but for one slice at a time, still progresses when
//! searches never stop, and a small write (under a slice of work) never waits.
//!
//! CPU priority alone (SCHED_IDLE, nice) is not enough: a background thread on the core beside
//! a search's still shares its caches and memory bandwidth (and, on a host whose virtual cores
//! are hyperthreads, its execution units). Measured with shard-bench --under-writes, a search
//! beside a busy writer took twice as long with every background thread under SCHED_IDLE.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// `give_way_ms` where no shard set it (the codec used on its own).
pub const DEFAULT_MS: u64 = 50;

/// The CPU time a thread's background work runs between two chances to give way.
const SLICE: Duration = Duration::from_millis(2);

thread_local! {
    /// This thread's CPU time when it last gave way (or was first asked to).
    static LAST: std::cell::Cell<Option<Duration>> = const { std::cell::Cell::new(None) };
}

/// The calling thread's CPU time (None where the clock is not there).
fn thread_cpu_time() -> Option<Duration> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a plain system call writing into the timespec above.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    ok.then(|| Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
}

/// The process's searches, which its background work waits for.
static PROCESS: Searches = Searches::new();

/// Sets the longest wait of a step, unless a shard of this process set it already.
pub fn configure(most_ms: u64) {
    let _ = PROCESS.most_ms.compare_exchange(u64::MAX, most_ms, Ordering::Relaxed, Ordering::Relaxed);
}

/// Marks a search as running until the guard is dropped.
pub fn searching() -> Searching<'static> {
    PROCESS.searching()
}

/// One step of background work: once this thread has used a `SLICE` of CPU time since it last
/// gave way, waits while searches run, at most `give_way_ms`. Never call
/// it holding anything a search waits for (a search's third try takes the writer lock,
/// `Shard::consistent`, which writes hold: that rare search waits at most one bound).
pub fn step() {
    PROCESS.step()
}

/// Searches running, and the lock and condition background work waits on.
struct Searches {
    running: AtomicUsize,
    lock: Mutex<()>,
    done: Condvar,
    /// The longest a step waits, in ms (u64::MAX: not set, `DEFAULT_MS`).
    most_ms: AtomicU64,
}

/// Held while a search runs.
pub struct Searching<'a>(&'a Searches);

impl Searches {
    const fn new() -> Searches {
        Searches {
            running: AtomicUsize::new(0),
            lock: Mutex::new(()),
            done: Condvar::new(),
            most_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn searching(&self) -> Searching<'_> {
        self.running.fetch_add(1, Ordering::SeqCst);
        Searching(self)
    }

    fn step(&self) {
        if self.running.load(Ordering::SeqCst) == 0 {
            return;
        }
        if let Some(now) = thread_cpu_time() {
            let last = LAST.get().unwrap_or_else(|| {
                LAST.set(Some(now));
                now
            });
            if now.saturating_sub(last) < SLICE {
                return;
            }
        }
        self.wait();
        LAST.set(thread_cpu_time());
    }

    /// Waits while searches run, at most the configured bound.
    fn wait(&self) {
        let most = match self.most_ms.load(Ordering::Relaxed) {
            0 => return,
            u64::MAX => DEFAULT_MS,
            ms => ms,
        };
        let held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let running = |_: &mut ()| self.running.load(Ordering::SeqCst) > 0;
        let waited = self.done.wait_timeout_while(held, Duration::from_millis(most), running);
        drop(waited.unwrap_or_else(PoisonError::into_inner));
    }
}

impl Drop for Searching<'_> {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Under the lock, so that a step between its check and its wait cannot miss it.
            let _held = self.0.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.0.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_step_waits_for_running_searches_for_at_most_its_bound() {
        static SEARCHES: Searches = Searches::new();
        SEARCHES.most_ms.store(200, Ordering::Relaxed);
        let started = Instant::now();
        SEARCHES.step();
        assert!(started.elapsed() < Duration::from_millis(100), "no search: no wait");
        let search = SEARCHES.searching();
        SEARCHES.step();
        let started = Instant::now();
        SEARCHES.step();
        assert!(started.elapsed() < Duration::from_millis(100), "less than a slice of work: no wait");
        let spun = thread_cpu_time().unwrap();
        while thread_cpu_time().unwrap() < spun + SLICE {}
        let started = Instant::now();
        SEARCHES.step();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200), "a search that does not end: the bound, {waited:?}");
        let ends = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(search);
        });
        let started = Instant::now();
        SEARCHES.wait();
        let waited = started.elapsed();
        ends.join().unwrap();
        assert!(
            waited >= Duration::from_millis(40) && waited < Duration::from_millis(190),
            "until it ends: {waited:?}"
        );
    }
}
