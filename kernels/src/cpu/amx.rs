//! An AMX matrix product for weights that never change, `out[m,n] = a[m,k] · w[n,k]ᵀ`, at fp32
//! accuracy from bf16 tiles.
//!
//! Each fp32 value is split into two bf16 values, `x ≈ hi + lo` (lo = bf16(x − hi)), which keep
//! 16 of its 24 mantissa bits, and `a·w ≈ hi_a·hi_w + hi_a·lo_w + lo_a·hi_w` with fp32
//! accumulation (the lo·lo term is below fp32's rounding). The three products are laid end to
//! end along k, so the kernel is a plain bf16 product over `k' = 3k`: `[hi_a | hi_a | lo_a]`
//! against `[hi_w | lo_w | hi_w]`. Its error is that of an fp32 product summed in a different
//! order (measured ~7e-7 of Σ|a·w|), at about twice the speed of the AVX-512 kernel on the
//! same core.
//!
//! Tiles: C is a 32×32 block in four tile registers, kept for the whole of k'; two A tiles
//! (16 rows × 32 k') and two weight tiles (16 k' pairs × 16 columns, the VNNI layout) per k'
//! step. A block of 128 rows of `a` is split and packed once, then every column pair passes
//! over it, so each weight panel is read from memory once per 128 rows and reused from L2.

use std::arch::asm;
use std::arch::x86_64::*;
use std::ops::Range;

use rayon::prelude::*;

use super::avx512::Epilogue;

/// bf16 values per tile row (64 bytes), rows per tile, values per tile.
const TK: usize = 32;
const TR: usize = 16;
const TILE: usize = TR * TK;
/// Rows of `a` packed at once: up to four 32-row C blocks, fewer when k is long, so that the
/// packed block (rows × 3k bf16) stays within about half of L2 while the columns pass over it.
const ROW_BLOCK: usize = 128;
const PACKED_BUDGET: usize = 512 * 1024;
/// Which split of `a` and of the weight each third of k' multiplies (the weight's are read
/// from its stored [hi | lo] tiles, the third product's hi again).
const PRODUCTS: [(usize, usize); 3] = [(0, 0), (0, 1), (1, 0)];

/// Whether AMX runs here: the CPU has AMX-BF16 and AVX-512 BF16, Linux grants this process the
/// tile state, and `JACOLBERT_KERNELS` is none of `portable`, `avx512` and `avx2` (which rule it out).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let wanted =
            std::env::var("JACOLBERT_KERNELS").map_or(true, |v| !matches!(v.as_str(), "portable" | "avx512" | "avx2"));
        let amx = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16") && {
            let leaf = __cpuid_count(7, 0);
            leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0
        };
        // ARCH_REQ_XCOMP_PERM for XTILEDATA (feature 18): Linux refuses tiles until asked.
        // SAFETY: a plain syscall with integer arguments.
        wanted && amx && unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1023, 18) } == 0
    })
}

/// Rounds to the nearest bf16 (ties to even), as `vcvtneps2bf16` does.
fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn split(x: f32) -> [u16; 2] {
    let hi = bf16(x);
    [hi, bf16(x - f32::from_bits((hi as u32) << 16))]
}

/// A weight `[n, k]` as VNNI tiles `[n/16][2·k/32]`: its hi parts, then its lo parts (n and k
/// zero-padded to 32). The third product reads the hi tiles again, so the weight takes the
/// same memory as in f32.
pub struct AmxWeight {
    pub n: usize,
    pub k: usize,
    /// k padded to a multiple of 32, the tiles along k' = 3·kp, and the stored ones (2·kp).
    kp: usize,
    kt: usize,
    stored: usize,
    tiles: Vec<u16>,
}

impl AmxWeight {
    pub fn pack(w: &[f32], n: usize, k: usize) -> AmxWeight {
        let kp = k.next_multiple_of(TK);
        let (kt, stored) = (3 * kp / TK, 2 * kp / TK);
        let mut tiles = vec![0u16; n.next_multiple_of(2 * TR) / TR * stored * TILE];
        for j in 0..n {
            for (kk, &x) in w[j * k..(j + 1) * k].iter().enumerate() {
                for (part, value) in split(x).into_iter().enumerate() {
                    let kq = part * kp + kk;
                    let at = ((j / TR) * stored + kq / TK) * TILE + (kq % TK / 2) * TK + (j % TR) * 2 + kq % 2;
                    tiles[at] = value;
                }
            }
        }
        AmxWeight { n, k, kp, kt, stored, tiles }
    }

