//! Test helper: writes small MeCab dictionaries in the compiled format, so the reader and the
//! segmenter can be tested on inputs whose right answer is known by construction, and on
//! deliberately broken files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::chars::CharInfo;
use super::dictionary::{DaUnit, DicType, DIC_VERSION};

pub struct Entry {
    pub surface: &'static str,
    pub lc: u16,
    pub rc: u16,
    pub cost: i16,
}

pub fn entry(surface: &'static str, lc: u16, rc: u16, cost: i16) -> Entry {
    Entry { surface, lc, rc, cost }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("jacolbert-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds a Darts double array holding `keys` (sorted, unique) → values.
pub fn double_array(keys: &[(Vec<u8>, u32)]) -> Vec<DaUnit> {
    struct Builder {
        units: Vec<DaUnit>,
        used: Vec<bool>,
        bases: HashSet<usize>,
    }
    impl Builder {
        fn free(&self, i: usize) -> bool {
            !self.used.get(i).copied().unwrap_or(false)
        }
        fn set(&mut self, i: usize, unit: DaUnit) {
            if i >= self.units.len() {
                self.units.resize(i + 1, DaUnit { base: 0, check: 0 });
                self.used.resize(i + 1, false);
            }
            self.units[i] = unit;
            self.used[i] = true;
        }
        fn place(&mut self, node: usize, keys: &[(Vec<u8>, u32)], depth: usize) {
            let terminal = keys.iter().find(|(k, _)| k.len() == depth).map(|&(_, v)| v);
            let mut labels: Vec<u8> = keys.iter().filter(|(k, _)| k.len() > depth).map(|(k, _)| k[depth]).collect();
            labels.dedup();
            let mut base = 1;
            while self.bases.contains(&base)
                || (terminal.is_some() && !self.free(base))
                || labels.iter().any(|&c| !self.free(base + c as usize + 1))
            {
                base += 1;
            }
            self.bases.insert(base);
            self.units[node].base = base as i32;
            if let Some(v) = terminal {
                self.set(base, DaUnit { base: -(v as i32) - 1, check: base as u32 });
            }
            for &c in &labels {
                self.set(base + c as usize + 1, DaUnit { base: 0, check: base as u32 });
            }
            for &c in &labels {
                let sub: Vec<_> = keys.iter().filter(|(k, _)| k.len() > depth && k[depth] == c).cloned().collect();
                self.place(base + c as usize + 1, &sub, depth + 1);
            }
        }
    }
    let mut b = Builder { units: vec![DaUnit { base: 0, check: 0 }], used: vec![true], bases: HashSet::new() };
    b.place(0, keys, 0);
    b.units
}

/// A complete sys.dic / unk.dic image. Homographs are grouped by surface bytes, stably, as
/// mecab-dict-index does.
pub fn dic_bytes(dic_type: DicType, entries: &[Entry], lsize: u32, rsize: u32) -> Vec<u8> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.surface.as_bytes().cmp(b.surface.as_bytes()));
    let (mut tokens, mut features, mut keys) = (Vec::new(), Vec::new(), Vec::<(Vec<u8>, u32)>::new());
    for (i, e) in sorted.iter().enumerate() {
        let feature_at = features.len() as u32;
        features.extend_from_slice(format!("test,{}", e.surface).as_bytes());
        features.push(0);
        for v in [e.lc, e.rc, 0] {
            tokens.extend_from_slice(&v.to_le_bytes());
        }
        tokens.extend_from_slice(&e.cost.to_le_bytes());
        tokens.extend_from_slice(&feature_at.to_le_bytes());
        tokens.extend_from_slice(&0u32.to_le_bytes());
        match keys.last_mut() {
            Some((k, v)) if k.as_slice() == e.surface.as_bytes() => *v += 1,
            _ => keys.push((e.surface.as_bytes().to_vec(), ((i as u32) << 8) | 1)),
        }
    }
    let units = double_array(&keys);
    let da: &[u8] = bytemuck::cast_slice(&units);
    let fields = [
        0,
        DIC_VERSION,
        dic_type as u32,
        entries.len() as u32,
        lsize,
        rsize,
        da.len() as u32,
        tokens.len() as u32,
        features.len() as u32,
        0,
    ];
    let mut out: Vec<u8> = fields.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut charset = b"utf8".to_vec();
    charset.resize(32, 0);
    out.extend_from_slice(&charset);
    out.extend_from_slice(da);
    out.extend_from_slice(&tokens);
    out.extend_from_slice(&features);
    let magic = (out.len() as u32) ^ 0xef71_8f77;
    out[..4].copy_from_slice(&magic.to_le_bytes());
    out
}

