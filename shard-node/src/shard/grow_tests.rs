//! Originals, snapshots, retraining and compaction, each against a naive oracle: MaxSim in
//! f64 over the vectors as given (rounded to f16, as the shard keeps them).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use half::f16;

use super::*;
use crate::index::SearchParams;
use crate::synthetic::{Collection, Spec};

const DIM: usize = 64;

fn config(train_tokens: usize) -> ShardConfig {
    ShardConfig { dim: DIM, train_tokens, retrain_growth: 0.0, ..Default::default() }
}

fn new_doc(id: &str, vectors: &[f32]) -> NewDocument {
    NewDocument {
        doc: Document { id: id.into(), text: format!("text of {id}"), metadata: String::new() },
        vectors: vectors.to_vec(),
        version: 0,
    }
}

fn collection(docs: usize, seed: u64) -> Collection {
    Collection::generate(&Spec { docs, tokens_per_doc: 40, centres: 256, dim: DIM, seed, ..Default::default() })
}

fn fill(shard: &Shard, data: &Collection, docs: std::ops::Range<usize>) {
    for first in docs.clone().step_by(100) {
        let batch = (first..(first + 100).min(docs.end)).map(|i| new_doc(&format!("d{i}"), data.doc(i))).collect();
        shard.upsert(batch).unwrap();
    }
}

/// MaxSim in f64 of `query` against `doc` rounded to f16.
fn naive(query: &[f32], doc: &[f32]) -> f64 {
    let doc: Vec<f64> = doc.iter().map(|&x| f16::from_f32(x).to_f64()).collect();
    query
        .chunks_exact(DIM)
        .map(|q| {
            doc.chunks_exact(DIM)
                .map(|d| d.iter().zip(q).map(|(a, &b)| a * b as f64).sum::<f64>())
                .fold(f64::MIN, f64::max)
        })
        .sum()
}

/// The top `k` of every document by `naive`, as (id, score).
fn oracle(data: &Collection, ids: impl Iterator<Item = usize>, query: &[f32], k: usize) -> Vec<(String, f64)> {
    oracle_of(data, ids.map(|i| (i, i)), query, k)
}

/// `oracle`, where document `d{i}` holds the vectors of `data.doc(from)`, for each (i, from).
fn oracle_of(
    data: &Collection,
    docs: impl Iterator<Item = (usize, usize)>,
    query: &[f32],
    k: usize,
) -> Vec<(String, f64)> {
    let mut all: Vec<(String, f64)> = docs.map(|(i, from)| (format!("d{i}"), naive(query, data.doc(from)))).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.truncate(k);
    all
}

#[test]
fn exact_scores_are_maxsim_over_the_originals_and_exports_return_them() {
    let data = collection(300, 5);
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), config(2000)).unwrap();
    fill(&shard, &data, 0..300);
    assert!(shard.stats().trained);
    for (_, q) in data.queries(5, 16, 0.3, 9) {
        let want = oracle(&data, 0..300, &q, 10);
        let got = shard.search_exact(&q, 10, None).unwrap();
        for ((id, score), f) in want.iter().zip(&got) {
            assert!((f.score as f64 - score).abs() < 1e-3, "{} {} against {id} {score}", f.id, f.score);
        }
        // A search re-scores its candidates exactly: each score is the oracle's for that id.
        for f in shard.search(&q, &SearchParams::for_k(10), None).unwrap() {
            let i: usize = f.id[1..].parse().unwrap();
            assert!((f.score as f64 - naive(&q, data.doc(i))).abs() < 1e-3, "{}", f.id);
        }
    }
    let (_, vectors, _) = shard.export("d7").unwrap();
    let given: Vec<f32> = data.doc(7).iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    assert_eq!(vectors, given, "the export is the vectors as given, not decoded ones");
    // Without originals the shard scores decoded vectors: close, not equal.
    let dir = tempfile::tempdir().unwrap();
    let lossy = Shard::open(dir.path(), ShardConfig { keep_originals: false, ..config(2000) }).unwrap();
    fill(&lossy, &data, 0..300);
    let (_, decoded, _) = lossy.export("d7").unwrap();
    assert_ne!(decoded, given);
    assert!(lossy.disk_bytes().unwrap() < shard.disk_bytes().unwrap());
}

