//! MeCab's compiled lexicon files (`sys.dic`, `unk.dic`), memory-mapped.
//!
//! Layout (MeCab 0.996 `Dictionary::open`, little-endian): a 40-byte header of ten u32
//! (magic, version, type, lexsize, lsize, rsize, dsize, tsize, fsize, dummy), a 32-byte charset
//! name, then `dsize` bytes of double array, `tsize` bytes of 16-byte tokens and `fsize` bytes of
//! NUL-terminated feature strings, which end exactly at the end of the file. Everything is checked
//! once here, so that lookups never read outside the file.

use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};
use memmap2::Mmap;

use crate::error::{Error, Result};

/// `magic ^ MAGIC_XOR` is the file size.
const MAGIC_XOR: u32 = 0xef71_8f77;
/// The only dictionary format version MeCab 0.996 reads.
pub(crate) const DIC_VERSION: u32 = 102;
const HEADER_LEN: usize = 40 + 32;
/// Darts' `kResultsSize` in MeCab's tokenizer: at most this many prefixes are reported.
const MAX_PREFIX_RESULTS: usize = 512;

/// Memory-maps a whole file.
pub(crate) fn map_file(path: &Path) -> Result<Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the dictionary files are read-only inputs; like MeCab we assume nobody truncates
    // them while the process runs.
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// Reads a little-endian u32 at `offset`, if the bytes are there.
pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Which role a dictionary file plays (`type` in the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DicType {
    System = 0,
    User = 1,
    Unknown = 2,
}

/// One Darts unit: `{ i32 base; u32 check; }`.
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub struct DaUnit {
    pub base: i32,
    pub check: u32,
}

/// One lexicon entry (MeCab's `Token`).
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
#[repr(C)]
pub struct Token {
    /// Left context id (row of the connection matrix when this token is on the right).
    pub lc_attr: u16,
    /// Right context id.
    pub rc_attr: u16,
    pub pos_id: u16,
    pub word_cost: i16,
    /// Byte offset of the feature string in the feature block.
    pub feature: u32,
    pub compound: u32,
}

/// The fixed-size header, as read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub dic_type: u32,
    pub lexsize: u32,
    pub lsize: u32,
    pub rsize: u32,
    pub dsize: u32,
    pub tsize: u32,
    pub fsize: u32,
    pub charset: String,
}

impl Header {
    fn parse(bytes: &[u8], path: &Path) -> Result<Header> {
        let bad = |reason: String| Error::dictionary(path, reason);
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "file is {} bytes, shorter than the {HEADER_LEN}-byte header (truncated?)",
                bytes.len()
            )));
        }
        let field = |i: usize| read_u32(bytes, 4 * i).unwrap_or(0);
        let magic = field(0);
        if (magic ^ MAGIC_XOR) as u64 != bytes.len() as u64 {
            return Err(bad(format!(
                "bad magic {magic:#010x}: it encodes a file size of {} bytes but the file has {} \
                 (not a MeCab dictionary, or truncated)",
                magic ^ MAGIC_XOR,
                bytes.len()
            )));
        }
        let version = field(1);
        if version != DIC_VERSION {
            return Err(bad(format!("dictionary format version {version}, expected {DIC_VERSION} (MeCab 0.996)")));
        }
        let charset_bytes = &bytes[40..HEADER_LEN];
        let nul = charset_bytes.iter().position(|&b| b == 0).unwrap_or(32);
        Ok(Header {
            version,
            dic_type: field(2),
            lexsize: field(3),
            lsize: field(4),
            rsize: field(5),
            dsize: field(6),
            tsize: field(7),
            fsize: field(8),
            charset: String::from_utf8_lossy(&charset_bytes[..nul]).into_owned(),
        })
    }
}

/// A checked, memory-mapped `sys.dic` or `unk.dic`.
pub struct Dictionary {
    map: Mmap,
    header: Header,
    path: PathBuf,
    tokens_at: usize,
    features_at: usize,
}

impl Dictionary {
    /// Opens and validates a dictionary file of the given type.
    pub fn open(path: &Path, expected: DicType) -> Result<Dictionary> {
        let map = map_file(path)?;
        let header = Header::parse(&map, path)?;
        let bad = |reason: String| Error::dictionary(path, reason);
        if header.dic_type != expected as u32 {
            return Err(bad(format!(
                "dictionary type {} where {:?} ({}) was expected",
                header.dic_type, expected, expected as u32
            )));
        }
        if !header.charset.eq_ignore_ascii_case("utf8") && !header.charset.eq_ignore_ascii_case("utf-8") {
            return Err(bad(format!("charset {:?}, only utf8 is supported", header.charset)));
        }
        if header.dsize % 8 != 0 || header.tsize % 16 != 0 {
            return Err(bad(format!(
                "double-array size {} is not a multiple of 8 or token size {} not a multiple of 16",
                header.dsize, header.tsize
            )));
        }
        let tokens_at = HEADER_LEN + header.dsize as usize;
        let features_at = tokens_at + header.tsize as usize;
        let total = features_at + header.fsize as usize;
        if total != map.len() {
            return Err(bad(format!(
                "sections add up to {total} bytes but the file has {} (truncated or corrupt)",
                map.len()
            )));
        }
        let dic = Dictionary { map, header, path: path.to_path_buf(), tokens_at, features_at };
        // The casts below check alignment and length; do it once here so a bad file is an
        // error at open time rather than a surprise at lookup time.
        bytemuck::try_cast_slice::<u8, DaUnit>(dic.section(HEADER_LEN, tokens_at))
            .map_err(|e| bad(format!("double array: {e}")))?;
        bytemuck::try_cast_slice::<u8, Token>(dic.section(tokens_at, features_at))
            .map_err(|e| bad(format!("tokens: {e}")))?;
        if dic.double_array().units.is_empty() {
            return Err(bad("empty double array".into()));
        }
        Ok(dic)
    }

