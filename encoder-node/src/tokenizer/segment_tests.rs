//! Segmentation: hand-checked lattices on a synthetic dictionary, the compact lattice against a
//! naive MeCab lattice (every node kept, every predecessor scanned), and robustness of the whole
//! tokenizer on arbitrary text with unidic-lite.

use std::sync::OnceLock;

use proptest::prelude::*;

use super::lattice::Candidate;
use super::testdic::*;
use super::{nfkc, resolve_dictionary, Mecab, SpecialTokens, Tokenizer, Vocab};

fn synthetic(lexicon: &[Entry], contexts: u16, cost: impl Fn(u16, u16) -> i16) -> (TempDir, Mecab) {
    let dir = TempDir::new("seg");
    write_dictionary(dir.path(), lexicon, contexts, cost);
    let mecab = Mecab::open(dir.path()).unwrap();
    (dir, mecab)
}

fn words(m: &Mecab, text: &str) -> Vec<String> {
    m.segment(text).into_iter().map(|w| w.into_owned()).collect()
}

#[test]
fn lowest_cost_path_wins() {
    let lexicon = [
        entry("東京", 1, 1, 100),
        entry("東", 1, 1, 400),
        entry("京都", 1, 1, 200),
        entry("都", 1, 1, 300),
        entry("京", 1, 1, 500),
    ];
    let (_d, m) = synthetic(&lexicon, 2, |_, _| 0);
    assert_eq!(words(&m, "東京都"), ["東京", "都"]); // 400 beats 東+京都 = 600
    assert_eq!(words(&m, "  東京 都  "), ["東京", "都"]); // spaces are skipped
    assert_eq!(words(&m, "東京\0都"), ["東京"]); // the text ends at NUL, as a C string
    assert!(words(&m, "").is_empty());
    assert!(words(&m, " \t\n ").is_empty());
}

#[test]
fn connection_costs_steer_the_path() {
    // Same words, but putting anything after a context-1 node is expensive.
    let lexicon = [entry("東京", 1, 1, 100), entry("東", 2, 2, 400), entry("京都", 2, 2, 200), entry("都", 2, 2, 300)];
    let (_d, m) = synthetic(&lexicon, 3, |l, _| if l == 1 { 1000 } else { 0 });
    assert_eq!(words(&m, "東京都"), ["東", "京都"]);
}

#[test]
fn ties_go_to_the_node_mecab_scans_first() {
    // あ+い and あい both cost 200: EOS scans the newest node ending there first (い).
    let tie = [entry("あ", 1, 1, 100), entry("い", 1, 1, 100), entry("あい", 1, 1, 200)];
    let (_d, m) = synthetic(&tie, 2, |_, _| 0);
    assert_eq!(words(&m, "あい"), ["あ", "い"]);
    let cheaper = [entry("あ", 1, 1, 100), entry("い", 1, 1, 100), entry("あい", 1, 1, 199)];
    let (_d, m) = synthetic(&cheaper, 2, |_, _| 0);
    assert_eq!(words(&m, "あい"), ["あい"]);
}

#[test]
fn unknown_words_group_by_class() {
    let lexicon = [entry("東京", 1, 1, 100)];
    let (_d, m) = synthetic(&lexicon, 2, |_, _| 0);
    // Letters are one grouped unknown word; kanji without entries fall back to unknown words
    // of one or two characters; 😀 (non-BMP) reads as U+0000, class DEFAULT.
    assert_eq!(words(&m, "xyz東京"), ["xyz", "東京"]);
    assert_eq!(words(&m, "東京😀"), ["東京", "😀"]);
    let unknown_kanji = words(&m, "漢字語");
    assert_eq!(unknown_kanji.concat(), "漢字語");
    assert!(unknown_kanji.iter().all(|w| w.chars().count() <= 2));
}

/// MeCab's lattice without the compaction: every node is kept in its end list, newest first,
/// and every connection scans the whole list.
fn naive_segment(m: &Mecab, text: &str) -> Vec<String> {
    struct Node {
        cost: i64,
        prev: usize,
        surface: std::ops::Range<usize>,
        rc: u16,
    }
    let bytes = &text.as_bytes()[..text.bytes().position(|b| b == 0).unwrap_or(text.len())];
    let len = bytes.len();
    let mut nodes = vec![Node { cost: 0, prev: usize::MAX, surface: 0..0, rc: 0 }];
    let mut ends: Vec<Vec<usize>> = vec![Vec::new(); len + 1];
    ends[0].push(0);
    let best = |nodes: &[Node], list: &[usize], lc: u16| {
        let mut best = (usize::MAX, i64::MAX);
        for &l in list.iter().rev() {
            let cost = nodes[l].cost + m.connector().cost(nodes[l].rc, lc) as i64;
            if cost < best.1 {
                best = (l, cost);
            }
        }
        best
    };
    for pos in 0..len {
        if ends[pos].is_empty() {
            continue;
        }
        let mut candidates: Vec<Candidate> = Vec::new();
        m.lookup(bytes, pos, &mut candidates);
        for c in candidates.iter().rev() {
            let end = pos + c.rlength as usize;
            if end > len {
                continue;
            }
            let (prev, cost) = best(&nodes, &ends[pos], c.lc);
            nodes.push(Node {
                cost: cost + c.wcost as i64,
                prev,
                surface: c.begin as usize..(c.begin + c.len) as usize,
                rc: c.rc,
            });
            ends[end].push(nodes.len() - 1);
        }
    }
    let last = (0..=len).rev().find(|&p| !ends[p].is_empty()).unwrap();
    let (mut at, _) = best(&nodes, &ends[last], 0);
    let mut out = vec![];
    while at != 0 && at != usize::MAX {
        out.push(String::from_utf8_lossy(&bytes[nodes[at].surface.clone()]).into_owned());
        at = nodes[at].prev;
    }
    out.reverse();
    out
}