    /// `out[m,n] = post(a[m,k] · wᵀ)` on all threads. Only call where `available()`.
    pub fn matmul(&self, a: &[f32], m: usize, out: &mut [f32], post: Epilogue) {
        let (n, k) = (self.n, self.k);
        assert!(available() && a.len() >= m * k && out.len() >= m * n);
        assert!(post.bias.is_none_or(|b| b.len() >= n) && post.residual.is_none_or(|r| r.len() >= m * n));
        let pairs = n.div_ceil(2 * TR);
        let threads = rayon::current_num_threads().max(1);
        // Rows when there are enough for every thread to pack its own, else column pairs.
        let work: Vec<(Range<usize>, Range<usize>)> = if m >= threads * ROW_BLOCK {
            let per = m.div_ceil(threads).next_multiple_of(2 * TR);
            (0..m).step_by(per).map(|i| (i..(i + per).min(m), 0..pairs)).collect()
        } else {
            let per = pairs.div_ceil(threads);
            (0..pairs).step_by(per).map(|p| (0..m, p..(p + per).min(pairs))).collect()
        };
        let out_ptr = OutPtr(out.as_mut_ptr());
        work.par_iter().for_each(|(rows, cols)| {
            PACKED.with_borrow_mut(|packed| self.pass(a, rows.clone(), cols.clone(), packed, &out_ptr, post))
        });
    }

    /// Rows `rows` and column pairs `cols` of the product, on this thread.
    fn pass(
        &self,
        a: &[f32],
        rows: Range<usize>,
        cols: Range<usize>,
        packed: &mut Vec<u16>,
        out: &OutPtr,
        post: Epilogue,
    ) {
        let (n, kt, stored) = (self.n, self.kt, self.stored);
        let mut spill = [0.0f32; 4 * TR * TR];
        // SAFETY: the tile configuration below is what every tile instruction here assumes;
        // the tile state is released before returning.
        unsafe { configure() };
        let row_block = (PACKED_BUDGET / (kt * TK * 2) / (2 * TR) * (2 * TR)).clamp(2 * TR, ROW_BLOCK);
        for r0 in rows.clone().step_by(row_block) {
            let block_rows = row_block.min(rows.end - r0);
            self.pack_a(&a[r0 * self.k..], block_rows, packed);
            for pair in cols.clone() {
                for b in 0..block_rows.div_ceil(2 * TR) {
                    let i0 = r0 + b * 2 * TR;
                    let (h, w) = ((rows.end - i0).min(2 * TR), (n - pair * 2 * TR).min(2 * TR));
                    // SAFETY: `packed` holds the block's row tiles (zero-padded to 32 rows) and
                    // `tiles` the pair's column tiles, each kt tiles long; `spill` is 32×32.
                    unsafe {
                        let at = packed.as_ptr().add(b * 2 * kt * TILE);
                        let bt = self.tiles.as_ptr().add(pair * 2 * stored * TILE);
                        block(at, bt, kt, stored, spill.as_mut_ptr());
                    }
                    // Epilogue on the whole block (one call of the vectorised GELU, not one
                    // per row), then the store of its valid h×w corner: this thread's rows and
                    // columns only.
                    let j0 = pair * 2 * TR;
                    if let Some(bias) = post.bias {
                        for row in spill.chunks_exact_mut(2 * TR) {
                            row[..w].iter_mut().zip(&bias[j0..j0 + w]).for_each(|(d, b)| *d += b);
                        }
                    }
                    if post.gelu {
                        super::gelu_erf(&mut spill[..h * 2 * TR]);
                    }
                    for r in 0..h {
                        let i = i0 + r;
                        // SAFETY: row i, columns j0..j0+w lie in `out`, written by this thread only.
                        let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add(i * n + j0), w) };
                        let src = &spill[r * 2 * TR..r * 2 * TR + w];
                        match <&mut [f32; 2 * TR]>::try_from(&mut *dst) {
                            // The usual full row: a fixed length keeps the copy inline.
                            Ok(full) => *full = src.try_into().unwrap(),
                            Err(_) => dst.copy_from_slice(src),
                        }
                        if let Some(res) = post.residual {
                            dst.iter_mut().zip(&res[i * n + j0..i * n + j0 + w]).for_each(|(d, r)| *d += r);
                        }
                    }
                }
            }
        }
        // SAFETY: releases the tile state configured above.
        unsafe { asm!("tilerelease") };
    }

    /// Splits rows `a[..rows]` into `[rows/16][k'/32]` tiles of `[hi | hi | lo]`, zero-padding
    /// rows to a multiple of 32 and k to `kp`.
    fn pack_a(&self, a: &[f32], rows: usize, packed: &mut Vec<u16>) {
        let (k, kp, kt) = (self.k, self.kp, self.kt);
        let padded = rows.next_multiple_of(2 * TR);
        packed.clear();
        packed.resize(padded / TR * kt * TILE, 0);
        for i in 0..rows {
            let tile_row = &mut packed[(i / TR) * kt * TILE..][..kt * TILE];
            let row = &a[i * k..(i + 1) * k];
            let at = |p: usize, kk: usize| {
                let kq = p * kp + kk;
                (kq / TK) * TILE + (i % TR) * TK + kq % TK
            };
            let whole = k / 16 * 16;
            for kk in (0..whole).step_by(16) {
                // SAFETY: AVX-512 BF16 is present wherever `available()` let us get here.
                let parts = unsafe { split16(&row[kk..kk + 16]) };
                for (p, &(part, _)) in PRODUCTS.iter().enumerate() {
                    // Sixteen values never cross a tile row (kk is a multiple of 16, rows are
                    // 32 long); a fixed length keeps the copy inline.
                    let dst: &mut [u16; 16] = (&mut tile_row[at(p, kk)..at(p, kk) + 16]).try_into().unwrap();
                    *dst = parts[part];
                }
            }
            for (kk, &x) in row.iter().enumerate().skip(whole) {
                let parts = split(x);
                for (p, &(part, _)) in PRODUCTS.iter().enumerate() {
                    tile_row[at(p, kk)] = parts[part];
                }
            }
        }
    }
}

