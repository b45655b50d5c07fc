use super::*;

fn doc(id: &str, text: &str) -> Document {
    Document { id: id.into(), text: text.into(), metadata: format!("{{\"len\":{}}}", text.len()) }
}

#[test]
fn upsert_get_replace_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2).unwrap();
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
    let store = Store::open(dir.path(), 4, 2).unwrap();
    assert_eq!(store.manifest().next_id, 3);
    let all: Vec<u32> = store.all_tokens().map(|t| t.unwrap().0).collect();
    assert_eq!(all, [2]);
    assert!(Store::open(dir.path(), 8, 2).is_err(), "another dim is refused");
}

#[test]
fn codec_generations_are_kept_and_documents_can_be_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2).unwrap();
    store.upsert(&[(doc("a", ""), Tokens::Raw(vec![0.5; 4]))]).unwrap();
    let codec = Codec {
        dim: 4,
        centroids: vec![half::f16::ZERO; 4],
        quantizer: crate::codec::Quantizer {
            dim: 4,
            nbits: 2,
            cutoffs: vec![0.0; 12],
            weights: vec![0.0; 16],
            table: Default::default(),
        },
    };
    assert_eq!(store.install_codec(&codec).unwrap(), 1);
    let encoded = Tokens::Encoded { codec: 1, codes: vec![0], residuals: vec![7] };
    store.rewrite([(0, encoded.clone())].into_iter()).unwrap();
    drop(store);
    let store = Store::open(dir.path(), 4, 2).unwrap();
    assert_eq!(store.manifest().codec, 1);
    assert_eq!(store.codec(1).unwrap(), codec);
    assert_eq!(store.tokens(0).unwrap(), Some(encoded));
    assert!(store.codec(2).is_err());
}

#[test]
fn a_damaged_or_foreign_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), 4, 2).unwrap();
    store.upsert(&[(doc("a", "x"), Tokens::Raw(vec![1.0; 4]))]).unwrap();
    let good = store.meta.get("manifest").unwrap().unwrap().to_vec();
    // A flipped bit in the manifest.
    let mut bad = good.clone();
    bad[9] ^= 1;
    store.meta.insert("manifest", bad).unwrap();
    store.db.flush().unwrap();
    drop(store);
    let err = Store::open(dir.path(), 4, 2).err().expect("refused");
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
    let err = Store::open(dir.path(), 4, 2).err().expect("refused");
    assert!(err.to_string().contains("version 99"), "{err}");
    let db = sled::open(dir.path()).unwrap();
    db.open_tree("meta").unwrap().insert("manifest", good).unwrap();
    db.flush().unwrap();
    drop(db);
    let store = Store::open(dir.path(), 4, 2).unwrap();
    let err = store.tokens(0).expect_err("damaged value");
    assert!(err.to_string().contains("document 0"), "{err}");
}