    fn section(&self, from: usize, to: usize) -> &[u8] {
        &self.map[from..to]
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn double_array(&self) -> DoubleArray<'_> {
        DoubleArray { units: bytemuck::cast_slice(self.section(HEADER_LEN, self.tokens_at)) }
    }

    pub fn tokens(&self) -> &[Token] {
        bytemuck::cast_slice(self.section(self.tokens_at, self.features_at))
    }

    /// The tokens a double-array value stands for (`value >> 8` first index, `value & 0xff`
    /// homographs); `None` if the value points outside the token array.
    pub fn tokens_of(&self, value: u32) -> Option<&[Token]> {
        let first = (value >> 8) as usize;
        self.tokens().get(first..first + (value & 0xff) as usize)
    }

    /// The CSV feature string of a token (part of speech, reading, ...).
    pub fn feature(&self, token: &Token) -> Option<&str> {
        let block = self.section(self.features_at, self.map.len());
        let rest = block.get(token.feature as usize..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..len]).ok()
    }

    /// Checks that every token's context ids index a `lsize × rsize` connection matrix.
    pub(crate) fn check_context_ids(&self, lsize: usize, rsize: usize) -> Result<()> {
        match self.tokens().iter().position(|t| t.rc_attr as usize >= lsize || t.lc_attr as usize >= rsize) {
            None => Ok(()),
            Some(i) => {
                let t = self.tokens()[i];
                Err(Error::dictionary(
                    &self.path,
                    format!(
                        "token {i} has context ids (left {}, right {}) outside the {lsize}×{rsize} \
                         connection matrix",
                        t.lc_attr, t.rc_attr
                    ),
                ))
            }
        }
    }
}

/// Darts double array (`DoubleArrayImpl<char, unsigned char, int, unsigned int>`), read-only.
/// Every index is bounds-checked: a malformed array ends a walk instead of reading past it.
#[derive(Clone, Copy)]
pub struct DoubleArray<'a> {
    units: &'a [DaUnit],
}

impl<'a> DoubleArray<'a> {
    pub fn new(units: &'a [DaUnit]) -> Self {
        DoubleArray { units }
    }

    fn unit(&self, index: i64) -> Option<DaUnit> {
        usize::try_from(index).ok().and_then(|i| self.units.get(i).copied())
    }

    /// The leaf value stored under the node whose base is `b`, if any.
    fn leaf(&self, b: i32) -> Option<u32> {
        let u = self.unit(b as i64)?;
        (u.check == b as u32 && u.base < 0).then(|| (-(u.base as i64) - 1) as u32)
    }

    /// Follows the transition on byte `c` from the node whose base is `b`.
    fn step(&self, b: i32, c: u8) -> Option<i32> {
        let u = self.unit(b as i64 + c as i64 + 1)?;
        (u.check == b as u32).then_some(u.base)
    }

    /// Calls `emit(value, length)` for every key that is a prefix of `key`, shortest first, as
    /// Darts' `commonPrefixSearch` (at most 512 results, like MeCab's buffer).
    pub fn common_prefix_search(&self, key: &[u8], mut emit: impl FnMut(u32, usize)) {
        let Some(mut b) = self.unit(0).map(|u| u.base) else {
            return;
        };
        let mut found = 0;
        let mut report = |value: u32, len: usize| {
            if found < MAX_PREFIX_RESULTS {
                emit(value, len);
            }
            found += 1;
        };
        for (i, &c) in key.iter().enumerate() {
            if let Some(v) = self.leaf(b) {
                report(v, i);
            }
            match self.step(b, c) {
                Some(next) => b = next,
                None => return,
            }
        }
        if let Some(v) = self.leaf(b) {
            report(v, key.len());
        }
    }

    /// The value stored for exactly `key`, as Darts' `exactMatchSearch`.
    pub fn exact_match(&self, key: &[u8]) -> Option<u32> {
        let mut b = self.unit(0)?.base;
        for &c in key {
            b = self.step(b, c)?;
        }
        self.leaf(b)
    }
}
