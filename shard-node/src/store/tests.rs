use super::*;
use crate::codec::Codec;

/// Unversioned writes, which always apply (what the tests from before versions exercise).
impl Store {
    fn upsert(&mut self, batch: &[(Document, Tokens)]) -> Result<Vec<Written>> {
        let written = self.versioned(batch, &vec![0; batch.len()])?;
        Ok(written.into_iter().map(|w| w.expect("unversioned writes always apply")).collect())
    }

    /// A write under fresh internal ids, past every one handed out.
    fn versioned(&self, batch: &[(Document, Tokens)], versions: &[u64]) -> Result<Vec<Option<Written>>> {
        let next = self.manifest().next_id;
        let ids: Vec<u32> = (next..next + batch.len() as u32).collect();
        self.upsert_versioned(batch, versions, &ids, |_| {})
    }

    fn delete(&mut self, external: &[String]) -> Result<Vec<u32>> {
        self.delete_versioned(external, 0, |_| {})
    }
}

fn doc(id: &str, text: &str) -> Document {
    Document { id: id.into(), text: text.into(), metadata: format!("{{\"len\":{}}}", text.len()) }
}

#[test]
fn upsert_get_replace_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    let w = store
        .upsert(&[(doc("a", "first"), Tokens::Raw(vec![1.0; 4])), (doc("b", "second"), Tokens::Raw(vec![2.0; 8]))])
        .unwrap();
    assert_eq!(w, [Written { id: 0, replaced: None }, Written { id: 1, replaced: None }]);
    let w = store.upsert(&[(doc("a", "first, again"), Tokens::Raw(vec![3.0; 4]))]).unwrap();
    assert_eq!(w, [Written { id: 2, replaced: Some(0) }]);
    assert_eq!(store.get("a").unwrap(), Some((2, doc("a", "first, again"))));
    assert_eq!(store.tokens(0).unwrap(), None, "the old version is gone");
    assert_eq!(store.tokens(2).unwrap(), Some(Tokens::Raw(vec![3.0; 4])));
    assert_eq!(store.external_id(2).unwrap().as_deref(), Some("a"));
    assert_eq!(store.delete(&["b".into(), "nope".into()]).unwrap(), [1]);
    assert_eq!(store.get("b").unwrap(), None);
    drop(store);
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(store.manifest().next_id, 3);
    let all: Vec<u32> = store.all_tokens().map(|t| t.unwrap().0).collect();
    assert_eq!(all, [2]);
    assert!(Store::open(dir.path(), 8, 2, DEFAULT_CACHE_BYTES).is_err(), "another dim is refused");
}

/// A codec of dim 4 (what it encodes to does not matter to the store).
fn tiny_codec() -> Codec {
    Codec {
        dim: 4,
        centroids: vec![half::f16::ZERO; 4],
        quantizer: crate::codec::Quantizer {
            dim: 4,
            nbits: 2,
            cutoffs: vec![0.0; 12],
            weights: vec![0.0; 16],
            table: Default::default(),
        },
    }
}

#[test]
fn codec_generations_are_kept_and_documents_can_be_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.upsert(&[(doc("a", ""), Tokens::Raw(vec![0.5; 4]))]).unwrap();
    assert_eq!(store.install_codec(&tiny_codec(), 1).unwrap(), 1);
    let encoded = Tokens::Encoded { codec: 1, codes: vec![0], residuals: vec![7], originals: None };
    store.rewrite([(0, encoded.clone())].into_iter()).unwrap();
    drop(store);
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(store.manifest().codec, 1);
    assert_eq!(store.codec(1).unwrap(), tiny_codec());
    assert_eq!(store.tokens(0).unwrap(), Some(encoded));
    assert!(store.codec(2).is_err());
}

