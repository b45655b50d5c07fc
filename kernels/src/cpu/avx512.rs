//! The AVX-512 tile of `packed.rs`'s matrix product: 8 rows × 48 columns. Each `a` value is
//! broadcast against three 16-float weight vectors: 24 accumulators per tile, enough to hide
//! the FMA latency, leaving registers for the 3 weight vectors and the broadcast.

use std::arch::x86_64::*;

pub use super::packed::Epilogue;
use super::packed::{Kernel, NextBlock, TilePost, LINE};

/// Output columns per panel, and the 16-float vectors they make.
const NR: usize = 48;
const NV: usize = NR / 16;
/// Rows per tile.
const MR: usize = 8;
/// k steps between prefetching a weight row and using it.
const PREFETCH_STEPS: usize = 8;
/// k steps per turn of the kernel's loop.
const UNROLL: usize = 4;

pub struct Avx512;

/// A weight packed for this kernel.
pub type PackedWeight = super::packed::PackedWeight<Avx512>;

/// Whether this kernel runs here: the CPU has AVX-512F and `JACOLBERT_KERNELS` is not
/// `portable` (which forces the portable path, to compare the two or to rule one out).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let wanted = std::env::var("JACOLBERT_KERNELS").map_or(true, |v| v != "portable" && v != "avx2");
        is_x86_feature_detected!("avx512f") && wanted
    })
}

/// Calls `tile::<R>` for the row count of the last, partial tile, or a full one (the arms
/// below are written for MR = 8).
const _: () = assert!(MR == 8, "dispatch_tile! lists the partial tiles of MR = 8");
macro_rules! dispatch_tile {
    ($rows:expr, $($arg:expr),*) => {
        match $rows {
            1 => tile::<1>($($arg),*), 2 => tile::<2>($($arg),*), 3 => tile::<3>($($arg),*),
            4 => tile::<4>($($arg),*), 5 => tile::<5>($($arg),*), 6 => tile::<6>($($arg),*),
            7 => tile::<7>($($arg),*), _ => tile::<MR>($($arg),*),
        }
    };
}

impl Kernel for Avx512 {
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

/// One `R×NR` tile over `kc` steps of k: `c (+)= a[kc][MR] · b[kc][NR]` (the first R of
/// each MR values of `a` used), then on the last k block the epilogue, storing only the first
/// `cols` columns.
#[target_feature(enable = "avx512f")]
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
    let masks: [__mmask16; NV] = std::array::from_fn(|v| match cols.saturating_sub(v * 16) {
        0 => 0,
        n if n >= 16 => 0xffff,
        n => ((1u32 << n) - 1) as u16,
    });
    // Masked-off lanes are never touched, so a partial last panel may point past the end
    // (hence wrapping_add: such an address is formed, never dereferenced).
    let at = |p: *const f32, r: usize, v: usize| p.wrapping_add(r * ldc + v * 16);
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = _mm512_maskz_loadu_ps(masks[v], at(c, r, v));
            }
        }
    }
    // Macros, not closures: the accumulators must stay in registers. The k loop is unrolled
    // by UNROLL with constant offsets from two pointers, so that next to the 24 FMAs of a
    // step there is almost no integer work competing for their ports.
    macro_rules! step {
        ($ap:expr, $bp:expr, $kk:expr) => {{
            let bv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps($bp.add($kk * NR + v * 16)));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*$ap.add($kk * MR + r));
                for (x, &bw) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(av, bw, *x);
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
        // The first tile over a weight block streams it from memory (for one query, every
        // block): ask for each row a few steps ahead. Later tiles find it in L1, where the
        // extra instructions would only cost.
        k_loop!(|bp, kk| for v in 0..NV {
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add((kk + PREFETCH_STEPS) * NR + v * LINE) as *const i8);
        });
    } else if post.next_lines > 0 {
        // Spread this tile's share of the next block over its k steps, into L2: the first
        // tile over that block then finds it close.
        let mut next = NextBlock::new(&post, kc);
        k_loop!(|bp, kk| next.step());
    } else {
        k_loop!(|bp, kk| {});
    }
    if post.last {
        if !post.bias.is_null() {
            let bias: [__m512; NV] =
                std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], post.bias.wrapping_add(v * 16)));
            for row in acc.iter_mut() {
                for (x, &bb) in row.iter_mut().zip(&bias) {
                    *x = _mm512_add_ps(*x, bb);
                }
            }
        }
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                if post.gelu {
                    *x = gelu16(*x);
                }
                if !post.residual.is_null() {
                    *x = _mm512_add_ps(*x, _mm512_maskz_loadu_ps(masks[v], at(post.residual, r, v)));
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            _mm512_mask_storeu_ps(at(c, r, v) as *mut f32, masks[v], *x);
        }
    }
}

