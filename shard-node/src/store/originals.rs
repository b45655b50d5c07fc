//! The originals (each token's vector as given, in f16) of encoded documents, kept out of sled:
//! appended to files `originals/<generation>.f16` in the store's folder, a document's value in
//! `vectors` holding only where its originals lie and their CRC-32 (`Location`). Exact
//! re-scoring reads a few hundred documents' originals per search; from sled, a store larger
//! than its page cache pays a node read and rebuild per document (tens of milliseconds a
//! search at 10 M tokens), from these files a positioned read the OS's page cache serves.
//!
//! A write appends its documents' originals and syncs the file before their values go into
//! sled, so a stored location never names bytes a crash could lose; a crash in between leaves
//! bytes no value names. Replaced and deleted documents leave theirs too: compaction
//! (compact.rs) moves the live originals into a new generation once the dead pass half of the
//! files. A re-encoding (retraining, or a document brought to the current codec) keeps the
//! location its originals already have.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use half::f16;

use super::{Store, Tokens};
use crate::{Error, Result};

/// Where one document's originals lie: `halves` f16 values at byte `offset` of generation
/// `generation`'s file, and their CRC-32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub generation: u32,
    pub offset: u64,
    pub halves: u32,
    pub crc: u32,
}

/// The originals files of one store.
pub(super) struct Originals {
    dir: PathBuf,
    /// Every generation's file, for positioned reads (a file compacted away stays readable to
    /// a read that took it before it was unlinked).
    files: RwLock<BTreeMap<u32, Arc<File>>>,
    /// The generation appended to, and its length: one append at a time.
    active: Mutex<(u32, u64)>,
    /// Generations compacted away, and when: unlinked at once, their open files kept a while
    /// for reads that took a location just before the move (`RETIRED_GRACE`).
    retired: Mutex<Vec<(Instant, u32)>>,
    /// The files' bytes at the last count of the live ones (compact.rs), and when it was.
    pub counted: Mutex<(u64, Instant)>,
}

/// How long a compacted generation's file stays readable after it was unlinked.
const RETIRED_GRACE: Duration = Duration::from_secs(60);