#[test]
fn searches_do_not_wait_for_the_writer() {
    let data = collection(200, 6);
    let dir = tempfile::tempdir().unwrap();
    let shard = Arc::new(Shard::open(dir.path(), config(2000)).unwrap());
    fill(&shard, &data, 0..200);
    let (target, q) = data.queries(1, 16, 0.2, 4).remove(0);
    // Held as a write, a training or a codec switch would hold it.
    let writer = locked(&shard.writer);
    let (send, answered) = std::sync::mpsc::channel();
    let searcher = shard.clone();
    std::thread::spawn(move || send.send(searcher.search(&q, &SearchParams::for_k(5), None).unwrap()).unwrap());
    let found = answered.recv_timeout(Duration::from_secs(20)).expect("the search waited for the writer");
    assert_eq!(found[0].id, format!("d{target}"));
    drop(writer);
}

#[test]
fn a_background_retraining_grows_k_while_writes_and_searches_go_on_and_loses_nothing() {
    let data = collection(1600, 7);
    let dir = tempfile::tempdir().unwrap();
    let config = ShardConfig { retrain_growth: 4.0, ..config(4000) };
    let shard = Arc::new(Shard::open(dir.path(), config.clone()).unwrap());
    fill(&shard, &data, 0..1000);
    let before = shard.stats();
    assert_eq!(before.generation, 1);
    assert!(shard.retrain_due().unwrap(), "40,000 tokens is 10× the 4,000 trained on");
    let queries = data.queries(20, 16, 0.2, 11);
    std::thread::scope(|s| {
        let retraining = s.spawn(|| shard.maintain().unwrap());
        // Writes and searches while it runs: new documents, replacements, deletes.
        let writer = s.spawn(|| {
            fill(&shard, &data, 1000..1600);
            shard.upsert(vec![new_doc("d3", data.doc(4))]).unwrap();
            shard.delete(&["d5".into()], 0).unwrap();
        });
        while !retraining.is_finished() {
            for (target, q) in &queries {
                let found = shard.search(q, &SearchParams::for_k(5), None).unwrap();
                assert!(!found.is_empty() && *target < 1600);
            }
        }
        writer.join().unwrap();
        match retraining.join().unwrap() {
            Some(Maintenance::Retrained(r)) => assert_eq!(r.generation, 2),
            other => panic!("no retraining: {other:?}"),
        }
    });
    let after = shard.stats();
    assert_eq!(after.generation, 2);
    assert!(after.centroids > before.centroids, "{before:?} then {after:?}");
    assert_eq!(after.documents, 1599);
    assert!(!shard.retrain_due().unwrap(), "trained for what it held when it began");
    let check = |shard: &Shard| {
        for (i, (target, q)) in queries.iter().enumerate() {
            let ids: HashSet<usize> = (0..1600).filter(|&d| d != 5).collect();
            let want = oracle(&data, ids.iter().copied().filter(|&d| d != 3), q, 5);
            let exact: Vec<String> = shard.search_exact(q, 5, None).unwrap().into_iter().map(|f| f.id).collect();
            // d3 now holds d4's vectors; the others are the oracle's.
            if !exact.contains(&"d3".to_string()) && !exact.contains(&"d4".to_string()) {
                assert_eq!(exact, want.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), "query {i}");
            }
            let found = shard.search(q, &SearchParams::for_k(5), None).unwrap();
            assert!(found.iter().any(|f| f.id == format!("d{target}")) || *target == 5, "query {i}");
        }
        for i in (0..1600).filter(|&i| i != 5) {
            shard.get(&format!("d{i}")).unwrap();
        }
        assert!(shard.get("d5").is_err());
    };
    check(&shard);
    drop(shard);
    let reopened = Shard::open(dir.path(), config).unwrap();
    assert_eq!(reopened.stats().generation, 2);
    assert_eq!(reopened.stats().documents, 1599);
    check(&reopened);
}

