//! Hugging Face's BertJapaneseTokenizer (MeCab + unidic-lite + WordPiece), bit-exact, in Rust.
//!
//! Pipeline (docs/JACOLBERT_ENCODING.md §3): split the raw text on special tokens, NFKC each
//! remaining chunk, segment it with MeCab (`mecab`), split each surface on whitespace and run
//! WordPiece over it (`wordpiece`), then wrap in [CLS] … [SEP].

mod chars;
mod connector;
mod dictionary;
mod lattice;
mod locate;
mod mecab;
mod spans;
mod special;
mod wordpiece;

#[cfg(test)]
mod reader_tests;
#[cfg(test)]
mod segment_tests;
#[cfg(test)]
mod testdic;

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

pub use chars::{decode_ucs2, CharInfo, CharProperty};
pub use connector::Connector;
pub(crate) use dictionary::map_file;
pub use dictionary::{DaUnit, DicType, Dictionary, DoubleArray, Header, Token};
pub use locate::{resolve_dictionary, ENV_VAR as MECAB_DIC_ENV};
use mecab::surface;
pub use mecab::Mecab;
pub use special::SpecialTokens;
pub use wordpiece::{is_python_whitespace, Vocab, WordPieceSplitter, MAX_INPUT_CHARS_PER_WORD};

use crate::error::Result;

/// A piece of the input: a special token, or text between special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'t> {
    Special(&'t str, u32),
    Text(&'t str),
}

/// The tokenizer of one model: its vocab and special tokens, over a MeCab dictionary.
pub struct Tokenizer {
    mecab: Mecab,
    vocab: Vocab,
    specials: SpecialTokens,
    wordpiece: WordPieceSplitter,
}

impl Tokenizer {
    /// Loads `vocab.txt` and the special tokens of a model directory, and the MeCab dictionary
    /// (`mecab_dic`, else `$JACOLBERT_MECAB_DIC`, else the well-known places).
    pub fn load(model_dir: &Path, mecab_dic: Option<&Path>) -> Result<Tokenizer> {
        let dic_dir = resolve_dictionary(mecab_dic)?;
        let mecab = Mecab::open(&dic_dir)?;
        let vocab = Vocab::from_file(&model_dir.join("vocab.txt"))?;
        let specials = SpecialTokens::load(model_dir, &vocab)?;
        Tokenizer::new(mecab, vocab, specials)
    }

    pub fn new(mecab: Mecab, vocab: Vocab, specials: SpecialTokens) -> Result<Tokenizer> {
        let wordpiece = WordPieceSplitter::new(&vocab)?;
        Ok(Tokenizer { mecab, vocab, specials, wordpiece })
    }

    pub fn mecab(&self) -> &Mecab {
        &self.mecab
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    pub fn specials(&self) -> &SpecialTokens {
        &self.specials
    }

    /// Special tokens and MeCab surfaces (after NFKC), in order: the `words` of the reference.
    pub fn words(&self, text: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut ranges = Vec::new();
        for chunk in self.specials.split(text) {
            match chunk {
                Chunk::Special(token, _) => words.push(token.to_owned()),
                Chunk::Text(piece) => {
                    let normal = nfkc(piece);
                    self.mecab.segment_ranges(&normal, &mut ranges);
                    words.extend(ranges.iter().map(|r| surface(&normal, r.clone()).into_owned()));
                }
            }
        }
        words
    }

    /// Word-piece ids of `text` without [CLS]/[SEP] (transformers' `tokenize` + ids).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        self.push_ids(text, &mut ids);
        ids
    }

    /// `[CLS] ids… [SEP]`, untruncated: what `tokenizer(text)["input_ids"]` gives.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.specials.cls];
        self.push_ids(text, &mut ids);
        ids.push(self.specials.sep);
        ids
    }

    /// `[CLS] ids… [SEP]` cut to at most `max_len` ids (≥ 2) the way transformers'
    /// `truncation=True, max_length=max_len` cuts a single text: word pieces are dropped from
    /// the end and [SEP] is kept.
    pub fn encode_truncated(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = self.encode(text);
        cut_keeping_last(&mut ids, max_len);
        ids
    }

    /// `encode_truncated` with each id's characters in `text` (`tokenize_spans`; none for
    /// [CLS] and [SEP]).
    pub fn encode_spans(&self, text: &str, max_len: usize) -> Vec<(u32, Option<Range<usize>>)> {
        let mut tokens = vec![(self.specials.cls, None)];
        tokens.extend(self.tokenize_spans(text).into_iter().map(|(id, r)| (id, Some(r))));
        tokens.push((self.specials.sep, None));
        cut_keeping_last(&mut tokens, max_len);
        tokens
    }

    fn push_ids(&self, text: &str, ids: &mut Vec<u32>) {
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for chunk in self.specials.split(text) {
            match chunk {
                Chunk::Special(_, id) => ids.push(id),
                Chunk::Text(piece) => {
                    let normal = nfkc(piece);
                    self.mecab.segment_ranges(&normal, &mut ranges);
                    for r in &ranges {
                        self.wordpiece.push_ids(&surface(&normal, r.clone()), ids);
                    }
                }
            }
        }
    }
}

/// Drops items before the last one until at most `max_len` (≥ 2) remain: how transformers
/// cuts `[CLS] … [SEP]` (word pieces go from the end, [SEP] stays).
fn cut_keeping_last<T>(items: &mut Vec<T>, max_len: usize) {
    if items.len() > max_len {
        let last = items.pop().expect("longer than max_len");
        items.truncate(max_len.max(2) - 1);
        items.push(last);
    }
}

/// Python's `unicodedata.normalize("NFKC", text)`, skipping the work when the quick check
/// already says the text is normalised (all of ASCII, most Japanese).
fn nfkc(text: &str) -> Cow<'_, str> {
    match is_nfkc_quick(text.chars()) {
        IsNormalized::Yes => Cow::Borrowed(text),
        _ => Cow::Owned(text.nfkc().collect()),
    }
}
