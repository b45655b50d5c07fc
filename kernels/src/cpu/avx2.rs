//! The AVX2 + FMA tile of `packed.rs`'s matrix product, for CPUs without AVX-512: 6 rows × 16
//! columns (two 8-float vectors), 12 accumulators of the 16 registers, leaving 2 for the weight
//! vectors and one for the broadcast (BLIS's Haswell shape). It replaces the `gemm` crate where
//! the weight is fixed: packed once, the weight of a few-row product (one query's 32 rows) is
//! read in one stream instead of being repacked on every call.

use std::arch::x86_64::*;

use super::packed::{Kernel, NextBlock, TilePost};

/// Output columns per panel, and the 8-float vectors they make.
const NR: usize = 16;
const NV: usize = NR / 8;
/// Rows per tile.
const MR: usize = 6;
/// k steps between prefetching a weight row and using it.
const PREFETCH_STEPS: usize = 16;
/// k steps per turn of the kernel's loop.
const UNROLL: usize = 4;

pub struct Avx2;

/// A weight packed for this kernel.
pub type PackedWeight = super::packed::PackedWeight<Avx2>;

/// Whether this kernel runs here: the CPU has AVX2 and FMA and `JACOLBERT_KERNELS` is not
/// `portable` (which forces the `gemm` crate, to compare the two or to rule one out).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && std::env::var("JACOLBERT_KERNELS").map_or(true, |v| v != "portable")
    })
}

/// Calls `tile::<R>` for the row count of the last, partial tile, or a full one.
const _: () = assert!(MR == 6, "dispatch_tile! lists the partial tiles of MR = 6");
macro_rules! dispatch_tile {
    ($rows:expr, $($arg:expr),*) => {
        match $rows {
            1 => tile::<1>($($arg),*), 2 => tile::<2>($($arg),*), 3 => tile::<3>($($arg),*),
            4 => tile::<4>($($arg),*), 5 => tile::<5>($($arg),*), _ => tile::<MR>($($arg),*),
        }
    };
}

impl Kernel for Avx2 {
    const NR: usize = NR;
    const MR: usize = MR;

    fn available() -> bool {
        available()
    }

    unsafe fn tile(
        rows: usize,
        a: *const f32,
        b: *const f32,
        kc: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        accumulate: bool,
        post: TilePost,
    ) {
        dispatch_tile!(rows, a, b, kc, c, ldc, cols, accumulate, post);
    }
}

/// One `R×NR` tile over `kc` steps of k (see `Kernel::tile`).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(
    a: *const f32,
    b: *const f32,
    kc: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    accumulate: bool,
    post: TilePost,
) {
    // Lane j of vector v is kept when v·8 + j < cols.
    let masks: [__m256i; NV] = std::array::from_fn(|v| {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32 - (v * 8) as i32), lanes)
    });
    // Masked-off lanes are never touched, so a partial last panel may point past the end
    // (hence wrapping_add: such an address is formed, never dereferenced).
    let at = |p: *const f32, r: usize, v: usize| p.wrapping_add(r * ldc + v * 8);
    let mut acc = [[_mm256_setzero_ps(); NV]; R];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = _mm256_maskload_ps(at(c, r, v), masks[v]);
            }
        }
    }
    // Macros, not closures: the accumulators must stay in registers (see avx512.rs).
    macro_rules! step {
        ($ap:expr, $bp:expr, $kk:expr) => {{
            let bv: [__m256; NV] = std::array::from_fn(|v| _mm256_loadu_ps($bp.add($kk * NR + v * 8)));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*$ap.add($kk * MR + r));
                for (x, &bw) in row.iter_mut().zip(&bv) {
                    *x = _mm256_fmadd_ps(av, bw, *x);
                }
            }
        }};
    }
    macro_rules! k_loop {
        (|$bp:ident, $kk:ident| $prefetch:expr) => {{
            let (mut ap, mut $bp) = (a, b);
            for _ in 0..kc / UNROLL {
                for $kk in 0..UNROLL {
                    $prefetch;
                    step!(ap, $bp, $kk);
                }
                ap = ap.add(UNROLL * MR);
                $bp = $bp.add(UNROLL * NR);
            }
            for $kk in 0..kc % UNROLL {
                $prefetch;
                step!(ap, $bp, $kk);
            }
        }};
    }
    if post.first_tile {
        // A panel row is one cache line here: ask for it a few steps ahead.
        k_loop!(|bp, kk| _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add((kk + PREFETCH_STEPS) * NR) as *const i8));
    } else if post.next_lines > 0 {
        let mut next = NextBlock::new(&post, kc);
        k_loop!(|bp, kk| next.step());
    } else {
        k_loop!(|bp, kk| {});
    }
    if post.last {
        if !post.bias.is_null() {
            let bias: [__m256; NV] =
                std::array::from_fn(|v| _mm256_maskload_ps(post.bias.wrapping_add(v * 8), masks[v]));
            for row in acc.iter_mut() {
                for (x, &bb) in row.iter_mut().zip(&bias) {
                    *x = _mm256_add_ps(*x, bb);
                }
            }
        }
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                if post.gelu {
                    *x = gelu8(*x);
                }
                if !post.residual.is_null() {
                    *x = _mm256_add_ps(*x, _mm256_maskload_ps(at(post.residual, r, v), masks[v]));
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            _mm256_maskstore_ps(at(c, r, v) as *mut f32, masks[v], *x);
        }
    }
}