/// `elementwise::gelu_erf` on 16 lanes, operation for operation (mul and add kept apart, as
/// the scalar code is compiled), so the fused and the separate paths agree bit for bit.
#[target_feature(enable = "avx512f")]
unsafe fn gelu16(x: __m512) -> __m512 {
    let splat = _mm512_set1_ps;
    let (mul, add, sub) = (_mm512_mul_ps, _mm512_add_ps, _mm512_sub_ps);
    let z = mul(x, splat(std::f32::consts::FRAC_1_SQRT_2));
    // erf(z), A&S 7.1.26
    let a = _mm512_abs_ps(z);
    let t = _mm512_div_ps(splat(1.0), add(splat(1.0), mul(splat(0.327_591_1), a)));
    let mut poly = sub(mul(splat(1.061_405_4), t), splat(1.453_152_1));
    poly = add(mul(poly, t), splat(1.421_413_8));
    poly = sub(mul(poly, t), splat(0.284_496_74));
    poly = add(mul(poly, t), splat(0.254_829_6));
    poly = mul(poly, t);
    // exp(-a²)
    let e = _mm512_max_ps(sub(splat(0.0), mul(a, a)), splat(-87.0));
    let n = sub(add(mul(e, splat(std::f32::consts::LOG2_E)), splat(12_582_912.0)), splat(12_582_912.0));
    let r = sub(sub(e, mul(n, splat(0.693_145_75))), mul(n, splat(1.428_606_8e-6)));
    let mut p = add(splat(0.008_333_334), mul(r, splat(0.001_388_889)));
    p = add(splat(0.041_666_668), mul(r, p));
    p = add(splat(0.166_666_67), mul(r, p));
    p = add(splat(0.5), mul(r, p));
    p = add(splat(1.0), mul(r, p));
    p = add(splat(1.0), mul(r, p));
    let scale =
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127))));
    let y = sub(splat(1.0), mul(poly, mul(p, scale)));
    // copysign(y, z)
    let sign = _mm512_set1_epi32(i32::MIN);
    let erf = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_andnot_si512(sign, _mm512_castps_si512(y)),
        _mm512_and_si512(sign, _mm512_castps_si512(z)),
    ));
    mul(mul(x, splat(0.5)), add(splat(1.0), erf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::packed::tests as packed;
    use crate::cpu::testing::Rng;

    fn skipped() -> bool {
        packed::skipped::<Avx512>("AVX-512F")
    }

    #[test]
    fn gelu16_is_the_scalar_gelu_bit_for_bit() {
        if skipped() {
            return;
        }
        let mut rng = Rng::new(77);
        let mut x = rng.vec(4096, 10.0);
        x.extend([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e4, -1e4]);
        x.resize(x.len().div_ceil(16) * 16, 0.5);
        let mut want = x.clone();
        crate::cpu::gelu_erf(&mut want);
        for (chunk, want) in x.chunks(16).zip(want.chunks(16)) {
            let mut got = [0.0f32; 16];
            // SAFETY: AVX-512F is available (checked above); 16 floats in and out.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), gelu16(_mm512_loadu_ps(chunk.as_ptr()))) };
            assert_eq!(got.map(f32::to_bits), <[f32; 16]>::try_from(want).unwrap().map(f32::to_bits), "{chunk:?}");
        }
    }

    #[test]
    fn transposed_packing_is_the_same_weight() {
        if !skipped() {
            packed::transposed_packing_is_the_same_weight::<Avx512>();
        }
    }

    #[test]
    fn packed_matmul_matches_f64() {
        if !skipped() {
            packed::packed_matmul_matches_f64::<Avx512>();
        }
    }
}
