//! An AVX-512 matrix product for weights that never change: `out[m,n] = a[m,k] · w[n,k]ᵀ`.
//!
//! The weight is packed once into panels of 48 output columns, `[k][48]` each, so the kernel
//! reads it with three vector loads per k step. `a` is read in place, eight rows at a time (eight
//! sequential streams the prefetchers follow; packing them cost more than it saved here), each
//! value broadcast against the three weight vectors: 24 accumulators per 8×48 tile, enough to
//! hide the FMA latency. Panels, rows and k are blocked (see `matmul_strided`) so that a
//! panel's k block stays in L1 while the row tiles pass over it and nothing is fetched from
//! memory twice. The first tile over a weight block prefetches it. Bias, GELU and residual are
//! applied in registers before the store. Threads split the panels, so each writes its own
//! output columns.

use std::arch::x86_64::*;

use rayon::prelude::*;

/// Output columns per panel, and the 16-float vectors they make (8 rows × 3 vectors = 24
/// accumulators, leaving registers for the 3 weight vectors and the broadcast).
const NR: usize = 48;
const NV: usize = NR / 16;
/// Rows per tile.
const MR: usize = 8;
/// k steps between prefetching a weight row and using it.
const PREFETCH_STEPS: usize = 8;
/// k per block.
const KC: usize = 192;
/// Rows per block, and panels per group (see `matmul_strided`).
const MAX_BLOCK_ROWS: usize = 256;
const PANEL_GROUP: usize = 32;

/// Whether this kernel runs here: the CPU has AVX-512F and `JACOLBERT_KERNELS` is not
/// `portable` (which forces the portable path, to compare the two or to rule one out).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f") && std::env::var("JACOLBERT_KERNELS").map_or(true, |v| v != "portable")
    })
}

/// A weight `[n, k]` packed into `ceil(n/NR)` panels of `[k][NR]` (zero-padded columns).
pub struct PackedWeight {
    pub n: usize,
    pub k: usize,
    panels: Vec<f32>,
}

