//! Match explanations through separate processes (index trained: a low `train_tokens`, so hits
//! come through the compressed path), against a naive computation in this process with the same
//! checkpoint: encode the query and the document, take each query token's best document token
//! by plain f64 dot products, and find its characters by tokenizing the text again. Texts
//! include those NFKC changes the length of (full-width letters, half-width kana, ①).

mod common;

use common::{fixtures, jacolbert, request, Cluster};
use encoder_node::model::{ColbertModel, EncodeOptions};
use proto::v1::{Document, Hit, Include, RerankRequest, SearchRequest, UpsertRequest};
use unicode_normalization::UnicodeNormalization;

const TEXTS: &[&str] = &[
    "富士山は日本一高い山で、静岡県と山梨県にまたがる。",
    "琵琶湖は日本一大きい湖で、滋賀県にある。",
    "ＪＲ東日本の新幹線は東京駅から出る。",
    "ｶﾀｶﾅで書いたﾃﾞﾊﾟｰﾄの名前と①番の出口。",
    "東京都の人口は約千四百万人である。",
    "北海道の冬は寒く、雪が多い。",
];

fn model() -> ColbertModel {
    ColbertModel::load(&fixtures().join("models/tiny-lexical"), None, EncodeOptions::default()).unwrap()
}

/// The characters `[start, end)` of `text`.
fn chars(text: &str, span: &proto::v1::Span) -> String {
    text.chars().skip(span.start as usize).take((span.end - span.start) as usize).collect()
}

/// Checks `hit`'s explanation (of `text`, for `query`) against the naive computation; returns
/// the number of matches with a span.
fn check(model: &ColbertModel, query: &str, text: &str, score: f32, hit: &proto::v1::Explanation) -> usize {
    let dim = model.dim();
    let q = model.encode_queries(&[query]).unwrap().remove(0);
    let d = model.encode_documents(&[text]).unwrap().remove(0).vectors;
    let dot = |i: usize, j: usize| (0..dim).map(|x| q.vectors[i * dim + x] as f64 * d[j * dim + x] as f64).sum::<f64>();
    let (query_tokens, doc_tokens) = (q.vectors.len() / dim, d.len() / dim);
    assert_eq!(hit.matches.len(), query_tokens, "{text}");
    let sum: f32 = hit.matches.iter().map(|m| m.similarity).sum();
    assert!((sum - score).abs() < 1e-3 * score.abs().max(1.0), "{text}: similarities sum to {sum}, score {score}");
    let mut spans = 0;
    let vocab = model.tokenizer().vocab();
    for (i, m) in hit.matches.iter().enumerate() {
        let j = m.document_token as usize;
        assert_eq!(m.query_token as usize, i);
        assert!(j < doc_tokens, "{text}: token {j} of {doc_tokens}");
        // The shard scores f16 originals: the token it chose is the best up to that rounding.
        let best = (0..doc_tokens).map(|j| dot(i, j)).fold(f64::NEG_INFINITY, f64::max);
        assert!(dot(i, j) > best - 2e-3, "{text}: q{i} matched {j} ({}) but the best is {best}", dot(i, j));
        assert!((m.similarity as f64 - dot(i, j)).abs() < 2e-3, "{text}: q{i}: {} vs {}", m.similarity, dot(i, j));
        assert_eq!(m.query_text, vocab.token(q.ids[i]).unwrap());
        assert_eq!(m.expansion, i > last_sep(&q.ids), "{query}: q{i}");
        // The document token's characters, normalised, hold its word piece.
        if let Some(span) = &m.span {
            let piece = m.document_text.trim_start_matches("##");
            let normal: String = chars(text, span).nfkc().collect();
            assert!(m.document_text == "[UNK]" || normal.contains(piece), "{text}: {piece:?} at {span:?}");
            spans += 1;
        } else {
            assert!(["[CLS]", "[unused1]", "[SEP]"].contains(&m.document_text.as_str()), "{m:?}");
        }
        if let Some(span) = &m.query_span {
            let normal: String = chars(query, span).nfkc().collect();
            assert!(normal.contains(m.query_text.trim_start_matches("##")), "{query}: {m:?}");
        }
    }
    spans
}

