//! Every kernel compiled for every architecture (needs only libnvrtc), and the kernels outside
//! the forward pass (MaxSim, residual decode) against their CPU twins on fresh random inputs
//! (needs a GPU; skipped with the reason printed where there is none); the forward pass's
//! kernels are tested through `Ops` in `ops/tests.rs`. Tolerances: f32 ops 1e-5 relative to
//! max(1, |expected|); f16-input MaxSim 1e-2.

use half::f16;

use super::*;
use crate::cpu;
use crate::cpu::testing::Rng;

#[test]
fn every_kernel_compiles_for_sm80_and_sm90() {
    if !nvrtc_available() {
        // CI installs NVRTC and sets this: there, a missing library is a failure.
        assert!(std::env::var_os("JACOLBERT_REQUIRE_NVRTC").is_none(), "libnvrtc is required here and missing");
        println!("skipped: libnvrtc.so.12 is not on the library path");
        return;
    }
    for (name, source, kernels) in SOURCES {
        for arch in ARCHES {
            let ptx = compile(name, source, arch).unwrap_or_else(|e| panic!("{e}")).to_src();
            let target = format!(".target sm_{}", &arch["compute_".len()..]);
            assert!(ptx.contains(&target), "{name} for {arch}: no {target}");
            for kernel in kernels {
                assert!(ptx.contains(&format!(".entry {kernel}(")), "{name} for {arch}: no kernel {kernel}");
            }
        }
    }
}

#[test]
fn a_kernel_that_does_not_compile_is_an_error_with_the_log() {
    if !nvrtc_available() {
        println!("skipped: libnvrtc.so.12 is not on the library path");
        return;
    }
    let err = compile("broken", "extern \"C\" __global__ void k(float* x) { x[0] = y; }", ARCHES[0]).unwrap_err();
    assert!(err.to_string().contains("identifier \"y\" is undefined"), "{err}");
}

#[test]
fn auto_falls_back_to_the_cpu_and_says_why() {
    let (backend, said) = select("auto").unwrap();
    match backend {
        Backend::Cpu => assert!(said.starts_with("cpu, as CUDA is unusable here: "), "{said}"),
        Backend::Cuda(_) => assert!(said.starts_with("cuda:0, "), "{said}"),
    }
    assert!(matches!(select("cpu").unwrap().0, Backend::Cpu));
    assert!(select("gpu").is_err());
    assert!(select("cuda:x").is_err());
}

/// GPU 0, or None (printing why) where there is none.
fn gpu() -> Option<Device> {
    match Device::open(0) {
        Ok(device) => Some(device),
        Err(e) => {
            println!("skipped: {e}");
            None
        }
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let want: Vec<f64> = want.iter().map(|&w| w as f64).collect();
    let err = crate::cpu::testing::max_rel_err(got, &want);
    assert!(err <= tolerance, "{what}: max relative error {err:e} > {tolerance:e}");
}

const F32: f64 = 1e-5;

#[test]
fn maxsim_matches_the_cpu_on_f16_vectors() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(13);
    let dim = 128;
    let query = rng.vec(32 * dim, 1.0);
    // Documents of 0 to 300 tokens.
    let lengths = [5usize, 0, 300, 1, 77, 33];
    let docs: Vec<Vec<f32>> = lengths.iter().map(|&n| rng.vec(n * dim, 1.0)).collect();
    let mut offsets = vec![0u32];
    for n in lengths {
        offsets.push(offsets.last().unwrap() + n as u32);
    }
    let to_f16 = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let all: Vec<f32> = docs.concat();
    let got = gpu.maxsim(&to_f16(&query), &to_f16(&all), &offsets, dim).unwrap();
    let want: Vec<f32> = docs.iter().map(|d| cpu::maxsim(&query, d, dim).unwrap()).collect();
    let relative: Vec<f64> = want.iter().map(|&w| w as f64).collect();
    let err = got.iter().zip(&relative).map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1.0)).fold(0.0, f64::max);
    assert!(err <= 1e-2, "maxsim: relative error {err:e}");
    assert_eq!(got[1], 0.0, "a document with no tokens scores 0");
}

#[test]
fn residual_decode_matches_the_codec_layout() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(17);
    for nbits in [1usize, 2, 4] {
        let (dim, k, tokens) = (128, 10, 50);
        let centroids: Vec<f16> = rng.vec(k * dim, 1.0).into_iter().map(f16::from_f32).collect();
        let weights = rng.vec(dim << nbits, 0.1);
        let codes: Vec<u32> = (0..tokens).map(|t| (t * 3 % k) as u32).collect();
        let packed: Vec<u8> = (0..tokens * dim * nbits / 8).map(|_| (rng.next_f32() * 128.0 + 128.0) as u8).collect();
        let got = gpu.decode_residuals(&codes, &packed, &centroids, &weights, dim, nbits).unwrap();
        // Dimension d: byte d·nbits/8, bits (d mod 8/nbits)·nbits, least significant first.
        let per_byte = 8 / nbits;
        let want: Vec<f32> = (0..tokens)
            .flat_map(|t| (0..dim).map(move |d| (t, d)))
            .map(|(t, d)| {
                let byte = packed[t * dim / per_byte + d / per_byte] as usize;
                let bucket = (byte >> ((d % per_byte) * nbits)) & ((1 << nbits) - 1);
                centroids[codes[t] as usize * dim + d].to_f32() + weights[(d << nbits) + bucket]
            })
            .collect();
        assert_close(&format!("decode at {nbits} bits"), &got, &want, F32);
    }
}
