//! The versions a router stamps on writes: a hybrid logical clock in one u64, compared as a
//! number. From the top: 42 bits of milliseconds since 2020-01-01 (good until 2159), a 6-bit
//! counter for writes within one millisecond (past 63 the clock runs a millisecond ahead), and
//! 16 bits naming the router, so two routers never stamp the same version. Versions grow with
//! every write of one router; across routers they follow the wall clocks, so the later of two
//! writes of one id wins when the clocks agree within the time between them (DESIGN.md §9:
//! last writer wins).

use std::sync::Mutex;

const EPOCH_MS: u64 = 1_577_836_800_000;
const COUNTER_BITS: u32 = 6;
const WRITER_BITS: u32 = 16;

pub struct Clock {
    writer: u64,
    /// The last (milliseconds, counter) handed out.
    last: Mutex<(u64, u64)>,
}

impl Clock {
    /// A clock for the router `name` (its 16 bits come from a hash of the name).
    pub fn new(name: &str) -> Clock {
        let writer = crate::placement::hash_id(name) & ((1 << WRITER_BITS) - 1);
        Clock { writer, last: Mutex::new((0, 0)) }
    }

    /// The next version: above every one this clock gave before.
    pub fn now(&self) -> u64 {
        let physical = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(EPOCH_MS);
        self.after(physical)
    }

    fn after(&self, physical: u64) -> u64 {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (ms, counter) = *last;
        *last = if physical > ms {
            (physical, 0)
        } else if counter + 1 < 1 << COUNTER_BITS {
            (ms, counter + 1)
        } else {
            (ms + 1, 0)
        };
        (last.0 << (COUNTER_BITS + WRITER_BITS)) | (last.1 << WRITER_BITS) | self.writer
    }
}

/// When `version` was stamped, in Unix milliseconds (0 for an unversioned write).
pub fn unix_ms(version: u64) -> u64 {
    match version {
        0 => 0,
        v => (v >> (COUNTER_BITS + WRITER_BITS)) + EPOCH_MS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_within_a_millisecond_and_after_the_clock_steps_back() {
        let clock = Clock::new("router-a");
        let mut last = 0;
        // 200 writes in one millisecond, then the wall clock stepping back: still growing.
        for physical in std::iter::repeat_n(1_000, 200).chain([999, 5, 2_000]) {
            let v = clock.after(physical);
            assert!(v > last, "{v} after {last}");
            last = v;
        }
        assert_eq!(last >> 22, 2_000, "the clock follows the wall clock again once it is ahead");
        // Two routers never give the same version, and the later millisecond wins.
        let other = Clock::new("router-b");
        assert_ne!(clock.after(3_000), other.after(3_000));
        assert!(other.after(3_001) > clock.after(3_000));
        assert!(clock.now() >> 22 > 150_000_000_000, "the wall clock's milliseconds since 2020");
        let stamped = unix_ms(clock.now());
        assert!(stamped.abs_diff(crate::state::now_ms()) < 5_000, "{stamped}");
    }
}
