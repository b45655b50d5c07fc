//! Element-wise ops.

use crate::{check_len, Result};

/// Defines `pub fn $name` that runs `$portable` compiled for AVX-512 or AVX2+FMA where the CPU
/// has them (the loops inside are written to auto-vectorise), else as plain code.
macro_rules! multiversion {
    ($(#[$doc:meta])* pub fn $name:ident($arg:ident: $ty:ty) -> $ret:ty = $portable:ident) => {
        $(#[$doc])*
        pub fn $name($arg: $ty) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($arg: $ty) -> $ret {
                    $portable($arg)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($arg: $ty) -> $ret {
                    $portable($arg)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the features the function is compiled for.
                    return unsafe { avx512($arg) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($arg) };
                }
            }
            $portable($arg)
        }
    };
}

multiversion! {
    /// BERT's erf GELU, `x · ½ · (1 + erf(x / √2))` (not the tanh approximation), with erf
    /// computed as PyTorch's vectorised CPU kernel computes it (Abramowitz & Stegun 7.1.26,
    /// |error| ≤ 1.5e-7) and a branch-free exp, so that the loop vectorises: a scalar `erff` per
    /// element costs more than the matrix products around it.
    pub fn gelu_erf(x: &mut [f32]) -> () = gelu_portable
}

multiversion! {
    /// Softmax of one row in place (max-subtracted, the vectorised exp below).
    pub fn softmax_in_place(row: &mut [f32]) -> () = softmax_portable
}

multiversion! {
    /// Index of the first largest value of a row (0 for an empty one). Sixteen lanes keep their
    /// own best with a select, which vectorises: a scalar compare-and-branch cost as much as
    /// the matrix product whose rows it scans (nearest-centroid search).
    pub fn argmax(row: &[f32]) -> u32 = argmax_portable
}

#[inline(always)]
fn argmax_portable(row: &[f32]) -> u32 {
    const LANES: usize = 16;
    let (mut best, mut at) = ([f32::NEG_INFINITY; LANES], [0u32; LANES]);
    let mut chunks = row.chunks_exact(LANES);
    for (c, chunk) in (&mut chunks).enumerate() {
        for l in 0..LANES {
            let take = chunk[l] > best[l];
            best[l] = if take { chunk[l] } else { best[l] };
            at[l] = if take { (c * LANES + l) as u32 } else { at[l] };
        }
    }
    let tail = row.len() - chunks.remainder().len();
    let (mut value, mut index) = (f32::NEG_INFINITY, 0u32);
    for (&v, &i) in best.iter().zip(&at) {
        // Lanes hold increasing indices for equal values only across chunks, so ties go to
        // the smaller index explicitly.
        if v > value || (v == value && i < index) {
            (value, index) = (v, i);
        }
    }
    for (j, &v) in chunks.remainder().iter().enumerate() {
        if v > value {
            (value, index) = (v, (tail + j) as u32);
        }
    }
    index
}

#[inline(always)]
fn gelu_portable(x: &mut [f32]) {
    for v in x {
        *v = *v * 0.5 * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Reductions keep 16 partial results (one vector), since a single running float is a serial
/// chain the compiler may not reorder.
#[inline(always)]
fn softmax_portable(row: &mut [f32]) {
    const LANES: usize = 16;
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in maxes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = chunks.remainder().iter().chain(&maxes).copied().fold(f32::NEG_INFINITY, f32::max);
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let mut sums = [0.0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (s, &v) in sums.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    let sum: f32 = chunks.remainder().iter().sum::<f32>() + sums.iter().sum::<f32>();
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// erf by A&S 7.1.26: `1 - t·(p1 + t·(p2 + t·(p3 + t·(p4 + t·p5))))·e^(-x²)`, t = 1/(1 + p·|x|).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// e^x for -87 ≤ x ≤ 0 (below, e^-87), branch-free: x = n·ln2 + r, e^r by a degree-6
/// polynomial (error ~1 ulp), 2^n by building the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Comparisons and bit casts only: `f32::max` and `as i32` carry NaN and saturation rules
    // that keep the compiler from vectorising the loop.
    let x = if x < -87.0 { -87.0 } else { x };
    // Round to nearest with the 1.5·2^23 trick: `t`'s low mantissa bits then hold n itself.
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // 2^n: n + 127 into the exponent field (the magic number's own bits shift out).
    p * f32::from_bits(t.to_bits().wrapping_add(127) << 23)
}

/// `x += y` (residual connections).
pub fn add_in_place(x: &mut [f32], y: &[f32]) -> Result<()> {
    check_len("add_in_place", "y", y.len(), x.len())?;
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::{max_rel_err, Rng};

    #[test]
    fn argmax_is_the_first_largest() {
        let mut rng = Rng::new(8);
        assert_eq!(argmax(&[]), 0);
        for len in [1, 15, 16, 17, 100, 1024] {
            for _ in 0..50 {
                // Few distinct values, so ties across lanes and chunks are common.
                let row: Vec<f32> = (0..len).map(|_| (rng.next_f32() * 5.0).floor()).collect();
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(argmax(&row) as usize, row.iter().position(|&x| x == max).unwrap(), "{row:?}");
            }
        }
    }

    /// Against libm's f64 `erf`: within the approximation's 1.5e-7 (relative to max(1, |y|)).
    #[test]
    fn gelu_matches_f64_erf() {
        let mut rng = Rng::new(3);
        let mut input = rng.vec(4096, 8.0);
        input.extend([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 100.0, -100.0, f32::MIN_POSITIVE]);
        let mut out = input.clone();
        gelu_erf(&mut out);
        let want: Vec<f64> =
            input.iter().map(|&x| x as f64 * 0.5 * (1.0 + libm::erf(x as f64 / 2f64.sqrt()))).collect();
        let err = max_rel_err(&out, &want);
        assert!(err < 3e-7, "{err}");
        let mut portable = input.clone();
        gelu_portable(&mut portable);
        assert_eq!(out, portable, "the vectorised and portable loops compute the same thing");
    }

    #[test]
    fn exp_is_accurate_for_nonpositive_arguments() {
        // Below -87 the argument is clamped (e^-87 ≈ 1.6e-38; erf only needs "negligible").
        assert!(exp(-200.0) < 2e-38);
        for i in 0..=1740 {
            let x = -(i as f32) * 0.05;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!((got - want).abs() <= 2e-7 * want + 1e-38, "exp({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn softmax_matches_f64() {
        let mut rng = Rng::new(9);
        for len in [1, 7, 32, 300] {
            let x = rng.vec(len, 20.0);
            let mut got = x.clone();
            softmax_in_place(&mut got);
            let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
            let z: f64 = e.iter().sum();
            let want: Vec<f64> = e.iter().map(|v| v / z).collect();
            assert!(max_rel_err(&got, &want) < 1e-6, "{len}");
        }
    }

    #[test]
    fn residual_add() {
        let mut x = vec![1.0, 2.0];
        add_in_place(&mut x, &[0.5, -2.0]).unwrap();
        assert_eq!(x, [1.5, 0.0]);
        assert!(add_in_place(&mut x, &[1.0]).is_err());
    }
}
