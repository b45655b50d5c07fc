//! Late interaction: `score(q, d) = Σ_i max_j q_i · d_j` over L2-normalised token vectors.

use rayon::prelude::*;

use crate::cpu::{argmax, matmul_transposed, Dense};
use crate::{check_rows, Result};

/// MaxSim of one query `[nq, dim]` against one document `[nd, dim]`. A document with no
/// tokens scores 0.
pub fn maxsim(query: &[f32], doc: &[f32], dim: usize) -> Result<f32> {
    Ok(maxsim_matches(query, doc, dim)?.iter().map(|&(_, s)| s).sum())
}

/// For each query token, the document token that scores best against it (the first of equals)
/// and that score: the terms MaxSim sums, and what explains a match. Empty for a document
/// with no tokens.
pub fn maxsim_matches(query: &[f32], doc: &[f32], dim: usize) -> Result<Vec<(u32, f32)>> {
    let nq = check_rows("maxsim", "query", query.len(), dim)?;
    let nd = check_rows("maxsim", "doc", doc.len(), dim)?;
    if nd == 0 {
        return Ok(Vec::new());
    }
    let mut sims = vec![0.0f32; nq * nd];
    matmul_transposed(query, doc, &mut sims, nq, nd, dim)?;
    Ok(sims
        .chunks_exact(nd)
        .map(|row| {
            let j = argmax(row);
            (j, row[j as usize])
        })
        .collect())
}

/// One query scored against many documents (re-ranking candidates): the query is packed
/// once as the fixed operand, each document's tokens are the rows multiplied by it.
pub struct QueryScorer {
    dense: Dense,
}

impl QueryScorer {
    pub fn new(query: &[f32], dim: usize) -> Result<QueryScorer> {
        let nq = check_rows("QueryScorer", "query", query.len(), dim)?;
        Ok(QueryScorer { dense: Dense::new(query.to_vec(), None, nq, dim)? })
    }

    /// MaxSim of the query against `doc` `[n, dim]` (0 for no tokens); `sims` is scratch.
    pub fn score(&self, doc: &[f32], sims: &mut Vec<f32>) -> Result<f32> {
        let (nq, dim) = (self.dense.out, self.dense.inp);
        let nd = check_rows("QueryScorer", "doc", doc.len(), dim)?;
        if nd == 0 {
            return Ok(0.0);
        }
        sims.resize(nd * nq, 0.0);
        self.dense.forward_into(doc, nd, sims)?;
        let mut best = vec![f32::NEG_INFINITY; nq];
        for row in sims.chunks_exact(nq) {
            best.iter_mut().zip(row).for_each(|(b, &s)| *b = b.max(s));
        }
        Ok(best.iter().sum())
    }
}

/// Document tokens multiplied at once (about 8 MiB of vectors at dim 128).
const CHUNK_TOKENS: usize = 16 * 1024;
/// Queries multiplied at once.
const QUERY_BATCH: usize = 32;

