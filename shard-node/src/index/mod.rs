//! The in-memory search layout (WARP's): per centroid, one contiguous run of the tokens
//! assigned to it, each a document id (delta-coded, documents in id order) and its packed
//! residual, so probing a centroid is one sequential scan. Per document: its token count and
//! whether it is live. Deleted documents stay in the runs, skipped, until the index is rebuilt.

mod search;
mod topk;

pub use search::{SearchParams, MAX_K, MAX_NPROBE};
pub use topk::{rank, top_k, Hit};

use crate::codec::Codec;
use crate::{Error, Result};

/// One centroid's tokens: each entry is the document id as a LEB128 delta from the previous
/// entry's (the first from 0), then the packed residual. One allocation per run, read front
/// to back.
#[derive(Default)]
struct Run {
    entries: Vec<u8>,
    last: u32,
}

#[derive(Clone, Copy, Default)]
struct Doc {
    tokens: u32,
    live: bool,
}

pub struct Index {
    codec: Codec,
    runs: Vec<Run>,
    docs: Vec<Doc>,
    live: usize,
    tokens: usize,
    /// Tokens in the runs, deleted documents' included.
    tokens_stored: usize,
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
        let runs = (0..codec.k()).map(|_| Run::default()).collect();
        Index { codec, runs, docs: Vec::new(), live: 0, tokens: 0, tokens_stored: 0 }
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

    /// The live documents' ids.
    pub fn live_docs(&self) -> impl Iterator<Item = u32> + '_ {
        self.docs.iter().enumerate().filter(|(_, d)| d.live).map(|(i, _)| i as u32)
    }

    pub fn is_live(&self, doc: u32) -> bool {
        self.docs.get(doc as usize).is_some_and(|d| d.live)
    }

    /// Adds document `doc` (ids must grow: the store hands them out in order) from its tokens'
    /// centroid codes and packed residuals.
    pub fn add(&mut self, doc: u32, codes: &[u32], residuals: &[u8]) -> Result<()> {
        let bytes = self.codec.residual_bytes();
        if (doc as usize) < self.docs.len() {
            return Err(Error::BadInput(format!("document {doc} is not newer than {}", self.docs.len() - 1)));
        }
        if residuals.len() != codes.len() * bytes || codes.iter().any(|&c| c as usize >= self.runs.len()) {
            return Err(Error::BadInput(format!("document {doc}: codes and residuals do not fit the codec")));
        }
        for (&code, residual) in codes.iter().zip(residuals.chunks_exact(bytes)) {
            let run = &mut self.runs[code as usize];
            // Grow by an eighth rather than double: a run lives as long as the index, and the
            // slack of doubling would cost more than the ids.
            let needed = run.entries.len() + 5 + bytes;
            if needed > run.entries.capacity() {
                run.entries.reserve_exact((needed - run.entries.len()).max(run.entries.len() / 8));
            }
            let mut delta = doc - run.last;
            loop {
                let byte = (delta & 0x7f) as u8;
                delta >>= 7;
                if delta == 0 {
                    run.entries.push(byte);
                    break;
                }
                run.entries.push(byte | 0x80);
            }
            run.entries.extend_from_slice(residual);
            run.last = doc;
        }
        self.docs.resize(doc as usize + 1, Doc::default());
        self.docs[doc as usize] = Doc { tokens: codes.len() as u32, live: true };
        self.live += 1;
        self.tokens += codes.len();
        self.tokens_stored += codes.len();
        Ok(())
    }

    /// Tombstones a document; false if it was not live.
    pub fn delete(&mut self, doc: u32) -> bool {
        match self.docs.get_mut(doc as usize) {
            Some(d) if d.live => {
                d.live = false;
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
            ids: entries - residuals + self.runs.capacity() * std::mem::size_of::<Run>(),
            centroids: self.codec.memory(),
            docs: self.docs.capacity() * std::mem::size_of::<Doc>(),
        }
    }

    /// Gives back the runs' spare capacity (after a bulk load or a rebuild).
    pub fn shrink_to_fit(&mut self) {
        self.runs.iter_mut().for_each(|r| r.entries.shrink_to_fit());
        self.docs.shrink_to_fit();
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
            doc += delta;
            f(doc, &entries[at..at + bytes]);
            at += bytes;
        }
    }
}

#[cfg(test)]
mod tests;