#[test]
fn a_damaged_or_foreign_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.upsert(&[(doc("a", "x"), Tokens::Raw(vec![1.0; 4]))]).unwrap();
    let good = store.meta.get("manifest").unwrap().unwrap().to_vec();
    // A flipped bit in the manifest.
    let mut bad = good.clone();
    bad[9] ^= 1;
    store.meta.insert("manifest", bad).unwrap();
    store.db.flush().unwrap();
    drop(store);
    let err = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).err().expect("refused");
    assert!(matches!(&err, Error::Corrupt { reason, .. } if reason.contains("checksum")), "{err}");
    // Another version, correctly sealed.
    let db = sled::open(dir.path()).unwrap();
    let mut other = good[..good.len() - 4].to_vec();
    other[4..8].copy_from_slice(&99u32.to_le_bytes());
    db.open_tree("meta").unwrap().insert("manifest", seal(other)).unwrap();
    // And a damaged document value: reported with its key when read.
    let vectors = db.open_tree("vectors").unwrap();
    let mut value = vectors.get(key(0)).unwrap().unwrap().to_vec();
    value[6] ^= 0x40;
    vectors.insert(key(0), value).unwrap();
    db.flush().unwrap();
    drop((db, vectors));
    let err = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).err().expect("refused");
    assert!(err.to_string().contains("version 99"), "{err}");
    let db = sled::open(dir.path()).unwrap();
    db.open_tree("meta").unwrap().insert("manifest", good).unwrap();
    db.flush().unwrap();
    drop(db);
    // The damaged vectors are found by the check at open, named, and refused; salvage opens
    // the store and says which document cannot be served.
    let err = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).err().expect("refused");
    assert!(
        err.to_string().contains("1 damaged entries, the first: the id entry or vectors of document \"a\""),
        "{err}"
    );
    assert!(err.to_string().contains("--salvage"), "{err}");
    let (store, damage) = Store::salvage(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!((damage.count, damage.documents.iter().copied().collect::<Vec<_>>()), (1, vec![0]));
    let err = store.tokens(0).expect_err("damaged value");
    assert!(err.to_string().contains("document 0"), "{err}");
}

#[test]
fn versioned_writes_apply_only_when_newer_and_tombstones_hold_until_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    let raw = || Tokens::Raw(vec![1.0; 4]);
    let w = store.versioned(&[(doc("a", "v5"), raw()), (doc("b", "v5"), raw())], &[5, 5]).unwrap();
    assert!(w.iter().all(Option::is_some));
    // Older and equal versions are refused; a newer one replaces.
    assert_eq!(store.versioned(&[(doc("a", "v3"), raw())], &[3]).unwrap(), [None]);
    assert_eq!(store.versioned(&[(doc("a", "v5 again"), raw())], &[5]).unwrap(), [None]);
    assert!(store.versioned(&[(doc("a", "v7"), raw())], &[7]).unwrap()[0].is_some());
    assert_eq!(store.get("a").unwrap().unwrap().1.text, "v7");
    // A delete older than the document does nothing; a newer one leaves a tombstone that
    // refuses every older write, and a newer write brings the document back.
    assert!(store.delete_versioned(&["a".into()], 6, |_| {}).unwrap().is_empty());
    assert_eq!(store.delete_versioned(&["a".into()], 8, |_| {}).unwrap().len(), 1);
    assert_eq!(store.versioned(&[(doc("a", "v7"), raw())], &[7]).unwrap(), [None]);
    assert_eq!(store.get("a").unwrap(), None);
    assert_eq!(store.record("a").unwrap().map(|r| (r.version, r.deleted_at.is_some())), Some((8, true)));
    // The same id twice in one batch: the later one wins.
    let w = store.versioned(&[(doc("c", "first"), raw()), (doc("c", "second"), raw())], &[9, 9]).unwrap();
    assert_eq!(w.iter().filter(|w| w.is_some()).count(), 1);
    assert_eq!(store.get("c").unwrap().unwrap().1.text, "second");
    // Tombstones outlive a reopen until purged; unversioned writes always apply.
    drop(store);
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(store.purge_tombstones(1).unwrap(), 0, "the tombstone is newer than 1 ms after 1970");
    assert_eq!(store.purge_tombstones(u64::MAX).unwrap(), 1);
    assert_eq!(store.record("a").unwrap(), None);
    assert!(store.versioned(&[(doc("b", "unversioned"), raw())], &[0]).unwrap()[0].is_some());
    assert_eq!(store.record("b").unwrap(), None, "an unversioned write leaves no version");
    // The versions list walks live documents and tombstones together, in id order, a page at
    // a time; the identity made at creation outlives a reopen.
    store.delete_versioned(&["b".into(), "0-never-written".into()], 10, |_| {}).unwrap();
    assert!(store.versioned(&[(doc("e", "unversioned"), raw())], &[0]).unwrap()[0].is_some());
    let listed = |store: &Store, after: &str, limit| -> Vec<(String, u64, bool)> {
        let page = store.versions_after(after, limit).unwrap();
        page.into_iter().map(|(id, r)| (id, r.version, r.deleted_at.is_some())).collect()
    };
    let all = listed(&store, "", 100);
    let expected = [("0-never-written", 10, true), ("b", 10, true), ("c", 9, false), ("e", 0, false)];
    assert_eq!(all, expected.map(|(id, v, d)| (id.to_string(), v, d)));
    assert_eq!(listed(&store, "", 2), all[..2]);
    assert_eq!(listed(&store, "b", 2), all[2..]);
    assert_eq!(listed(&store, "e", 2), []);
    let identity = store.identity().to_string();
    drop(store);
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(store.identity(), identity);
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        Store::open(other.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap().identity(),
        identity,
        "a new store is another"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// Replicas that saw the same versioned writes in any order hold the same documents.
    #[test]
    fn replicas_converge_whatever_the_order(
        writes in proptest::collection::vec((0u8..4, 1u64..40, proptest::bool::ANY), 1..30),
        seed in 0u64..1000,
    ) {
        // Distinct versions, as the routers' clocks give them.
        let writes: Vec<(String, u64, bool)> =
            writes.into_iter().enumerate().map(|(i, (id, v, del))| (format!("d{id}"), v * 100 + i as u64, del)).collect();
        let mut shuffled = writes.clone();
        let mut state = seed;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let outcome = |order: &[(String, u64, bool)]| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
            for (id, version, delete) in order {
                if *delete {
                    store.delete_versioned(std::slice::from_ref(id), *version, |_| {}).unwrap();
                } else {
                    let text = format!("{id} at {version}");
                    store.versioned(&[(doc(id, &text), Tokens::Raw(vec![0.0; 4]))], &[*version]).unwrap();
                }
            }
            let held = (0..4).map(|i| {
                let id = format!("d{i}");
                (store.get(&id).unwrap().map(|(_, d)| d.text), store.record(&id).unwrap().map(|r| r.version))
            }).collect::<Vec<_>>();
            let listed: Vec<(String, u64, bool)> = store.versions_after("", 10).unwrap().into_iter()
                .map(|(id, r)| (id, r.version, r.deleted_at.is_some())).collect();
            (held, listed)
        };
        proptest::prop_assert_eq!(outcome(&writes), outcome(&shuffled));
    }
}

