//! MeCab 0.996 1-best segmentation over a compiled dictionary directory
//! (`tokenizer.cpp::lookup`, `viterbi.cpp`), reproduced node for node: the order in which
//! candidates are created decides ties, so it follows the C++ exactly.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::chars::{CharInfo, CharProperty};
use super::connector::Connector;
use super::dictionary::{DicType, Dictionary, Token};
use super::lattice::{Candidate, Lattice};
use crate::error::{Error, Result};

/// MeCab's `DEFAULT_MAX_GROUPING_SIZE`, used when dicrc leaves `max-grouping-size` unset or 0.
const DEFAULT_MAX_GROUPING_SIZE: usize = 24;
/// MeCab looks at most this many bytes ahead of a lookup position.
const MAX_LOOKAHEAD: usize = 0xffff;
/// Lattice positions are u32: longer texts are segmented up to this many bytes (gRPC message
/// limits keep real inputs far below it).
const MAX_TEXT_BYTES: usize = 1 << 31;

thread_local! {
    static LATTICE: RefCell<Lattice> = RefCell::new(Lattice::default());
}

/// A loaded dictionary directory, ready to segment text. Cheap to share across threads.
pub struct Mecab {
    dir: PathBuf,
    sys: Dictionary,
    /// Unknown-word entries of each character category, in category-id order.
    unknown: Vec<Vec<Token>>,
    chars: CharProperty,
    matrix: Connector,
    space: CharInfo,
    max_grouping_size: usize,
}

