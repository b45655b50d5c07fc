//! MaxSim on the GPU against the card's memory bandwidth (issue 7's benchmark):
//! `cargo run --release -p kernels --example bench_gpu_maxsim -- [DOCS [TOKENS [RUNS]]]`.
//! Random f16 documents stay on the device; each call reads all their vectors once, so bytes
//! read / time is the bandwidth the kernel reaches. The first 100 scores are checked against
//! the CPU. An example, not part of the binary, so that it is small enough to carry to a GPU
//! machine (scripts/gpu_check.sh).

use std::time::Instant;

use half::f16;
use kernels::cuda::Device;

struct Args {
    docs: usize,
    tokens: usize,
    dim: usize,
    query_tokens: usize,
    runs: usize,
}

/// Deterministic values in [-1, 1) (a 64-bit LCG; no dependency needed for test data).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let given: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let arg = |i: usize, default: usize| given.get(i).copied().unwrap_or(default);
    let args = Args { docs: arg(0, 10_000), tokens: arg(1, 300), dim: 128, query_tokens: 32, runs: arg(2, 10) };
    let device = Device::open(0)?;
    let (dim, per_doc) = (args.dim, args.tokens * args.dim);
    let query = values(args.query_tokens * dim, 1);
    let docs = values(args.docs * per_doc, 2);
    let half = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let offsets: Vec<u32> = (0..=args.docs).map(|d| (d * args.tokens) as u32).collect();
    let on_device = device.upload_docs(&half(&docs), &offsets, dim)?;
    let query_half = half(&query);
    let scores = device.maxsim_on(&query_half, &on_device)?;
    let mut worst = 0.0f64;
    for (d, &got) in scores.iter().enumerate().take(100) {
        let doc: Vec<f32> = docs[d * per_doc..(d + 1) * per_doc].iter().map(|&x| f16::from_f32(x).to_f32()).collect();
        let q: Vec<f32> = query_half.iter().map(|x| x.to_f32()).collect();
        let want = kernels::cpu::maxsim(&q, &doc, dim)? as f64;
        worst = worst.max((got as f64 - want).abs() / want.abs().max(1.0));
    }
    if worst > 1e-3 {
        return Err(format!("GPU MaxSim is off the CPU's by {worst:e} (relative)").into());
    }
    let mut times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs.max(1) {
        let start = Instant::now();
        device.maxsim_on(&query_half, &on_device)?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let bytes = (on_device.tokens * dim * 2) as f64;
    let peak = device.peak_bandwidth()?;
    println!(
        "{{\"device\": {:?}, \"docs\": {}, \"tokens_per_doc\": {}, \"median_s\": {median}, \"bandwidth_gb_s\": {}, \"peak_gb_s\": {}, \"of_peak\": {}, \"max_rel_err_vs_cpu\": {worst}}}",
        device.description,
        args.docs,
        args.tokens,
        bytes / median / 1e9,
        peak / 1e9,
        bytes / median / peak
    );
    Ok(())
}