/// The position of the last [SEP] (id 3): query tokens after it are the [MASK] padding.
fn last_sep(ids: &[u32]) -> usize {
    ids.iter().rposition(|&id| id == 3).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn hits_explain_which_document_token_matched_each_query_token() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, 1, "train_tokens = 100");
    let mut router = c.client().await;
    let model = model();
    let mut documents: Vec<Document> = TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| Document { id: format!("t{i}"), text: t.to_string(), metadata: String::new() })
        .collect();
    // Filler, so that the shards train and search through the index.
    documents.extend(common::documents(60));
    router.upsert(UpsertRequest { documents: documents.clone() }).await.unwrap();
    let text_of = |id: &str| documents.iter().find(|d| d.id == id).unwrap().text.clone();

    let (mut explained, mut spans) = (0, 0);
    for query in ["日本一高い山", "ＪＲの新幹線", "ﾃﾞﾊﾟｰﾄの出口①", "東京都の人口"] {
        for include in [Include::default(), Include { text: true, metadata: false }] {
            let r = SearchRequest { explain: true, include: Some(include), ..request(query, 5, Some(false)) };
            let answer = router.search(r).await.unwrap().into_inner();
            assert_eq!(answer.hits.len(), 5, "{query}");
            // Explaining changes nothing else: the same hits and scores.
            let plain = router.search(SearchRequest { include: Some(include), ..request(query, 5, Some(false)) });
            let plain = plain.await.unwrap().into_inner();
            let key = |h: &[Hit]| h.iter().map(|h| (h.id.clone(), h.score)).collect::<Vec<_>>();
            assert_eq!(key(&answer.hits), key(&plain.hits), "{query}");
            for hit in &answer.hits {
                // The text comes back only when asked for.
                assert_eq!(hit.document.as_ref().is_some_and(|d| !d.text.is_empty()), include.text, "{query}");
                spans += check(&model, query, &text_of(&hit.id), hit.score, hit.explanation.as_ref().unwrap());
                explained += 1;
            }
        }
    }
    eprintln!("{explained} hits explained, {spans} matches with a span checked");
    assert!(spans > explained, "most matches name characters of the text");

    // Where NFKC changed the text, the span covers what was typed: ﾃﾞﾊﾟｰﾄ matched by デパート.
    let r = SearchRequest { explain: true, filter_ids: vec!["t3".into()], ..request("デパート", 1, Some(false)) };
    let hit = router.search(r).await.unwrap().into_inner().hits.remove(0);
    assert_eq!(hit.id, "t3");
    let text = text_of("t3");
    let typed: Vec<String> = hit
        .explanation
        .unwrap()
        .matches
        .iter()
        .filter(|m| m.query_span.is_some())
        .filter_map(|m| m.span.as_ref().map(|s| chars(&text, s)))
        .collect();
    assert!(typed.iter().any(|t| t.contains("ﾃﾞ") || t.contains("ﾊﾟ") || t.contains("ｰﾄ")), "{typed:?}");

    // Rerank explains too, with the same numbers as the naive computation.
    let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
    let rerank = RerankRequest { query: "日本一の湖".into(), texts: texts.clone(), explain: true };
    let answer = router.rerank(rerank).await.unwrap().into_inner();
    assert_eq!(answer.explanations.len(), texts.len());
    for ((text, score), e) in texts.iter().zip(&answer.scores).zip(&answer.explanations) {
        check(&model, "日本一の湖", text, *score, e);
    }
    let plain = RerankRequest { query: "日本一の湖".into(), texts, explain: false };
    assert!(router.rerank(plain).await.unwrap().into_inner().explanations.is_empty());

    // The CLI: every match in JSON, the query's words and what they matched in the table.
    let search = |extra: &[&str]| {
        let out = jacolbert()
            .args(["search", "日本一高い山", "-k", "2", "--explain", "--router", &c.router])
            .args(extra)
            .output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&search(&["--json"])).unwrap();
    for hit in json["hits"].as_array().unwrap() {
        let matches = hit["matches"].as_array().unwrap();
        assert_eq!(matches.len(), 32, "{hit}");
        let sum: f64 = matches.iter().map(|m| m["similarity"].as_f64().unwrap()).sum();
        assert!((sum - hit["score"].as_f64().unwrap()).abs() < 1e-3, "{hit}");
    }
    let table = search(&[]);
    assert!(table.lines().any(|l| l.contains("→") && l.contains("山")), "{table}");
}