#[test]
fn a_retraining_cut_short_anywhere_loses_nothing() {
    let data = collection(400, 8);
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), config(2000)).unwrap();
    fill(&shard, &data, 0..400);
    // As a crash leaves it: a new generation stored, half the documents re-encoded by it.
    let view = shard.view();
    let State::Ready { index: old, generation: serving } = &*view else { panic!("trained") };
    let codec = Codec::train(&data.vectors, DIM, shard.config.train).unwrap();
    let generation = shard.store.add_codec(&codec, data.tokens() as u64).unwrap();
    let live: Vec<u32> = old.live_docs().collect();
    let mut partial = Index::new(codec);
    let mut codecs = super::encoding::Codecs::new(&shard.store, Some((*serving, old.codec())));
    shard.reencode(&mut partial, generation, &mut codecs, &live[..200]).unwrap();
    shard.store.flush().unwrap();
    drop(view);
    drop(shard);
    let shard = Shard::open(dir.path(), config(2000)).unwrap();
    assert_eq!(shard.stats().generation, 1, "the manifest still names the old codec");
    assert_eq!(shard.stats().documents, 400);
    for (target, q) in data.queries(10, 16, 0.2, 3) {
        let found = shard.search(&q, &SearchParams::for_k(3), None).unwrap();
        assert_eq!(found[0].id, format!("d{target}"));
    }
    // The next retraining takes a fresh generation: the half-used one is never reused.
    assert_eq!(shard.retrain().unwrap().unwrap().generation, generation + 1);
    assert_eq!(shard.stats().documents, 400);
}

#[test]
fn compaction_drops_dead_entries_and_keeps_every_answer() {
    let data = collection(400, 9);
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), ShardConfig { compact_dead_share: 0.3, ..config(2000) }).unwrap();
    fill(&shard, &data, 0..400);
    let gone: Vec<String> = (0..400).step_by(2).map(|i| format!("d{i}")).collect();
    shard.delete(&gone[..100], 0).unwrap();
    assert_eq!(shard.maintain().unwrap(), None, "a quarter dead is below the threshold");
    shard.delete(&gone[100..], 0).unwrap();
    let queries = data.queries(10, 16, 0.2, 5);
    let before: Vec<_> = queries.iter().map(|(_, q)| shard.search(q, &SearchParams::for_k(5), None).unwrap()).collect();
    let memory = shard.stats().memory_bytes;
    let dead: usize = (0..400).step_by(2).map(|i| data.doc(i).len() / DIM).sum();
    assert_eq!(shard.maintain().unwrap(), Some(Maintenance::Compacted(dead)));
    assert_eq!(shard.stats().dead_tokens, 0);
    assert!(shard.stats().memory_bytes < memory * 2 / 3);
    for ((_, q), want) in queries.iter().zip(before) {
        assert_eq!(shard.search(q, &SearchParams::for_k(5), None).unwrap(), want);
    }
}