#[test]
fn a_half_written_snapshot_of_a_failed_start_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.upsert(&[(doc("a", "x"), Tokens::Raw(vec![1.0; 4]))]).unwrap();
    drop(store);
    // What a start on a full disk leaves: an empty snapshot sled would fail to read.
    let leftover = dir.path().join("snap.00000000000012AB.generating");
    std::fs::write(&leftover, b"").unwrap();
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert!(!leftover.exists());
    assert!(store.get("a").unwrap().is_some());
}

#[test]
fn a_store_that_lost_acknowledged_writes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.upsert(&[(doc("a", "x"), Tokens::Raw(vec![1.0; 4]))]).unwrap();
    store.upsert(&[(doc("b", "y"), Tokens::Raw(vec![2.0; 4]))]).unwrap();
    // sled dropping a document and its entries behind our back: the tally says two.
    let (docs, ids, vectors) = (store.docs.clone(), store.ids.clone(), store.vectors.clone());
    let (internal, _) = store.get("b").unwrap().unwrap();
    docs.remove("b").unwrap();
    ids.remove(key(internal)).unwrap();
    vectors.remove(key(internal)).unwrap();
    store.db.flush().unwrap();
    drop((store, docs, ids, vectors));
    let err = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).err().expect("refused");
    assert!(err.to_string().contains("holds 1 documents and 0 version records, its writes left 2 and 0"), "{err}");
    // And one that went back to an older state whole: its watermark is ahead.
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.upsert(&[(doc("a", "x"), Tokens::Raw(vec![1.0; 4]))]).unwrap();
    let older = std::fs::read(dir.path().join("jacolbert.watermark")).unwrap();
    store.upsert(&[(doc("b", "y"), Tokens::Raw(vec![2.0; 4]))]).unwrap();
    let newer = std::fs::read(dir.path().join("jacolbert.watermark")).unwrap();
    assert_ne!(older, newer);
    store.meta.insert(check::TALLY, check::Tally { sequence: 1, docs: 2, versions: 0 }.to_bytes()).unwrap();
    store.db.flush().unwrap();
    drop(store);
    let err = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).err().expect("refused");
    assert!(
        err.to_string().contains("sled recovered an older state: it holds 1 durable writes, 2 were acknowledged"),
        "{err}"
    );
}

