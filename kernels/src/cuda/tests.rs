//! Every kernel compiled for every architecture (needs only libnvrtc), and every kernel against
//! its CPU twin on fresh random inputs (needs a GPU; skipped with the reason printed where
//! there is none). Outputs start poisoned (NaN) wherever the kernel writes into a buffer we
//! pass, so an element it forgets fails the comparison. Tolerances: f32 ops 1e-5 relative to
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
fn row_kernels_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(7);
    let (rows, hidden, seq, vocab) = (24, 96, 8, 50);
    let (gamma, beta) = (rng.vec(hidden, 1.0), rng.vec(hidden, 0.5));

    let ids: Vec<u32> = (0..rows as u32).map(|i| (i * 7 + 3) % vocab as u32).collect();
    let (word, position, token_type) = (rng.vec(vocab * hidden, 1.0), rng.vec(seq * hidden, 1.0), rng.vec(hidden, 1.0));
    let got = gpu.embed_layer_norm(&ids, &word, &position, &token_type, &gamma, &beta, seq, 1e-12).unwrap();
    let mut want: Vec<f32> = (0..rows)
        .flat_map(|t| {
            let (w, p) = (ids[t] as usize * hidden, (t % seq) * hidden);
            (0..hidden).map(move |i| (w + i, p + i, i))
        })
        .map(|(w, p, i)| word[w] + position[p] + token_type[i])
        .collect();
    cpu::layer_norm(&mut want, &gamma, &beta, 1e-12).unwrap();
    assert_close("embed_layer_norm", &got, &want, F32);

    let (x, bias, residual) = (rng.vec(rows * hidden, 2.0), rng.vec(hidden, 1.0), rng.vec(rows * hidden, 1.0));
    let mut got = x.clone();
    gpu.bias_residual_layer_norm(&mut got, &bias, &residual, &gamma, &beta, 1e-12).unwrap();
    let mut want: Vec<f32> = x.iter().zip(&residual).enumerate().map(|(i, (a, r))| a + bias[i % hidden] + r).collect();
    cpu::layer_norm(&mut want, &gamma, &beta, 1e-12).unwrap();
    assert_close("bias_residual_layer_norm", &got, &want, F32);

    let mut got = x.clone();
    gpu.bias_gelu(&mut got, &bias).unwrap();
    let mut want: Vec<f32> = x.iter().enumerate().map(|(i, a)| a + bias[i % hidden]).collect();
    cpu::gelu_erf(&mut want);
    assert_close("bias_gelu", &got, &want, F32);

    let mut got = x.clone();
    gpu.l2_normalize(&mut got, hidden).unwrap();
    let mut want = x.clone();
    cpu::l2_normalize_rows(&mut want, hidden).unwrap();
    assert_close("l2_normalize", &got, &want, F32);

    let keep = [3u32, 0, 23, 3];
    let got = gpu.gather_rows(&x, &keep, hidden).unwrap();
    let want: Vec<f32> = keep.iter().flat_map(|&r| x[r as usize * hidden..][..hidden].to_vec()).collect();
    assert_eq!(got, want);
}

#[test]
fn attention_matches_the_cpu_with_padding_and_a_fully_masked_sequence() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(11);
    let (batch, seq, heads, head_dim) = (3, 37, 4, 16);
    let hidden = heads * head_dim;
    let qkv = rng.vec(batch * seq * 3 * hidden, 2.0);
    // Sequence 0 whole, sequence 1 padded after 20 tokens, sequence 2 with no attendable key.
    let mask: Vec<u8> = (0..batch * seq).map(|r| ((r / seq == 0) || (r / seq == 1 && r % seq < 20)) as u8).collect();
    let got = gpu.attention(&qkv, &mask, batch, heads, head_dim).unwrap();
    let mut want = vec![f32::NAN; batch * seq * hidden];
    let shape = cpu::AttentionShape { batch, seq, heads, head_dim, row_stride: 3 * hidden };
    cpu::attention(&qkv, &qkv[hidden..], &qkv[2 * hidden..], &mask, &mut want, shape).unwrap();
    assert_close("attention", &got, &want, F32);
}

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
