//! Search settings, the query checks and lookup tables candidate generation uses
//! (`candidates.rs`), and `exact`, the oracle: every live document, every token decoded, full
//! MaxSim.

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
    pub(super) fn check_query(&self, query: &[f32]) -> Result<usize> {
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
