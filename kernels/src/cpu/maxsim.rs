//! Late interaction: `score(q, d) = Σ_i max_j q_i · d_j` over L2-normalised token vectors.

use crate::cpu::matmul_transposed;
use crate::{check_len, Result};

/// MaxSim of one query `[nq, dim]` against one document `[nd, dim]`. A document with no
/// tokens scores 0.
pub fn maxsim(query: &[f32], doc: &[f32], dim: usize) -> Result<f32> {
    let (nq, nd) = (query.len() / dim.max(1), doc.len() / dim.max(1));
    check_len("maxsim", "query", query.len(), nq * dim)?;
    check_len("maxsim", "doc", doc.len(), nd * dim)?;
    if nd == 0 {
        return Ok(0.0);
    }
    let mut sims = vec![0.0f32; nq * nd];
    matmul_transposed(query, doc, &mut sims, nq, nd, dim)?;
    Ok(sims.chunks_exact(nd).map(|row| row.iter().copied().fold(f32::NEG_INFINITY, f32::max)).sum())
}

/// Scores of every query against every document: `[queries.len(), docs.len()]`, row-major.
pub fn maxsim_matrix(queries: &[&[f32]], docs: &[&[f32]], dim: usize) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(queries.len() * docs.len());
    for q in queries {
        for d in docs {
            out.push(maxsim(q, d, dim)?);
        }
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
                .map(|i| (0..nd).map(|j| (0..dim).map(|x| q[i * dim + x] as f64 * d[j * dim + x] as f64).sum::<f64>()).fold(f64::NEG_INFINITY, f64::max))
                .sum();
            let got = maxsim(&q, &d, dim).unwrap() as f64;
            assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{nq}x{nd}: {got} vs {want}");
        }
        assert_eq!(maxsim(&[1.0; 128], &[], 128).unwrap(), 0.0);
        assert!(maxsim(&[1.0; 130], &[1.0; 128], 128).is_err());
    }
}
