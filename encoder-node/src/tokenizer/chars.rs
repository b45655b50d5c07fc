//! MeCab's character classes (`char.bin`, `CharProperty`) and its UTF-8 decoding.
//!
//! `char.bin` is `u32 csize`, `csize` category names of 32 bytes, then one packed `CharInfo` u32
//! for each UCS-2 code point 0..0xffff. MeCab decodes with `utf8_to_ucs2`, which maps every
//! 4-byte (non-BMP) sequence to code point 0: emoji and CJK extension B fall in the class of
//! U+0000. We reproduce that, because segmentation depends on it.

use std::path::Path;

use memmap2::Mmap;

use super::dictionary::{map_file, read_u32};
use crate::error::{Error, Result};

const NAME_LEN: usize = 32;
const CODE_POINTS: usize = 0xffff;

/// One packed `CharInfo`: `type:18 default_type:8 length:4 group:1 invoke:1`, LSB first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CharInfo(pub u32);

impl CharInfo {
    /// Bit set of the categories this character belongs to.
    pub fn types(self) -> u32 {
        self.0 & 0x3ffff
    }
    /// Category whose unknown-word entries are used for a word starting with this character.
    pub fn default_type(self) -> usize {
        ((self.0 >> 18) & 0xff) as usize
    }
    /// How many length-1..=length unknown words to propose.
    pub fn length(self) -> usize {
        ((self.0 >> 26) & 0xf) as usize
    }
    /// Whether to propose the run of same-class characters as one unknown word.
    pub fn group(self) -> bool {
        (self.0 >> 30) & 1 == 1
    }
    /// Whether to propose unknown words even when the lexicon has a match.
    pub fn invoke(self) -> bool {
        (self.0 >> 31) & 1 == 1
    }
    /// MeCab's `isKindOf`: the two share a category.
    pub fn is_kind_of(self, other: CharInfo) -> bool {
        self.types() & other.types() != 0
    }
}

/// Decodes the character at `bytes[at]` as MeCab's `utf8_to_ucs2(begin, end)` with
/// `end = limit`: returns `(code point, byte length)`. Sequence lengths are checked against
/// `limit`, but like the C code the first byte is read even at `limit` (a C string has its NUL
/// there; past the buffer we read 0).
pub fn decode_ucs2(bytes: &[u8], at: usize, limit: usize) -> (u16, usize) {
    let byte = |i: usize| bytes.get(i).copied().unwrap_or(0) as u32;
    let b0 = byte(at);
    let available = limit.saturating_sub(at);
    if b0 < 0x80 {
        (b0 as u16, 1)
    } else if available >= 2 && b0 & 0xe0 == 0xc0 {
        ((((b0 & 0x1f) << 6) | (byte(at + 1) & 0x3f)) as u16, 2)
    } else if available >= 3 && b0 & 0xf0 == 0xe0 {
        let cp = ((b0 & 0x0f) << 12) | ((byte(at + 1) & 0x3f) << 6) | (byte(at + 2) & 0x3f);
        (cp as u16, 3)
    } else if available >= 4 && b0 & 0xf8 == 0xf0 {
        (0, 4)
    } else if available >= 5 && b0 & 0xfc == 0xf8 {
        (0, 5)
    } else if available >= 6 && b0 & 0xfe == 0xfc {
        (0, 6)
    } else {
        (0, 1)
    }
}

/// The character-class table of a dictionary.
pub struct CharProperty {
    map: Mmap,
    names: Vec<String>,
    table_at: usize,
}

impl CharProperty {
    pub fn open(path: &Path) -> Result<CharProperty> {
        let map = map_file(path)?;
        let bad = |reason: String| Error::dictionary(path, reason);
        let count = read_u32(&map, 0).ok_or_else(|| bad("shorter than its 4-byte header".into()))?;
        let table_at = (count as usize)
            .checked_mul(NAME_LEN)
            .and_then(|n| n.checked_add(4))
            .filter(|&at| at <= map.len())
            .ok_or_else(|| bad(format!("{count} category names do not fit in the file")))?;
        let expected = table_at + 4 * CODE_POINTS;
        if map.len() != expected {
            return Err(bad(format!(
                "{} bytes where {count} categories and a 0xffff-entry table make {expected} \
                 (truncated or corrupt)",
                map.len()
            )));
        }
        if count == 0 || count > 18 {
            return Err(bad(format!("{count} categories; MeCab allows 1 to 18")));
        }
        let names = (0..count as usize)
            .map(|i| {
                let raw = &map[4 + i * NAME_LEN..4 + (i + 1) * NAME_LEN];
                let end = raw.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
                String::from_utf8_lossy(&raw[..end]).into_owned()
            })
            .collect();
        let chars = CharProperty { map, names, table_at };
        if let Some(cp) = (0..CODE_POINTS).find(|&cp| chars.info(cp as u16).default_type() >= count as usize) {
            return Err(bad(format!(
                "code point U+{cp:04X} has default category {} of {count}",
                chars.info(cp as u16).default_type()
            )));
        }
        Ok(chars)
    }

    /// Category names in id order (DEFAULT, SPACE, KANJI, ... for unidic-lite).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The class of a UCS-2 code point. U+FFFF is one past MeCab's table; it reads as class 0.
    pub fn info(&self, code_point: u16) -> CharInfo {
        CharInfo(read_u32(&self.map, self.table_at + 4 * code_point as usize).unwrap_or(0))
    }

    /// The class and byte length of the character at `bytes[at]`, decoding as MeCab does.
    pub fn char_at(&self, bytes: &[u8], at: usize, limit: usize) -> (CharInfo, usize) {
        let (cp, len) = decode_ucs2(bytes, at, limit);
        (self.info(cp), len)
    }
}
