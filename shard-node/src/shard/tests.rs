use std::collections::HashSet;

use proto::v1::{condition, Condition, Filter, Ids};

use super::*;
use crate::index::{SearchParams, MAX_K};
use crate::synthetic::{Collection, Spec};

fn only(ids: Vec<String>) -> Filter {
    Filter { must: vec![Condition { condition: Some(condition::Condition::Ids(Ids { ids })) }], ..Default::default() }
}

fn config(train_tokens: usize) -> ShardConfig {
    ShardConfig { dim: 64, train_tokens, ..Default::default() }
}

fn new_doc(id: &str, vectors: &[f32]) -> NewDocument {
    NewDocument {
        doc: Document { id: id.into(), text: format!("text of {id}"), metadata: String::new() },
        vectors: vectors.to_vec(),
        version: 0,
    }
}

fn collection(docs: usize) -> Collection {
    Collection::generate(&Spec { docs, tokens_per_doc: 40, centres: 256, dim: 64, seed: 12, ..Default::default() })
}

#[test]
fn buffers_then_trains_then_compresses_on_arrival_and_survives_reopen() {
    let data = collection(400);
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), config(8000)).unwrap();
    for i in 0..100 {
        shard.upsert(vec![new_doc(&format!("d{i}"), data.doc(i))]).unwrap();
    }
    assert!(!shard.stats().trained);
    let (target, q) = &data.queries(1, 16, 0.2, 3)[0];
    let exact_before = shard.search_exact(q, 5, None).unwrap();
    assert_eq!(shard.search(q, &SearchParams::for_k(5), None).unwrap(), exact_before);
    let batch: Vec<NewDocument> = (100..400).map(|i| new_doc(&format!("d{i}"), data.doc(i))).collect();
    shard.upsert(batch).unwrap();
    let stats = shard.stats();
    assert!(stats.trained && stats.documents == 400 && stats.tokens == data.tokens(), "{stats:?}");
    let found = shard.search(q, &SearchParams::for_k(5), None).unwrap();
    assert_eq!(found[0].id, format!("d{target}"));
    drop(shard);
    let shard = Shard::open(dir.path(), config(8000)).unwrap();
    assert_eq!(shard.stats(), stats);
    assert_eq!(shard.search(q, &SearchParams::for_k(5), None).unwrap(), found);
    assert_eq!(shard.get("d7").unwrap().text, "text of d7");
    assert!(matches!(shard.get("nope"), Err(Error::NotFound(_))));
}

#[test]
fn replaced_documents_return_the_new_version_and_deleted_ones_never() {
    let data = collection(300);
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), config(4000)).unwrap();
    shard.upsert((0..300).map(|i| new_doc(&format!("d{i}"), data.doc(i))).collect()).unwrap();
    assert!(shard.stats().trained);
    let (target, q) = &data.queries(1, 16, 0.2, 9)[0];
    let name = format!("d{target}");
    let params = SearchParams::for_k(10);
    assert_eq!(shard.search(q, &params, None).unwrap()[0].id, name);
    // Replace the target with another document's vectors: it no longer matches.
    let other = (target + 1) % 300;
    let mut replacement = new_doc(&name, data.doc(other));
    replacement.doc.text = "new version".into();
    shard.upsert(vec![replacement]).unwrap();
    assert_eq!(shard.get(&name).unwrap().text, "new version");
    assert_eq!(shard.stats().documents, 300);
    let hits = shard.search(q, &params, None).unwrap();
    assert_ne!(hits[0].id, name);
    // It is scored as the new vectors: exactly as the document it copied.
    let exact = shard.search_exact(q, 300, None).unwrap();
    let score = |id: &str| exact.iter().find(|h| h.id == id).unwrap().score;
    assert_eq!(score(&name), score(&format!("d{other}")));
    // Delete it: never returned, by either mode, even when the filter asks for it.
    assert_eq!(shard.delete(&[name.clone(), "nope".into()], 0).unwrap(), 1);
    // (The approximate mode returns only documents some probed centroid holds.)
    for hits in [shard.search(q, &SearchParams::for_k(300), None).unwrap(), shard.search_exact(q, 300, None).unwrap()] {
        assert!(hits.iter().all(|h| h.id != name));
        assert!(hits.len() > 200 && hits.len() <= 299);
    }
    assert_eq!(shard.search_exact(q, 300, None).unwrap().len(), 299);
    let filter = only(vec![name.clone(), "d1".into(), "d2".into()]);
    let hits = shard.search(q, &params, Some(&filter)).unwrap();
    assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<HashSet<_>>(), HashSet::from(["d1", "d2"]));
    drop(shard);
    let shard = Shard::open(dir.path(), config(4000)).unwrap();
    assert_eq!(shard.stats().documents, 299);
    assert!(shard.get(&name).is_err());
    // Retraining keeps every document.
    shard.retrain().unwrap();
    assert_eq!(shard.stats().documents, 299);
    assert!(shard.search(q, &params, None).unwrap().len() == 10);
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let data = collection(50);
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), config(1000)).unwrap();
    shard.upsert((0..50).map(|i| new_doc(&format!("d{i}"), data.doc(i))).collect()).unwrap();
    let before = shard.stats();
    for bad in [new_doc("", data.doc(0)), new_doc("x", &[]), new_doc("x", &[0.5; 65]), new_doc("x", &[f32::NAN; 64])] {
        assert!(matches!(shard.upsert(vec![new_doc("ok", data.doc(1)), bad]), Err(Error::BadInput(_))));
    }
    assert_eq!(shard.stats(), before, "a refused batch writes nothing");
    let q = data.doc(0)[..64 * 4].to_vec();
    for (query, k) in [(&q[..], 0), (&q[..], MAX_K + 1), (&q[..63], 5), (&[][..], 5)] {
        assert!(matches!(shard.search(query, &SearchParams::for_k(k), None), Err(Error::BadInput(_))));
    }
    assert!(Shard::open(dir.path(), ShardConfig { dim: 32, ..config(1000) }).is_err());
}

