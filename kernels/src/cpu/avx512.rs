//! An AVX-512 matrix product for weights that never change: `out[m,n] = a[m,k] · w[n,k]ᵀ`.
//!
//! The weight is packed once into panels of 48 output columns, `[k][48]` each, so the kernel
//! reads it with three vector loads per k step. Each block of `a` is packed into tiles of eight
//! rows, `[k][8]` each, so that the kernel reads both operands from two pointers with constant
//! offsets; each `a` value is broadcast against the three weight vectors: 24 accumulators per
//! 8×48 tile, enough to hide the FMA latency. Rows and k are blocked (see `panels_pass`). The
//! first tile over a weight block prefetches it, the later ones pull the next block towards
//! L2. Bias, GELU and residual are applied in registers before the store. Threads split the
//! rows when there are many, else the panels, so each writes its own part of the output.

use std::arch::x86_64::*;

use std::ops::Range;

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
const KC: usize = 768;
/// k steps per turn of the kernel's loop.
const UNROLL: usize = 4;
/// Rows per block (see `panels_pass`).
const MAX_BLOCK_ROWS: usize = 128;

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
        let mut packed = PackedWeight { n: 0, k: 0, panels: Vec::new() };
        packed.repack(w, n, k);
        packed
    }

    /// Packs another `[n, k]` weight into this one's allocation.
    pub fn repack(&mut self, w: &[f32], n: usize, k: usize) {
        assert!(w.len() >= n * k);
        for (p, panel) in self.reset(n, k).enumerate() {
            for j in 0..NR.min(n - p * NR) {
                for (kk, &v) in w[(p * NR + j) * k..(p * NR + j + 1) * k].iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
    }

    /// Packs another weight into this one's allocation, given transposed: `wt` is `[k, n]`
    /// (so each panel row is a plain copy of part of a `wt` row).
    pub fn repack_transposed(&mut self, wt: &[f32], n: usize, k: usize) {
        assert!(wt.len() >= n * k);
        for (p, panel) in self.reset(n, k).enumerate() {
            let cols = NR.min(n - p * NR);
            for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                row[..cols].copy_from_slice(&wt[kk * n + p * NR..kk * n + p * NR + cols]);
            }
        }
    }

    /// Zeroed panels for an `[n, k]` weight, one `[k][NR]` chunk each.
    fn reset(&mut self, n: usize, k: usize) -> std::slice::ChunksExactMut<'_, f32> {
        (self.n, self.k) = (n, k);
        self.panels.clear();
        self.panels.resize(n.div_ceil(NR) * k * NR, 0.0);
        // `max(1)`: an empty weight (k = 0) has no panels, and chunks may not be empty.
        self.panels.chunks_exact_mut((k * NR).max(1))
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
        // Each thread takes a share of the rows when there are enough of them (each then
        // packs only its own rows), else a share of the panels. Below ~2 MFLOP one thread is
        // faster than a fork-join.
        let shares = if !parallel || m * n * k < (1 << 21) { 1 } else { threads };
        let ranges: Vec<(Range<usize>, Range<usize>)> = if m >= shares * 2 * MAX_BLOCK_ROWS {
            let per = m.div_ceil(shares).next_multiple_of(MR);
            (0..m).step_by(per).map(|i| (i..(i + per).min(m), 0..panels)).collect()
        } else {
            let per = panels.div_ceil(shares);
            (0..panels).step_by(per).map(|p| (0..m, p..(p + per).min(panels))).collect()
        };
        let out_ptr = SendPtr(out.as_mut_ptr());
        let work = |(rows, panels): &(Range<usize>, Range<usize>)| {
            PACKED_A.with_borrow_mut(|packed| {
                packed.resize(MAX_BLOCK_ROWS * KC, 0.0);
                self.panels_pass(a, lda, rows.clone(), panels.clone(), packed, &out_ptr, post)
            })
        };
        if ranges.len() > 1 {
            ranges.par_iter().for_each(work);
        } else {
            ranges.iter().for_each(work);
        }
    }
}