impl PackedWeight {
    /// Packs a row-major `[n, k]` weight.
    pub fn pack(w: &[f32], n: usize, k: usize) -> PackedWeight {
        let count = n.div_ceil(NR);
        let mut panels = vec![0.0f32; count * k * NR];
        for (p, panel) in panels.chunks_exact_mut(k * NR).enumerate() {
            for j in 0..NR.min(n - p * NR) {
                for (kk, &v) in w[(p * NR + j) * k..(p * NR + j + 1) * k].iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        PackedWeight { n, k, panels }
    }

    /// `out[m,n] = post(a[m,k] · wᵀ)` on all threads. Only call where `available()`.
    pub fn matmul(&self, a: &[f32], m: usize, out: &mut [f32], post: Epilogue) {
        self.matmul_strided(a, self.k, m, out, post, true)
    }

    /// As `matmul`, with rows of `a` `lda` apart, on the calling thread unless `parallel`.
    pub fn matmul_strided(&self, a: &[f32], lda: usize, m: usize, out: &mut [f32], post: Epilogue, parallel: bool) {
        let (n, k) = (self.n, self.k);
        assert!(available() && lda >= k && (m == 0 || a.len() >= (m - 1) * lda + k) && out.len() >= m * n);
        assert!(post.bias.is_none_or(|b| b.len() >= n) && post.residual.is_none_or(|r| r.len() >= m * n));
        let panels = n.div_ceil(NR);
        let threads = rayon::current_num_threads().max(1);
        // Below ~2 MFLOP one thread is faster than a fork-join.
        let per_thread = if !parallel || m * n * k < (1 << 21) { panels } else { panels.div_ceil(threads) };
        let ranges: Vec<(usize, usize)> =
            (0..panels).step_by(per_thread).map(|p| (p, (p + per_thread).min(panels))).collect();
        let out_ptr = SendPtr(out.as_mut_ptr());
        let work = |&(first, last): &(usize, usize)| {
            let out_ptr = &out_ptr;
            // Three levels of blocking, so that nothing is fetched from memory twice per pass:
            // a group of panels (their KC-row blocks, ~1.1 MiB, stay in L2 across all row
            // blocks), a block of rows (its output, ~0.8 MiB, stays in L2 across the k blocks),
            // a k block (one panel's block, 36 KiB, stays in L1 across the row tiles).
            for group in (first..last).step_by(PANEL_GROUP) {
                for i_block in (0..m).step_by(MAX_BLOCK_ROWS) {
                    let rows = MAX_BLOCK_ROWS.min(m - i_block);
                    for k0 in (0..k).step_by(KC) {
                        let kc = KC.min(k - k0);
                        for p in group..(group + PANEL_GROUP).min(last) {
                            let cols = NR.min(n - p * NR);
                            let b = &self.panels[p * k * NR + k0 * NR..];
                            for i0 in (i_block..i_block + rows).step_by(MR) {
                                // SAFETY: rows i0.. of `a` hold k values from k0 and the panel
                                // block kc×NR; this thread alone writes columns p·NR..p·NR+cols of
                                // rows i0.. of `out`, all within the bounds asserted above.
                                unsafe {
                                    let a = a.as_ptr().add(i0 * lda + k0);
                                    let c = out_ptr.0.wrapping_add(i0 * n + p * NR);
                                    // The tiles after the first share out the next block's fetch.
                                    let tiles = rows.div_ceil(MR);
                                    let t = (i0 - i_block) / MR;
                                    let next_lines = if t == 0 || tiles < 2 || p + 1 >= last {
                                        0
                                    } else {
                                        (kc * NV).div_ceil(tiles - 1)
                                    };
                                    let next = self
                                        .panels
                                        .as_ptr()
                                        .wrapping_add((p + 1) * k * NR + k0 * NR + (t - t.min(1)) * next_lines * 16);
                                    let post = TilePost {
                                        first_tile: i0 == i_block,
                                        next,
                                        next_lines,
                                        last: k0 + kc == k,
                                        bias: post.bias.map_or(std::ptr::null(), |b| b.as_ptr().wrapping_add(p * NR)),
                                        gelu: post.gelu,
                                        residual: post
                                            .residual
                                            .map_or(std::ptr::null(), |r| r.as_ptr().wrapping_add(i0 * n + p * NR)),
                                    };
                                    dispatch_tile!((m - i0).min(MR), a, lda, b.as_ptr(), kc, c, n, cols, k0 > 0, post);
                                }
                            }
                        }
                    }
                }
            }
        };
        if ranges.len() > 1 {
            ranges.par_iter().for_each(work);
        } else {
            ranges.iter().for_each(work);
        }
    }
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
use dispatch_tile;

struct SendPtr(*mut f32);
// SAFETY: threads write disjoint column ranges through it (see `matmul`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// What is done to a finished output tile, in registers, before it is stored: `+ bias`, then
/// GELU or `+ residual` (a `[m, n]` matrix like the output).
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub gelu: bool,
    pub residual: Option<&'a [f32]>,
}

/// The epilogue of one tile: pointers already offset to the tile's first column (and row).
#[derive(Clone, Copy)]
struct TilePost {
    first_tile: bool,
    /// For the other tiles: the part of the next weight block this tile pulls into L2.
    next: *const f32,
    next_lines: usize,
    last: bool,
    bias: *const f32,
    gelu: bool,
    residual: *const f32,
}

/// One `R×NR` tile over `kc` steps of k: `c (+)= a[R rows, kc] · b[kc][NR]`, then on the last
/// k block the epilogue, storing only the first `cols` columns.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(
    a: *const f32,
    lda: usize,
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
    // A macro, not a closure: the accumulators must stay in registers.
    macro_rules! step {
        ($kk:expr) => {{
            let kk = $kk;
            let bv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(kk * NR + v * 16)));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r * lda + kk));
                for (x, &bw) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(av, bw, *x);
                }
            }
        }};
    }
    if post.first_tile {
        // The first tile over a weight block streams it from memory (for one query, every
        // block): ask for each row a few steps ahead. Later tiles find it in L1, where the
        // extra instructions would only cost.
        for kk in 0..kc {
            for v in 0..NV {
                _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((kk + PREFETCH_STEPS) * NR + v * 16) as *const i8);
            }
            step!(kk);
        }
    } else if post.next_lines > 0 {
        // Spread this tile's share of the next block over its k steps, into L2 (the first tile
        // over that block then finds it close).
        let per_step = post.next_lines.div_ceil(kc);
        for kk in 0..kc {
            for line in kk * per_step..((kk + 1) * per_step).min(post.next_lines) {
                _mm_prefetch::<_MM_HINT_T1>(post.next.wrapping_add(line * 16) as *const i8);
            }
            step!(kk);
        }
    } else {
        for kk in 0..kc {
            step!(kk);
        }
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
    use crate::cpu::testing::{max_rel_err, Rng};

    /// These tests need the instructions they test; say so where they are missing.
    fn skipped() -> bool {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
        }
        !available()
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
    fn packed_matmul_matches_f64() {
        if skipped() {
            return;
        }
        let mut rng = Rng::new(31);
        // Shapes cover partial tiles, partial panels, several k blocks and row blocks; the
        // last case reads `a` with a row stride larger than k.
        for (m, n, k, lda) in [
            (1, 1, 1, 1),
            (7, 33, 5, 5),
            (32, 768, 768, 768),
            (13, 128, 3072, 3072),
            (300, 96, 257, 257),
            (600, 2400, 40, 40),
            (9, 17, 512, 700),
        ] {
            let (a, w) = (rng.vec((m - 1) * lda + k, 1.0), rng.vec(n * k, 0.1));
            let mut out = vec![f32::NAN; m * n];
            PackedWeight::pack(&w, n, k).matmul_strided(&a, lda, m, &mut out, Epilogue::default(), true);
            let want: Vec<f64> = (0..m * n)
                .map(|ij| (0..k).map(|p| a[(ij / n) * lda + p] as f64 * w[(ij % n) * k + p] as f64).sum())
                .collect();
            let err = max_rel_err(&out, &want);
            assert!(err < 1e-5, "{m}x{n}x{k}: {err}");
        }
    }
}
