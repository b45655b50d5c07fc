//! `jacolbert bench-encoder`: forward-pass speed (BERT + projection + normalisation, vectors
//! back on the host) on fixed shapes, the same shapes the peer scripts give PyTorch and ONNX
//! Runtime. CPU shapes (`scripts/bench_encoder.py`): one 32-token query (latency), 32 queries
//! of 32 tokens, 8 documents of 300 tokens (throughput). GPU shapes
//! (`scripts/bench_gpu_encoder.py`, `--shapes gpu`): 256 queries of 32 tokens, 32 documents of
//! 300 tokens.

use std::time::Instant;

use encoder_node::model::{Batch, Encoder};
use serde::Serialize;

use crate::model_args::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The model, e.g. `.deps/bench-model` as scripts/make_bench_model.py writes it.
    #[command(flatten)]
    model: ModelArgs,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Timed runs per shape (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// `cpu` (the CPU peers' shapes) or `gpu` (the GPU peers' shapes).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    shapes: String,
    /// Only the shapes whose names contain this (e.g. `query_b1`).
    #[arg(long)]
    only: Option<String>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Shape {
    name: &'static str,
    batch: usize,
    seq: usize,
    median_ms: f64,
    items_per_s: f64,
    gflops: f64,
}

#[derive(Serialize)]
struct Report {
    device: String,
    /// The CPU kernels' path (`kernels::cpu::dense_path`).
    kernels: &'static str,
    threads: usize,
    /// Measured f32 FMA peak of one core, and of all the threads together.
    peak_gflops_per_core: f64,
    peak_gflops: f64,
    /// Measured peak of AVX512-BF16's dot product on one core (`None` without it): the most a
    /// bf16 path could run at; one that keeps PyLate's 1e-4 needs three bf16 products per f32
    /// product (amx.rs), so it beats f32 only where this is over three times the FMA peak.
    bf16_dot_peak_gflops_per_core: Option<f64>,
    shapes: Vec<Shape>,
    peak_rss_mb: f64,
}

/// Multiply-adds ×2 of one forward pass: the dense layers, attention's two products, the
/// projection.
fn flops(model: &Encoder, batch: usize, seq: usize) -> f64 {
    let c = model.config();
    let (h, f, rows) = (c.hidden_size as f64, c.intermediate_size as f64, (batch * seq) as f64);
    let dense = 2.0 * rows * (4.0 * h * h + 2.0 * h * f);
    let attention = 4.0 * batch as f64 * (seq * seq) as f64 * h;
    (dense + attention) * c.num_hidden_layers as f64 + 2.0 * rows * h * model.dim() as f64
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global()?;
    }
    let model = args.model.load_encoder()?;
    let vocab = model.config().vocab_size as u64;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut shapes = Vec::new();
    // (name, batch, sequence, attended positions): queries attend to 16 (the rest is [MASK]
    // expansion), documents to all.
    let shapes_wanted: &[(&'static str, usize, usize, usize)] = if args.shapes == "gpu" {
        &[("query_b256_l32", 256, 32, 16), ("doc_b32_l300", 32, 300, 300)]
    } else {
        &[("query_b1_l32", 1, 32, 16), ("query_b32_l32", 32, 32, 16), ("doc_b8_l300", 8, 300, 300)]
    };
    for &(name, batch, seq, attended) in
        shapes_wanted.iter().filter(|s| args.only.as_ref().is_none_or(|o| s.0.contains(o.as_str())))
    {
        let ids: Vec<u32> = (0..batch * seq)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (5 + seed % (vocab - 5)) as u32
            })
            .collect();
        let mask: Vec<u8> = (0..batch * seq).map(|i| u8::from(i % seq < attended)).collect();
        let input = Batch { ids: &ids, mask: &mask, batch, seq };
        model.forward(&input)?;
        let mut times: Vec<f64> = (0..args.runs.max(1))
            .map(|_| {
                let start = Instant::now();
                model.forward(&input).map(|_| start.elapsed().as_secs_f64())
            })
            .collect::<Result<_, _>>()?;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        shapes.push(Shape {
            name,
            batch,
            seq,
            median_ms: median * 1e3,
            items_per_s: batch as f64 / median,
            gflops: flops(&model, batch, seq) / median / 1e9,
        });
    }
    let per_core = kernels::cpu::fma_peak_gflops(300);
    let threads = rayon::current_num_threads();
    let report = Report {
        device: format!("{:?}", model.backend()),
        kernels: kernels::cpu::dense_path(),
        threads,
        peak_gflops_per_core: per_core,
        peak_gflops: per_core * threads as f64,
        bf16_dot_peak_gflops_per_core: kernels::cpu::bf16_dot_peak_gflops(300),
        shapes,
        peak_rss_mb: peak_rss_mb(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        // The FMA peak is the CPU's: a share of it means nothing for a GPU run.
        let on_cpu = matches!(model.backend(), kernels::cuda::Backend::Cpu);
        for s in &report.shapes {
            let share = if on_cpu {
                format!(" ({:.0}% of peak)", 100.0 * s.gflops / report.peak_gflops)
            } else {
                String::new()
            };
            println!(
                "{:<14} {:>9.2} ms  {:>8.1} items/s  {:>8.1} GFLOP/s{share}",
                s.name, s.median_ms, s.items_per_s, s.gflops
            );
        }
        println!("device {}, CPU kernels {}", report.device, report.kernels);
        println!(
            "threads {}, FMA peak {:.0} GFLOP/s ({:.0} per core), peak RSS {:.0} MB",
            report.threads, report.peak_gflops, report.peak_gflops_per_core, report.peak_rss_mb
        );
        if let Some(bf16) = report.bf16_dot_peak_gflops_per_core {
            println!("bf16 dot (vdpbf16ps) peak {bf16:.0} GFLOP/s per core");
        }
    }
    Ok(())
}
