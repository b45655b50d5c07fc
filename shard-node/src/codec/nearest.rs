//! Each query vector's best centroids, for probing: scored a block of centroids at a time and
//! selected from the block while it is in cache, so the `[nq, K]` matrix of scores (1 MB per
//! 8,192 centroids) is never written, transposed or searched.

use rayon::prelude::*;

use super::Codec;
use crate::Result;

/// One query vector's `n` best centroids, best first (ties: lower centroid first), and the
/// score that stands in for a centroid not among them: the best of the rest, or the worst of
/// all when all are among them.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearest {
    pub best: Vec<(u32, f32)>,
    pub rest: f32,
}

/// The best `keep` seen so far, best first. `keep` is n + 1, or K when that is less: then the
/// list ends up holding every centroid, the worst last.
#[derive(Clone)]
struct Best {
    keep: usize,
    list: Vec<(u32, f32)>,
}

impl Best {
    fn new(keep: usize) -> Best {
        Best { keep, list: Vec::with_capacity(keep + 1) }
    }

    /// What a score must beat to enter: the last's once the list is full.
    fn floor(&self) -> f32 {
        match self.list.len() == self.keep {
            true => self.list.last().map_or(f32::NEG_INFINITY, |l| l.1),
            false => f32::NEG_INFINITY,
        }
    }

    /// Offered in increasing centroid order, a centroid ties after the earlier ones; one that
    /// does not beat `floor()` is not taken.
    fn offer(&mut self, c: u32, score: f32) {
        if score <= self.floor() {
            return;
        }
        let at = self.list.partition_point(|e| e.1 >= score);
        self.list.insert(at, (c, score));
        self.list.truncate(self.keep);
    }

    /// `self` then `later`, whose centroids all come after this one's.
    fn merge(mut self, later: Best) -> Best {
        later.list.iter().for_each(|&(c, s)| self.offer(c, s));
        self
    }

    fn nearest(mut self, n: usize) -> Nearest {
        let rest = match self.list.get(n).or(self.list.last()) {
            Some(&(_, score)) => score,
            None => f32::NEG_INFINITY,
        };
        self.list.truncate(n);
        Nearest { best: self.list, rest }
    }
}

impl Codec {
    /// For each vector of `query` (`[nq, dim]`, checked by the caller), its `n` best centroids
    /// by dot product: blocks of centroids scored straight from f16 (`dot_f16_rows`), on all
    /// cores.
    pub fn nearest(&self, query: &[f32], n: usize) -> Result<Vec<Nearest>> {
        const BLOCK: usize = 512;
        let dim = self.dim;
        let nq = query.len() / dim;
        let keep = (n + 1).min(self.k());
        // One contiguous share of the centroids per thread, a block at a time, into one list
        // per query vector, so the floors rise as it goes: a list is disturbed about
        // keep·ln(K/keep) times in all, where a list per block would be, that many times a
        // block (1.6 ms of 2.4 at 8,192 centroids).
        let share = self.k().div_ceil(rayon::current_num_threads()).div_ceil(BLOCK) * BLOCK;
        let shares: Vec<Vec<Best>> = self
            .centroids
            .par_chunks(share * dim)
            .enumerate()
            .map(|(s, centroids)| -> Result<Vec<Best>> {
                let mut lists = vec![Best::new(keep); nq];
                let mut floors = vec![f32::NEG_INFINITY; nq];
                let mut part = Vec::new();
                for (b, half) in centroids.chunks(BLOCK * dim).enumerate() {
                    part.resize(half.len() / dim * nq, 0.0);
                    kernels::cpu::dot_f16_rows(half, query, dim, &mut part)?;
                    // `part` is `[centroid][query vector]`.
                    for (c, row) in part.chunks_exact(nq).enumerate() {
                        for ((&score, floor), list) in row.iter().zip(&mut floors).zip(&mut lists) {
                            if score > *floor {
                                list.offer((s * share + b * BLOCK + c) as u32, score);
                                *floor = list.floor();
                            }
                        }
                    }
                }
                Ok(lists)
            })
            .collect::<Result<_>>()?;
        let lists = shares.into_iter().reduce(|a, b| a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect());
        Ok(lists.unwrap_or_default().into_iter().map(|l| l.nearest(n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn blocks_selected_and_merged_are_a_stable_sort_of_the_row(
            // Few distinct scores, so ties are common.
            row in proptest::collection::vec((-6i32..6).prop_map(|s| s as f32 * 0.25), 1..200),
            n in 1usize..40,
            block in 1usize..50,
        ) {
            let mut order: Vec<u32> = (0..row.len() as u32).collect();
            order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
            let keep = (n + 1).min(row.len());
            let got = row
                .chunks(block)
                .enumerate()
                .map(|(b, part)| {
                    let mut best = Best::new(keep);
                    part.iter().enumerate().for_each(|(c, &s)| best.offer((b * block + c) as u32, s));
                    best
                })
                .fold(Best::new(keep), Best::merge)
                .nearest(n);
            let m = n.min(row.len());
            let want: Vec<(u32, f32)> = order[..m].iter().map(|&c| (c, row[c as usize])).collect();
            prop_assert_eq!(&got.best, &want);
            let rest = if m < row.len() { row[order[m] as usize] } else { row[order[m - 1] as usize] };
            prop_assert_eq!(got.rest, rest);
        }
    }

    #[test]
    fn nearest_centroids_are_the_best_by_f64_dot_product() {
        let data = crate::synthetic::Collection::generate(&crate::synthetic::Spec {
            docs: 200,
            tokens_per_doc: 40,
            centres: 64,
            dim: 64,
            seed: 3,
            ..Default::default()
        });
        let codec = Codec::train_k(&data.vectors, 64, Default::default(), 1300).unwrap();
        let query = &data.queries(1, 9, 0.3, 4)[0].1;
        let got = codec.nearest(query, 20).unwrap();
        assert_eq!(got.len(), 9);
        let centroids: Vec<f32> = codec.centroids.iter().map(|x| x.to_f32()).collect();
        for (q, nearest) in query.chunks_exact(64).zip(&got) {
            let mut exact: Vec<(usize, f64)> = centroids
                .chunks_exact(64)
                .map(|c| c.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum())
                .enumerate()
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            assert_eq!(nearest.best.len(), 20);
            for (&(c, s), (_, want)) in nearest.best.iter().zip(&exact) {
                // Each score is its centroid's, and the list is the best (up to rounding).
                assert!((s as f64 - exact.iter().find(|e| e.0 == c as usize).unwrap().1).abs() < 1e-5);
                assert!((s as f64 - want).abs() < 1e-5, "centroid {c}: {s} vs the {want} of the sorted row");
            }
            assert!((nearest.rest as f64 - exact[20].1).abs() < 1e-5);
        }
    }
}