/// matrix.bin with `cost(left_rc, right_lc)` stored at `left_rc + lsize * right_lc`.
pub fn matrix_bytes(lsize: u16, rsize: u16, cost: impl Fn(u16, u16) -> i16) -> Vec<u8> {
    let mut out = [lsize.to_le_bytes(), rsize.to_le_bytes()].concat();
    for right_lc in 0..rsize {
        for left_rc in 0..lsize {
            out.extend_from_slice(&cost(left_rc, right_lc).to_le_bytes());
        }
    }
    out
}

pub fn pack_char_info(types: u32, default_type: u32, length: u32, group: bool, invoke: bool) -> u32 {
    types | (default_type << 18) | (length << 26) | ((group as u32) << 30) | ((invoke as u32) << 31)
}

/// char.bin with the given category names and a class for every UCS-2 code point.
pub fn char_bytes(names: &[&str], info: impl Fn(u16) -> u32) -> Vec<u8> {
    let mut out = (names.len() as u32).to_le_bytes().to_vec();
    for name in names {
        let mut raw = name.as_bytes().to_vec();
        raw.resize(32, 0);
        out.extend_from_slice(&raw);
    }
    for cp in 0..0xffffu16 {
        out.extend_from_slice(&info(cp).to_le_bytes());
    }
    out
}

/// Categories of the synthetic dictionary, in id order.
pub const CATEGORIES: [&str; 5] = ["DEFAULT", "SPACE", "ALPHA", "KANJI", "HIRAGANA"];

/// unidic-like classes: spaces skipped; ASCII letters grouped and always proposed as unknown
/// words; kanji proposed one and two at a time; hiragana grouped; everything else DEFAULT.
pub fn synthetic_char_info(cp: u16) -> CharInfo {
    CharInfo(match cp {
        0x20 | 0x09 | 0x0a | 0x0d => pack_char_info(1 << 1, 1, 0, true, false),
        0x61..=0x7a => pack_char_info(1 << 2, 2, 0, true, true),
        0x4e00..=0x9fff => pack_char_info(1 << 3, 3, 2, false, false),
        0x3041..=0x309f => pack_char_info(1 << 4, 4, 2, true, false),
        _ => pack_char_info(1, 0, 0, true, false),
    })
}

/// Writes a complete synthetic dictionary directory.
pub fn write_dictionary(dir: &Path, lexicon: &[Entry], contexts: u16, cost: impl Fn(u16, u16) -> i16) {
    let unknown: Vec<Entry> = CATEGORIES
        .iter()
        .enumerate()
        .flat_map(|(i, name)| {
            // Two entries for DEFAULT, so that unknown homographs are exercised too.
            let copies = if i == 0 { 2 } else { 1 };
            (0..copies).map(move |k| {
                entry(name, (i as u16 + k) % contexts, (i as u16 + 2 * k) % contexts, 1000 + 10 * k as i16)
            })
        })
        .collect();
    let n = contexts as u32;
    std::fs::write(dir.join("sys.dic"), dic_bytes(DicType::System, lexicon, n, n)).unwrap();
    std::fs::write(dir.join("unk.dic"), dic_bytes(DicType::Unknown, &unknown, n, n)).unwrap();
    std::fs::write(dir.join("matrix.bin"), matrix_bytes(contexts, contexts, cost)).unwrap();
    std::fs::write(dir.join("char.bin"), char_bytes(&CATEGORIES, |cp| synthetic_char_info(cp).0)).unwrap();
    std::fs::write(dir.join("dicrc"), "; test dictionary\ncost-factor = 700\n").unwrap();
}
