//! Where each token came from (`Tokenizer::tokenize_spans`, `ColbertModel::query_tokens` /
//! `doc_tokens`), checked against what the tokens are: the ids are those the encoder embeds,
//! and the characters a span names, normalised, hold the token's word piece. Run over the JSQuAD
//! texts of the tokenizer reference and over texts NFKC changes the length of.

use std::io::BufRead;
use std::path::PathBuf;

use encoder_node::model::{ColbertModel, EncodeOptions};
use unicode_normalization::UnicodeNormalization;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn model(legacy: bool) -> ColbertModel {
    let options = EncodeOptions { legacy_dot_prefix: legacy, ..EncodeOptions::default() };
    ColbertModel::load(&fixtures().join("models/tiny-random"), None, options).unwrap()
}

/// Texts NFKC changes (full-width letters and punctuation, half-width kana with voicing marks,
/// circled numbers, ligatures, a combining accent, era ligatures), and a literal special token.
const CHANGED: &[&str] = &[
    "ＡＢＣ株式会社の①と②",
    "ｶﾀｶﾅとﾊﾟﾝﾀﾞ、ｶﾞｷﾞｸﾞ",
    "ﬁleの㍻元年（平成）",
    "cafe\u{301}で[MASK]を待つ",
    "東京　都は　日本の首都",
];

fn texts() -> Vec<String> {
    let file = std::fs::File::open(fixtures().join("reference/tokenizer_jsquad_valid.jsonl")).unwrap();
    let mut texts: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .step_by(7)
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    texts.extend(CHANGED.iter().map(|t| t.to_string()));
    texts
}

/// The characters `[start, end)` of `text`.
fn chars(text: &str, span: &std::ops::Range<usize>) -> String {
    text.chars().skip(span.start).take(span.end - span.start).collect()
}

#[test]
fn spans_hold_their_word_pieces_and_ids_are_the_tokenizers() {
    let model = model(false);
    let tokenizer = model.tokenizer();
    let (mut pieces, mut exact) = (0, 0);
    for text in texts() {
        let spans = tokenizer.tokenize_spans(&text);
        let ids: Vec<u32> = spans.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, tokenizer.tokenize(&text), "{text}");
        let mut last_start = 0;
        for (id, span) in &spans {
            let piece = tokenizer.vocab().token(*id).unwrap();
            let raw = chars(&text, span);
            assert!(span.start >= last_start && span.end > span.start, "{text}: {piece} at {span:?}");
            last_start = span.start;
            if *id == tokenizer.specials().unk {
                continue;
            }
            let normal: String = raw.nfkc().collect();
            let word = piece.strip_prefix("##").unwrap_or(piece);
            assert!(normal.contains(word), "{text}: {piece:?} at {span:?} is {raw:?}");
            // Where NFKC left the characters alone the span is the piece itself.
            if normal == raw {
                assert_eq!(raw, word, "{text}: {span:?}");
                exact += 1;
            }
            pieces += 1;
        }
    }
    eprintln!("{pieces} word pieces checked, {exact} of them exact");
    assert!(pieces > 10_000 && exact > pieces * 9 / 10, "{pieces} pieces, {exact} exact");
}

#[test]
fn nfkc_changes_map_back_to_the_characters_typed() {
    let tokenizer = model(false);
    let tokenizer = tokenizer.tokenizer();
    let text = "ｶﾞｸ①ＡＢ";
    let spans = tokenizer.tokenize_spans(text);
    let covered: Vec<String> = spans.iter().map(|(_, s)| chars(text, s)).collect();
    // Every character typed is covered, in order, and nothing past the text.
    assert_eq!(covered.concat(), text, "{spans:?}");
    // A literal [MASK] is its own token with its own characters.
    let with_mask = "東京[MASK]都";
    let spans = tokenizer.tokenize_spans(with_mask);
    let mask = spans.iter().find(|(id, _)| *id == tokenizer.specials().mask).unwrap();
    assert_eq!(chars(with_mask, &mask.1), "[MASK]");
}

#[test]
fn query_and_document_tokens_are_the_rows_the_encoder_embeds() {
    for legacy in [false, true] {
        let model = model(legacy);
        for text in texts().iter().take(200) {
            let query = model.query_tokens(text);
            assert_eq!(query.iter().map(|t| t.id).collect::<Vec<_>>(), model.query_input(text).0, "{text}");
            // Expansion is the [MASK] padding after [SEP], and it has no characters.
            let sep = query.iter().rposition(|t| t.id == model.tokenizer().specials().sep).unwrap();
            assert!(query.iter().enumerate().all(|(i, t)| t.expansion == (i > sep)));
            assert!(query[..2].iter().chain(&query[sep..]).all(|t| t.span.is_none()), "{text}");
            let doc = model.doc_tokens(text);
            let kept: Vec<u32> = model.doc_input(text).into_iter().filter(|&id| !model.is_skipped(id)).collect();
            assert_eq!(doc.iter().map(|t| t.id).collect::<Vec<_>>(), kept, "{text}");
            let embedded = model.encode_documents(&[text.as_str()]).unwrap().remove(0);
            assert_eq!(embedded.vectors.len() / model.dim(), doc.len());
            // Spans count characters of the text as given, with either marker convention.
            for t in doc.iter().filter(|t| t.id != model.tokenizer().specials().unk) {
                if let Some(span) = &t.span {
                    let piece = model.tokenizer().vocab().token(t.id).unwrap();
                    let normal: String = chars(text, span).nfkc().collect();
                    assert!(normal.contains(piece.trim_start_matches("##")), "{legacy} {text}: {piece} {span:?}");
                }
            }
        }
    }
}
