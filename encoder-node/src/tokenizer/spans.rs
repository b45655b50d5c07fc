//! Where each word piece came from in the text the user gave: the pipeline of `Tokenizer`
//! (special tokens, NFKC, MeCab, WordPiece) run again keeping offsets, for match explanations.
//!
//! NFKC changes lengths (ｶﾞ → ガ, ① → 1, ﬁ → fi), so the raw text is cut into segments that
//! normalise independently: a segment starts at a character whose normalised form begins with a
//! starter that does not compose with what precedes it. Within a segment NFKC left alone, a
//! normalised offset is the raw offset; a piece starting or ending inside a segment it changed
//! covers the whole segment. Should the segments' forms not join up to the chunk's normal form
//! (a case the rule above misses), the chunk is one segment: coarser spans, never wrong ones.

use std::ops::Range;

use unicode_normalization::char::{canonical_combining_class, compose};
use unicode_normalization::UnicodeNormalization;

use super::mecab::surface;
use super::{nfkc, Chunk, Tokenizer};

/// One segment: its bytes in the raw chunk and in the normal form.
struct Segment {
    raw: Range<usize>,
    normal: Range<usize>,
    /// NFKC left it as it was.
    same: bool,
}

/// The segments of `raw`, whose NFKC is `normal`.
fn segments(raw: &str, normal: &str) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut joined = String::with_capacity(normal.len());
    let mut last: Option<char> = None;
    for (at, c) in raw.char_indices() {
        let form: String = c.to_string().nfkc().collect();
        let first = form.chars().next();
        let starts =
            first.is_some_and(|f| canonical_combining_class(f) == 0 && last.is_none_or(|l| compose(l, f).is_none()));
        match out.last_mut() {
            Some(seg) if !starts => seg.raw.end = at + c.len_utf8(),
            _ => out.push(Segment { raw: at..at + c.len_utf8(), normal: 0..0, same: false }),
        }
        last = form.chars().last().or(last);
    }
    for seg in &mut out {
        let form: String = raw[seg.raw.clone()].nfkc().collect();
        seg.same = form == raw[seg.raw.clone()];
        seg.normal = joined.len()..joined.len() + form.len();
        joined.push_str(&form);
    }
    if joined != normal {
        return vec![Segment { raw: 0..raw.len(), normal: 0..normal.len(), same: false }];
    }
    out
}

/// Maps a byte range of the normal form back to raw bytes.
fn to_raw(segments: &[Segment], normal: Range<usize>) -> Range<usize> {
    if segments.is_empty() {
        return 0..0;
    }
    let find = |at: usize| segments.partition_point(|s| s.normal.end <= at).min(segments.len() - 1);
    let (first, last) =
        (&segments[find(normal.start)], &segments[find(normal.end.saturating_sub(1).max(normal.start))]);
    let start = if first.same { first.raw.start + (normal.start - first.normal.start) } else { first.raw.start };
    let end = if last.same { last.raw.start + (normal.end - last.normal.start) } else { last.raw.end };
    start..end.max(start)
}

impl Tokenizer {
    /// `tokenize(text)` with, for each id, the characters (Unicode scalar values) of `text` it
    /// came from: `[start, end)`.
    pub fn tokenize_spans(&self, text: &str) -> Vec<(u32, Range<usize>)> {
        let mut bytes: Vec<(u32, Range<usize>)> = Vec::new();
        let mut ranges = Vec::new();
        let base = text.as_ptr() as usize;
        for chunk in self.specials.split(text) {
            match chunk {
                Chunk::Special(token, id) => {
                    let at = token.as_ptr() as usize - base;
                    bytes.push((id, at..at + token.len()));
                }
                Chunk::Text(piece) => {
                    let at = piece.as_ptr() as usize - base;
                    let normal = nfkc(piece);
                    let segments = segments(piece, &normal);
                    self.mecab.segment_ranges(&normal, &mut ranges);
                    for r in &ranges {
                        let word = surface(&normal, r.clone());
                        // A range MeCab cut inside a character (read lossily) maps as a whole.
                        let exact = matches!(word, std::borrow::Cow::Borrowed(_));
                        self.wordpiece.push_pieces(&word, |id, p| {
                            let within = if exact { r.start + p.start..r.start + p.end } else { r.clone() };
                            let raw = to_raw(&segments, within);
                            bytes.push((id, at + raw.start..at + raw.end));
                        });
                    }
                }
            }
        }
        // Bytes to characters.
        let mut chars = vec![0usize; text.len() + 1];
        for (n, (i, c)) in text.char_indices().enumerate() {
            chars[i..i + c.len_utf8()].fill(n);
        }
        chars[text.len()] = text.chars().count();
        bytes.into_iter().map(|(id, r)| (id, chars[r.start]..chars[r.end])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(raw: &str) -> Vec<(String, String)> {
        let normal: String = raw.nfkc().collect();
        let segs = segments(raw, &normal);
        segs.iter().map(|s| (raw[s.raw.clone()].to_owned(), normal[s.normal.clone()].to_owned())).collect()
    }

    #[test]
    fn segments_join_up_to_the_normal_form() {
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(mapped("ｶﾞｷ"), pairs(&[("ｶﾞ", "ガ"), ("ｷ", "キ")]));
        assert_eq!(mapped("①Ａ"), pairs(&[("①", "1"), ("Ａ", "A")]));
        // e + combining acute composes with the e before it.
        assert_eq!(mapped("ae\u{301}"), pairs(&[("a", "a"), ("e\u{301}", "é")]));
        for raw in ["", "東京", "ﬁｶﾞ①㍻\u{301}x", "\u{301}\u{302}a", "한국\u{1100}\u{1161}"] {
            let normal: String = raw.nfkc().collect();
            let joined: String = segments(raw, &normal).iter().map(|s| &normal[s.normal.clone()]).collect();
            assert_eq!(joined, normal, "{raw:?}");
        }
    }

    #[test]
    fn normal_ranges_map_back_exactly_where_nfkc_left_the_text_alone() {
        let raw = "東京ｶﾞ都";
        let normal: String = raw.nfkc().collect();
        let segs = segments(raw, &normal);
        let at = |s: &str| normal.find(s).unwrap();
        let kyo = at("京")..at("京") + "京".len();
        assert_eq!(&raw[to_raw(&segs, kyo)], "京");
        let ga = at("ガ")..at("ガ") + "ガ".len();
        assert_eq!(&raw[to_raw(&segs, ga)], "ｶﾞ");
        let all = 0..normal.len();
        assert_eq!(&raw[to_raw(&segs, all)], raw);
    }
}
