//! Matrix products: `out[m,n] = a[m,k] · w[n,k]ᵀ (+ bias)`, the layout of a PyTorch `Linear`
//! weight, through the `gemm` crate.

use gemm::Parallelism;

use crate::{check_len, Result};

fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    // Below ~1 MFLOP the fork-join costs more than it saves.
    if m * n * k < (1 << 20) {
        Parallelism::None
    } else {
        Parallelism::Rayon(rayon::current_num_threads())
    }
}

/// `out[m,n] = a[m,k] · b[n,k]ᵀ`.
pub fn matmul_transposed(a: &[f32], b: &[f32], out: &mut [f32], m: usize, n: usize, k: usize) -> Result<()> {
    check_len("matmul_transposed", "a", a.len(), m * k)?;
    check_len("matmul_transposed", "b", b.len(), n * k)?;
    check_len("matmul_transposed", "out", out.len(), m * n)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    // SAFETY: the three buffers were checked to hold m·k, n·k and m·n elements, and the strides
    // below address exactly those row-major layouts (b read as its transpose).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
    Ok(())
}

/// `out[m,n] = a[m,k] · w[n,k]ᵀ + bias[n]`.
pub fn linear(a: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32], m: usize, n: usize, k: usize) -> Result<()> {
    matmul_transposed(a, w, out, m, n, k)?;
    if let Some(bias) = bias {
        check_len("linear", "bias", bias.len(), n)?;
        for row in out.chunks_exact_mut(n) {
            row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::{max_rel_err, Rng};

    fn naive(a: &[f32], w: &[f32], bias: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] =
                    bias[j] as f64 + (0..k).map(|p| a[i * k + p] as f64 * w[j * k + p] as f64).sum::<f64>();
            }
        }
        out
    }

    #[test]
    fn linear_matches_f64_on_encoder_shapes() {
        let mut rng = Rng::new(7);
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (32, 384, 128), (300, 96, 768), (17, 3072, 64)] {
            let (a, w, b) = (rng.vec(m * k, 1.0), rng.vec(n * k, 0.1), rng.vec(n, 1.0));
            let mut out = vec![f32::NAN; m * n];
            linear(&a, &w, Some(&b), &mut out, m, n, k).unwrap();
            let err = max_rel_err(&out, &naive(&a, &w, &b, m, n, k));
            assert!(err < 1e-5, "{m}x{n}x{k}: {err}");
        }
    }

    #[test]
    fn shapes_are_checked() {
        let mut out = vec![0.0; 4];
        let err = linear(&[0.0; 3], &[0.0; 4], None, &mut out, 2, 2, 2).unwrap_err();
        assert!(err.to_string().contains("a has 3 elements, expected 4"));
        assert!(linear(&[0.0; 4], &[0.0; 4], Some(&[0.0; 3]), &mut out, 2, 2, 2).is_err());
    }
}
