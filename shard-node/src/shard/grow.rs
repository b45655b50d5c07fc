//! A shard that keeps growing: retraining in the background and compaction.
//!
//! Retraining (`retrain`) fits a new codec generation to a sample of the documents' originals
//! with K for the collection as it is now, re-encodes every document while searches go on
//! being served by the old generation and writes go on arriving (encoded by the old one), and
//! then, under the writer lock, brings over what changed meanwhile and switches. The store
//! holds every document encoded by one generation or the other at each moment, and the
//! manifest names the old one until the switch, so a crash at any point loses nothing: the
//! next start re-encodes whatever is on another generation (`Shard::load`).
//!
//! Compaction (`compact`) rewrites the runs without the entries of deleted or replaced
//! documents once they pass `compact_dead_share`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::encoding::{background_pool, on_background_thread, without_made_up_originals, Codecs};
use super::{locked, Shard, State};
use crate::codec::{centroid_count, Codec};
use crate::index::Index;
use crate::rng::Rng;
use crate::store::Tokens;
use crate::Result;

/// Documents read and re-encoded at a time.
const CHUNK: usize = 256;

/// What a retraining did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrained {
    pub generation: u32,
    pub k: usize,
    /// Tokens the shard held when it started.
    pub tokens: usize,
    /// Tokens k-means and the quantiser were fitted on.
    pub sample: usize,
    pub documents: usize,
    pub elapsed_ms: u64,
}

/// What one maintenance step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maintenance {
    Retrained(Retrained),
    /// Dead tokens dropped from the runs.
    Compacted(usize),
    /// Dead bytes dropped from the originals files.
    CompactedOriginals(u64),
}

/// Clears the retraining flag however the retraining ends.
struct Running<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Shard {
    /// Does what is due now (a retraining, else a compaction of the runs, else of the
    /// originals files): the service calls it every second from a thread of its own; anyone
    /// driving a shard directly may too.
    pub fn maintain(&self) -> Result<Option<Maintenance>> {
        if self.salvaged.is_some() {
            return Ok(None);
        }
        if self.retrain_due()? {
            return Ok(self.retrain()?.map(Maintenance::Retrained));
        }
        if let Some(dead) = self.compact_if_due() {
            return Ok(Some(Maintenance::Compacted(dead)));
        }
        if !self.store.originals_count_due() {
            return Ok(None);
        }
        let compacted = on_background_thread(self.config.background(), || self.store.compact_originals())?;
        Ok(compacted.map(Maintenance::CompactedOriginals))
    }

    /// Whether the shard holds `retrain_growth` times the tokens its codec was trained for.
    pub(super) fn retrain_due(&self) -> Result<bool> {
        let view = self.view();
        let State::Ready { index, generation } = &*view else { return Ok(false) };
        if self.config.retrain_growth == 0.0 || self.retraining.load(Ordering::SeqCst) {
            return Ok(false);
        }
        // A store from before the size was kept: the size K was chosen for.
        let k = index.codec().k() as u64;
        let trained = self.store.trained_tokens(*generation)?.unwrap_or((k / 16).pow(2)).max(1);
        Ok(index.tokens() as f64 >= trained as f64 * self.config.retrain_growth)
    }

    /// Whether a retraining runs now.
    pub fn retraining(&self) -> bool {
        self.retraining.load(Ordering::SeqCst)
    }

    /// Retrains now (see the module docs); returns when done, `None` when another retraining
    /// is already running. Before the first training, trains on what is buffered.
    pub fn retrain(&self) -> Result<Option<Retrained>> {
        match self.claim_retraining() {
            true => self.retrain_claimed(),
            false => Ok(None),
        }
    }

    /// Claims the one retraining a shard runs at a time: true if it was free (the caller then
    /// runs `retrain_claimed`, which gives it back however it ends).
    pub fn claim_retraining(&self) -> bool {
        !self.retraining.swap(true, Ordering::SeqCst)
    }