#[test]
fn a_search_among_documents_rewritten_without_pause_misses_none() {
    let data = collection(150, 10);
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), config(2000)).unwrap();
    fill(&shard, &data, 0..150);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (target, q) = data.queries(1, 16, 0.2, 8).remove(0);
    let (mut searches, mut rewrites) = (0, 0);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let i = n % 150;
                shard.upsert(vec![new_doc(&format!("d{i}"), data.doc(i))]).unwrap();
                n += 1;
                // Compactions free the rewritten documents' ids for the next rewrites.
                if n % 25 == 0 {
                    shard.maintain().unwrap();
                }
            }
            n
        });
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            for params in [SearchParams::for_k(150), SearchParams { candidates: 150, ..SearchParams::for_k(5) }] {
                let found = shard.search(&q, &params, None).unwrap();
                let distinct: HashSet<&str> = found.iter().map(|f| f.id.as_str()).collect();
                assert_eq!(distinct.len(), found.len(), "repeated");
                assert_eq!(found.len(), params.k, "a document was missed while rewritten");
                assert_eq!(found[0].id, format!("d{target}"));
                // An id given to another document while this search read it would pair a
                // name with another document's score.
                for f in &found {
                    let i: usize = f.id[1..].parse().unwrap();
                    assert!((f.score as f64 - naive(&q, data.doc(i))).abs() < 1e-3, "{} scored as another", f.id);
                }
            }
            assert_eq!(shard.search_exact(&q, 150, None).unwrap().len(), 150);
            searches += 3;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        rewrites = writer.join().unwrap();
    });
    let (ids, retried) = (shard.ids().limit(), shard.retried_searches());
    println!(
        "{searches} searches beside {rewrites} rewrites under {ids} internal ids, none missed a document; \
         {retried} ran again"
    );
    assert!(rewrites > 10 && searches > 10);
    // Documents replaced under a search are followed to their new versions: running again is
    // for the moment between a write's commit and its record only.
    assert!(retried * 4 <= searches as u64, "{retried} of {searches} searches ran again");
}

#[test]
fn ids_of_documents_gone_are_reused_once_no_view_names_them() {
    let data = collection(300, 11);
    let dir = tempfile::tempdir().unwrap();
    let shard = Shard::open(dir.path(), config(2000)).unwrap();
    fill(&shard, &data, 0..300);
    // Thirty rewrites of every document, each document taking the next one's vectors.
    (1..=30).for_each(|round| rewrite(&shard, &data, round));
    let limit = shard.ids().limit();
    assert!(limit <= 3 * 300, "9,300 writes took {limit} ids");
    let check = |shard: &Shard, round: usize| {
        for (target, q) in data.queries(8, 16, 0.2, 4) {
            let want = oracle_of(&data, (0..300).map(|i| (i, (i + round) % 300)), &q, 5);
            let found = shard.search_exact(&q, 5, None).unwrap();
            assert_eq!(found[0].id, format!("d{}", (target + 300 - round % 300) % 300));
            for (f, (id, score)) in found.iter().zip(&want) {
                assert_eq!(&f.id, id);
                assert!((f.score as f64 - score).abs() < 1e-3);
            }
        }
    };
    check(&shard, 30);
    // A held view keeps the ids it names: nothing it holds goes to the next writes.
    let held = shard.view();
    let State::Ready { index: seen, .. } = &*held else { panic!("trained") };
    let named: HashSet<u32> = seen.live_docs().collect();
    rewrite(&shard, &data, 31);
    rewrite(&shard, &data, 32);
    let now = shard.view();
    let State::Ready { index: current, .. } = &*now else { panic!("trained") };
    assert!(current.live_docs().all(|d| !named.contains(&d)), "an id of the held view was given out");
    drop((now, held));
    rewrite(&shard, &data, 33);
    let reused = shard.view();
    let State::Ready { index: current, .. } = &*reused else { panic!("trained") };
    assert!(current.live_docs().any(|d| named.contains(&d)), "the view let go, its ids are free");
    drop(reused);
    check(&shard, 33);
    drop(shard);
    // A restart finds the ids no document has and gives them out first.
    let shard = Shard::open(dir.path(), config(2000)).unwrap();
    check(&shard, 33);
    (34..=40).for_each(|round| rewrite(&shard, &data, round));
    assert!(shard.ids().limit() <= 3 * 300);
    check(&shard, 40);
}

/// Rewrites every document of `data` in `shard`, document i taking the vectors of i + round,
/// and runs what maintenance is due.
fn rewrite(shard: &Shard, data: &Collection, round: usize) {
    let batch = (0..300).map(|i| new_doc(&format!("d{i}"), data.doc((i + round) % 300))).collect();
    shard.upsert(batch).unwrap();
    shard.maintain().unwrap();
}
