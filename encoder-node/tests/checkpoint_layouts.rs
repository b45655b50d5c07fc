//! The loader reads PyLate's layout as well as colbert-ai's, with or without the `bert.` prefix,
//! and a missing or mis-shaped tensor is an error that names it and both shapes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use encoder_node::model::{ColbertModel, EncodeOptions};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("jacolbert-ckpt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("1_Dense")).unwrap();
    Scratch(dir)
}

/// The tiny-random tensors as (shape, f32 bytes), by their original names.
fn tensors() -> BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(fixtures().join("models/tiny-random/model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(name, t)| (name, (t.shape().to_vec(), t.data().to_vec()))).collect()
}

fn write(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Vec<u8>)>) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (shape, data))| (n.clone(), TensorView::new(Dtype::F32, shape.clone(), data).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn copy_tokenizer_files(dir: &Path) {
    for f in ["config.json", "vocab.txt", "special_tokens_map.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures().join("models/tiny-random").join(f), dir.join(f)).unwrap();
    }
}

fn encode(dir: &Path) -> (Vec<f32>, Vec<f32>) {
    let model = ColbertModel::load(dir, None, EncodeOptions::default()).unwrap();
    let q = model.encode_queries(&["東京タワーの高さは？"]).unwrap().remove(0).vectors;
    let d = model.encode_documents(&["日本の首都は東京です。(東京都)"]).unwrap().remove(0).vectors;
    (q, d)
}

#[test]
fn pylate_layout_gives_the_same_vectors() {
    let s = scratch("pylate");
    let mut all = tensors();
    let linear = all.remove("linear.weight").unwrap();
    let bare: BTreeMap<_, _> = all.into_iter().map(|(n, t)| (n.strip_prefix("bert.").unwrap().to_owned(), t)).collect();
    write(&s.0.join("model.safetensors"), &bare);
    write(&s.0.join("1_Dense/model.safetensors"), &BTreeMap::from([("linear.weight".to_owned(), linear)]));
    copy_tokenizer_files(&s.0);
    std::fs::write(
        s.0.join("config_sentence_transformers.json"),
        r#"{"query_prefix": "[unused0]", "document_prefix": "[unused1]", "query_length": 32, "document_length": 180, "attend_to_expansion_tokens": false}"#,
    )
    .unwrap();
    assert_eq!(encode(&s.0), encode(&fixtures().join("models/tiny-random")));
}

fn load_err(edit: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<u8>)>)) -> String {
    let s = scratch("broken");
    let mut all = tensors();
    edit(&mut all);
    write(&s.0.join("model.safetensors"), &all);
    copy_tokenizer_files(&s.0);
    match ColbertModel::load(&s.0, None, EncodeOptions::default()) {
        Ok(_) => panic!("a broken checkpoint loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let err = load_err(|t| {
        t.remove("bert.encoder.layer.1.output.dense.weight");
    });
    assert!(
        err.contains("encoder.layer.1.output.dense.weight") && err.contains("missing") && err.contains("[128, 512]"),
        "{err}"
    );
    let err = load_err(|t| {
        let (shape, data) = t.get_mut("bert.embeddings.position_embeddings.weight").unwrap();
        *shape = vec![256, 128];
        data.truncate(256 * 128 * 4);
    });
    assert!(err.contains("position_embeddings") && err.contains("[256, 128]") && err.contains("[512, 128]"), "{err}");
    let err = load_err(|t| {
        t.remove("linear.weight");
    });
    assert!(err.contains("linear.weight"), "{err}");
}

#[test]
fn not_a_safetensors_file_is_an_error() {
    let s = scratch("garbage");
    std::fs::write(s.0.join("model.safetensors"), b"\xff\xff\xff\xff not safetensors").unwrap();
    copy_tokenizer_files(&s.0);
    let err = ColbertModel::load(&s.0, None, EncodeOptions::default()).err().unwrap().to_string();
    assert!(err.contains("not a safetensors file"), "{err}");
}

#[test]
fn a_batch_that_does_not_fit_is_an_error() {
    use encoder_node::model::{Batch, Encoder};
    let encoder = Encoder::load(&fixtures().join("models/tiny-random"), &kernels::cuda::Backend::Cpu).unwrap();
    let err =
        encoder.forward(&Batch { ids: &[2, 3, 4], mask: &[1, 1, 1, 1], batch: 2, seq: 2 }).unwrap_err().to_string();
    assert!(err.contains("needs 4 ids"), "{err}");
    let (ids, mask) = (vec![2u32; 600], vec![1u8; 600]);
    let err = encoder.forward(&Batch { ids: &ids, mask: &mask, batch: 1, seq: 600 }).unwrap_err().to_string();
    assert!(err.contains("max_position_embeddings 512"), "{err}");
    // Ids past the vocabulary do not read out of bounds.
    assert!(encoder.forward(&Batch { ids: &[2, u32::MAX], mask: &[1, 1], batch: 1, seq: 2 }).is_ok());
}
