//! Row normalisations.

use rayon::prelude::*;

use crate::{check_len, check_rows, Result};

/// `x = (x - mean) / sqrt(var + eps) · gamma + beta` per row of `gamma.len()` values, with the
/// biased variance, as `torch.nn.LayerNorm`. Rows in parallel; sums kept in 16 lanes so they
/// vectorise (a single running float is a serial chain).
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) -> Result<()> {
    let h = gamma.len();
    check_len("layer_norm", "beta", beta.len(), h)?;
    check_rows("layer_norm", "x", x.len(), h)?;
    x.par_chunks_mut(h * 32).for_each(|rows| {
        for row in rows.chunks_exact_mut(h) {
            let mean = lane_sum(row.iter().copied()) / h as f32;
            let var = lane_sum(row.iter().map(|v| (v - mean) * (v - mean))) / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    });
    Ok(())
}

/// Sum in 16 interleaved partial sums.
fn lane_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut lanes = [0.0f32; 16];
    for (i, v) in values.enumerate() {
        lanes[i % 16] += v;
    }
    lanes.iter().sum()
}

/// Divides each row of `dim` values by its L2 norm (at least 1e-12, as
/// `torch.nn.functional.normalize`), so zero rows stay zero.
pub fn l2_normalize_rows(x: &mut [f32], dim: usize) -> Result<()> {
    check_rows("l2_normalize_rows", "x", x.len(), dim)?;
    for row in x.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::{max_rel_err, Rng};

    #[test]
    fn layer_norm_matches_f64() {
        let mut rng = Rng::new(11);
        let (rows, h) = (37, 768);
        let x = rng.vec(rows * h, 4.0);
        let (g, b) = (rng.vec(h, 1.0), rng.vec(h, 1.0));
        let mut out = x.clone();
        layer_norm(&mut out, &g, &b, 1e-12).unwrap();
        let mut want = vec![0.0f64; rows * h];
        for r in 0..rows {
            let row: Vec<f64> = x[r * h..(r + 1) * h].iter().map(|&v| v as f64).collect();
            let mean = row.iter().sum::<f64>() / h as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
            for i in 0..h {
                want[r * h + i] = (row[i] - mean) / (var + 1e-12).sqrt() * g[i] as f64 + b[i] as f64;
            }
        }
        assert!(max_rel_err(&out, &want) < 1e-5);
        assert!(layer_norm(&mut [0.0; 5], &g, &b, 1e-12).is_err());
    }

    #[test]
    fn l2_normalize_gives_unit_rows_and_keeps_zero_rows() {
        let mut rng = Rng::new(5);
        let mut x = rng.vec(10 * 128, 3.0);
        x[128..256].iter_mut().for_each(|v| *v = 0.0);
        let orig = x.clone();
        l2_normalize_rows(&mut x, 128).unwrap();
        for (r, row) in x.chunks(128).enumerate() {
            let norm: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            if r == 1 {
                assert!(row.iter().all(|&v| v == 0.0));
            } else {
                assert!((norm - 1.0).abs() < 1e-6);
                let scale: f64 = orig[r * 128..(r + 1) * 128].iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                assert!((row[0] as f64 - orig[r * 128] as f64 / scale).abs() < 1e-6);
            }
        }
        assert!(l2_normalize_rows(&mut x, 7).is_err());
    }
}
