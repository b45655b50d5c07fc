//! PyLate 1.6 outputs for the tiny checkpoints (../tests/fixtures/reference), on every backend:
//! identical ids and masks everywhere. On the CPU every embedding value within 1e-4 and every
//! MaxSim score within 1e-3; on CUDA (f16 products, skipped with the reason printed where there
//! is no GPU) every token vector at cosine ≥ 0.999 to the reference.

use std::path::PathBuf;
use std::sync::Arc;

use encoder_node::model::{ColbertModel, EncodeOptions};
use kernels::cpu::maxsim;
use kernels::cuda::{Backend, Device};
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    fn tensor(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap_or_else(|_| panic!("reference has no {name}"));
        (t.shape().to_vec(), t.data().to_vec())
    }
    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, data) = self.tensor(name);
        (shape, data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
    }
    fn i32s(&self, name: &str) -> (Vec<usize>, Vec<i32>) {
        let (shape, data) = self.tensor(name);
        (shape, data.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect())
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Smallest cosine between corresponding rows of `dim`.
fn min_cosine(a: &[f32], b: &[f32], dim: usize) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum::<f64>();
    a.chunks(dim)
        .zip(b.chunks(dim))
        .map(|(x, y)| dot(x, y) / (dot(x, x) * dot(y, y)).sqrt().max(1e-30))
        .fold(1.0, f64::min)
}

/// How close a backend must come to the reference.
#[derive(Clone, Copy)]
enum Tolerance {
    /// f32 all the way: values within 1e-4, scores within 1e-3.
    Values,
    /// f16 tensor-core products: each token vector at cosine ≥ 0.999.
    Cosine,
}

/// Every backend this machine has, with the tolerance it is held to.
fn backends() -> Vec<(Backend, Tolerance)> {
    let mut all = vec![(Backend::Cpu, Tolerance::Values)];
    match Device::open(0) {
        Ok(device) => all.push((Backend::Cuda(Arc::new(device)), Tolerance::Cosine)),
        Err(e) => println!("skipped on CUDA: {e}"),
    }
    all
}

fn check(model_name: &str) {
    for (backend, tolerance) in backends() {
        eprintln!("{model_name} on {backend:?}");
        check_on(model_name, EncodeOptions { backend, ..EncodeOptions::default() }, tolerance);
    }
}

fn check_on(model_name: &str, options: EncodeOptions, tolerance: Tolerance) {
    let model = ColbertModel::load(&fixtures().join("models").join(model_name), None, options).unwrap();
    let reference = Reference {
        bytes: std::fs::read(fixtures().join(format!("reference/{model_name}.reference.safetensors"))).unwrap(),
    };
    let texts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("reference/reference_texts.json")).unwrap()).unwrap();
    let strings = |key: &str| -> Vec<String> {
        texts[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    let (queries, docs) = (strings("queries"), strings("docs"));
    let dim = model.dim();

    let q = model.encode_queries(&queries.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let (qshape, qids) = reference.i32s("query_ids");
    let (_, qmask) = reference.i32s("query_mask");
    let (eshape, qemb) = reference.f32s("query_emb");
    assert_eq!(qshape, [queries.len(), 32]);
    assert_eq!(eshape, [queries.len(), 32, dim]);
    let lq = qshape[1];
    let (mut worst, mut cosine) = (0.0f32, 1.0f64);
    for (i, e) in q.iter().enumerate() {
        let want_ids: Vec<u32> = qids[i * lq..(i + 1) * lq].iter().map(|&v| v as u32).collect();
        assert_eq!(e.ids, want_ids, "{model_name} query {i} ids: {:?}", queries[i]);
        let want_mask: Vec<u8> = qmask[i * lq..(i + 1) * lq].iter().map(|&v| v as u8).collect();
        assert_eq!(e.mask, want_mask, "{model_name} query {i} mask");
        let want = &qemb[i * lq * dim..(i + 1) * lq * dim];
        worst = worst.max(max_abs_diff(&e.vectors, want));
        cosine = cosine.min(min_cosine(&e.vectors, want, dim));
    }
    eprintln!("{model_name}: query embeddings, max abs diff {worst:e}, min cosine {cosine}");
    tolerance.assert(model_name, "query embeddings", worst, cosine);

    let d = model.encode_documents(&docs.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let (mut worst, mut cosine) = (0.0f32, 1.0f64);
    for (i, e) in d.iter().enumerate() {
        let (_, ids) = reference.i32s(&format!("doc_ids_{i}"));
        assert_eq!(e.ids, ids.iter().map(|&v| v as u32).collect::<Vec<_>>(), "{model_name} doc {i} ids");
        let (shape, emb) = reference.f32s(&format!("doc_emb_{i}"));
        assert_eq!(shape, [e.kept_ids.len(), dim], "{model_name} doc {i}: kept tokens");
        worst = worst.max(max_abs_diff(&e.vectors, &emb));
        cosine = cosine.min(min_cosine(&e.vectors, &emb, dim));
    }
    eprintln!("{model_name}: document embeddings, max abs diff {worst:e}, min cosine {cosine}");
    tolerance.assert(model_name, "document embeddings", worst, cosine);

    let (sshape, scores) = reference.f32s("scores");
    assert_eq!(sshape, [queries.len(), docs.len()]);
    let mut worst = 0.0f32;
    for (i, qe) in q.iter().enumerate() {
        for (j, de) in d.iter().enumerate() {
            let s = maxsim(&qe.vectors, &de.vectors, dim).unwrap();
            worst = worst.max((s - scores[i * docs.len() + j]).abs());
        }
    }
    eprintln!("{model_name}: max abs diff, MaxSim scores {worst:e}");
    if let Tolerance::Values = tolerance {
        assert!(worst <= 1e-3, "{model_name}: MaxSim scores differ by up to {worst}");
    }
}

impl Tolerance {
    fn assert(self, model_name: &str, what: &str, worst: f32, cosine: f64) {
        match self {
            Tolerance::Values => assert!(worst <= 1e-4, "{model_name}: {what} differ by up to {worst}"),
            Tolerance::Cosine => assert!(cosine >= 0.999, "{model_name}: {what} down to cosine {cosine}"),
        }
    }
}

#[test]
fn tiny_random_matches_pylate() {
    check("tiny-random");
}

#[test]
fn tiny_lexical_matches_pylate() {
    check("tiny-lexical");
}
