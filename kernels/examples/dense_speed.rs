//! GFLOP/s of `Dense::forward` (fast form) and of the portable form on encoder shapes:
//! `cargo run --release -p kernels --example dense_speed`.

use std::time::Instant;

use kernels::cpu::Dense;

fn main() {
    for (rows, out, inp) in
        [(32, 768, 768), (32, 3072, 768), (32, 768, 3072), (1024, 768, 768), (1024, 3072, 768), (2400, 768, 3072)]
    {
        let x = vec![0.5f32; rows * inp];
        let w: Vec<f32> = (0..out * inp).map(|i| (i % 7) as f32 * 0.01).collect();
        for (name, dense) in [
            ("fast", Dense::new(w.clone(), None, out, inp).unwrap()),
            ("portable", Dense::plain(w.clone(), None, out, inp).unwrap()),
        ] {
            dense.forward(&x, rows).unwrap();
            let runs = (2e10 / (2.0 * (rows * out * inp) as f64)).clamp(3.0, 2000.0) as usize;
            let start = Instant::now();
            for _ in 0..runs {
                std::hint::black_box(dense.forward(&x, rows).unwrap());
            }
            let s = start.elapsed().as_secs_f64() / runs as f64;
            println!(
                "{rows:>5}x{out:>5}x{inp:>5} {name:<9} {:>8.3} ms {:>7.1} GFLOP/s",
                s * 1e3,
                2.0 * (rows * out * inp) as f64 / s / 1e9
            );
        }
    }
}