#[test]
fn ids_no_document_has_are_found_and_one_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    let batch: Vec<_> = ["a", "b", "c", "d"].iter().map(|id| (doc(id, "x"), Tokens::Raw(vec![1.0; 4]))).collect();
    store.upsert(&batch).unwrap();
    store.delete(&["b".into(), "d".into()]).unwrap();
    store.upsert(&[(doc("a", "again"), Tokens::Raw(vec![2.0; 4]))]).unwrap();
    assert_eq!(store.unused_ids().unwrap(), [0, 1, 3], "a was 0 and is 4 now");
    let err = store.upsert_versioned(&[(doc("e", "x"), Tokens::Raw(vec![0.0; 4]))], &[0], &[2], |_| {}).unwrap_err();
    assert!(err.to_string().contains("internal id 2 given to \"e\" belongs to \"c\""), "{err}");
    assert_eq!(store.get("e").unwrap(), None, "the refused write left nothing");
    assert_eq!(store.tokens(2).unwrap(), Some(Tokens::Raw(vec![1.0; 4])), "and c's tokens are c's");
    let w = store.upsert_versioned(&[(doc("e", "x"), Tokens::Raw(vec![0.0; 4]))], &[0], &[1], |_| {}).unwrap();
    assert_eq!(w, [Some(Written { id: 1, replaced: None })]);
    drop(store);
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(store.unused_ids().unwrap(), [0, 3]);
    assert_eq!((store.get("e").unwrap().unwrap().0, store.manifest().next_id), (1, 5));
}

#[test]
fn tokens_of_a_write_that_did_not_finish_or_apply_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.versioned(&[(doc("a", "x"), Tokens::Raw(vec![1.0; 4]))], &[5]).unwrap();
    // An older version of a does not apply: its id is left unused, tokens and all.
    let w = store.versioned(&[(doc("a", "old"), Tokens::Raw(vec![9.0; 4]))], &[4]).unwrap();
    assert_eq!(w, [None]);
    assert_eq!((store.tokens(1).unwrap(), store.tokens(0).unwrap()), (None, Some(Tokens::Raw(vec![1.0; 4]))));
    // A crash between a write's tokens and its transaction: tokens under an id no document has,
    // past `next_id` (2) and among the unused ones (1).
    store.vectors.insert(key(7), Tokens::Raw(vec![2.0; 4]).to_bytes_at(None)).unwrap();
    store.vectors.insert(key(1), Tokens::Raw(vec![2.0; 4]).to_bytes_at(None)).unwrap();
    store.db.flush().unwrap();
    drop(store);
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    let all: Vec<u32> = store.all_tokens().map(|t| t.unwrap().0).collect();
    assert_eq!(all, [0], "the unfinished write's tokens are gone, a's stay");
    assert_eq!(store.get("a").unwrap(), Some((0, doc("a", "x"))));
    store.upsert(&[(doc("b", "y"), Tokens::Raw(vec![3.0; 4]))]).unwrap();
    assert_eq!(store.damage().unwrap().first, None);
}

/// `n` tokens of dim 4 encoded by generation 1, with originals that depend on `seed`.
fn encoded(seed: u32, n: usize) -> Tokens {
    let originals = (0..n as u32 * 4).map(|i| half::f16::from_f32(((i + seed) % 97) as f32 * 0.01)).collect();
    Tokens::Encoded { codec: 1, codes: vec![0; n], residuals: vec![seed as u8; n], originals: Some(originals) }
}

/// Bytes of the originals files, by file name.
fn originals_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("originals"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
        .collect();
    files.sort();
    files
}

#[test]
fn originals_live_in_their_files_and_a_reencoding_keeps_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.install_codec(&tiny_codec(), 1).unwrap();
    let (a, b) = (encoded(1, 300), encoded(2, 200));
    store.upsert(&[(doc("a", ""), a.clone()), (doc("b", ""), b.clone())]).unwrap();
    assert_eq!(originals_files(dir.path()), [("00000001.f16".to_string(), (300 + 200) * 4 * 2)]);
    assert_eq!((store.tokens(0).unwrap(), store.tokens(1).unwrap()), (Some(a.clone()), Some(b.clone())));
    let value = store.vectors.get(key(0)).unwrap().unwrap();
    assert!(value.len() < 300 * 4 * 2, "the value holds the originals ({} bytes)", value.len());
    // Re-encoded with the same originals (a retraining; a document brought to the codec):
    // nothing is appended.
    let again = |t: &Tokens| match t.clone() {
        Tokens::Encoded { codec, codes, originals, .. } => {
            Tokens::Encoded { codec, codes, residuals: vec![9], originals }
        }
        raw => raw,
    };
    assert!(!store.swap_tokens(0, &b, &again(&a)).unwrap(), "swapped from tokens it does not hold");
    assert!(store.swap_tokens(0, &a, &again(&a)).unwrap());
    store.rewrite([(1, again(&b))].into_iter()).unwrap();
    assert_eq!(originals_files(dir.path())[0].1, (300 + 200) * 4 * 2);
    drop(store);
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!((store.tokens(0).unwrap(), store.tokens(1).unwrap()), (Some(again(&a)), Some(again(&b))));
}

