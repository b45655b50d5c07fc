//! Dot products of f16 rows with a few f32 vectors: a shard's centroids (kept in f16) against
//! a query's token vectors, to probe them.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::{check_len, Error, Result};

/// Query vectors per panel: one AVX-512 register of lanes.
const LANES: usize = 16;

/// `out[r·nq + i] = x_r · q_i` for f16 rows `x` (`[rows, dim]`) and f32 vectors `q`
/// (`[nq, dim]`); `out` is `[rows, nq]`. With AVX-512 or AVX2, a few rows at a time are
/// converted to f32 and, per dimension, each row value is broadcast against sixteen query
/// values (a panel of the query, transposed once per call): one fused multiply-add per row and
/// panel register, no horizontal sums, no packing. (`f16_rows_speed`, 512 × 128 by 32 on one
/// core of an AVX-512 Xeon: 87 GFLOP/s against 38 converting the block and using `Dense`;
/// its AVX2 path 63 against 31.)
pub fn dot_f16_rows(x: &[f16], q: &[f32], dim: usize, out: &mut [f32]) -> Result<()> {
    if dim == 0 || !x.len().is_multiple_of(dim) || !q.len().is_multiple_of(dim) {
        return Err(Error::Input {
            op: "dot_f16_rows",
            why: format!("{} row values and {} vector values are not whole rows of {dim}", x.len(), q.len()),
        });
    }
    let (rows, nq) = (x.len() / dim, q.len() / dim);
    check_len("dot_f16_rows", "out", out.len(), rows * nq)?;
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() || super::avx2::available() {
        // panels[p][d][l] = q[16p + l][d], zero past the last vector.
        let mut panels = vec![0.0f32; nq.div_ceil(LANES) * dim * LANES];
        for (i, v) in q.chunks_exact(dim).enumerate() {
            let panel = &mut panels[i / LANES * dim * LANES..];
            for (d, &value) in v.iter().enumerate() {
                panel[d * LANES + i % LANES] = value;
            }
        }
        let task = Task { x, panels: &panels, dim, nq };
        match super::avx512::available() {
            // SAFETY: the CPU has AVX-512F.
            true => unsafe { avx512(&task, out) },
            // SAFETY: the CPU has AVX2 and FMA.
            false => unsafe { avx2(&task, out) },
        }
        return Ok(());
    }
    // Elsewhere the general product (a scalar tile runs at a seventh of its speed).
    let mut rows_f32 = vec![0.0f32; x.len()];
    x.convert_to_f32_slice(&mut rows_f32);
    super::linear(&rows_f32, q, None, out, rows, nq, dim)
}

/// Eight rows a tile, a register of sixteen lanes each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(task: &Task, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let dim = task.dim;
    task.run::<8>(out, |rows, panel, tile| {
        let mut acc = [_mm512_setzero_ps(); 8];
        for d in 0..dim {
            // SAFETY: `panel` holds dim·16 values and `rows` 8·dim.
            unsafe {
                let lanes = _mm512_loadu_ps(panel.as_ptr().add(d * LANES));
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(_mm512_set1_ps(*rows.get_unchecked(r * dim + d)), lanes, *acc);
                }
            }
        }
        for (acc, out) in acc.iter().zip(tile.iter_mut()) {
            // SAFETY: `out` is sixteen values.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), *acc) };
        }
    })
}

/// Four rows a tile, two registers of eight lanes each (16 registers in all).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(task: &Task, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let dim = task.dim;
    task.run::<4>(out, |rows, panel, tile| {
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        for d in 0..dim {
            // SAFETY: `panel` holds dim·16 values and `rows` 4·dim.
            unsafe {
                let lanes = [
                    _mm256_loadu_ps(panel.as_ptr().add(d * LANES)),
                    _mm256_loadu_ps(panel.as_ptr().add(d * LANES + 8)),
                ];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = _mm256_set1_ps(*rows.get_unchecked(r * dim + d));
                    acc[0] = _mm256_fmadd_ps(v, lanes[0], acc[0]);
                    acc[1] = _mm256_fmadd_ps(v, lanes[1], acc[1]);
                }
            }
        }
        for (acc, out) in acc.iter().zip(tile.iter_mut()) {
            // SAFETY: `out` is sixteen values.
            unsafe {
                _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
            }
        }
    })
}

#[cfg(target_arch = "x86_64")]
struct Task<'a> {
    x: &'a [f16],
    panels: &'a [f32],
    dim: usize,
    nq: usize,
}

#[cfg(target_arch = "x86_64")]
impl Task<'_> {
    /// Converts `R` rows at a time to f32 and, per panel, has `tile(rows, panel, acc)` put the
    /// `R × 16` products in `acc`, then stores the ones that exist.
    #[inline(always)]
    fn run<const R: usize>(&self, out: &mut [f32], mut tile: impl FnMut(&[f32], &[f32], &mut [[f32; LANES]; R])) {
        let (dim, nq) = (self.dim, self.nq);
        let mut rows = vec![0.0f32; R * dim];
        for (t, x) in self.x.chunks(R * dim).enumerate() {
            // Rows past the last in a partial tile keep the previous tile's values: computed,
            // never stored.
            x.convert_to_f32_slice(&mut rows[..x.len()]);
            for (p, panel) in self.panels.chunks_exact(dim * LANES).enumerate() {
                let mut acc = [[0.0; LANES]; R];
                tile(&rows, panel, &mut acc);
                let width = LANES.min(nq - p * LANES);
                for (r, acc) in acc.iter().enumerate().take(x.len() / dim) {
                    out[(t * R + r) * nq + p * LANES..][..width].copy_from_slice(&acc[..width]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn dot_f16_rows_is_the_f64_dot_product(
            rows in 0usize..30,
            nq in 1usize..40,
            dim in 1usize..70,
            seed in 0u64..1000,
        ) {
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut next = || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            };
            let x: Vec<f16> = (0..rows * dim).map(|_| f16::from_f32(next())).collect();
            let q: Vec<f32> = (0..nq * dim).map(|_| next()).collect();
            let mut out = vec![f32::NAN; rows * nq];
            dot_f16_rows(&x, &q, dim, &mut out).unwrap();
            for r in 0..rows {
                for i in 0..nq {
                    let want: f64 = (0..dim).map(|d| x[r * dim + d].to_f64() * q[i * dim + d] as f64).sum();
                    let got = out[r * nq + i] as f64;
                    prop_assert!((got - want).abs() < 1e-5 * (1.0 + dim as f64), "row {} vector {}: {} vs {}", r, i, got, want);
                }
            }
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        let x = vec![f16::ZERO; 12];
        assert!(dot_f16_rows(&x, &[0.0; 8], 4, &mut [0.0; 6]).is_ok());
        assert!(dot_f16_rows(&x, &[0.0; 8], 5, &mut [0.0; 6]).is_err());
        assert!(dot_f16_rows(&x, &[0.0; 8], 4, &mut [0.0; 5]).is_err());
        assert!(dot_f16_rows(&x, &[0.0; 8], 0, &mut []).is_err());
    }
}
