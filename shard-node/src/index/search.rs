//! Search over the centroid runs.
//!
//! Candidate generation (WARP's): centroid scores S = Q·Cᵀ; per query token its `nprobe` best
//! centroids; each probed run is scanned once, every token scored as `S[i][c] + q_i·residual`
//! through per-query-token lookup tables (one table of 256 partial dot products per residual
//! byte), never decoding a vector. A document's best token per query token is kept; where a
//! query token saw none of its tokens, the best unprobed centroid's score stands in (an
//! estimate of what it would have found). The best `candidates` documents by that estimate
//! are returned; the shard re-scores them exactly.
//!
//! `exact` is the oracle: every live document, every token decoded, full MaxSim.

use rayon::prelude::*;

use super::{top_k, Hit, Index};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    pub k: usize,
    /// Centroids probed per query token.
    pub nprobe: usize,
    /// Documents kept from candidate generation for exact re-scoring.
    pub candidates: usize,
}

impl SearchParams {
    /// Defaults by k, after PLAID's (256 / 1024 / 4·k re-scored documents) with WARP-style
    /// probing: recall@10 of 0.99+ against the exact mode on `shard-bench`'s 20,000 × 100.
    pub fn for_k(k: usize) -> SearchParams {
        let (nprobe, candidates) = match k {
            0..=10 => (16, 256),
            11..=100 => (24, 1024),
            _ => (32, (4 * k).max(4096)),
        };
        SearchParams { k, nprobe, candidates }
    }

    /// `for_k`, with nprobe grown in step with K past 16,384 centroids (a power of two): as a
    /// shard retrains to more centroids, each cluster of its vectors spreads over more of them.
    /// On `shard-bench --grow` at 4 M tokens (32,768 centroids) recall@10 against exhaustive
    /// MaxSim was 0.70 at nprobe 16 and 0.995 at 32.
    pub fn for_index(k: usize, centroids: usize) -> SearchParams {
        let base = SearchParams::for_k(k);
        SearchParams { nprobe: base.nprobe * (centroids / 16_384).max(1), ..base }
    }
}

/// Largest k and nprobe a search accepts.
pub const MAX_K: usize = 1000;
pub const MAX_NPROBE: usize = 1024;

impl Index {
    fn check_query(&self, query: &[f32]) -> Result<usize> {
        let dim = self.codec.dim;
        if query.is_empty() || !query.len().is_multiple_of(dim) {
            return Err(Error::BadInput(format!("a query is whole vectors of dim {dim}: got {} values", query.len())));
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(Error::BadInput("the query has a NaN or infinite value".into()));
        }
        Ok(query.len() / dim)
    }

    /// `[nq, 256 · bytes]`: entry `(i, j, b)` is q_i's dot product with the residual dimensions
    /// that byte j holds when it has value b. Built from two 16-entry tables per byte (its low
    /// and high four bits), so each entry costs one addition.
    pub(super) fn lookup_tables(&self, query: &[f32]) -> Vec<f32> {
        let q = &self.codec.quantizer;
        let (dim, nbits, bytes) = (q.dim, q.nbits, q.bytes());
        let per_nibble = 4 / nbits;
        let (buckets, mask) = (1usize << nbits, (1usize << nbits) - 1);
        let mut tables = vec![0.0f32; query.len() / dim * bytes * 256];
        tables.par_chunks_exact_mut(bytes * 256).zip(query.par_chunks_exact(dim)).for_each(|(table, qi)| {
            // nibble[h][n]: the dot product of the dimensions in half h of this byte.
            let mut nibble = [[0.0f32; 16]; 2];
            for (j, entries) in table.chunks_exact_mut(256).enumerate() {
                for (h, half) in nibble.iter_mut().enumerate() {
                    for (n, value) in half.iter_mut().enumerate() {
                        *value = (0..per_nibble)
                            .map(|t| {
                                let d = (2 * j + h) * per_nibble + t;
                                qi[d] * q.weights[d * buckets + ((n >> (t * nbits)) & mask)]
                            })
                            .sum();
                    }
                }
                for (b, entry) in entries.iter_mut().enumerate() {
                    *entry = nibble[0][b & 15] + nibble[1][b >> 4];
                }
            }
        });
        tables
    }

