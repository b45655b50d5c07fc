//! Compaction of the originals files (originals.rs): once the dead pass half of the files (and
//! a MiB), every document whose originals lie in an older generation has them copied into a
//! new one, its value swapped only if it is unchanged or re-encoded since with its originals
//! where they were (a write since wins; the pass is made again until no value names an older
//! generation); then sled is flushed and the older files are retired. At open, before the
//! store serves; in service, from the shard's maintenance (on a thread below the searches'
//! CPU priority), counting the live bytes when the files have grown by half since the last
//! count or ten minutes after it (a count reads every value, not the originals).

use std::time::{Duration, Instant};

use sled::IVec;

use super::originals::{bytes_of, Location};
use super::{id_of, Store, Tokens};
use crate::Result;

/// Dead bytes below which the files are left as they are.
const MIN_DEAD_BYTES: u64 = 1 << 20;
/// The longest time between two counts of the live bytes while the files change.
const COUNT_EVERY: Duration = Duration::from_secs(600);
/// Documents copied per append (one sync each).
const BATCH: usize = 1000;

/// Whether files of `total` bytes of which `live` are named by values are worth compacting.
fn due(total: u64, live: u64) -> bool {
    total > 2 * live && total - live > MIN_DEAD_BYTES
}

impl Store {
    /// At open: compacts when `live` (the check's sum) says so.
    pub(super) fn compact_originals_at_open(&self, live: u64) -> Result<()> {
        match due(self.originals.bytes(), live) {
            true => self.move_originals(live),
            false => {
                self.counted_now();
                Ok(())
            }
        }
    }

    /// In service, cheap and called often: whether the live bytes are due a count (the files
    /// grew by half since the last, or changed and ten minutes passed); if so the count is
    /// recorded as made, and the caller runs `compact_originals`. It also closes the files
    /// compacted away once past their grace.
    pub fn originals_count_due(&self) -> bool {
        self.originals.forget_retired();
        let total = self.originals.bytes();
        let mut counted = self.originals.counted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, at) = *counted;
        let grown = total > last + last / 2;
        if total == last || !(grown || at.elapsed() >= COUNT_EVERY) {
            return false;
        }
        *counted = (total, Instant::now());
        true
    }

    /// Counts the live bytes and compacts when they say so; the dead bytes dropped. Both read
    /// every value and give way to searches as they go (`give_way::step`).
    pub fn compact_originals(&self) -> Result<Option<u64>> {
        let total = self.originals.bytes();
        let mut live = 0;
        for entry in self.located() {
            live += bytes_of(&entry?.3);
        }
        if !due(total, live) {
            return Ok(None);
        }
        self.move_originals(live)?;
        Ok(Some(total.saturating_sub(live)))
    }

    /// Moves every document's originals out of the generations before a new one (see the module
    /// docs), then retires those.
    fn move_originals(&self, live: u64) -> Result<()> {
        let started = Instant::now();
        let (total, last_old) = (self.originals.bytes(), self.originals.next_generation());
        let mut moved = 0;
        loop {
            let (mut found, mut pending) = (0, Vec::new());
            for entry in self.located() {
                let (k, v, tokens, at) = entry?;
                if let Some(at) = at.filter(|at| at.generation <= last_old) {
                    found += 1;
                    pending.push((k, v, tokens, at));
                    if pending.len() == BATCH {
                        moved += self.copy_originals(std::mem::take(&mut pending))?;
                    }
                }
            }
            moved += self.copy_originals(pending)?;
            if found == 0 {
                break;
            }
        }
        // The new values durable before the files they no longer name go.
        self.db.flush()?;
        self.originals.retire_up_to(last_old)?;
        // The next count when the compacted files have grown by half.
        self.counted_now();
        tracing::info!(path = %self.path, documents = moved, dead_bytes = total.saturating_sub(live), live_bytes = live,
            elapsed_ms = started.elapsed().as_millis() as u64, "compacted the originals");
        Ok(())
    }

    /// Records the files as they are now as counted.
    fn counted_now(&self) {
        *self.originals.counted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            (self.originals.bytes(), Instant::now());
    }

    /// Every value with its key, its tokens (originals not read) and where its originals lie.
    fn located(&self) -> impl Iterator<Item = Result<(IVec, IVec, Tokens, Option<Location>)>> + '_ {
        self.vectors.iter().map(|entry| {
            crate::give_way::step();
            let (k, v) = entry?;
            let id = id_of(&k, &self.path)?;
            let (tokens, at) = Tokens::from_bytes(&v, &format!("tokens of document {id}"), &self.path)?;
            Ok((k, v, tokens, at))
        })
    }

    /// Copies the originals of `pending` (key, value, its tokens, where its originals lie) into
    /// the active generation and swaps each value that is unchanged; how many were.
    fn copy_originals(&self, pending: Vec<(IVec, IVec, Tokens, Location)>) -> Result<usize> {
        if pending.is_empty() {
            return Ok(0);
        }
        let mut read = Vec::with_capacity(pending.len());
        for (_, _, _, at) in &pending {
            read.push(self.originals.read(at, "originals being compacted", &self.path)?);
        }
        let slices: Vec<&[half::f16]> = read.iter().map(Vec::as_slice).collect();
        let locations = self.originals.append(&slices)?;
        let mut swapped = 0;
        for ((k, mut v, mut tokens, old), at) in pending.into_iter().zip(locations) {
            // A re-encoding since kept the originals where they were: its value takes the copy.
            loop {
                let value = tokens.to_bytes_at(Some(at));
                let Err(lost) = self.vectors.compare_and_swap(&k, Some(&v), Some(value))? else {
                    swapped += 1;
                    break;
                };
                let Some(now) = lost.current else { break };
                let (now_tokens, now_at) = Tokens::from_bytes(&now, "tokens being compacted", &self.path)?;
                if now_at != Some(old) {
                    break;
                }
                (v, tokens) = (now, now_tokens);
            }
        }
        Ok(swapped)
    }
}
