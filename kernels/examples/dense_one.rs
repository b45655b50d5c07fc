//! One shape, many runs, for profilers: `dense_one ROWS OUT IN RUNS`.
use kernels::cpu::Dense;
fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().unwrap()).collect();
    let (rows, out, inp, runs) = (a[0], a[1], a[2], a[3]);
    let x = vec![0.5f32; rows * inp];
    let d = Dense::new((0..out * inp).map(|i| (i % 7) as f32 * 0.01).collect(), None, out, inp).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..runs {
        std::hint::black_box(d.forward(&x, rows).unwrap());
    }
    let s = t.elapsed().as_secs_f64() / runs as f64;
    println!("{:.1} GFLOP/s", 2.0 * (rows * out * inp) as f64 / s / 1e9);
}
