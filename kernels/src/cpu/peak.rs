//! The machine's f32 FMA peak on one core, measured: the yardstick benchmarks report against;
//! and, where the CPU has AVX512-BF16, the peak of its bf16 dot product (`vdpbf16ps`), which
//! says what a bf16 path could gain over f32 on CPUs without AMX.

use std::time::Instant;

/// GFLOP/s of one core issuing independent fused multiply-adds (AVX-512 or AVX2+FMA where the
/// CPU has them, else plain mul-add) for about `millis` milliseconds.
pub fn fma_peak_gflops(millis: u64) -> f64 {
    rate(millis, burst)
}

/// GFLOP/s of one core issuing independent `vdpbf16ps` (each a multiply and an add of 32 bf16
/// pairs into 16 f32 sums: 64 flops) for about `millis` milliseconds; `None` where the CPU
/// lacks AVX512-BF16.
pub fn bf16_dot_peak_gflops(millis: u64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the CPU has AVX-512F and AVX512-BF16.
        return Some(rate(millis, |iters| (iters as f64 * 12.0 * 64.0, unsafe { burst_bf16(iters) })));
    }
    let _ = millis;
    None
}

/// Flops per second of `burst` run in rounds of 2^20 iterations for about `millis` ms.
fn rate(millis: u64, burst: impl Fn(usize) -> (f64, f32)) -> f64 {
    let start = Instant::now();
    let mut flops = 0.0;
    let mut sink = 0.0f32;
    while start.elapsed().as_millis() < millis as u128 {
        let (f, s) = burst(1 << 20);
        flops += f;
        sink += s;
    }
    std::hint::black_box(sink);
    flops / start.elapsed().as_secs_f64() / 1e9
}

/// `iters` rounds of FMAs on 12 independent vector accumulators (enough to cover the FMA
/// latency on two ports, few enough to stay in registers); returns (flops, a checksum).
fn burst(iters: usize) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return (iters as f64 * 12.0 * 16.0 * 2.0, unsafe { burst_avx512(iters) });
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA.
            return (iters as f64 * 12.0 * 8.0 * 2.0, unsafe { burst_avx2(iters) });
        }
    }
    let mut acc = [1.0f32; 16];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = *a * 0.999_999 + 1e-7;
        }
    }
    (iters as f64 * 16.0 * 2.0, acc.iter().sum())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn burst_avx512(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn burst_bf16(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    // Opaque inputs: products of known constants could be folded away.
    let x = _mm512_set1_ps(std::hint::black_box(1e-3));
    let (a, b) = (_mm512_cvtne2ps_pbh(x, x), _mm512_cvtne2ps_pbh(x, x));
    let mut acc = [_mm512_set1_ps(std::hint::black_box(1.0)); 12];
    for _ in 0..iters {
        for s in acc.iter_mut() {
            *s = _mm512_dpbf16_ps(*s, a, b);
        }
    }
    acc.iter().map(|&s| _mm512_reduce_add_ps(s)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn burst_avx2(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut out = [0.0f32; 8];
    let sum = acc.iter().fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
    _mm256_storeu_ps(out.as_mut_ptr(), sum);
    out.iter().sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_is_a_plausible_positive_rate() {
        let peak = super::fma_peak_gflops(20);
        assert!(peak > 0.5 && peak < 10_000.0, "{peak}");
        if let Some(bf16) = super::bf16_dot_peak_gflops(20) {
            assert!(bf16 > 0.5 && bf16 < 20_000.0, "{bf16}");
        }
    }
}
