//! Every line of the reference file (Hugging Face BertJapaneseTokenizer with fugashi and
//! unidic-lite 1.0.8, on all JSQuAD-valid questions and paragraphs plus edge cases) must give
//! identical MeCab words and identical ids. Tolerance: none.

use std::path::PathBuf;

use encoder_node::tokenizer::Tokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    text: String,
    words: Vec<String>,
    ids: Vec<u32>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

#[test]
fn ids_and_words_match_the_reference_on_every_text() {
    let tokenizer = Tokenizer::load(&fixtures().join("bert-base-japanese-v3"), None)
        .expect("tokenizer (run scripts/fetch-unidic.sh for the dictionary)");
    let lines = std::fs::read_to_string(fixtures().join("reference/tokenizer_jsquad_valid.jsonl")).unwrap();
    let (mut total, mut bad_words, mut bad_ids) = (0, Vec::new(), Vec::new());
    for (n, line) in lines.lines().enumerate() {
        let r: Reference = serde_json::from_str(line).unwrap();
        total += 1;
        let words = tokenizer.words(&r.text);
        if words != r.words {
            bad_words.push(format!("line {}: {:?}\n  ours {:?}\n  ref  {:?}", n + 1, r.text, words, r.words));
        }
        let ids = tokenizer.encode(&r.text);
        if ids != r.ids {
            bad_ids.push(format!("line {}: {:?}\n  ours {:?}\n  ref  {:?}", n + 1, r.text, ids, r.ids));
        }
    }
    assert_eq!(total, 5586, "the reference file should have 5,586 texts");
    assert!(
        bad_words.is_empty() && bad_ids.is_empty(),
        "{} of {total} texts differ in words, {} in ids; first ones:\n{}\n{}",
        bad_words.len(),
        bad_ids.len(),
        bad_words.iter().take(5).cloned().collect::<Vec<_>>().join("\n"),
        bad_ids.iter().take(5).cloned().collect::<Vec<_>>().join("\n"),
    );
}