/// `elementwise::gelu_erf` on 8 lanes, operation for operation (mul and add kept apart, as
/// the scalar code is compiled), so the fused and the separate paths agree bit for bit.
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu8(x: __m256) -> __m256 {
    let splat = _mm256_set1_ps;
    let (mul, add, sub) = (_mm256_mul_ps, _mm256_add_ps, _mm256_sub_ps);
    let sign = _mm256_set1_epi32(i32::MIN);
    let z = mul(x, splat(std::f32::consts::FRAC_1_SQRT_2));
    // erf(z), A&S 7.1.26
    let a = _mm256_castsi256_ps(_mm256_andnot_si256(sign, _mm256_castps_si256(z)));
    let t = _mm256_div_ps(splat(1.0), add(splat(1.0), mul(splat(0.327_591_1), a)));
    let mut poly = sub(mul(splat(1.061_405_4), t), splat(1.453_152_1));
    poly = add(mul(poly, t), splat(1.421_413_8));
    poly = sub(mul(poly, t), splat(0.284_496_74));
    poly = add(mul(poly, t), splat(0.254_829_6));
    poly = mul(poly, t);
    // exp(-a²)
    let e = _mm256_max_ps(sub(splat(0.0), mul(a, a)), splat(-87.0));
    let n = sub(add(mul(e, splat(std::f32::consts::LOG2_E)), splat(12_582_912.0)), splat(12_582_912.0));
    let r = sub(sub(e, mul(n, splat(0.693_145_75))), mul(n, splat(1.428_606_8e-6)));
    let mut p = add(splat(0.008_333_334), mul(r, splat(0.001_388_889)));
    p = add(splat(0.041_666_668), mul(r, p));
    p = add(splat(0.166_666_67), mul(r, p));
    p = add(splat(0.5), mul(r, p));
    p = add(splat(1.0), mul(r, p));
    p = add(splat(1.0), mul(r, p));
    let scale =
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127))));
    let y = sub(splat(1.0), mul(poly, mul(p, scale)));
    // copysign(y, z)
    let erf = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_andnot_si256(sign, _mm256_castps_si256(y)),
        _mm256_and_si256(sign, _mm256_castps_si256(z)),
    ));
    mul(mul(x, splat(0.5)), add(splat(1.0), erf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::packed::tests as packed;
    use crate::cpu::testing::Rng;

    fn skipped() -> bool {
        packed::skipped::<Avx2>("AVX2 and FMA")
    }

    #[test]
    fn gelu8_is_the_scalar_gelu_bit_for_bit() {
        if skipped() {
            return;
        }
        let mut rng = Rng::new(77);
        let mut x = rng.vec(4096, 10.0);
        x.extend([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e4, -1e4]);
        x.resize(x.len().div_ceil(8) * 8, 0.5);
        let mut want = x.clone();
        crate::cpu::gelu_erf(&mut want);
        for (chunk, want) in x.chunks(8).zip(want.chunks(8)) {
            let mut got = [0.0f32; 8];
            // SAFETY: AVX2 and FMA are available (checked above); 8 floats in and out.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), gelu8(_mm256_loadu_ps(chunk.as_ptr()))) };
            assert_eq!(got.map(f32::to_bits), <[f32; 8]>::try_from(want).unwrap().map(f32::to_bits), "{chunk:?}");
        }
    }

    #[test]
    fn transposed_packing_is_the_same_weight() {
        if !skipped() {
            packed::transposed_packing_is_the_same_weight::<Avx2>();
        }
    }

    #[test]
    fn packed_matmul_matches_f64() {
        if !skipped() {
            packed::packed_matmul_matches_f64::<Avx2>();
        }
    }
}
