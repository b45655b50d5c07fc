//! The in-memory search layout (WARP's): per centroid, one contiguous run of the tokens
//! assigned to it, each a document id (delta-coded, documents mostly in id order) and its packed
//! residual, so probing a centroid is one sequential scan. Per document: its token count and
//! whether it is live. Deleted documents stay in the runs, skipped, until the index is
//! compacted (`compacted`) or rebuilt; then their ids are vacant and may be given to new
//! documents (the shard decides when: `shard/ids.rs`), so the table of documents stays as
//! large as what the shard holds, however many writes it takes.
//!
//! Cloning an index is cheap and copy-on-write: runs and the codec are shared, and a run is
//! copied only when an `add` to the clone changes it. A shard publishes each write as a new
//! clone, so a search keeps reading the index it started on while writes go on.

use std::sync::Arc;

use rayon::prelude::*;

mod candidates;
mod search;
mod topk;

pub use search::{SearchParams, MAX_K, MAX_NPROBE};
pub use topk::{rank, top_k, Hit};

use crate::codec::Codec;
use crate::{Error, Result};

/// One centroid's tokens: each entry is the document id as a LEB128 delta from the previous
/// entry's (the first from 0), then the packed residual. One allocation per run, read front
/// to back. Ids mostly grow (a reused id is the exception), so the delta wraps around u32: a
/// step back costs five bytes, a step forward what it always did.
#[derive(Default, Clone)]
struct Run {
    entries: Vec<u8>,
    last: u32,
}

/// An id's place in the index.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Slot {
    /// No entries in the runs: free to be given to a new document.
    #[default]
    Vacant,
    Live,
    /// Deleted, its entries still in the runs until a compaction.
    Dead,
}

#[derive(Clone, Copy, Default)]
struct Doc {
    /// The document's tokens, which are also its entries in the runs (none once vacant).
    tokens: u32,
    slot: Slot,
}

#[derive(Clone)]
pub struct Index {
    codec: Arc<Codec>,
    runs: Vec<Arc<Run>>,
    docs: Vec<Doc>,
    live: usize,
    tokens: usize,
    /// Tokens in the runs, deleted documents' included.
    tokens_stored: usize,
}

impl Run {
    /// Appends one entry (`doc` no smaller than the last one's).
    fn push(&mut self, doc: u32, residual: &[u8], bytes: usize) {
        // Grow by an eighth rather than double: a run lives as long as the index, and the
        // slack of doubling would cost more than the ids.
        let needed = self.entries.len() + 5 + bytes;
        if needed > self.entries.capacity() {
            self.entries.reserve_exact((needed - self.entries.len()).max(self.entries.len() / 8));
        }
        let mut delta = doc.wrapping_sub(self.last);
        loop {
            let byte = (delta & 0x7f) as u8;
            delta >>= 7;
            if delta == 0 {
                self.entries.push(byte);
                break;
            }
            self.entries.push(byte | 0x80);
        }
        self.entries.extend_from_slice(residual);
        self.last = doc;
    }
}

/// Breakdown of what the index holds in memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub residuals: usize,
    pub ids: usize,
    pub centroids: usize,
    pub docs: usize,
}

impl Memory {
    pub fn total(&self) -> usize {
        self.residuals + self.ids + self.centroids + self.docs
    }
}

impl Index {
    pub fn new(codec: Codec) -> Index {
        let runs = (0..codec.k()).map(|_| Arc::new(Run::default())).collect();
        Index { codec: Arc::new(codec), runs, docs: Vec::new(), live: 0, tokens: 0, tokens_stored: 0 }
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Live documents.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Tokens of live documents.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Tokens still in the runs whose documents were deleted or replaced.
    pub fn dead_tokens(&self) -> usize {
        self.tokens_stored - self.tokens
    }

    /// The live documents' ids.
    pub fn live_docs(&self) -> impl Iterator<Item = u32> + '_ {
        self.docs.iter().enumerate().filter(|(_, d)| d.slot == Slot::Live).map(|(i, _)| i as u32)
    }

    pub fn is_live(&self, doc: u32) -> bool {
        self.docs.get(doc as usize).is_some_and(|d| d.slot == Slot::Live)
    }

    /// Whether `doc` has no entries in the runs and is not live (ids past the table included).
    pub fn is_vacant(&self, doc: u32) -> bool {
        self.docs.get(doc as usize).is_none_or(|d| d.slot == Slot::Vacant)
    }

