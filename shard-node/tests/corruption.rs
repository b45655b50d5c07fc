//! Damage to a closed store, at 120 offsets spread evenly over its sled files: each time the
//! store is opened again, and either every acknowledged document is found by an exact search of
//! its own vectors, or the open is refused with the error that names the store and says what to
//! do. No silent loss, no panic. Prints the counts.

use std::path::Path;

use shard_node::shard::{NewDocument, Shard, ShardConfig};
use shard_node::store::Document;
use shard_node::synthetic::{Collection, Spec};
use shard_node::Error;

const OFFSETS: usize = 120;

fn config() -> ShardConfig {
    ShardConfig { dim: 32, train_tokens: 4000, ..Default::default() }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        match entry.file_type().unwrap().is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => drop(std::fs::copy(entry.path(), target).unwrap()),
        }
    }
}

/// Every file of the store with its size, in a fixed order.
fn files(dir: &Path, out: &mut Vec<(std::path::PathBuf, u64)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        match e.file_type().unwrap().is_dir() {
            true => files(&e.path(), out),
            false => out.push((e.path(), e.metadata().unwrap().len())),
        }
    }
}

#[test]
fn damaged_stores_are_refused_by_name_or_lose_nothing() {
    let data = Collection::generate(&Spec {
        docs: 200,
        tokens_per_doc: 30,
        centres: 256,
        dim: 32,
        seed: 9,
        ..Default::default()
    });
    let pristine = tempfile::tempdir().unwrap();
    {
        let shard = Shard::open(pristine.path(), config()).unwrap();
        let docs = (0..data.len()).map(|i| NewDocument {
            doc: Document { id: format!("d{i}"), text: format!("text {i}"), metadata: format!("{{\"n\": {i}}}") },
            vectors: data.doc(i).to_vec(),
            version: 0,
        });
        shard.upsert(docs.collect()).unwrap();
        assert!(shard.stats().trained);
    }
    let mut all = Vec::new();
    files(pristine.path(), &mut all);
    let total: u64 = all.iter().map(|(_, n)| n).sum();
    let (mut intact, mut refused, mut salvaged, mut lost, mut panics) = (0, 0, 0, Vec::new(), Vec::new());
    for k in 0..OFFSETS {
        // The k-th of OFFSETS points spread over all the store's bytes, file after file.
        let mut at = total * k as u64 / OFFSETS as u64;
        let (file, size) = all
            .iter()
            .find(|(_, n)| {
                if at < *n {
                    true
                } else {
                    at -= n;
                    false
                }
            })
            .unwrap();
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let target = work.path().join(file.strip_prefix(pristine.path()).unwrap());
        let mut bytes = std::fs::read(&target).unwrap();
        let start = (at as usize).min(bytes.len().saturating_sub(8));
        for b in &mut bytes[start..(start + 8).min(*size as usize)] {
            *b ^= 0x5a;
        }
        std::fs::write(&target, &bytes).unwrap();
        let opened = std::panic::catch_unwind(|| Shard::open(work.path(), config()));
        match opened {
            Err(_) => panics.push(format!("{} at {start}", target.display())),
            Ok(Err(Error::Corrupt { path, reason })) => {
                assert!(path.contains(work.path().to_str().unwrap()), "the error names the store: {path}");
                assert!(
                    reason.contains("replica add") && reason.contains("--salvage"),
                    "the error says what to do: {reason}"
                );
                refused += 1;
                // Salvage, where sled can open it at all: read-only, serving what is whole.
                if let Ok(Ok(shard)) = std::panic::catch_unwind(|| Shard::salvage(work.path(), config())) {
                    let queries: Vec<&[f32]> = (0..data.len()).map(|i| data.doc(i)).collect();
                    let mut found = 0;
                    for chunk in queries.chunks(25) {
                        found +=
                            shard.search_exact_batch(chunk, 1, None).unwrap().iter().filter(|h| !h.is_empty()).count();
                    }
                    let kept = shard.stats().documents;
                    assert!(
                        kept == 0 || found == data.len(),
                        "salvaged {kept} documents, but searches came back empty"
                    );
                    let write = shard.upsert(vec![NewDocument {
                        doc: Document { id: "new".into(), text: String::new(), metadata: String::new() },
                        vectors: data.doc(0).to_vec(),
                        version: 0,
                    }]);
                    assert!(matches!(write, Err(Error::ReadOnly(_))), "a salvaged store took a write");
                    salvaged += 1;
                }
            }
            Ok(Err(e)) => panic!("offset {start} of {}: an error that is not the named one: {e}", target.display()),
            Ok(Ok(shard)) => {
                let queries: Vec<&[f32]> = (0..data.len()).map(|i| data.doc(i)).collect();
                let mut missing = 0;
                for (chunk, first) in queries.chunks(25).zip((0..).step_by(25)) {
                    let answers = shard.search_exact_batch(chunk, 5, None).unwrap();
                    for (j, hits) in answers.iter().enumerate() {
                        let id = format!("d{}", first + j);
                        missing += !hits.iter().any(|h| h.id == id) as usize;
                    }
                }
                match (missing, shard.stats().documents) {
                    (0, n) if n == data.len() => intact += 1,
                    (m, n) => lost.push(format!("{} at {start}: {m} not found, {n} documents", target.display())),
                }
            }
        }
    }
    println!(
        "{OFFSETS} offsets over {} files ({total} bytes): opened with every document {intact}, refused by name \
         {refused} ({salvaged} of those salvaged read-only), silent losses {}, panics {}",
        all.len(),
        lost.len(),
        panics.len()
    );
    assert!(lost.is_empty(), "silent losses: {lost:#?}");
    assert!(panics.is_empty(), "panics: {panics:#?}");
    assert!(refused > 0, "no damage was noticed at all: the offsets missed the data");
}