thread_local! {
    /// Each thread's copy of the current block of `a`, tile by tile (see `pack_a`).
    static PACKED_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl PackedWeight {
    /// Rows `rows` and panels `panels` of the product on the calling thread, `packed` holding room for
    /// one block of `a`. A block of rows is packed (≤ 128 × 768 values, 384 KiB, it stays in
    /// L2 while all panels pass over it); each panel's k block (≤ 768 × 48, 144 KiB) stays in
    /// L2 while the block's row tiles pass over it, each tile's packed rows (24 KiB) in L1.
    /// k blocks are long so that a tile's output is loaded and stored rarely: that traffic,
    /// not the weight's, was what held the kernel back with short ones.
    #[allow(clippy::too_many_arguments)]
    fn panels_pass(
        &self,
        a: &[f32],
        lda: usize,
        rows: Range<usize>,
        panels: Range<usize>,
        packed: &mut [f32],
        out: &SendPtr,
        post: Epilogue,
    ) {
        let (n, k) = (self.n, self.k);
        let (m, last) = (rows.end, panels.end);
        for i_block in rows.clone().step_by(MAX_BLOCK_ROWS) {
            let rows = MAX_BLOCK_ROWS.min(m - i_block);
            let tiles = rows.div_ceil(MR);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                pack_a(&a[i_block * lda + k0..], lda, rows, kc, packed);
                for p in panels.clone() {
                    let cols = NR.min(n - p * NR);
                    let b = &self.panels[p * k * NR + k0 * NR..];
                    for t in 0..tiles {
                        let i0 = i_block + t * MR;
                        // The tiles after the first share out the next block's fetch.
                        let next_lines =
                            if t == 0 || tiles < 2 || p + 1 >= last { 0 } else { (kc * NV).div_ceil(tiles - 1) };
                        let next = self
                            .panels
                            .as_ptr()
                            .wrapping_add((p + 1) * k * NR + k0 * NR + t.saturating_sub(1) * next_lines * 16);
                        let post = TilePost {
                            first_tile: t == 0,
                            next,
                            next_lines,
                            last: k0 + kc == k,
                            bias: post.bias.map_or(std::ptr::null(), |b| b.as_ptr().wrapping_add(p * NR)),
                            gelu: post.gelu,
                            residual: post
                                .residual
                                .map_or(std::ptr::null(), |r| r.as_ptr().wrapping_add(i0 * n + p * NR)),
                        };
                        // SAFETY: tile t of `packed` holds kc×MR values and the panel block
                        // kc×NR; this thread alone writes columns p·NR..p·NR+cols of rows
                        // i0.. of `out`, all within the bounds asserted in `matmul_strided`.
                        unsafe {
                            let a = packed.as_ptr().add(t * kc * MR);
                            let c = out.0.wrapping_add(i0 * n + p * NR);
                            dispatch_tile!((m - i0).min(MR), a, b.as_ptr(), kc, c, n, cols, k0 > 0, post);
                        }
                    }
                }
            }
        }
    }
}

/// Copies `rows` rows of `kc` values of `a` (rows `lda` apart) into `packed` as tiles of MR
/// rows, each `[kc][MR]` (rows past the end are zero), so that the kernel reads one stream
/// with constant offsets instead of eight strided rows.
fn pack_a(a: &[f32], lda: usize, rows: usize, kc: usize, packed: &mut [f32]) {
    for (t, tile) in packed[..rows.div_ceil(MR) * kc * MR].chunks_exact_mut(kc * MR).enumerate() {
        for r in 0..MR {
            let i = t * MR + r;
            if i < rows {
                for (kk, &v) in a[i * lda..i * lda + kc].iter().enumerate() {
                    tile[kk * MR + r] = v;
                }
            } else {
                (0..kc).for_each(|kk| tile[kk * MR + r] = 0.0);
            }
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
// SAFETY: threads write disjoint row or column ranges through it (see `matmul`).
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
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add((kk + PREFETCH_STEPS) * NR + v * 16) as *const i8);
        });
    } else if post.next_lines > 0 {
        // Spread this tile's share of the next block over its k steps, into L2: the first
        // tile over that block then finds it close.
        let per_step = post.next_lines.div_ceil(kc) * 16;
        let mut next = post.next;
        let end = post.next.wrapping_add(post.next_lines * 16);
        k_loop!(|bp, kk| {
            let mut line = next;
            while line < end && line < next.wrapping_add(per_step) {
                _mm_prefetch::<_MM_HINT_T1>(line as *const i8);
                line = line.wrapping_add(16);
            }
            next = line;
        });
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
    fn transposed_packing_is_the_same_weight() {
        if skipped() {
            return;
        }
        let mut rng = Rng::new(37);
        for (n, k) in [(1, 1), (64, 300), (100, 7)] {
            let w = rng.vec(n * k, 1.0);
            let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
            let mut t = PackedWeight::pack(&[], 0, 0);
            t.repack_transposed(&wt, n, k);
            assert_eq!(t.panels, PackedWeight::pack(&w, n, k).panels);
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
