//! A matrix product for weights that never change, `out[m,n] = a[m,k] · w[n,k]ᵀ`, around a
//! SIMD tile kernel (`avx512.rs`: 8 rows × 48 columns; `avx2.rs`: 6 × 16).
//!
//! The weight is packed once into panels of `NR` output columns, `[k][NR]` each, so the kernel
//! reads it with a few vector loads per k step. Each block of `a` is packed into tiles of `MR`
//! rows, `[k][MR]` each, so that the kernel reads both operands from two pointers with constant
//! offsets and broadcasts each `a` value against the weight vectors. Rows and k are blocked
//! (see `panels_pass`). The first tile over a weight block prefetches it, the later ones pull
//! the next block towards L2. Bias, GELU and residual are applied in registers before the
//! store. Threads split the rows when there are many, else the panels, so each writes its own
//! part of the output.

use std::marker::PhantomData;
use std::ops::Range;

use rayon::prelude::*;

/// k per block.
const KC: usize = 768;
/// Rows per block (see `panels_pass`).
const MAX_BLOCK_ROWS: usize = 128;
/// Floats per cache line: what prefetches count in.
pub(crate) const LINE: usize = 16;

/// A tile kernel: `c (+)= a[kc][MR] · b[kc][NR]` for `rows ≤ MR` rows, then on the last k
/// block the epilogue, storing only the first `cols` columns.
pub trait Kernel: Send + Sync + 'static {
    /// Output columns per panel (a multiple of `LINE`) and rows per tile.
    const NR: usize;
    const MR: usize;

    /// Whether the CPU has this kernel's instructions (and `JACOLBERT_KERNELS` allows it).
    fn available() -> bool;

    /// # Safety
    /// `available()`; `a` holds `kc × MR` values, `b` `kc × NR`; `c` (and the epilogue's
    /// residual) `rows` rows of `cols` columns `ldc` apart.
    #[allow(clippy::too_many_arguments)]
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
    );
}

/// A weight `[n, k]` packed into `ceil(n/NR)` panels of `[k][NR]` (zero-padded columns).
pub struct PackedWeight<K: Kernel> {
    pub n: usize,
    pub k: usize,
    pub(crate) panels: Vec<f32>,
    kernel: PhantomData<K>,
}