impl Originals {
    /// The files in `store`'s folder (made on the first append).
    pub fn open(store: &Path) -> Result<Originals> {
        let dir = store.join("originals");
        let failed = |e: std::io::Error| io_error(&dir, e);
        let mut files = BTreeMap::new();
        if dir.exists() {
            for entry in std::fs::read_dir(&dir).map_err(failed)? {
                let path = entry.map_err(failed)?.path();
                let generation = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u32>().ok());
                if let (Some(generation), Some("f16")) = (generation, path.extension().and_then(|e| e.to_str())) {
                    let file = File::options().read(true).append(true).open(&path).map_err(failed)?;
                    files.insert(generation, Arc::new(file));
                }
            }
        }
        let generation = files.keys().next_back().copied().unwrap_or(1);
        let len = match files.get(&generation) {
            Some(file) => file.metadata().map_err(failed)?.len(),
            None => 0,
        };
        Ok(Originals {
            dir,
            files: RwLock::new(files),
            active: Mutex::new((generation, len)),
            retired: Mutex::default(),
            counted: Mutex::new((0, Instant::now())),
        })
    }

    fn path(&self, generation: u32) -> PathBuf {
        self.dir.join(format!("{generation:08}.f16"))
    }

    fn file(&self, generation: u32) -> Option<Arc<File>> {
        self.files.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&generation).cloned()
    }

    /// Appends each of `batch` to the active generation and syncs it; their locations.
    pub fn append(&self, batch: &[&[f16]]) -> Result<Vec<Location>> {
        let mut active = self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (generation, start) = *active;
        let file = match self.file(generation) {
            Some(file) => file,
            None => {
                std::fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, e))?;
                let path = self.path(generation);
                let file = File::options().create(true).read(true).append(true).open(&path);
                let file = Arc::new(file.map_err(|e| io_error(&path, e))?);
                self.files.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(generation, file.clone());
                file
            }
        };
        let mut bytes = Vec::with_capacity(batch.iter().map(|o| o.len() * 2).sum());
        let mut locations = Vec::with_capacity(batch.len());
        for originals in batch {
            let at = bytes.len();
            originals.iter().for_each(|x| bytes.extend(x.to_le_bytes()));
            let crc = crc32fast::hash(&bytes[at..]);
            let (offset, halves) = (start + at as u64, originals.len() as u32);
            locations.push(Location { generation, offset, halves, crc });
        }
        let path = self.path(generation);
        // A failed append may have left part of the bytes: the length is read again, so the
        // next append starts after them (they are named by no value).
        let written = (&*file).write_all(&bytes).and_then(|()| file.sync_data());
        active.1 = file.metadata().map_err(|e| io_error(&path, e))?.len();
        written.map_err(|e| io_error(&path, e))?;
        Ok(locations)
    }

    /// The originals at `at`, once their checksum holds.
    pub fn read(&self, at: &Location, what: &str, store: &str) -> Result<Vec<f16>> {
        let corrupt = |reason: String| Error::Corrupt { path: store.to_string(), reason: format!("{what}: {reason}") };
        let file = self.file(at.generation).ok_or_else(|| corrupt(format!("no originals file {}", at.generation)))?;
        // Read straight into the values (little-endian on disk): one allocation and one copy
        // a document, a few hundred documents a search.
        let mut values = vec![f16::ZERO; at.halves as usize];
        // SAFETY: f16 is a plain 16-bit value (`#[repr(transparent)]` over u16), any bit
        // pattern valid; the bytes span exactly the vector's values and borrow it mutably.
        let bytes = unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), values.len() * 2) };
        file.read_exact_at(bytes, at.offset)
            .map_err(|e| corrupt(format!("originals at {}:{} unreadable: {e}", at.generation, at.offset)))?;
        if crc32fast::hash(bytes) != at.crc {
            return Err(corrupt(format!("originals at {}:{}: checksum mismatch", at.generation, at.offset)));
        }
        if cfg!(target_endian = "big") {
            values.iter_mut().for_each(|x| *x = f16::from_bits(u16::from_le(x.to_bits())));
        }
        Ok(values)
    }

    /// Bytes in all generations' files, those retired left out.
    pub fn bytes(&self) -> u64 {
        let retired: Vec<u32> =
            self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|(_, g)| *g).collect();
        let files = self.files.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let kept = files.iter().filter(|(g, _)| !retired.contains(g));
        kept.filter_map(|(_, f)| f.metadata().ok()).map(|m| m.len()).sum()
    }

    /// Starts a new generation for appends; the one before.
    pub fn next_generation(&self) -> u32 {
        let mut active = self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = active.0;
        *active = (before + 1, 0);
        before
    }

    /// Unlinks the files of every generation up to `generation` (no value names them any
    /// more), keeping them open for `RETIRED_GRACE`.
    pub fn retire_up_to(&self, generation: u32) -> Result<()> {
        let old: Vec<u32> = {
            let files = self.files.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            files.range(..=generation).map(|(g, _)| *g).collect()
        };
        let mut retired = self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh: Vec<u32> = old.into_iter().filter(|g| !retired.iter().any(|(_, r)| r == g)).collect();
        for g in fresh {
            let path = self.path(g);
            std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            retired.push((Instant::now(), g));
        }
        Ok(())
    }

    /// Closes the retired files past their grace (their disk space is freed then).
    /// Called every second: the files' map, which every read takes, is locked for writing
    /// only when a file is past its grace.
    pub fn forget_retired(&self) {
        let mut retired = self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if retired.iter().all(|(at, _)| at.elapsed() < RETIRED_GRACE) {
            return;
        }
        let mut files = self.files.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        retired.retain(|(at, g)| {
            let keep = at.elapsed() < RETIRED_GRACE;
            if !keep {
                files.remove(g);
            }
            keep
        });
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(sled::Error::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}

impl Store {
    /// A `vectors` value as tokens, their originals read from the originals files.
    pub(super) fn parse_tokens(&self, bytes: &[u8], id: u32) -> Result<(Tokens, Option<Location>)> {
        let what = format!("tokens of document {id}");
        let (mut tokens, at) = Tokens::from_bytes(bytes, &what, &self.path)?;
        if let (Tokens::Encoded { originals, .. }, Some(at)) = (&mut tokens, &at) {
            *originals = Some(self.originals.read(at, &what, &self.path)?);
        }
        Ok((tokens, at))
    }

    /// The `vectors` values of `batch`: originals appended to the files (one sync for all),
    /// except where `kept[i]` (what the value holds now, and where its originals lie) has the
    /// same originals, whose location is reused.
    pub(super) fn values(
        &self,
        batch: &[&Tokens],
        kept: &[Option<(Tokens, Option<Location>)>],
    ) -> Result<Vec<Vec<u8>>> {
        let reused: Vec<Option<Location>> = batch
            .iter()
            .zip(kept.iter().chain(std::iter::repeat(&None)))
            .map(|(new, kept)| match (new.originals(), kept) {
                (Some(o), Some((old, Some(at)))) if old.originals() == Some(o) => Some(*at),
                _ => None,
            })
            .collect();
        let fresh: Vec<&[f16]> = batch
            .iter()
            .zip(&reused)
            .filter_map(|(new, reused)| reused.is_none().then(|| new.originals()).flatten())
            .collect();
        let mut appended = if fresh.is_empty() { Vec::new() } else { self.originals.append(&fresh)? }.into_iter();
        Ok(batch
            .iter()
            .zip(reused)
            .map(|(new, reused)| {
                let at = reused.or_else(|| new.originals().and_then(|_| appended.next()));
                new.to_bytes_at(at)
            })
            .collect())
    }
}

/// `halves` f16 values' bytes, for the check's sum of live bytes.
pub(super) fn bytes_of(at: &Option<Location>) -> u64 {
    at.map_or(0, |at| at.halves as u64 * 2)
}
