//! A dense (fully connected) layer whose weight is fixed: `y = x · Wᵀ + b`, W `[out, in]` as
//! PyTorch stores it. The weight is packed once for the fastest kernel the CPU has (AMX,
//! AVX-512, AVX2 + FMA); elsewhere, or with `JACOLBERT_KERNELS=portable`, the `gemm` crate
//! multiplies the plain weight. Either way one copy.

use super::{add_in_place, gelu_erf, linear};
use crate::{check_len, Result};

enum Weight {
    Plain(Vec<f32>),
    #[cfg(target_arch = "x86_64")]
    Packed(super::avx512::PackedWeight),
    #[cfg(target_arch = "x86_64")]
    Avx2(super::avx2::PackedWeight),
    #[cfg(target_arch = "x86_64")]
    Amx(super::amx::AmxWeight),
}

/// The path `Dense::new` takes on this CPU (with `JACOLBERT_KERNELS`): "amx", "avx512", "avx2"
/// or "portable", for benchmark reports.
pub fn dense_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if super::amx::available() {
            return "amx";
        } else if super::avx512::available() {
            return "avx512";
        } else if super::avx2::available() {
            return "avx2";
        }
    }
    "portable"
}

pub struct Dense {
    weight: Weight,
    bias: Option<Vec<f32>>,
    pub out: usize,
    pub inp: usize,
}

impl Dense {
    /// The fastest form this CPU supports.
    pub fn new(weight: Vec<f32>, bias: Option<Vec<f32>>, out: usize, inp: usize) -> Result<Dense> {
        let mut dense = Dense::plain(weight, bias, out, inp)?;
        #[cfg(target_arch = "x86_64")]
        if let Weight::Plain(w) = &dense.weight {
            dense.weight = match dense_path() {
                "amx" => Weight::Amx(super::amx::AmxWeight::pack(w, out, inp)),
                "avx512" => Weight::Packed(super::avx512::PackedWeight::pack(w, out, inp)),
                "avx2" => Weight::Avx2(super::avx2::PackedWeight::pack(w, out, inp)),
                _ => return Ok(dense),
            };
        }
        Ok(dense)
    }

    /// The portable form (the `gemm` crate), whatever the CPU.
    pub fn plain(weight: Vec<f32>, bias: Option<Vec<f32>>, out: usize, inp: usize) -> Result<Dense> {
        check_len("dense", "weight", weight.len(), out * inp)?;
        if let Some(b) = &bias {
            check_len("dense", "bias", b.len(), out)?;
        }
        Ok(Dense { weight: Weight::Plain(weight), bias, out, inp })
    }

    /// `[rows, in]` → `[rows, out]`: `x · Wᵀ + b`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut y = vec![0.0f32; rows * self.out];
        self.run_into(x, rows, false, None, &mut y)?;
        Ok(y)
    }

    /// `x · Wᵀ + b` into a caller's buffer of `rows·out` values, so that a loop of products can
    /// reuse one allocation.
    pub fn forward_into(&self, x: &[f32], rows: usize, y: &mut [f32]) -> Result<()> {
        self.run_into(x, rows, false, None, y)
    }

    /// `gelu(x · Wᵀ + b)` (BERT's intermediate layer) into `y`, fused where the CPU allows.
    pub fn forward_gelu_into(&self, x: &[f32], rows: usize, y: &mut [f32]) -> Result<()> {
        self.run_into(x, rows, true, None, y)
    }

    /// `x · Wᵀ + b + residual` (BERT's output layers) into `y`, fused where the CPU allows.
    pub fn forward_add_into(&self, x: &[f32], rows: usize, residual: &[f32], y: &mut [f32]) -> Result<()> {
        check_len("dense", "residual", residual.len(), rows * self.out)?;
        self.run_into(x, rows, false, Some(residual), y)
    }

    fn run_into(&self, x: &[f32], rows: usize, gelu: bool, residual: Option<&[f32]>, y: &mut [f32]) -> Result<()> {
        check_len("dense", "x", x.len(), rows * self.inp)?;
        check_len("dense", "out", y.len(), rows * self.out)?;
        match &self.weight {
            Weight::Plain(w) => {
                linear(x, w, self.bias.as_deref(), y, rows, self.out, self.inp)?;
                if gelu {
                    gelu_erf(y);
                }
                if let Some(r) = residual {
                    add_in_place(y, r)?;
                }
            }
            #[cfg(target_arch = "x86_64")]
            Weight::Packed(p) => {
                p.matmul(x, rows, y, super::packed::Epilogue { bias: self.bias.as_deref(), gelu, residual })
            }
            #[cfg(target_arch = "x86_64")]
            Weight::Avx2(p) => {
                p.matmul(x, rows, y, super::packed::Epilogue { bias: self.bias.as_deref(), gelu, residual })
            }
            #[cfg(target_arch = "x86_64")]
            Weight::Amx(p) => {
                p.matmul(x, rows, y, super::packed::Epilogue { bias: self.bias.as_deref(), gelu, residual })
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::Rng;

    #[test]
    fn fast_and_portable_forms_agree() {
        let mut rng = Rng::new(41);
        for (rows, out, inp) in [(1, 128, 768), (32, 3072, 768), (37, 768, 3072)] {
            let (x, w, b) = (rng.vec(rows * inp, 1.0), rng.vec(out * inp, 0.05), rng.vec(out, 0.1));
            let residual = rng.vec(rows * out, 1.0);
            let fast = Dense::new(w.clone(), Some(b.clone()), out, inp).unwrap();
            let portable = Dense::plain(w, Some(b), out, inp).unwrap();
            let run = |dense: &Dense, epilogue: usize| {
                let mut y = vec![f32::NAN; rows * out];
                match epilogue {
                    0 => dense.forward_into(&x, rows, &mut y),
                    1 => dense.forward_gelu_into(&x, rows, &mut y),
                    _ => dense.forward_add_into(&x, rows, &residual, &mut y),
                }
                .unwrap();
                y
            };
            for epilogue in 0..3 {
                let (f, p) = (run(&fast, epilogue), run(&portable, epilogue));
                let worst = f.iter().zip(&p).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(worst < 1e-4, "{rows}x{out}x{inp} epilogue {epilogue}: {worst}");
            }
        }
        assert!(Dense::new(vec![0.0; 5], None, 2, 3).is_err());
        assert!(Dense::new(vec![0.0; 6], None, 2, 3).unwrap().forward(&[0.0; 4], 2).is_err());
        assert!(Dense::new(vec![0.0; 6], None, 2, 3)
            .unwrap()
            .forward_add_into(&[0.0; 6], 2, &[0.0; 3], &mut [0.0; 4])
            .is_err());
    }
}
