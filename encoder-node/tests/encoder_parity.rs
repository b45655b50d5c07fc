//! PyLate 1.6 outputs for the tiny checkpoints (../tests/fixtures/reference).
//!
//! Text in, on the CPU: identical ids and masks, every embedding value within 1e-4, every
//! MaxSim score within 1e-3.
//!
//! Ids in, on every backend (the reference's ids through BERT and the projection, so no MeCab
//! dictionary is needed and a GPU machine without one runs it): on the CPU every value within
//! 1e-4; on CUDA, whose products read f16, every token vector at cosine >= 0.999 to the
//! reference. CUDA is skipped, with the reason printed, where there is no GPU.

use std::path::PathBuf;
use std::sync::Arc;

use encoder_node::model::{Batch, ColbertModel, EncodeOptions, Encoder};
use kernels::cpu::maxsim;
use kernels::cuda::{Backend, Device};
use safetensors::SafeTensors;

/// `JACOLBERT_FIXTURES`, for a test binary run away from its source tree (the GPU machine).
fn fixtures() -> PathBuf {
    std::env::var_os("JACOLBERT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"))
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

fn reference(model_name: &str) -> Reference {
    Reference {
        bytes: std::fs::read(fixtures().join(format!("reference/{model_name}.reference.safetensors"))).unwrap(),
    }
}

fn check(model_name: &str) {
    let model =
        ColbertModel::load(&fixtures().join("models").join(model_name), None, EncodeOptions::default()).unwrap();
    let reference = reference(model_name);
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
    let mut worst = 0.0f32;
    for (i, e) in q.iter().enumerate() {
        let want_ids: Vec<u32> = qids[i * lq..(i + 1) * lq].iter().map(|&v| v as u32).collect();
        assert_eq!(e.ids, want_ids, "{model_name} query {i} ids: {:?}", queries[i]);
        let want_mask: Vec<u8> = qmask[i * lq..(i + 1) * lq].iter().map(|&v| v as u8).collect();
        assert_eq!(e.mask, want_mask, "{model_name} query {i} mask");
        worst = worst.max(max_abs_diff(&e.vectors, &qemb[i * lq * dim..(i + 1) * lq * dim]));
    }
    eprintln!("{model_name}: max abs diff, query embeddings {worst:e}");
    assert!(worst <= 1e-4, "{model_name}: query embeddings differ by up to {worst}");

    let d = model.encode_documents(&docs.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let mut worst = 0.0f32;
    for (i, e) in d.iter().enumerate() {
        let (_, ids) = reference.i32s(&format!("doc_ids_{i}"));
        assert_eq!(e.ids, ids.iter().map(|&v| v as u32).collect::<Vec<_>>(), "{model_name} doc {i} ids");
        let (shape, emb) = reference.f32s(&format!("doc_emb_{i}"));
        assert_eq!(shape, [e.kept_ids.len(), dim], "{model_name} doc {i}: kept tokens");
        worst = worst.max(max_abs_diff(&e.vectors, &emb));
    }
    eprintln!("{model_name}: max abs diff, document embeddings {worst:e}");
    assert!(worst <= 1e-4, "{model_name}: document embeddings differ by up to {worst}");

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
    assert!(worst <= 1e-3, "{model_name}: MaxSim scores differ by up to {worst}");
}

#[test]
fn tiny_random_matches_pylate() {
    check("tiny-random");
}

#[test]
fn tiny_lexical_matches_pylate() {
    check("tiny-lexical");
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

/// The ids of Python's `string.punctuation` in the model's vocab.txt: the rows PyLate drops
/// from documents (worked out here from the file, not by the code under test).
fn punctuation_ids(model_name: &str) -> Vec<u32> {
    let vocab = std::fs::read_to_string(fixtures().join("models").join(model_name).join("vocab.txt")).unwrap();
    let punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    vocab
        .lines()
        .enumerate()
        .filter(|(_, t)| t.chars().count() == 1 && punctuation.contains(*t))
        .map(|(i, _)| i as u32)
        .collect()
}

/// The reference's ids through one backend: (worst absolute difference, smallest cosine) over
/// the query vectors and the documents' kept vectors.
fn vectors_on(encoder: &Encoder, model_name: &str) -> (f32, f64) {
    let reference = reference(model_name);
    let dim = encoder.dim();
    let (qshape, qids) = reference.i32s("query_ids");
    let (_, qmask) = reference.i32s("query_mask");
    let (_, qemb) = reference.f32s("query_emb");
    let ids: Vec<u32> = qids.iter().map(|&v| v as u32).collect();
    let mask: Vec<u8> = qmask.iter().map(|&v| v as u8).collect();
    let got = encoder.forward(&Batch { ids: &ids, mask: &mask, batch: qshape[0], seq: qshape[1] }).unwrap();
    let (mut worst, mut cosine) = (max_abs_diff(&got, &qemb), min_cosine(&got, &qemb, dim));
    let skip = punctuation_ids(model_name);
    let st = SafeTensors::deserialize(&reference.bytes).unwrap();
    let docs = (0..).take_while(|i| st.tensor(&format!("doc_ids_{i}")).is_ok()).count();
    assert!(docs > 0, "{model_name}: the reference has no documents");
    for i in 0..docs {
        let (_, ids) = reference.i32s(&format!("doc_ids_{i}"));
        let ids: Vec<u32> = ids.iter().map(|&v| v as u32).collect();
        let keep: Vec<u32> = (0..ids.len() as u32).filter(|&t| !skip.contains(&ids[t as usize])).collect();
        let (_, want) = reference.f32s(&format!("doc_emb_{i}"));
        let got =
            encoder.encode(&Batch { ids: &ids, mask: &vec![1; ids.len()], batch: 1, seq: ids.len() }, &keep).unwrap();
        worst = worst.max(max_abs_diff(&got, &want));
        cosine = cosine.min(min_cosine(&got, &want, dim));
    }
    (worst, cosine)
}

fn vectors_on_every_backend(model_name: &str) {
    let dir = fixtures().join("models").join(model_name);
    let (worst, cosine) = vectors_on(&Encoder::load(&dir, &Backend::Cpu).unwrap(), model_name);
    eprintln!("{model_name} on the CPU: max abs diff {worst:e}, min cosine {cosine}");
    assert!(worst <= 1e-4, "{model_name} on the CPU: vectors differ by up to {worst}");
    match Device::open(0) {
        Ok(device) => {
            let description = device.description.clone();
            let (worst, cosine) =
                vectors_on(&Encoder::load(&dir, &Backend::Cuda(Arc::new(device))).unwrap(), model_name);
            eprintln!("{model_name} on {description}: max abs diff {worst:e}, min cosine {cosine}");
            assert!(cosine >= 0.999, "{model_name} on CUDA: a token vector at cosine {cosine}");
        }
        Err(e) => println!("skipped on CUDA: {e}"),
    }
}

#[test]
fn tiny_random_vectors_match_pylate_on_every_backend() {
    vectors_on_every_backend("tiny-random");
}

#[test]
fn tiny_lexical_vectors_match_pylate_on_every_backend() {
    vectors_on_every_backend("tiny-lexical");
}