#[test]
fn damaged_originals_are_refused_by_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.install_codec(&tiny_codec(), 1).unwrap();
    store.upsert(&[(doc("a", ""), encoded(1, 10)), (doc("b", ""), encoded(2, 10))]).unwrap();
    drop(store);
    let path = dir.path().join("originals/00000001.f16");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x10; // in b's originals (a's are the first 80 bytes)
    std::fs::write(&path, bytes).unwrap();
    let refused = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).err().expect("a damaged store was opened");
    assert!(refused.to_string().contains("document \"b\""), "{refused}");
    let (store, damage) = Store::salvage(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!((damage.count, damage.documents.iter().collect::<Vec<_>>()), (1, vec![&1]));
    assert_eq!(store.tokens(0).unwrap(), Some(encoded(1, 10)), "the intact document is served");
}

/// Documents d0..d49 of 2,000 tokens, their originals those of `version`.
fn fifty(version: u32) -> Vec<(Document, Tokens)> {
    (0..50).map(|i| (doc(&format!("d{i}"), ""), encoded(version * 100 + i, 2000))).collect()
}

#[test]
fn dead_originals_are_compacted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.install_codec(&tiny_codec(), 1).unwrap();
    let live = 50 * 2000 * 4 * 2;
    for version in 0..3 {
        store.upsert(&fifty(version)).unwrap();
    }
    store.delete(&["d0".into()]).unwrap();
    assert_eq!(originals_files(dir.path()), [("00000001.f16".to_string(), 3 * live)]);
    drop(store);
    // Three times the live bytes, over a MiB dead: rewritten into generation 2 at open.
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(originals_files(dir.path()), [("00000002.f16".to_string(), live / 50 * 49)]);
    for (i, (doc, tokens)) in fifty(2).into_iter().enumerate().skip(1) {
        let (id, _) = store.get(&doc.id).unwrap().unwrap();
        assert_eq!(store.tokens(id).unwrap(), Some(tokens), "document {i}");
    }
    drop(store);
    let store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(originals_files(dir.path()), [("00000002.f16".to_string(), live / 50 * 49)], "compacted once");
    assert_eq!(store.get("d0").unwrap(), None);
}

#[test]
fn dead_originals_are_compacted_in_service_beside_reencodings_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2, DEFAULT_CACHE_BYTES).unwrap();
    store.install_codec(&tiny_codec(), 1).unwrap();
    for version in 0..3 {
        store.upsert(&fifty(version)).unwrap();
    }
    let (first, _) = store.get("d0").unwrap().unwrap();
    let before = store.vectors.get(key(first)).unwrap().unwrap();
    // A re-encoding (as a retraining's) swaps every document over and over meanwhile.
    let store = std::sync::Arc::new(store);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swaps = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reencoding = {
        let (store, stop, swaps) = (store.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (id, tokens) in store.all_tokens().map(Result::unwrap).collect::<Vec<_>>() {
                    let Tokens::Encoded { codec, codes, residuals, originals } = tokens.clone() else { unreachable!() };
                    let again = Tokens::Encoded { codec, codes, residuals: vec![residuals[0] ^ 1], originals };
                    let swapped = store.swap_tokens(id, &tokens, &again).unwrap();
                    swaps.fetch_add(swapped as usize, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    while swaps.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(store.originals_count_due(), "the files grew by half");
    let dead = store.compact_originals().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reencoding.join().unwrap();
    let live = 50 * 2000 * 4 * 2;
    assert_eq!(dead, Some(2 * live));
    assert_eq!(originals_files(dir.path()), [("00000002.f16".to_string(), live)], "each copied once");
    for entry in store.vectors.iter() {
        let (_, value) = entry.unwrap();
        let (_, at) = Tokens::from_bytes(&value, "", "").unwrap();
        assert_eq!(at.map(|at| at.generation), Some(2), "a value names a retired generation");
    }
    for (doc, tokens) in fifty(2) {
        let (id, _) = store.get(&doc.id).unwrap().unwrap();
        let Some(Tokens::Encoded { originals, .. }) = store.tokens(id).unwrap() else { panic!("{}", doc.id) };
        let Tokens::Encoded { originals: expected, .. } = tokens else { unreachable!() };
        assert_eq!(originals, expected, "{}", doc.id);
    }
    // A read that took its location before the move still finds the originals (the retired
    // file stays open a while), and nothing more is due.
    assert!(store.parse_tokens(&before, first).is_ok());
    assert!(!store.originals_count_due(), "nothing written since the count");
    assert_eq!(store.compact_originals().unwrap(), None);
}