/// `split` on 16 values at once.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn split16(x: &[f32]) -> [[u16; 16]; 2] {
    let v = _mm512_loadu_ps(x.as_ptr());
    let hi = _mm512_cvtneps_pbh(v);
    let back = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(std::mem::transmute::<
        __m256bh,
        __m256i,
    >(hi))));
    let lo = _mm512_cvtneps_pbh(_mm512_sub_ps(v, back));
    [std::mem::transmute::<__m256bh, [u16; 16]>(hi), std::mem::transmute::<__m256bh, [u16; 16]>(lo)]
}

thread_local! {
    /// Each thread's packed block of `a`.
    static PACKED: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct OutPtr(*mut f32);
// SAFETY: threads write disjoint rows or columns through it (see `matmul`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// Palette 1, eight tiles of 16 rows × 64 bytes.
unsafe fn configure() {
    let mut cfg = TileConfig([0; 64]);
    cfg.0[0] = 1;
    for t in 0..8 {
        cfg.0[16 + 2 * t] = 64;
        cfg.0[48 + t] = TR as u8;
    }
    asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack));
}

/// One 32×32 block of C over all `kt` tiles of k': A tiles at `a` (`[2][kt]`), weight tiles at
/// `b` (`[2][stored]`, k' tile t read at t, or at t − stored past the stored ones), result
/// into `c` (32 rows of 32 floats).
#[inline(always)]
unsafe fn block(a: *const u16, b: *const u16, kt: usize, stored: usize, c: *mut f32) {
    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack));
    let stride = 64usize;
    for t in 0..kt {
        let tb = if t < stored { t } else { t - stored };
        asm!(
            "tileloadd tmm4, [{a0} + {s}*1]",
            "tileloadd tmm6, [{b0} + {s}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{b1} + {s}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a1} + {s}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a.add(t * TILE),
            a1 = in(reg) a.add((kt + t) * TILE),
            b0 = in(reg) b.add(tb * TILE),
            b1 = in(reg) b.add((stored + tb) * TILE),
            s = in(reg) stride,
            options(nostack),
        );
    }
    let cs = 2 * TR * 4;
    asm!(
        "tilestored [{c0} + {s}*1], tmm0",
        "tilestored [{c1} + {s}*1], tmm1",
        "tilestored [{c2} + {s}*1], tmm2",
        "tilestored [{c3} + {s}*1], tmm3",
        c0 = in(reg) c,
        c1 = in(reg) c.add(TR),
        c2 = in(reg) c.add(TR * 2 * TR),
        c3 = in(reg) c.add(TR * 2 * TR + TR),
        s = in(reg) cs,
        options(nostack),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::{max_rel_err, Rng};

    #[test]
    fn amx_matmul_matches_f64() {
        if !available() {
            eprintln!("skipped: no AMX here");
            return;
        }
        let mut rng = Rng::new(61);
        for (m, n, k) in [(1, 1, 1), (7, 33, 5), (32, 768, 768), (13, 128, 3072), (300, 96, 257), (600, 200, 40)] {
            let (a, w) = (rng.vec(m * k, 1.0), rng.vec(n * k, 0.1));
            let (bias, residual) = (rng.vec(n, 0.1), rng.vec(m * n, 1.0));
            let mut out = vec![f32::NAN; m * n];
            let post = Epilogue { bias: Some(&bias), gelu: false, residual: Some(&residual) };
            AmxWeight::pack(&w, n, k).matmul(&a, m, &mut out, post);
            let want: Vec<f64> = (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    (0..k).map(|p| a[i * k + p] as f64 * w[j * k + p] as f64).sum::<f64>()
                        + bias[j] as f64
                        + residual[ij] as f64
                })
                .collect();
            // About ten times fp32's rounding (bf16 splits keep 16 mantissa bits, products of
            // the low parts are dropped); the AVX-512 kernel stays under 1e-5 on these shapes.
            let err = max_rel_err(&out, &want);
            assert!(err < 1e-4, "{m}x{n}x{k}: {err}");
        }
    }
}
