//! The dictionary reader: headers, double-array lookups, connection costs and character classes,
//! on synthetic files (known by construction, and broken on purpose) and on unidic-lite itself.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::chars::{decode_ucs2, CharProperty};
use super::connector::Connector;
use super::dictionary::{DicType, Dictionary, DoubleArray};
use super::testdic::*;
use super::{resolve_dictionary, Mecab};

fn lexicon() -> Vec<Entry> {
    vec![entry("東京", 1, 2, 100), entry("東", 3, 3, 500), entry("京都", 2, 1, 200), entry("東", 1, 1, 400)]
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn header_fields_are_read() {
    let dir = TempDir::new("hdr");
    let path = write(&dir, "sys.dic", &dic_bytes(DicType::System, &lexicon(), 7, 9));
    let dic = Dictionary::open(&path, DicType::System).unwrap();
    let h = dic.header();
    assert_eq!((h.version, h.dic_type, h.lexsize, h.lsize, h.rsize), (102, 0, 4, 7, 9));
    assert_eq!(h.charset, "utf8");
    assert_eq!(h.tsize, 4 * 16);
    assert_eq!(dic.tokens().len(), 4);
}

#[test]
fn homographs_are_contiguous_and_keep_their_order() {
    let dir = TempDir::new("homograph");
    let path = write(&dir, "sys.dic", &dic_bytes(DicType::System, &lexicon(), 4, 4));
    let dic = Dictionary::open(&path, DicType::System).unwrap();
    let value = dic.double_array().exact_match("東".as_bytes()).unwrap();
    let tokens = dic.tokens_of(value).unwrap();
    assert_eq!(tokens.iter().map(|t| (t.lc_attr, t.word_cost)).collect::<Vec<_>>(), vec![(3, 500), (1, 400)]);
    assert_eq!(dic.feature(&tokens[0]), Some("test,東"));
}

fn open_err(bytes: &[u8], dic_type: DicType) -> String {
    let dir = TempDir::new("bad");
    let path = write(&dir, "x.dic", bytes);
    match Dictionary::open(&path, dic_type) {
        Ok(_) => panic!("a broken dictionary was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_headers_are_clear_errors() {
    let good = dic_bytes(DicType::System, &lexicon(), 4, 4);
    assert!(open_err(&[], DicType::System).contains("shorter than the 72-byte header"));
    assert!(open_err(&good[..50], DicType::System).contains("shorter than the 72-byte header"));
    // Truncated: the magic no longer matches the size.
    assert!(open_err(&good[..good.len() - 1], DicType::System).contains("bad magic"));
    let mut bad_magic = good.clone();
    bad_magic[0] ^= 0xff;
    assert!(open_err(&bad_magic, DicType::System).contains("bad magic"));
    let mut old = good.clone();
    old[4..8].copy_from_slice(&101u32.to_le_bytes());
    assert!(open_err(&old, DicType::System).contains("version 101"));
    assert!(open_err(&good, DicType::Unknown).contains("type 0"));
    // Consistent magic but sections that do not add up to the file.
    let mut short = good[..good.len() - 8].to_vec();
    let magic = (short.len() as u32) ^ 0xef71_8f77;
    short[..4].copy_from_slice(&magic.to_le_bytes());
    assert!(open_err(&short, DicType::System).contains("sections add up"));
    let mut huge = good.clone();
    huge[24..28].copy_from_slice(&u32::MAX.to_le_bytes()); // dsize
    assert!(open_err(&huge, DicType::System).contains("multiple of 8"));
}

#[test]
fn missing_files_name_the_path() {
    let dir = TempDir::new("missing");
    let err = Mecab::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("sys.dic"), "{err}");
}

#[test]
fn context_ids_outside_the_matrix_are_refused() {
    let dir = TempDir::new("ctx");
    write_dictionary(dir.path(), &[entry("東", 9, 0, 1)], 4, |_, _| 0);
    let err = Mecab::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("outside the 4×4 connection matrix"), "{err}");
}

#[test]
fn double_array_lookups() {
    let keys: Vec<(Vec<u8>, u32)> = ["a", "ab", "abc", "b", "bcd"]
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_bytes().to_vec(), i as u32 * 10))
        .collect();
    let units = double_array(&keys);
    let da = DoubleArray::new(&units);
    let mut found = vec![];
    da.common_prefix_search(b"abcd", |v, len| found.push((v, len)));
    assert_eq!(found, vec![(0, 1), (10, 2), (20, 3)]);
    assert_eq!(da.exact_match(b"bcd"), Some(40));
    assert_eq!(da.exact_match(b"bc"), None);
    assert_eq!(da.exact_match(b""), None);
    found.clear();
    da.common_prefix_search(b"zzz", |v, len| found.push((v, len)));
    assert!(found.is_empty());
    // A garbage array ends walks instead of reading past its end.
    let garbage = [super::dictionary::DaUnit { base: i32::MAX, check: 7 }];
    DoubleArray::new(&garbage).common_prefix_search(b"abc", |_, _| panic!("no key there"));
    assert_eq!(DoubleArray::new(&[]).exact_match(b"a"), None);
}