    /// Gives back a claim that will not be run.
    pub fn release_retraining(&self) {
        self.retraining.store(false, Ordering::SeqCst);
    }

    /// `retrain` once claimed. The work runs on a pool of its own below the searches' CPU
    /// priority (`background_nice`, `background_idle`), so that searches on the shared pool keep
    /// their cores.
    pub fn retrain_claimed(&self) -> Result<Option<Retrained>> {
        let _running = Running(&self.retraining);
        self.check_writable()?;
        match background_pool("retrain", self.config.background()) {
            Ok(pool) => pool.install(|| self.retrain_here()),
            Err(e) => {
                tracing::warn!(error = %e, "no pool of its own for the retraining: it shares the search pool");
                self.retrain_here()
            }
        }
    }

    fn retrain_here(&self) -> Result<Option<Retrained>> {
        let started = Instant::now();
        let view = self.view();
        let State::Ready { index: old, generation: old_generation } = &*view else {
            drop(view);
            let _writer = locked(&self.writer);
            return self.train_buffered(true);
        };
        let (tokens, replaced) = (old.tokens(), *old_generation);
        let k = centroid_count(tokens);
        let live: Vec<u32> = old.live_docs().collect();
        // Documents written meanwhile are encoded by the old codec too: one cache serves both.
        let mut codecs = Codecs::new(&self.store, Some((replaced, old.codec())));
        let sample = self.sample(&mut codecs, tokens, &live, k)?;
        let codec = Codec::train_k(&sample, self.config.dim, self.config.train, k)?;
        let sampled = sample.len() / self.config.dim;
        drop(sample);
        let generation = self.store.add_codec(&codec, tokens as u64)?;
        tracing::info!(generation, k, tokens, sample = sampled, "retraining: re-encoding documents");
        let mut index = Index::new(codec);
        for (n, chunk) in live.chunks(CHUNK).enumerate() {
            self.reencode(&mut index, generation, &mut codecs, chunk)?;
            if (n + 1) % 100 == 0 {
                tracing::info!(documents = (n + 1) * CHUNK, of = live.len(), generation, "retraining: re-encoding");
            }
        }
        // The switch: what was written or deleted since the snapshot, then the new generation.
        // (No id went to another document since the snapshot: it is a view held, and ids freed
        // after it stay parked while it is, `ids.rs`; so a document live in both is the same
        // one.) What was written meanwhile is re-encoded in turns under the writer lock, writes
        // going in between: each turn takes twice what was written during the last one (at
        // least CHUNK), so a write waits for one turn at most and the backlog shrinks by half a
        // turn or more each time, however long it was (a whole retraining's worth of writes).
        let (mut turn, mut backlog, mut since_total) = (CHUNK, None, 0);
        let (_writer, now) = loop {
            let writer = locked(&self.writer);
            let now = self.view();
            let State::Ready { index: current, .. } = &*now else { unreachable!("a trained shard stays trained") };
            let gone: Vec<u32> = index.live_docs().filter(|&d| !current.is_live(d)).collect();
            gone.into_iter().for_each(|d| {
                index.delete(d);
            });
            let since: Vec<u32> = current.live_docs().filter(|&d| !index.is_live(d)).collect();
            if let Some(left) = backlog {
                turn = (2 * since.len().saturating_sub(left)).max(CHUNK);
            }
            let this_turn = &since[..since.len().min(turn)];
            for chunk in this_turn.chunks(CHUNK) {
                self.reencode(&mut index, generation, &mut codecs, chunk)?;
            }
            since_total += this_turn.len();
            if this_turn.len() == since.len() {
                break (writer, now);
            }
            backlog = Some(since.len() - this_turn.len());
            drop((now, writer));
            // A write waiting for the lock takes it now, before the next turn does.
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        self.store.flush()?;
        self.store.use_codec(generation)?;
        index.shrink_to_fit();
        let documents = index.len();
        let mut ids = self.ids();
        let vacant: Vec<u32> = index.vacant_below(ids.limit()).collect();
        let before = self.publish_anew(State::Ready { index, generation });
        ids.reset(before, vacant);
        drop(ids);
        drop((now, view));
        let done = Retrained {
            generation,
            k,
            tokens,
            sample: sampled,
            documents,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(
            generation = done.generation,
            replaced,
            k,
            documents,
            written_meanwhile = since_total,
            elapsed_ms = done.elapsed_ms,
            "retraining done: switched codec"
        );
        Ok(Some(done))
    }

    /// Whole random documents' vectors (originals, or decoded where none are kept) until there
    /// are enough for k-means on `k` centroids and the quantiser's held-out set.
    fn sample(&self, codecs: &mut Codecs, tokens: usize, live: &[u32], k: usize) -> Result<Vec<f32>> {
        let wanted = k * self.config.train.sample_per_centroid + 50_000;
        let mut rng = Rng::new(self.config.train.seed ^ tokens as u64);
        let (mut out, dim) = (Vec::with_capacity(wanted.min(tokens) * self.config.dim), self.config.dim);
        for i in rng.sample(live.len(), live.len()) {
            if out.len() / dim >= wanted {
                break;
            }
            crate::give_way::step();
            if let Some(tokens) = self.store.tokens(live[i])? {
                out.extend_from_slice(&codecs.vectors(&tokens)?);
            }
        }
        Ok(out)
    }

    /// Re-encodes documents `ids` (none of them in `index`) with `index`'s codec of
    /// `generation` and adds them to it. A document replaced or deleted since it was read
    /// keeps its write: the swap fails and it is left out.
    pub(super) fn reencode(&self, index: &mut Index, generation: u32, codecs: &mut Codecs, ids: &[u32]) -> Result<()> {
        let mut stored = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(tokens) = self.store.tokens(id)? {
                let vectors = codecs.vectors(&tokens)?.into_owned();
                stored.push((id, tokens, vectors));
            }
        }
        let given: Vec<_> = stored.iter().map(|(_, _, v)| std::borrow::Cow::Borrowed(v.as_slice())).collect();
        let kept: Vec<_> = stored.iter().map(|(_, t, _)| t.originals()).collect();
        let encoded = self.encode(index.codec(), generation, &given, &kept)?;
        for ((id, old, _), new) in stored.iter().zip(encoded) {
            let new = without_made_up_originals(old, new);
            if self.store.swap_tokens(*id, old, &new)? {
                let Tokens::Encoded { codes, residuals, .. } = &new else { unreachable!("encoded above") };
                index.add(*id, codes, residuals)?;
            }
        }
        Ok(())
    }

    /// Compacts the runs if their dead share passed `compact_dead_share`; the dead tokens
    /// dropped.
    fn compact_if_due(&self) -> Option<usize> {
        let view = self.view();
        let State::Ready { index, .. } = &*view else { return None };
        let (dead, stored) = (index.dead_tokens(), index.dead_tokens() + index.tokens());
        if dead == 0 || (dead as f64) < self.config.compact_dead_share * stored as f64 {
            return None;
        }
        drop(view);
        Some(self.compact())
    }

    /// Rewrites the runs without dead entries now (under the writer lock: writes wait, searches
    /// do not); the dead tokens dropped.
    pub fn compact(&self) -> usize {
        let _writer = locked(&self.writer);
        let view = self.view();
        let State::Ready { index, generation } = &*view else { return 0 };
        let (started, dead) = (Instant::now(), index.dead_tokens());
        let (compacted, freed) = index.compacted();
        let next = State::Ready { index: compacted, generation: *generation };
        drop(view);
        let documents_freed = freed.len();
        let before = self.publish_anew(next);
        self.ids().park(before, freed);
        tracing::info!(
            dead_tokens = dead,
            ids_freed = documents_freed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compacted the runs"
        );
        dead
    }
}