impl<K: Kernel> PackedWeight<K> {
    /// Packs a row-major `[n, k]` weight.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        let mut packed = PackedWeight { n: 0, k: 0, panels: Vec::new(), kernel: PhantomData };
        packed.repack(w, n, k);
        packed
    }

    /// Packs another `[n, k]` weight into this one's allocation.
    pub fn repack(&mut self, w: &[f32], n: usize, k: usize) {
        assert!(w.len() >= n * k);
        for (p, panel) in self.reset(n, k).enumerate() {
            for j in 0..K::NR.min(n - p * K::NR) {
                for (kk, &v) in w[(p * K::NR + j) * k..(p * K::NR + j + 1) * k].iter().enumerate() {
                    panel[kk * K::NR + j] = v;
                }
            }
        }
    }

    /// Packs another weight into this one's allocation, given transposed: `wt` is `[k, n]`
    /// (so each panel row is a plain copy of part of a `wt` row).
    pub fn repack_transposed(&mut self, wt: &[f32], n: usize, k: usize) {
        assert!(wt.len() >= n * k);
        for (p, panel) in self.reset(n, k).enumerate() {
            let cols = K::NR.min(n - p * K::NR);
            for (kk, row) in panel.chunks_exact_mut(K::NR).enumerate() {
                row[..cols].copy_from_slice(&wt[kk * n + p * K::NR..kk * n + p * K::NR + cols]);
            }
        }
    }

    /// Zeroed panels for an `[n, k]` weight, one `[k][NR]` chunk each.
    fn reset(&mut self, n: usize, k: usize) -> std::slice::ChunksExactMut<'_, f32> {
        (self.n, self.k) = (n, k);
        self.panels.clear();
        self.panels.resize(n.div_ceil(K::NR) * k * K::NR, 0.0);
        // `max(1)`: an empty weight (k = 0) has no panels, and chunks may not be empty.
        self.panels.chunks_exact_mut((k * K::NR).max(1))
    }

    /// `out[m,n] = post(a[m,k] · wᵀ)` on all threads. Only call where `K::available()`.
    pub fn matmul(&self, a: &[f32], m: usize, out: &mut [f32], post: Epilogue) {
        self.matmul_strided(a, self.k, m, out, post, true)
    }

    /// As `matmul`, with rows of `a` `lda` apart, on the calling thread unless `parallel`.
    pub fn matmul_strided(&self, a: &[f32], lda: usize, m: usize, out: &mut [f32], post: Epilogue, parallel: bool) {
        let (n, k) = (self.n, self.k);
        assert!(K::available() && lda >= k && (m == 0 || a.len() >= (m - 1) * lda + k) && out.len() >= m * n);
        assert!(post.bias.is_none_or(|b| b.len() >= n) && post.residual.is_none_or(|r| r.len() >= m * n));
        let panels = n.div_ceil(K::NR);
        let threads = rayon::current_num_threads().max(1);
        // Each thread takes a share of the rows when there are enough of them (each then
        // packs only its own rows), else a share of the panels. Below ~2 MFLOP one thread is
        // faster than a fork-join.
        let shares = if !parallel || m * n * k < (1 << 21) { 1 } else { threads };
        let ranges: Vec<(Range<usize>, Range<usize>)> = if m >= shares * 2 * MAX_BLOCK_ROWS {
            let per = m.div_ceil(shares).next_multiple_of(K::MR);
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

    /// Rows `rows` and panels `panels` of the product on the calling thread, `packed` holding
    /// room for one block of `a`. A block of rows is packed (≤ 128 × 768 values, 384 KiB, it
    /// stays in L2 while all panels pass over it); each panel's k block (≤ 768 × 48, 144 KiB)
    /// stays in L2 while the block's row tiles pass over it, each tile's packed rows in L1.
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
        let (n, k, nr, mr) = (self.n, self.k, K::NR, K::MR);
        let (m, last) = (rows.end, panels.end);
        // Whole tiles per block: a tile never reaches into the next block's rows (another
        // thread's, when threads split the rows).
        let block_rows = MAX_BLOCK_ROWS / mr * mr;
        for i_block in rows.clone().step_by(block_rows) {
            let rows = block_rows.min(m - i_block);
            let tiles = rows.div_ceil(mr);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                pack_a(&a[i_block * lda + k0..], lda, rows, kc, mr, packed);
                for p in panels.clone() {
                    let cols = nr.min(n - p * nr);
                    let b = &self.panels[p * k * nr + k0 * nr..];
                    for t in 0..tiles {
                        let i0 = i_block + t * mr;
                        // The tiles after the first share out the next block's fetch.
                        let lines = kc * nr / LINE;
                        let next_lines =
                            if t == 0 || tiles < 2 || p + 1 >= last { 0 } else { lines.div_ceil(tiles - 1) };
                        let next = self
                            .panels
                            .as_ptr()
                            .wrapping_add((p + 1) * k * nr + k0 * nr + t.saturating_sub(1) * next_lines * LINE);
                        let post = TilePost {
                            first_tile: t == 0,
                            next,
                            next_lines,
                            last: k0 + kc == k,
                            bias: post.bias.map_or(std::ptr::null(), |b| b.as_ptr().wrapping_add(p * nr)),
                            gelu: post.gelu,
                            residual: post
                                .residual
                                .map_or(std::ptr::null(), |r| r.as_ptr().wrapping_add(i0 * n + p * nr)),
                        };
                        // SAFETY: tile t of `packed` holds kc×MR values and the panel block
                        // kc×NR; this thread alone writes columns p·NR..p·NR+cols of rows
                        // i0.. of `out`, all within the bounds asserted in `matmul_strided`.
                        unsafe {
                            let a = packed.as_ptr().add(t * kc * mr);
                            let c = out.0.wrapping_add(i0 * n + p * nr);
                            K::tile((i_block + rows - i0).min(mr), a, b.as_ptr(), kc, c, n, cols, k0 > 0, post);
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's copy of the current block of `a`, tile by tile (see `pack_a`).
    static PACKED_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Copies `rows` rows of `kc` values of `a` (rows `lda` apart) into `packed` as tiles of `mr`
/// rows, each `[kc][mr]` (rows past the end are zero), so that the kernel reads one stream
/// with constant offsets instead of `mr` strided rows.
fn pack_a(a: &[f32], lda: usize, rows: usize, kc: usize, mr: usize, packed: &mut [f32]) {
    for (t, tile) in packed[..rows.div_ceil(mr) * kc * mr].chunks_exact_mut(kc * mr).enumerate() {
        for r in 0..mr {
            let i = t * mr + r;
            if i < rows {
                for (kk, &v) in a[i * lda..i * lda + kc].iter().enumerate() {
                    tile[kk * mr + r] = v;
                }
            } else {
                (0..kc).for_each(|kk| tile[kk * mr + r] = 0.0);
            }
        }
    }
}

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
pub struct TilePost {
    pub first_tile: bool,
    /// For the other tiles: the part of the next weight block this tile pulls into L2, in
    /// cache lines.
    pub next: *const f32,
    pub next_lines: usize,
    pub last: bool,
    pub bias: *const f32,
    pub gelu: bool,
    pub residual: *const f32,
}

/// A tile's share of the next weight block (`TilePost::next`), pulled into L2 a few lines per
/// k step so that the first tile over that block finds it close.
pub struct NextBlock {
    next: *const f32,
    end: *const f32,
    per_step: usize,
}

impl NextBlock {
    pub fn new(post: &TilePost, kc: usize) -> NextBlock {
        NextBlock {
            next: post.next,
            end: post.next.wrapping_add(post.next_lines * LINE),
            per_step: post.next_lines.div_ceil(kc) * LINE,
        }
    }

    /// One k step's lines.
    #[inline(always)]
    pub fn step(&mut self) {
        let stop = self.next.wrapping_add(self.per_step);
        let mut line = self.next;
        while line < self.end && line < stop {
            // SAFETY: a prefetch does not fault, whatever the address.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(line as *const i8) };
            line = line.wrapping_add(LINE);
        }
        self.next = line;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cpu::testing::{max_rel_err, Rng};

    /// These tests need the instructions they test; say so where they are missing.
    pub(crate) fn skipped<K: Kernel>(name: &str) -> bool {
        if !K::available() {
            eprintln!("skipped: this CPU has no {name}");
        }
        !K::available()
    }

    pub(crate) fn transposed_packing_is_the_same_weight<K: Kernel>() {
        let mut rng = Rng::new(37);
        for (n, k) in [(1, 1), (64, 300), (100, 7)] {
            let w = rng.vec(n * k, 1.0);
            let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
            let mut t = PackedWeight::<K>::pack(&[], 0, 0);
            t.repack_transposed(&wt, n, k);
            assert_eq!(t.panels, PackedWeight::<K>::pack(&w, n, k).panels);
        }
    }

    pub(crate) fn packed_matmul_matches_f64<K: Kernel>() {
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
            PackedWeight::<K>::pack(&w, n, k).matmul_strided(&a, lda, m, &mut out, Epilogue::default(), true);
            let want: Vec<f64> = (0..m * n)
                .map(|ij| (0..k).map(|p| a[(ij / n) * lda + p] as f64 * w[(ij % n) * k + p] as f64).sum())
                .collect();
            let err = max_rel_err(&out, &want);
            assert!(err < 1e-5, "{m}x{n}x{k}: {err}");
        }
    }
}
