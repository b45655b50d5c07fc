//! GFLOP/s of `dot_f16_rows` (a shard's centroid scoring: 512 f16 centroids of dim 128 by 32
//! query vectors) against converting the block and a `Dense` product:
//! `cargo run --release -p kernels --example f16_rows_speed`.

use std::time::Instant;

use half::f16;
use half::slice::HalfFloatSliceExt;
use kernels::cpu::{dot_f16_rows, Dense};

fn main() {
    let (rows, nq, dim) = (512, 32, 128);
    let x: Vec<f16> = (0..rows * dim).map(|i| f16::from_f32((i % 13) as f32 * 0.01)).collect();
    let q: Vec<f32> = (0..nq * dim).map(|i| (i % 7) as f32 * 0.01).collect();
    let mut out = vec![0.0f32; rows * nq];
    let flops = 2.0 * (rows * nq * dim) as f64;
    let runs = 2000;
    let start = Instant::now();
    for _ in 0..runs {
        dot_f16_rows(&x, &q, dim, &mut out).unwrap();
        std::hint::black_box(&out);
    }
    let s = start.elapsed().as_secs_f64() / runs as f64;
    println!("dot_f16_rows      {:>8.1} µs {:>7.1} GFLOP/s", s * 1e6, flops / s / 1e9);
    let dense = Dense::new(q.clone(), None, nq, dim).unwrap();
    let mut block = vec![0.0f32; rows * dim];
    let start = Instant::now();
    for _ in 0..runs {
        x.convert_to_f32_slice(&mut block);
        dense.forward_into(&block, rows, &mut out).unwrap();
        std::hint::black_box(&out);
    }
    let s = start.elapsed().as_secs_f64() / runs as f64;
    println!("convert + Dense   {:>8.1} µs {:>7.1} GFLOP/s", s * 1e6, flops / s / 1e9);
}