/// Exhaustive MaxSim of every query against every document: `[queries.len(), docs.len()]`,
/// row-major; a document with no tokens scores 0. The documents' tokens are multiplied by a
/// batch of queries in one product per chunk of documents, then each query row keeps its best
/// token per document. The exact oracle for anything that prunes; `maxsim` is its own oracle.
pub fn maxsim_matrix(queries: &[&[f32]], docs: &[&[f32]], dim: usize) -> Result<Vec<f32>> {
    for (what, list) in [("query", queries), ("doc", docs)] {
        for m in list {
            check_rows("maxsim_matrix", what, m.len(), dim)?;
        }
    }
    let (nq, nd) = (queries.len(), docs.len());
    let mut out = vec![0.0f32; nq * nd];
    let mut sims = Vec::new();
    let mut first = 0;
    while first < nd {
        // Whole documents up to the chunk size (at least one).
        let mut last = first + 1;
        let mut tokens = docs[first].len() / dim;
        while last < nd && tokens + docs[last].len() / dim <= CHUNK_TOKENS {
            tokens += docs[last].len() / dim;
            last += 1;
        }
        if tokens > 0 {
            let matrix: Vec<f32> = docs[first..last].iter().flat_map(|d| d.iter().copied()).collect();
            let dense = Dense::new(matrix, None, tokens, dim)?;
            for (batch, qs) in queries.chunks(QUERY_BATCH).enumerate() {
                let rows: Vec<f32> = qs.iter().flat_map(|q| q.iter().copied()).collect();
                sims.resize(rows.len() / dim * tokens, 0.0);
                dense.forward_into(&rows, rows.len() / dim, &mut sims)?;
                let sims = &sims;
                let scores: Vec<Vec<f32>> = (0..qs.len())
                    .into_par_iter()
                    .map(|i| {
                        let row0: usize = qs[..i].iter().map(|q| q.len() / dim).sum();
                        let query_rows = sims[row0 * tokens..(row0 + qs[i].len() / dim) * tokens].chunks_exact(tokens);
                        let mut per_doc = vec![0.0f32; last - first];
                        for row in query_rows {
                            let mut at = 0;
                            for (score, d) in per_doc.iter_mut().zip(&docs[first..last]) {
                                let n = d.len() / dim;
                                if n > 0 {
                                    *score += row[at..at + n].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                                }
                                at += n;
                            }
                        }
                        per_doc
                    })
                    .collect();
                for (i, per_doc) in scores.into_iter().enumerate() {
                    let q = batch * QUERY_BATCH + i;
                    out[q * nd + first..q * nd + last].copy_from_slice(&per_doc);
                }
            }
        }
        first = last;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::Rng;

    #[test]
    fn maxsim_matches_f64() {
        let mut rng = Rng::new(23);
        let dim = 128;
        for (nq, nd) in [(32, 1), (32, 300), (5, 17)] {
            let (q, d) = (rng.vec(nq * dim, 0.1), rng.vec(nd * dim, 0.1));
            let want: f64 = (0..nq)
                .map(|i| {
                    (0..nd)
                        .map(|j| (0..dim).map(|x| q[i * dim + x] as f64 * d[j * dim + x] as f64).sum::<f64>())
                        .fold(f64::NEG_INFINITY, f64::max)
                })
                .sum();
            let got = maxsim(&q, &d, dim).unwrap() as f64;
            assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{nq}x{nd}: {got} vs {want}");
        }
        assert_eq!(maxsim(&[1.0; 128], &[], 128).unwrap(), 0.0);
        assert!(maxsim(&[1.0; 130], &[1.0; 128], 128).is_err());
    }

    #[test]
    fn matches_are_the_best_document_token_of_each_query_token() {
        let mut rng = Rng::new(29);
        let dim = 64;
        for (nq, nd) in [(32, 1), (32, 300), (3, 40)] {
            let (q, d) = (rng.vec(nq * dim, 0.1), rng.vec(nd * dim, 0.1));
            let matches = maxsim_matches(&q, &d, dim).unwrap();
            assert_eq!(matches.len(), nq);
            for (i, &(j, s)) in matches.iter().enumerate() {
                let dot = |j: usize| (0..dim).map(|x| q[i * dim + x] as f64 * d[j * dim + x] as f64).sum::<f64>();
                let best = (0..nd).map(dot).fold(f64::NEG_INFINITY, f64::max);
                // The token chosen is the best up to rounding, and its score is its dot product.
                assert!((dot(j as usize) - best).abs() < 1e-6, "q{i}: token {j}");
                assert!((s as f64 - dot(j as usize)).abs() < 1e-6, "q{i}: {s}");
            }
        }
        assert!(maxsim_matches(&[1.0; 128], &[], 128).unwrap().is_empty());
    }

    #[test]
    fn query_scorer_matches_maxsim() {
        let mut rng = Rng::new(52);
        let dim = 128;
        let q = rng.vec(32 * dim, 0.1);
        let scorer = QueryScorer::new(&q, dim).unwrap();
        let mut sims = Vec::new();
        for nd in [1, 7, 100, 300] {
            let d = rng.vec(nd * dim, 0.1);
            let (got, want) = (scorer.score(&d, &mut sims).unwrap(), maxsim(&q, &d, dim).unwrap());
            assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{nd}: {got} vs {want}");
        }
        assert_eq!(scorer.score(&[], &mut sims).unwrap(), 0.0);
        assert!(scorer.score(&[0.0; 129], &mut sims).is_err());
        assert!(QueryScorer::new(&[0.0; 5], dim).is_err());
    }

    #[test]
    fn maxsim_matrix_matches_maxsim_pair_by_pair() {
        let mut rng = Rng::new(47);
        let dim = 16;
        // Enough documents to span several chunks, one of them empty; queries of mixed lengths.
        let docs: Vec<Vec<f32>> =
            (0..70).map(|i| rng.vec(if i == 3 { 0 } else { (i * 37) % 700 + 1 } * dim, 0.3)).collect();
        let queries: Vec<Vec<f32>> = (0..37).map(|i| rng.vec((i % 5 + 1) * 8 * dim, 0.3)).collect();
        let (d, q): (Vec<&[f32]>, Vec<&[f32]>) =
            (docs.iter().map(Vec::as_slice).collect(), queries.iter().map(Vec::as_slice).collect());
        let fast = maxsim_matrix(&q, &d, dim).unwrap();
        for (i, qq) in q.iter().enumerate() {
            for (j, dd) in d.iter().enumerate() {
                let want = maxsim(qq, dd, dim).unwrap();
                assert!((fast[i * d.len() + j] - want).abs() <= 1e-4 * want.abs().max(1.0), "q{i} d{j}");
            }
        }
        assert!(maxsim_matrix(&[&[0.0; 5]], &d, dim).is_err());
    }
}
