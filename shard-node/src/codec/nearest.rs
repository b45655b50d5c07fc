//! Each query vector's best centroids, for probing: scored a block of centroids at a time and
//! selected from the block while it is in cache, so the `[nq, K]` matrix of scores (1 MB per
//! 8,192 centroids) is never written, transposed or searched.

use half::slice::HalfFloatSliceExt;
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

/// The best `keep` seen so far, best first, and the lowest score seen.
#[derive(Clone)]
struct Best {
    keep: usize,
    list: Vec<(u32, f32)>,
    lowest: f32,
}

impl Best {
    fn new(keep: usize) -> Best {
        Best { keep, list: Vec::with_capacity(keep + 1), lowest: f32::INFINITY }
    }

    /// Offered in increasing centroid order, a centroid ties after the earlier ones. Once the
    /// list is full a centroid enters only when it beats the last, about keep·ln(K/keep) times.
    fn offer(&mut self, c: u32, score: f32) {
        self.lowest = self.lowest.min(score);
        if self.list.len() == self.keep && self.list.last().is_none_or(|l| score <= l.1) {
            return;
        }
        let at = self.list.partition_point(|e| e.1 >= score);
        self.list.insert(at, (c, score));
        self.list.truncate(self.keep);
    }

    /// `self` then `later`, whose centroids all come after this one's.
    fn merge(mut self, later: Best) -> Best {
        later.list.iter().for_each(|&(c, s)| self.offer(c, s));
        self.lowest = self.lowest.min(later.lowest);
        self
    }

    fn nearest(mut self, n: usize) -> Nearest {
        let rest = if self.list.len() > n { self.list[n].1 } else { self.lowest };
        self.list.truncate(n);
        Nearest { best: self.list, rest }
    }
}

impl Codec {
    /// For each vector of `query` (`[nq, dim]`, checked by the caller), its `n` best centroids
    /// by dot product. The query is packed once as the fixed operand; blocks of centroids,
    /// converted from f16 as they go, are the rows multiplied by it, on all cores.
    pub fn nearest(&self, query: &[f32], n: usize) -> Result<Vec<Nearest>> {
        const BLOCK: usize = 512;
        let dim = self.dim;
        let nq = query.len() / dim;
        let keep = (n + 1).min(self.k());
        let q = kernels::cpu::Dense::new(query.to_vec(), None, nq, dim)?;
        let lists = self
            .centroids
            .par_chunks(BLOCK * dim)
            .enumerate()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(block, part), (b, half)| -> Result<Vec<Best>> {
                    let rows = half.len() / dim;
                    block.resize(half.len(), 0.0);
                    half.convert_to_f32_slice(block);
                    part.resize(rows * nq, 0.0);
                    q.forward_into(block, rows, part)?;
                    let mut lists = vec![Best::new(keep); nq];
                    // `part` is `[centroid][query vector]`.
                    for (c, row) in part.chunks_exact(nq).enumerate() {
                        let c = (b * BLOCK + c) as u32;
                        row.iter().zip(&mut lists).for_each(|(&s, list)| list.offer(c, s));
                    }
                    Ok(lists)
                },
            )
            .try_reduce(
                || vec![Best::new(keep); nq],
                |a, b| Ok(a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect()),
            )?;
        Ok(lists.into_iter().map(|l| l.nearest(n)).collect())
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