impl Mecab {
    /// Opens `sys.dic`, `unk.dic`, `matrix.bin`, `char.bin` and `dicrc` in `dir`, checking that
    /// they fit together.
    pub fn open(dir: &Path) -> Result<Mecab> {
        let sys = Dictionary::open(&dir.join("sys.dic"), DicType::System)?;
        let unk = Dictionary::open(&dir.join("unk.dic"), DicType::Unknown)?;
        let matrix = Connector::open(&dir.join("matrix.bin"))?;
        let chars = CharProperty::open(&dir.join("char.bin"))?;
        for dic in [&sys, &unk] {
            dic.check_context_ids(matrix.lsize(), matrix.rsize())?;
        }
        let unknown = chars
            .names()
            .iter()
            .map(|name| {
                unk.double_array()
                    .exact_match(name.as_bytes())
                    .and_then(|value| unk.tokens_of(value))
                    .map(<[Token]>::to_vec)
                    .ok_or_else(|| {
                        Error::dictionary(unk.path(), format!("no unknown-word entry for character category {name:?}"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let max_grouping_size = read_max_grouping_size(&dir.join("dicrc"))?;
        tracing::debug!(
            dir = %dir.display(),
            lexicon = sys.header().lexsize,
            contexts = matrix.lsize(),
            categories = chars.names().len(),
            "MeCab dictionary loaded"
        );
        Ok(Mecab { dir: dir.to_path_buf(), space: chars.info(0x20), sys, unknown, chars, matrix, max_grouping_size })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn system_dictionary(&self) -> &Dictionary {
        &self.sys
    }

    pub fn char_property(&self) -> &CharProperty {
        &self.chars
    }

    pub fn connector(&self) -> &Connector {
        &self.matrix
    }

    /// MeCab's surfaces for `text`, as byte ranges into it. Like fugashi, the text ends at its
    /// first NUL; spaces are skipped.
    pub fn segment_ranges(&self, text: &str, out: &mut Vec<Range<usize>>) {
        let bytes = text.as_bytes();
        let bytes = &bytes[..memchr_nul(bytes).min(MAX_TEXT_BYTES)];
        LATTICE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut lattice) => self.viterbi(bytes, &mut lattice, out),
            // Only reachable if segmenting re-entered itself on this thread; stay correct.
            Err(_) => self.viterbi(bytes, &mut Lattice::default(), out),
        });
    }

    /// MeCab's surfaces for `text`.
    pub fn segment<'t>(&self, text: &'t str) -> Vec<Cow<'t, str>> {
        let mut ranges = Vec::new();
        self.segment_ranges(text, &mut ranges);
        ranges.into_iter().map(|r| surface(text, r)).collect()
    }

    fn viterbi(&self, bytes: &[u8], lattice: &mut Lattice, out: &mut Vec<Range<usize>>) {
        lattice.reset(bytes.len(), self.matrix.rsize());
        for pos in 0..bytes.len() {
            if !lattice.has_end_at(pos) {
                continue;
            }
            let mut candidates = std::mem::take(&mut lattice.candidates);
            candidates.clear();
            self.lookup(bytes, pos, &mut candidates);
            lattice.begin_position(pos);
            // MeCab prepends each new node to its list: connect the newest first.
            for &c in candidates.iter().rev() {
                lattice.connect(pos, c, &self.matrix);
            }
            lattice.candidates = candidates;
        }
        lattice.best_path(&self.matrix, out);
    }

    /// `Tokenizer::lookup`: the candidates starting at `pos`, in creation order.
    pub(crate) fn lookup(&self, bytes: &[u8], pos: usize, out: &mut Vec<Candidate>) {
        let end = bytes.len().min(pos + MAX_LOOKAHEAD);
        let (begin2, cinfo, mblen, _) = self.seek_other_type(bytes, pos, end, self.space);
        let span = |surface_end: usize| (begin2 as u32, (surface_end - begin2) as u32, (surface_end - pos) as u32);

        self.sys.double_array().common_prefix_search(&bytes[begin2..end], |value, len| {
            let (begin, len, rlength) = span(begin2 + len);
            for t in self.sys.tokens_of(value).unwrap_or(&[]) {
                out.push(Candidate { begin, len, rlength, lc: t.lc_attr, rc: t.rc_attr, wcost: t.word_cost });
            }
        });
        if !out.is_empty() && !cinfo.invoke() {
            return;
        }

        let unknown = self.unknown.get(cinfo.default_type()).map(Vec::as_slice).unwrap_or(&[]);
        let add_unknown = |surface_end: usize, out: &mut Vec<Candidate>| {
            let (begin, len, rlength) = span(surface_end);
            for t in unknown {
                out.push(Candidate { begin, len, rlength, lc: t.lc_attr, rc: t.rc_attr, wcost: t.word_cost });
            }
        };
        let mut begin3 = begin2 + mblen;
        if begin3 > end {
            add_unknown(begin3, out);
            if !out.is_empty() {
                return;
            }
        }
        let mut group_end = None;
        if cinfo.group() {
            let (run_end, _, _, run_chars) = self.seek_other_type(bytes, begin3, end, cinfo);
            if run_chars <= self.max_grouping_size {
                add_unknown(run_end, out);
            }
            group_end = Some(run_end);
        }
        for _ in 1..=cinfo.length() {
            if begin3 > end {
                break;
            }
            if Some(begin3) == group_end {
                continue;
            }
            add_unknown(begin3, out);
            let (next, next_len) = self.chars.char_at(bytes, begin3, end);
            if !cinfo.is_kind_of(next) {
                break;
            }
            begin3 += next_len;
        }
        if out.is_empty() {
            add_unknown(begin3, out);
        }
    }

    /// `CharProperty::seekToOtherType`: skips characters while each shares a category with the
    /// one before it (starting from `class`). Returns where it stopped, the class and byte
    /// length of the character it stopped at (or of the last one looked at), and how many
    /// characters it skipped.
    fn seek_other_type(
        &self,
        bytes: &[u8],
        from: usize,
        end: usize,
        mut class: CharInfo,
    ) -> (usize, CharInfo, usize, usize) {
        let (mut at, mut skipped) = (from, 0);
        let (mut last, mut last_len) = (class, 0);
        while at < end {
            let (info, len) = self.chars.char_at(bytes, at, end);
            (last, last_len) = (info, len);
            if !class.is_kind_of(info) {
                break;
            }
            at += len;
            skipped += 1;
            class = info;
        }
        (at, last, last_len, skipped)
    }
}

/// A surface range as text. Surfaces fall on character boundaries except where MeCab's 64 KiB
/// look-ahead cap cuts a character; Python would show U+FFFD there, and so do we.
pub(crate) fn surface(text: &str, range: Range<usize>) -> Cow<'_, str> {
    match text.get(range.clone()) {
        Some(s) => Cow::Borrowed(s),
        None => String::from_utf8_lossy(text.as_bytes().get(range).unwrap_or(&[])),
    }
}

/// Length of the C string MeCab would see.
fn memchr_nul(bytes: &[u8]) -> usize {
    bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())
}

/// `max-grouping-size` from dicrc (`key = value` lines, `;` comments); 0 or unset means 24.
fn read_max_grouping_size(path: &Path) -> Result<usize> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let value = text
        .lines()
        .filter(|line| !line.trim_start().starts_with(';'))
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == "max-grouping-size")
        .map(|(_, value)| value.trim());
    match value {
        None => Ok(DEFAULT_MAX_GROUPING_SIZE),
        Some(v) => match v.parse::<usize>() {
            Ok(0) => Ok(DEFAULT_MAX_GROUPING_SIZE),
            Ok(n) => Ok(n),
            Err(_) => Err(Error::dictionary(path, format!("max-grouping-size {v:?} is not a number"))),
        },
    }
}
