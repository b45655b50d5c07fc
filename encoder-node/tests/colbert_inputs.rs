//! Query and document inputs against the golden ids (../tests/fixtures/reference/
//! golden_colbert_inputs.json): the current marker insertion and the legacy ". " placeholder,
//! [MASK] padding with attention 0, truncation, the punctuation skiplist.

use std::path::PathBuf;

use encoder_node::model::{marked_ids, ColbertModel, EncodeOptions};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn golden() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("reference/golden_colbert_inputs.json")).unwrap()).unwrap()
}

fn numbers(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn model(legacy: bool) -> ColbertModel {
    let options = EncodeOptions { legacy_dot_prefix: legacy, ..EncodeOptions::default() };
    ColbertModel::load(&fixtures().join("models/tiny-random"), None, options).unwrap()
}

#[test]
fn queries_match_golden_ids_in_both_conventions() {
    let golden = golden();
    for (legacy, key) in [(false, "new"), (true, "old")] {
        let model = model(legacy);
        let mut checked = 0;
        for ex in golden["examples"].as_array().unwrap().iter().filter(|e| e["kind"] == "query") {
            let (ids, mask) = model.query_input(ex["text"].as_str().unwrap());
            assert_eq!(ids, numbers(&ex[format!("query_{key}_ids")]), "{key}: {}", ex["text"]);
            let mask: Vec<u32> = mask.into_iter().map(u32::from).collect();
            assert_eq!(mask, numbers(&ex[format!("query_{key}_mask")]), "{key}: {}", ex["text"]);
            checked += 1;
        }
        assert_eq!(checked, 10);
    }
}

#[test]
fn documents_match_golden_ids_and_skiplist() {
    let golden = golden();
    let skiplist = numbers(&golden["skiplist_ids"]);
    let model = model(false);
    for id in 0..32768u32 {
        assert_eq!(model.is_skipped(id), skiplist.contains(&id), "id {id}");
    }
    for ex in golden["examples"].as_array().unwrap().iter().filter(|e| e["kind"] == "doc") {
        let (text, max_len) = (ex["text"].as_str().unwrap(), ex["doc_maxlen"].as_u64().unwrap() as usize);
        for (legacy, key) in [(false, "doc_new_ids"), (true, "doc_old_ids")] {
            assert_eq!(marked_ids(model.tokenizer(), text, 6, max_len, legacy), numbers(&ex[key]), "{key}: {text}");
        }
        let keep: Vec<bool> = ex["doc_new_keep"].as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect();
        let ids = numbers(&ex["doc_new_ids"]);
        assert_eq!(ids.iter().map(|&id| !model.is_skipped(id)).collect::<Vec<_>>(), keep, "{text}");
    }
}

#[test]
fn dynamic_query_length_follows_the_jqara_rule() {
    let options = EncodeOptions { dynamic_query_length: true, ..EncodeOptions::default() };
    let model = ColbertModel::load(&fixtures().join("models/tiny-random"), None, options).unwrap();
    // L = [CLS] [Q] words [SEP]; QLEN = L + 8 if L % 32 <= 8, else L rounded up to 32.
    for (text, l) in [("東京", 4), ("東京 ".repeat(20).as_str(), 23), ("東京 ".repeat(35).as_str(), 38)] {
        let (ids, mask) = model.query_input(text);
        let attended = mask.iter().filter(|&&m| m == 1).count();
        assert_eq!(attended, l, "{text}");
        let want = if l % 32 <= 8 { l + 8 } else { l.div_ceil(32) * 32 };
        assert_eq!(ids.len(), want, "{text}");
        assert!(ids[l..].iter().all(|&id| id == 4));
    }
}

#[test]
fn empty_batches_and_edge_texts_encode() {
    let model = model(false);
    assert!(model.encode_queries(&[]).unwrap().is_empty());
    assert!(model.encode_documents(&[]).unwrap().is_empty());
    let long = "東京".repeat(5000);
    let texts = ["", "。", "!!!", long.as_str(), "\u{0}", "😀"];
    let docs = model.encode_documents(&texts).unwrap();
    let dim = model.dim();
    for (text, d) in texts.iter().zip(&docs) {
        // [CLS] [D] … [SEP] within doc_maxlen; punctuation dropped; unit vectors.
        assert!(d.ids.len() >= 3 && d.ids.len() <= model.settings().doc_maxlen, "{text:?}");
        assert_eq!(d.vectors.len(), d.kept_ids.len() * dim);
        for row in d.vectors.chunks(dim) {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
        }
    }
    assert_eq!(docs[2].kept_ids, [2, 6, 3], "'!!!' keeps only [CLS] [D] [SEP]");
    assert_eq!(docs[3].ids.len(), model.settings().doc_maxlen);
    let q = model.encode_queries(&texts).unwrap();
    assert!(q.iter().all(|e| e.ids.len() == 32 && e.vectors.len() == 32 * dim));
}