proptest! {
    #[test]
    fn common_prefix_search_matches_naive_prefix_test(
        keys in proptest::collection::btree_set(proptest::collection::vec(0u8..4, 1..6), 1..30),
        query in proptest::collection::vec(0u8..4, 0..8),
    ) {
        let keys: BTreeMap<Vec<u8>, u32> = keys.into_iter().enumerate().map(|(i, k)| (k, i as u32)).collect();
        let sorted: Vec<(Vec<u8>, u32)> = keys.clone().into_iter().collect();
        let units = double_array(&sorted);
        let da = DoubleArray::new(&units);
        let mut got = vec![];
        da.common_prefix_search(&query, |v, len| got.push((v, len)));
        let want: Vec<(u32, usize)> = (0..=query.len()).filter_map(|n| keys.get(&query[..n]).map(|&v| (v, n))).collect();
        prop_assert_eq!(got, want);
        for (k, v) in &keys {
            prop_assert_eq!(da.exact_match(k), Some(*v));
        }
    }
}

#[test]
fn connection_costs_index_left_rc_plus_lsize_times_right_lc() {
    let dir = TempDir::new("matrix");
    let path = write(&dir, "matrix.bin", &matrix_bytes(3, 5, |l, r| (l * 100 + r) as i16));
    let m = Connector::open(&path).unwrap();
    assert_eq!((m.lsize(), m.rsize()), (3, 5));
    assert_eq!(m.cost(2, 4), 204);
    assert_eq!(m.cost(0, 3), 3);
    let bytes = std::fs::read(&path).unwrap();
    let cut = write(&dir, "cut.bin", &bytes[..bytes.len() - 2]);
    assert!(Connector::open(&cut).err().unwrap().to_string().contains("truncated"));
}

#[test]
fn char_classes_of_a_synthetic_table() {
    let dir = TempDir::new("chars");
    let path = write(&dir, "char.bin", &char_bytes(&CATEGORIES, |cp| synthetic_char_info(cp).0));
    let chars = CharProperty::open(&path).unwrap();
    assert_eq!(chars.names(), CATEGORIES);
    let kanji = chars.info('漢' as u16);
    assert_eq!((kanji.default_type(), kanji.length(), kanji.group(), kanji.invoke()), (3, 2, false, false));
    assert!(kanji.is_kind_of(chars.info('字' as u16)));
    assert!(!kanji.is_kind_of(chars.info('a' as u16)));
    let bytes = std::fs::read(&path).unwrap();
    let cut = write(&dir, "cut.bin", &bytes[..bytes.len() - 4]);
    assert!(CharProperty::open(&cut).err().unwrap().to_string().contains("truncated"));
    let mut bad = bytes.clone();
    let at = 4 + 32 * CATEGORIES.len() + 4 * 0x41;
    bad[at..at + 4].copy_from_slice(&pack_char_info(1, 9, 0, false, false).to_le_bytes());
    let bad = write(&dir, "bad.bin", &bad);
    assert!(CharProperty::open(&bad).err().unwrap().to_string().contains("U+0041"));
}

#[test]
fn utf8_decoding_follows_mecab() {
    assert_eq!(decode_ucs2("a".as_bytes(), 0, 1), (0x61, 1));
    assert_eq!(decode_ucs2("é".as_bytes(), 0, 2), (0xe9, 2));
    assert_eq!(decode_ucs2("漢".as_bytes(), 0, 3), (0x6f22, 3));
    // Non-BMP characters read as code point 0.
    assert_eq!(decode_ucs2("😀".as_bytes(), 0, 4), (0, 4));
    // A sequence cut by the limit is one byte of code point 0; at the limit the NUL is read.
    assert_eq!(decode_ucs2("漢".as_bytes(), 0, 2), (0, 1));
    assert_eq!(decode_ucs2(b"ab", 2, 2), (0, 1));
}

/// unidic-lite 1.0.8 itself (fetched by scripts/fetch-unidic.sh): the figures of
/// docs/MECAB_FORMAT.md.
#[test]
fn unidic_lite_header_and_char_classes() {
    let dir = resolve_dictionary(None).expect("unidic-lite (run scripts/fetch-unidic.sh)");
    let mecab = Mecab::open(&dir).unwrap();
    let h = mecab.system_dictionary().header();
    assert_eq!((h.lexsize, h.lsize, h.rsize, h.dsize / 8), (756_264, 5981, 5981, 2_210_315));
    assert_eq!((mecab.connector().lsize(), mecab.connector().rsize()), (5981, 5981));
    let chars = mecab.char_property();
    let names: Vec<&str> = chars.names().iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "DEFAULT",
            "SPACE",
            "KANJI",
            "SYMBOL",
            "NUMERIC",
            "ALPHA",
            "HIRAGANA",
            "KATAKANA",
            "KANJINUMERIC",
            "GREEK",
            "CYRILLIC"
        ]
    );
    let class = |c: char| {
        let i = chars.info(c as u16);
        (names[i.default_type()], i.invoke(), i.group(), i.length())
    };
    for c in [' ', '\t', '\n'] {
        assert_eq!(class(c), ("SPACE", false, true, 0));
    }
    assert_eq!(class('漢'), ("KANJI", false, false, 2));
    assert_eq!(class('あ'), ("HIRAGANA", false, true, 2));
    assert_eq!(class('ア'), ("KATAKANA", true, true, 2));
    assert_eq!(class('a'), ("ALPHA", true, true, 0));
    assert_eq!(class('.'), ("SYMBOL", true, true, 0));
    assert_eq!(class('。'), ("SYMBOL", true, true, 0));
    // A lexicon entry: 東京 is there, with a feature string that names it.
    let sys = mecab.system_dictionary();
    let value = sys.double_array().exact_match("東京".as_bytes()).unwrap();
    let tokens = sys.tokens_of(value).unwrap();
    assert!(!tokens.is_empty());
    assert!(tokens.iter().all(|t| sys.feature(t).is_some_and(|f| f.contains("東京"))));
}