const SYNTHETIC_ALPHABET: &[char] = &['東', '京', '都', 'あ', 'い', 'う', 'a', 'b', ' ', '😀', '.', '漢'];

fn text_over(alphabet: &'static [char], max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(alphabet), 0..max).prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    /// Tiny cost ranges make ties everywhere: the compact lattice must break each one as MeCab.
    #[test]
    fn compact_lattice_equals_naive_lattice_on_synthetic_dictionaries(
        seed in 0u64..1000,
        text in text_over(SYNTHETIC_ALPHABET, 24),
    ) {
        let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = move |n: u64| { rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1); (rng >> 33) % n };
        let surfaces = ["東", "京", "都", "東京", "京都", "あ", "い", "あい", "いう", "a", "ab", "."];
        let lexicon: Vec<Entry> = surfaces.iter().flat_map(|s| {
            let homographs = 1 + next(2);
            (0..homographs).map(|_| entry(s, next(4) as u16, next(4) as u16, next(3) as i16)).collect::<Vec<_>>()
        }).collect();
        let costs: Vec<i16> = (0..16).map(|_| next(3) as i16).collect();
        let (_d, m) = synthetic(&lexicon, 4, |l, r| costs[(l * 4 + r) as usize]);
        prop_assert_eq!(words(&m, &text), naive_segment(&m, &text));
    }
}

fn unidic() -> &'static Mecab {
    static MECAB: OnceLock<Mecab> = OnceLock::new();
    MECAB.get_or_init(|| {
        Mecab::open(&resolve_dictionary(None).expect("unidic-lite (run scripts/fetch-unidic.sh)")).unwrap()
    })
}

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bert-base-japanese-v3");
        Tokenizer::load(&model, None).expect("tokenizer")
    })
}

const JAPANESE_ALPHABET: &[char] = &[
    'の', 'は', 'が', 'に', 'て', 'い', 'る', 'か', 'ア', 'イ', 'ス', 'ー', 'ン', '日', '本', '東', '京', '都', '大',
    '学', '生', '者', '業', '何', '一', '二', '1', '2', 'a', 'Z', ' ', '　', '.', '。', '、', '「', '」', '😀', '𠮷',
    'ｶ', '\t', 'Ω', 'Я',
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn compact_lattice_equals_naive_lattice_on_unidic(text in text_over(JAPANESE_ALPHABET, 40)) {
        prop_assert_eq!(words(unidic(), &text), naive_segment(unidic(), &text));
    }

    /// Any Unicode at all (controls, NUL, lone combining marks, non-BMP): no panic, a well-formed
    /// encoding, and MeCab's words cover every non-space character of the normalised text.
    #[test]
    fn arbitrary_unicode_tokenizes(chars in proptest::collection::vec(any::<char>(), 0..300)) {
        let text: String = chars.into_iter().collect();
        let t = tokenizer();
        let ids = t.encode(&text);
        prop_assert!(ids.len() >= 2);
        prop_assert_eq!(ids[0], t.specials().cls);
        prop_assert_eq!(*ids.last().unwrap(), t.specials().sep);
        prop_assert!(ids.iter().all(|&id| (id as usize) < t.vocab().len()));
        if t.specials().split(&text).len() <= 1 && !text.contains('[') {
            let normal = nfkc(&text);
            let visible = normal.split('\0').next().unwrap_or("");
            let space = t.mecab().char_property().info(0x20);
            let is_space = |c: &char| (*c as u32) < 0x10000 && space.is_kind_of(t.mecab().char_property().info(*c as u32 as u16));
            let want: String = visible.chars().filter(|c| !is_space(c)).collect();
            let got: String = t.words(&text).concat().chars().filter(|c| !is_space(c)).collect();
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn ten_megabytes_of_mixed_text_tokenize() {
    let unit = "東京都の大学生はアイスを食べる。Tokyo 2024 😀𠮷野家\t[MASK]ｶﾀｶﾅ\u{1c}\u{7}Ω\n";
    let text = unit.repeat(10 * 1024 * 1024 / unit.len() + 1);
    assert!(text.len() >= 10 * 1024 * 1024);
    let ids = tokenizer().encode(&text);
    let per_unit = tokenizer().encode(unit).len() - 2;
    // Context at the seams could change a word, but not the scale of the output.
    let units = text.len() / unit.len();
    assert!(ids.len().abs_diff(per_unit * units) < units, "{} ids for {units} units of {per_unit}", ids.len());
}

#[test]
fn empty_and_special_only_texts() {
    let t = tokenizer();
    assert_eq!(t.encode(""), [t.specials().cls, t.specials().sep]);
    assert_eq!(t.encode("[MASK][SEP]"), [2, 4, 3, 3]);
    assert_eq!(
        t.encode_truncated("東京都の大学", 4),
        [2, t.tokenize("東京都の大学")[0], t.tokenize("東京都の大学")[1], 3]
    );
    assert_eq!(t.encode_truncated("東京", 100), t.encode("東京"));
    let vocab = Vocab::from_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n").unwrap();
    assert!(SpecialTokens::bert_defaults(&vocab).is_ok());
}
