//! The vocabulary and the WordPiece step of BertJapaneseTokenizer.
//!
//! The vocab is read the way transformers' `load_vocab` reads it (one token a line, only the
//! line break removed, later duplicates winning; line 16 of bert-base-japanese-v3 is an empty
//! token and keeps id 15). The greedy longest-match itself is the `tokenizers` crate's
//! `WordPiece` model, which behaves as transformers' `WordpieceTokenizer` (100-character limit,
//! whole word to [UNK] when any part has no match).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::AHashMap;

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::Model;

use crate::error::{Error, Result};

/// Longest word (in characters) WordPiece splits; longer words become [UNK].
pub const MAX_INPUT_CHARS_PER_WORD: usize = 100;
pub const UNK_TOKEN: &str = "[UNK]";

/// Token ↔ id table of a model, as vocab.txt defines it.
pub struct Vocab {
    ids: HashMap<String, u32>,
    tokens: Vec<String>,
}

impl Vocab {
    pub fn from_file(path: &Path) -> Result<Vocab> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| Error::Vocab { path: path.to_path_buf(), reason: format!("vocab.txt is not UTF-8: {e}") })?;
        Vocab::from_text(&text).map_err(|reason| Error::Vocab { path: path.to_path_buf(), reason })
    }

    /// Parses vocab.txt text: Python's text mode turns `\r\n` and `\r` into `\n`, `readlines`
    /// splits after each `\n`, and `rstrip("\n")` removes it.
    pub fn from_text(text: &str) -> std::result::Result<Vocab, String> {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut lines: Vec<&str> = text.split('\n').collect();
        if text.ends_with('\n') {
            lines.pop();
        }
        if lines.is_empty() {
            return Err("vocab.txt is empty".into());
        }
        let tokens: Vec<String> = lines.into_iter().map(str::to_owned).collect();
        let ids = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let vocab = Vocab { ids, tokens };
        if vocab.id(UNK_TOKEN).is_none() {
            return Err(format!("vocab has no {UNK_TOKEN} token"));
        }
        Ok(vocab)
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Words cached per thread before the cache is emptied (a few MB at most).
const CACHE_WORDS: usize = 1 << 16;

/// One splitter's cache: word → its ids.
type WordCache = AHashMap<Box<str>, Box<[u32]>>;

thread_local! {
    /// Word → ids, per splitter: Japanese text repeats a small set of words (particles,
    /// endings), and a hash probe is cheaper than WordPiece's substring probes and allocations.
    static CACHE: RefCell<AHashMap<u64, WordCache>> = RefCell::new(AHashMap::new());
}

/// transformers' `WordpieceTokenizer` over one vocab.
pub struct WordPieceSplitter {
    model: WordPiece,
    unk_id: u32,
    /// Tells this splitter's cache entries from another vocab's.
    cache_key: u64,
}

impl WordPieceSplitter {
    pub fn new(vocab: &Vocab) -> Result<WordPieceSplitter> {
        let model = WordPiece::builder()
            .vocab(vocab.ids.iter().map(|(t, &i)| (t.clone(), i)).collect::<ahash::AHashMap<_, _>>())
            .unk_token(UNK_TOKEN.into())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(MAX_INPUT_CHARS_PER_WORD)
            .build()
            .map_err(|e| Error::Vocab { path: "vocab.txt".into(), reason: e.to_string() })?;
        let unk_id = vocab.id(UNK_TOKEN).unwrap_or(0);
        static NEXT_KEY: AtomicU64 = AtomicU64::new(0);
        let cache_key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        Ok(WordPieceSplitter { model, unk_id, cache_key })
    }

    /// Appends the ids of one MeCab surface: split on Python whitespace, then WordPiece.
    pub fn push_ids(&self, surface: &str, ids: &mut Vec<u32>) {
        for word in surface.split(is_python_whitespace).filter(|w| !w.is_empty()) {
            CACHE.with(|cache| {
                let Ok(mut cache) = cache.try_borrow_mut() else {
                    return ids.extend(self.word_ids(word).iter());
                };
                let cache = cache.entry(self.cache_key).or_default();
                if let Some(hit) = cache.get(word) {
                    return ids.extend_from_slice(hit);
                }
                let word_ids = self.word_ids(word);
                ids.extend_from_slice(&word_ids);
                if cache.len() >= CACHE_WORDS {
                    cache.clear();
                }
                cache.insert(word.into(), word_ids);
            });
        }
    }

    /// As `push_ids`, for each piece also the bytes of `surface` it covers (a word that
    /// became [UNK] covers the whole word). Not cached: explanations only.
    pub fn push_pieces(&self, surface: &str, mut emit: impl FnMut(u32, Range<usize>)) {
        let mut words = surface.split(is_python_whitespace).filter(|w| !w.is_empty());
        let base = surface.as_ptr() as usize;
        for word in &mut words {
            let at = word.as_ptr() as usize - base;
            match self.model.tokenize(word) {
                Ok(tokens) => {
                    tokens.iter().for_each(|t| emit(t.id, at + t.offsets.0..at + t.offsets.1));
                }
                Err(_) => emit(self.unk_id, at..at + word.len()),
            }
        }
    }

    /// WordPiece over one whitespace-free word.
    fn word_ids(&self, word: &str) -> Box<[u32]> {
        match self.model.tokenize(word) {
            Ok(tokens) => tokens.iter().map(|t| t.id).collect(),
            // Only fails when [UNK] is missing, which Vocab::from_text rules out.
            Err(_) => Box::new([self.unk_id]),
        }
    }
}

/// Python's `str.isspace()` as `str.split()` uses it: Unicode White_Space plus the four
/// information separators U+001C..U+001F, which Rust's `char::is_whitespace` leaves out.
pub fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> Vocab {
        Vocab::from_text(&(tokens.join("\n") + "\n")).unwrap()
    }

    fn ids(v: &Vocab, surface: &str) -> Vec<u32> {
        let mut out = vec![];
        WordPieceSplitter::new(v).unwrap().push_ids(surface, &mut out);
        out
    }

    #[test]
    fn empty_line_keeps_its_id_and_crlf_is_a_line_break() {
        let v = Vocab::from_text("[PAD]\r\n[UNK]\n\nfoo\n").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v.id(""), Some(2));
        assert_eq!(v.id("foo"), Some(3));
        assert_eq!(v.token(1), Some("[UNK]"));
    }

    #[test]
    fn later_duplicates_win_like_python_dicts() {
        let v = vocab(&["[UNK]", "a", "a"]);
        assert_eq!(v.id("a"), Some(2));
    }

    #[test]
    fn vocab_without_unk_is_an_error() {
        assert!(Vocab::from_text("a\nb\n").is_err());
        assert!(Vocab::from_text("").is_err());
    }

    #[test]
    fn greedy_longest_match_with_continuation_prefix() {
        let v = vocab(&["[UNK]", "東京", "東", "##京", "##都", "都"]);
        assert_eq!(ids(&v, "東京都"), vec![1, 4]);
        assert_eq!(ids(&v, "東都"), vec![2, 4]);
    }

    #[test]
    fn a_word_with_an_unmatched_piece_is_one_unk() {
        let v = vocab(&["[UNK]", "東"]);
        assert_eq!(ids(&v, "東京"), vec![0]);
    }

    #[test]
    fn words_over_100_chars_are_unk_and_100_is_not() {
        let v = vocab(&["[UNK]", "a", "##a"]);
        assert_eq!(ids(&v, &"a".repeat(101)), vec![0]);
        assert_eq!(ids(&v, &"a".repeat(100)).len(), 100);
    }

    #[test]
    fn pieces_cover_their_bytes_and_agree_with_ids() {
        let v = vocab(&["[UNK]", "東京", "##都", "a"]);
        let splitter = WordPieceSplitter::new(&v).unwrap();
        let surface = " 東京都 a\u{1c}東x ";
        let mut pieces = Vec::new();
        splitter.push_pieces(surface, |id, r| pieces.push((id, &surface[r])));
        assert_eq!(pieces, vec![(1, "東京"), (2, "都"), (3, "a"), (0, "東x")]);
        assert_eq!(pieces.iter().map(|p| p.0).collect::<Vec<_>>(), ids(&v, surface));
    }

    #[test]
    fn splits_on_python_whitespace_including_separators() {
        let v = vocab(&["[UNK]", "a", "b"]);
        assert_eq!(ids(&v, "a\u{1c}b"), vec![1, 2]);
        assert_eq!(ids(&v, " a\u{2028}b "), vec![1, 2]);
        assert!(ids(&v, "\u{1f}").is_empty());
        assert!(!is_python_whitespace('\u{200b}')); // zero-width space is not whitespace
    }
}