#[test]
fn recall_at_10_against_the_exact_mode() {
    let data = Collection::generate(&Spec {
        docs: 2000,
        tokens_per_doc: 50,
        centres: 1024,
        dim: 64,
        seed: 21,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), config(usize::MAX)).unwrap();
    shard.upsert((0..data.len()).map(|i| new_doc(&format!("d{i}"), data.doc(i))).collect()).unwrap();
    shard.retrain().unwrap();
    let queries = data.queries(50, 32, 0.3, 77);
    let params = SearchParams::for_k(10);
    let mut found = 0;
    for (_, q) in &queries {
        let exact: HashSet<String> = shard.search_exact(q, 10, None).unwrap().into_iter().map(|f| f.id).collect();
        found += shard.search(q, &params, None).unwrap().iter().filter(|f| exact.contains(&f.id)).count();
    }
    let recall = found as f64 / (10 * queries.len()) as f64;
    assert!(recall >= 0.99, "recall@10 {recall}");
}

#[test]
fn filtered_search_finds_every_match_at_every_selectivity() {
    let data = Collection::generate(&Spec {
        docs: 2000,
        tokens_per_doc: 50,
        centres: 1024,
        dim: 64,
        seed: 23,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), config(usize::MAX)).unwrap();
    // `bucket` is i mod 1000: a range on it selects any share of the documents.
    let docs = (0..data.len()).map(|i| {
        let mut d = new_doc(&format!("d{i}"), data.doc(i));
        d.doc.metadata = format!(r#"{{"bucket": {}, "group": "g{}"}}"#, i % 1000, i % 7);
        d
    });
    shard.upsert(docs.collect()).unwrap();
    shard.retrain().unwrap();
    let queries = data.queries(20, 32, 0.3, 79);
    let params = SearchParams::for_k(10);
    for below in [1.0, 10.0, 100.0, 500.0, 1000.0] {
        let range = proto::v1::Range {
            field: "bucket".into(),
            lt: Some(proto::v1::Bound { value: Some(proto::v1::bound::Value::Number(below)) }),
            ..Default::default()
        };
        let filter = Filter {
            must: vec![Condition { condition: Some(condition::Condition::Range(range)) }],
            ..Default::default()
        };
        let (mut found, mut wanted) = (0, 0);
        for (_, q) in &queries {
            let exact: HashSet<String> =
                shard.search_exact(q, 10, Some(&filter)).unwrap().into_iter().map(|f| f.id).collect();
            let got = shard.search(q, &params, Some(&filter)).unwrap();
            assert!(
                got.iter().all(|f| f.id[1..].parse::<usize>().unwrap() % 1000 < below as usize),
                "outside the filter"
            );
            found += got.iter().filter(|f| exact.contains(&f.id)).count();
            wanted += exact.len();
        }
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.99, "bucket < {below}: recall@10 {recall}");
        assert_eq!(wanted, queries.len() * 10.min(2 * below as usize), "bucket < {below}");
    }
    // The field index survives a restart; a document of another kind is refused by name.
    drop(shard);
    let shard = Shard::open(dir.path(), config(usize::MAX)).unwrap();
    assert_eq!(shard.matching(&only(vec!["d3".into()])).unwrap(), ["d3"]);
    let group = proto::v1::Match {
        field: "group".into(),
        any: vec![proto::v1::Value { kind: Some(proto::v1::value::Kind::Keyword("g3".into())) }],
    };
    let in_group =
        Filter { must: vec![Condition { condition: Some(condition::Condition::Match(group)) }], ..Default::default() };
    assert_eq!(shard.matching(&in_group).unwrap().len(), (0..2000).filter(|i| i % 7 == 3).count());
    let mut clash = new_doc("x", data.doc(0));
    clash.doc.metadata = r#"{"bucket": "high"}"#.into();
    let e = shard.upsert(vec![clash]).unwrap_err().to_string();
    assert!(e.contains("\"x\"") && e.contains("\"bucket\" is number"), "{e}");
}