    /// The best `params.candidates` documents by the estimated score (see the module docs),
    /// among live documents that `allowed` accepts.
    pub fn candidates(
        &self,
        query: &[f32],
        params: &SearchParams,
        allowed: &(dyn Fn(u32) -> bool + Sync),
    ) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        let k = self.codec.k();
        if params.nprobe == 0 || params.nprobe > MAX_NPROBE {
            return Err(Error::BadInput(format!("nprobe must be in 1..={MAX_NPROBE}, not {}", params.nprobe)));
        }
        let nprobe = params.nprobe.min(k);
        let scores = self.codec.centroid_scores(query)?;
        let tables = self.lookup_tables(query);
        let bytes = self.codec.residual_bytes();
        // Per query token: its probed centroids' documents with their best token, and the
        // stand-in score for documents it did not see.
        let per_token: Vec<(Vec<(u32, f32)>, f32)> = scores
            .par_chunks_exact(k)
            .zip(tables.par_chunks_exact(bytes * 256))
            .map(|(row, table)| {
                let mut order: Vec<u32> = (0..k as u32).collect();
                let by_score = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]);
                let missing = if nprobe < k {
                    order.select_nth_unstable_by(nprobe, by_score);
                    row[order[nprobe] as usize]
                } else {
                    order.iter().map(|&c| row[c as usize]).fold(f32::INFINITY, f32::min)
                };
                let mut seen = Vec::new();
                for &c in &order[..nprobe] {
                    let base = row[c as usize];
                    self.scan(c as usize, |doc, residual| {
                        if self.is_live(doc) && allowed(doc) {
                            let s: f32 = residual.iter().enumerate().map(|(j, &b)| table[j * 256 + b as usize]).sum();
                            seen.push((doc, base + s));
                        }
                    });
                }
                seen.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
                seen.dedup_by_key(|e| e.0);
                (seen, missing)
            })
            .collect();
        let base: f32 = per_token.iter().map(|(_, m)| m).sum();
        let mut gain = vec![0.0f32; self.docs.len()];
        let mut touched = Vec::new();
        for (seen, missing) in &per_token {
            for &(doc, best) in seen {
                if gain[doc as usize] == 0.0 {
                    touched.push(doc);
                }
                // A tiny offset keeps a touched document distinguishable from an untouched one.
                gain[doc as usize] += (best - missing).max(f32::MIN_POSITIVE);
            }
        }
        let hits = touched.into_iter().map(|doc| Hit { doc, score: base + gain[doc as usize] }).collect();
        Ok(top_k(hits, params.candidates))
    }

    /// Exact MaxSim of each query against every live document `allowed` accepts, from decoded
    /// vectors: the top `k` per query. Each run is decoded once for all queries.
    pub fn exact(&self, queries: &[&[f32]], k: usize, allowed: &(dyn Fn(u32) -> bool + Sync)) -> Result<Vec<Vec<Hit>>> {
        let dim = self.codec.dim;
        let counts: Vec<usize> = queries.iter().map(|q| self.check_query(q)).collect::<Result<_>>()?;
        let all: Vec<f32> = queries.iter().flat_map(|q| q.iter().copied()).collect();
        let rows = all.len() / dim;
        // best[doc][query row], filled run by run (each run on its own thread, merged after).
        let partial: Vec<Vec<(u32, Vec<f32>)>> = (0..self.runs.len())
            .into_par_iter()
            .map(|c| {
                let (mut docs, mut vectors) = (Vec::new(), Vec::new());
                let mut v = vec![0.0f32; dim];
                self.scan(c, |doc, residual| {
                    if self.is_live(doc) && allowed(doc) {
                        self.codec.decode(c as u32, residual, &mut v);
                        docs.push(doc);
                        vectors.extend_from_slice(&v);
                    }
                });
                let mut sims = vec![0.0f32; docs.len() * rows];
                kernels::cpu::matmul_transposed(&vectors, &all, &mut sims, docs.len(), rows, dim)?;
                let mut out: Vec<(u32, Vec<f32>)> = Vec::new();
                for (&doc, s) in docs.iter().zip(sims.chunks_exact(rows.max(1))) {
                    match out.last_mut() {
                        Some((d, best)) if *d == doc => best.iter_mut().zip(s).for_each(|(b, &x)| *b = b.max(x)),
                        _ => out.push((doc, s.to_vec())),
                    }
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;
        let mut best = vec![f32::NEG_INFINITY; self.docs.len() * rows];
        for (doc, s) in partial.into_iter().flatten() {
            let row = &mut best[doc as usize * rows..(doc as usize + 1) * rows];
            row.iter_mut().zip(&s).for_each(|(b, &x)| *b = b.max(x));
        }
        let mut first = 0;
        Ok(counts
            .iter()
            .map(|&n| {
                let hits = (0..self.docs.len() as u32)
                    .filter(|&d| self.is_live(d) && allowed(d))
                    .map(|doc| {
                        let row = &best[doc as usize * rows + first..][..n];
                        // A document with no tokens scores 0, as MaxSim over nothing.
                        Hit { doc, score: row.iter().filter(|x| x.is_finite()).sum() }
                    })
                    .collect();
                first += n;
                top_k(hits, k)
            })
            .collect())
    }
}
