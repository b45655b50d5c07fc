//! Candidate generation: the documents a shard re-scores exactly.
//!
//! Per query token its `nprobe` best centroids by S = Q·Cᵀ (WARP's probing: `Codec::nearest`).
//! Then two passes over the probed runs, after PLAID's centroid interaction:
//! 1. Centroid interaction: a document's score for query token i is the score of the best
//!    probed centroid holding one of its tokens (runs are visited best first, so that is the
//!    run it is first met in; nothing is decoded). Where token i met none of its tokens, the
//!    best unprobed centroid's score stands in (an estimate of what it would have found). The
//!    best `REFINE × candidates` documents go on.
//! 2. Residual refinement, of those documents only: each of their probed tokens is scored as
//!    `S[i][c] + q_i·residual` through per-query-token lookup tables (256 partial dot products
//!    per residual byte), never decoding a vector; a document keeps its best per query token,
//!    the stand-in where it has none. The best `candidates` are returned.
//!
//! Pass 1 costs a few instructions per probed token where the tables cost 32 lookups: as a
//! shard grows, its probed runs grow (√tokens/16 tokens each) and most of their tokens belong
//! to documents pass 1 drops.

use std::cell::RefCell;

use rayon::prelude::*;

use super::{top_k, Hit, Index, SearchParams, MAX_NPROBE};
use crate::codec::Nearest;
use crate::{Error, Result};

/// Documents kept from centroid interaction for residual refinement, per candidate returned.
const REFINE: usize = 4;

thread_local! {
    static MARKS: RefCell<Marks> = RefCell::new(Marks::default());
}

/// Which documents a pass has met: per document the number of the pass that last met it, so
/// starting a pass costs nothing (the stamps are cleared only when the number wraps). One per
/// thread, as long as the largest table of documents it has served.
#[derive(Default)]
struct Marks {
    stamps: Vec<u32>,
    pass: u32,
}

impl Marks {
    fn start(&mut self, docs: usize) {
        self.pass = self.pass.wrapping_add(1);
        if self.pass == 0 {
            self.stamps.fill(0);
            self.pass = 1;
        }
        if self.stamps.len() < docs {
            self.stamps.resize(docs, 0);
        }
    }

    /// True the first time this pass meets `doc`.
    fn first(&mut self, doc: u32) -> bool {
        let stamp = &mut self.stamps[doc as usize];
        let first = *stamp != self.pass;
        *stamp = self.pass;
        first
    }
}

impl Index {
    /// The best `params.candidates` documents by the estimated score (see the module docs),
    /// among live documents that `allowed` accepts.
    pub fn candidates(
        &self,
        query: &[f32],
        params: &SearchParams,
        allowed: &(dyn Fn(u32) -> bool + Sync),
    ) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        if params.nprobe == 0 || params.nprobe > MAX_NPROBE {
            return Err(Error::BadInput(format!("nprobe must be in 1..={MAX_NPROBE}, not {}", params.nprobe)));
        }
        let probes = self.codec.nearest(query, params.nprobe.min(self.codec.k()))?;
        // Pass 1.
        let met: Vec<Vec<(u32, f32)>> = probes.par_iter().map(|p| self.interaction(p, allowed)).collect();
        let base: f32 = probes.iter().map(|p| p.rest).sum();
        let mut gain = vec![0.0f32; self.docs.len()];
        let mut touched = Vec::new();
        for (p, met) in probes.iter().zip(&met) {
            for &(doc, score) in met {
                if gain[doc as usize] == 0.0 {
                    touched.push(doc);
                }
                // A tiny offset keeps a met document distinguishable from one never met.
                gain[doc as usize] += (score - p.rest).max(f32::MIN_POSITIVE);
            }
        }
        let hits = touched.into_iter().map(|doc| Hit { doc, score: base + gain[doc as usize] }).collect();
        let kept = top_k(hits, REFINE * params.candidates);
        let mut slot = vec![u32::MAX; self.docs.len()];
        for (j, hit) in kept.iter().enumerate() {
            slot[hit.doc as usize] = j as u32;
        }
        // Pass 2.
        let tables = self.lookup_tables(query);
        let best: Vec<Vec<f32>> = probes
            .par_iter()
            .zip(tables.par_chunks_exact(self.codec.residual_bytes() * 256))
            .map(|(p, table)| self.refine(p, table, &slot, kept.len()))
            .collect();
        let hits = kept
            .iter()
            .enumerate()
            .map(|(j, hit)| Hit { doc: hit.doc, score: probes.iter().zip(&best).map(|(p, b)| b[j].max(p.rest)).sum() })
            .collect();
        Ok(top_k(hits, params.candidates))
    }

    /// Pass 1 for one query token: each live, allowed document its probed runs hold, with the
    /// score of the best of those runs holding one of its tokens.
    fn interaction(&self, probe: &Nearest, allowed: &(dyn Fn(u32) -> bool + Sync)) -> Vec<(u32, f32)> {
        MARKS.with_borrow_mut(|marks| {
            marks.start(self.docs.len());
            let mut met = Vec::new();
            for &(c, score) in &probe.best {
                self.scan(c as usize, |doc, _| {
                    if marks.first(doc) && self.is_live(doc) && allowed(doc) {
                        met.push((doc, score));
                    }
                });
            }
            met
        })
    }

    /// Pass 2 for one query token: per kept document (`slot[doc]` its place, `u32::MAX` if it
    /// was not kept) the best score of its probed tokens, −∞ where it has none.
    fn refine(&self, probe: &Nearest, table: &[f32], slot: &[u32], kept: usize) -> Vec<f32> {
        let mut best = vec![f32::NEG_INFINITY; kept];
        for &(c, base) in &probe.best {
            self.scan(c as usize, |doc, residual| {
                let j = slot[doc as usize];
                if j != u32::MAX {
                    let s: f32 = residual.iter().enumerate().map(|(b, &v)| table[b * 256 + v as usize]).sum();
                    let best = &mut best[j as usize];
                    *best = best.max(base + s);
                }
            });
        }
        best
    }
}