    /// The vacant ids below `limit`.
    pub fn vacant_below(&self, limit: u32) -> impl Iterator<Item = u32> + '_ {
        (0..limit).filter(|&d| self.is_vacant(d))
    }

    /// Adds document `doc` (a vacant id) from its tokens' centroid codes and packed residuals.
    pub fn add(&mut self, doc: u32, codes: &[u32], residuals: &[u8]) -> Result<()> {
        let bytes = self.codec.residual_bytes();
        if !self.is_vacant(doc) {
            return Err(Error::BadInput(format!("document {doc} is in the index already")));
        }
        if residuals.len() != codes.len() * bytes || codes.iter().any(|&c| c as usize >= self.runs.len()) {
            return Err(Error::BadInput(format!("document {doc}: codes and residuals do not fit the codec")));
        }
        for (&code, residual) in codes.iter().zip(residuals.chunks_exact(bytes)) {
            Arc::make_mut(&mut self.runs[code as usize]).push(doc, residual, bytes);
        }
        if doc as usize >= self.docs.len() {
            self.docs.resize(doc as usize + 1, Doc::default());
        }
        self.docs[doc as usize] = Doc { tokens: codes.len() as u32, slot: Slot::Live };
        self.live += 1;
        self.tokens += codes.len();
        self.tokens_stored += codes.len();
        Ok(())
    }

    /// Tombstones a document; false if it was not live.
    pub fn delete(&mut self, doc: u32) -> bool {
        match self.docs.get_mut(doc as usize) {
            Some(d) if d.slot == Slot::Live => {
                d.slot = Slot::Dead;
                self.live -= 1;
                self.tokens -= d.tokens as usize;
                true
            }
            _ => false,
        }
    }

    /// Allocated bytes (capacity, not length).
    pub fn memory(&self) -> Memory {
        let entries: usize = self.runs.iter().map(|r| r.entries.capacity()).sum();
        let residuals = self.tokens_stored * self.codec.residual_bytes();
        Memory {
            residuals,
            ids: entries - residuals + self.runs.capacity() * (std::mem::size_of::<Run>() + 16),
            centroids: self.codec.memory(),
            docs: self.docs.capacity() * std::mem::size_of::<Doc>(),
        }
    }

    /// Gives back the runs' spare capacity (after a bulk load or a rebuild). A run shared with
    /// another clone is copied, as copies are made to fit.
    pub fn shrink_to_fit(&mut self) {
        for run in &mut self.runs {
            match Arc::get_mut(run) {
                Some(run) => run.entries.shrink_to_fit(),
                None => *run = Arc::new(Run::clone(run)),
            }
        }
        self.docs.shrink_to_fit();
    }

    /// The index without the entries of deleted documents, and the ids this made vacant:
    /// every run rewritten from its live entries (in order), sized to fit.
    pub fn compacted(&self) -> (Index, Vec<u32>) {
        let bytes = self.codec.residual_bytes();
        let runs = (0..self.runs.len())
            .into_par_iter()
            .map(|c| {
                let mut run = Run::default();
                self.scan(c, |doc, residual| {
                    if self.docs[doc as usize].slot == Slot::Live {
                        run.push(doc, residual, bytes);
                    }
                });
                run.entries.shrink_to_fit();
                Arc::new(run)
            })
            .collect();
        let mut docs = self.docs.clone();
        let mut freed = Vec::new();
        for (id, d) in docs.iter_mut().enumerate().filter(|(_, d)| d.slot == Slot::Dead) {
            *d = Doc::default();
            freed.push(id as u32);
        }
        let index = Index {
            codec: self.codec.clone(),
            runs,
            docs,
            live: self.live,
            tokens: self.tokens,
            tokens_stored: self.tokens,
        };
        (index, freed)
    }

    /// Calls `f(doc, residual)` for every entry of centroid `c`'s run, in order.
    fn scan(&self, c: usize, mut f: impl FnMut(u32, &[u8])) {
        let entries = &self.runs[c].entries;
        let bytes = self.codec.residual_bytes();
        let (mut doc, mut at) = (0u32, 0usize);
        while at < entries.len() {
            let (mut delta, mut shift) = (0u32, 0);
            loop {
                let byte = entries[at];
                at += 1;
                delta |= ((byte & 0x7f) as u32) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            doc = doc.wrapping_add(delta);
            f(doc, &entries[at..at + bytes]);
            at += bytes;
        }
    }
}

#[cfg(test)]
mod tests;
