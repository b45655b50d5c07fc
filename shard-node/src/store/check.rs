//! What opening a store guards against: leftovers of a start that failed (sled's
//! `*.generating` snapshot files, which make every later start fail), sled panicking on damaged
//! bytes (contained and turned into an error that names the store), and damage sled does not
//! notice: the consistency check reads every tree and refuses a store whose trees disagree.
//!
//! And one sled hides: given damaged bytes in its log, sled may recover an older state, whole
//! and consistent, without the writes after it (we measured it opening with every document
//! gone). So each durable write bumps a sequence number in `meta` and, once flushed, in a small
//! file beside sled's (`jacolbert.watermark`, checksummed); a store whose sequence is behind
//! its watermark lost acknowledged writes, and is refused.

use std::collections::HashSet;
use std::path::Path;

use super::codec_bytes::{open, seal};
use super::{key, Store};
use crate::{Error, Result};

/// What to do with a store that fails its check, for the error's message.
pub const REMEDY: &str = "restore this replica from another (add an empty one with `jacolbert replica add`, then \
                          `jacolbert replica remove` this one), or start it with `jacolbert shard --salvage` to serve \
                          what is intact, read-only";

/// Removes what a start that failed part-way leaves in `dir` and sled would trip on.
pub fn clean_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::warn!(file = %entry.path().display(), "removed a snapshot left half-written by a failed start")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a half-written snapshot")
                }
            }
        }
    }
}

/// Runs `f`, turning a panic inside it (sled's, on damaged bytes) into `Error::Corrupt` for
/// `path`. The panic's own report is kept out of the log: the error says what happened.
pub fn contained<T>(path: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    outcome.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(Error::Corrupt { path: path.to_string(), reason: format!("sled could not read it ({what}); {REMEDY}") })
    })
}

/// The key in `meta` of the tally.
pub const TALLY: &str = "sequence";
const WATERMARK: &str = "jacolbert.watermark";

/// Durable writes so far (the sequence) and the documents and version records they left:
/// written in the same transaction as each write, so sled cannot keep one without the other.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub sequence: u64,
    pub docs: i64,
    pub versions: i64,
}

impl Tally {
    /// What `meta` holds. A store from before the tally was kept adopts the counts it has.
    pub fn stored(meta: &sled::Tree, docs: usize, versions: usize, path: &str) -> Result<Tally> {
        let adopted = Tally { sequence: 0, docs: docs as i64, versions: versions as i64 };
        let Some(v) = meta.get(TALLY)? else { return Ok(adopted) };
        let word = |i: usize| v.get(i * 8..i * 8 + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        match (word(0), word(1), word(2), v.len()) {
            (Some(sequence), Some(docs), Some(versions), 24) => {
                Ok(Tally { sequence, docs: docs as i64, versions: versions as i64 })
            }
            _ => Err(Error::Corrupt {
                path: path.to_string(),
                reason: format!("the write tally is malformed; {REMEDY}"),
            }),
        }
    }

    /// The tally of the next write, before its changes are counted in.
    pub fn next(&self) -> Tally {
        Tally { sequence: self.sequence + 1, ..*self }
    }

    pub fn to_bytes(self) -> Vec<u8> {
        [self.sequence, self.docs as u64, self.versions as u64].iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// Damaged entries found by the check.
#[derive(Debug, Default)]
pub struct Damage {
    pub count: usize,
    pub first: Option<String>,
    /// Internal ids of documents that cannot be served whole.
    pub documents: HashSet<u32>,
    /// Bytes of the originals files the documents' values name.
    pub originals_bytes: u64,
}

impl Damage {
    fn note(&mut self, what: String) {
        self.count += 1;
        self.first.get_or_insert(what);
    }
}

impl Store {
    /// Reads every tree: each document's value, its id entry and its vectors; the counts
    /// against each other and the manifest; every version record.
    pub fn damage(&self) -> Result<Damage> {
        let mut damage = Damage::default();
        let head = *self.head();
        let mut internal = HashSet::new();
        for entry in self.docs.iter() {
            let (external, value) = entry?;
            let external = String::from_utf8_lossy(&external).into_owned();
            let (id, _) = match self.document(&external, &value) {
                Ok(doc) => doc,
                Err(_) => {
                    damage.note(format!("document {external:?}"));
                    continue;
                }
            };
            internal.insert(id);
            let tokens = self.vectors.get(key(id))?.map(|v| self.parse_tokens(&v, id));
            if let Some(Ok((_, at))) = &tokens {
                damage.originals_bytes += super::originals::bytes_of(at);
            }
            let whole = id < head.manifest.next_id
                && self.ids.get(key(id))?.is_some_and(|e| *e == *external.as_bytes())
                && tokens.is_some_and(|t| t.is_ok());
            if !whole {
                damage.note(format!("the id entry or vectors of document {external:?} (internal {id})"));
                damage.documents.insert(id);
            }
        }
        for entry in self.ids.iter().chain(self.vectors.iter()) {
            let (k, _) = entry?;
            let id = super::id_of(&k, &self.path).unwrap_or(u32::MAX);
            if !internal.contains(&id) {
                damage.note(format!("an id or vectors entry (internal {id}) of no document"));
            }
        }
        match self.watermark() {
            Some(mark) if mark > head.tally.sequence => damage.note(format!(
                "sled recovered an older state: it holds {} durable writes, {mark} were acknowledged",
                head.tally.sequence
            )),
            _ => {}
        }
        let (docs, versions) = (self.docs.len() as i64, self.versions.len() as i64);
        if (docs, versions) != (head.tally.docs, head.tally.versions) {
            damage.note(format!(
                "the store holds {docs} documents and {versions} version records, its writes left {} and {}",
                head.tally.docs, head.tally.versions
            ));
        }
        for entry in self.versions.iter() {
            let (external, value) = entry?;
            if super::Record::from_bytes(&value, &external, &self.path).is_err() {
                damage.note(format!("the version of {:?}", String::from_utf8_lossy(&external)));
            }
        }
        Ok(damage)
    }
}

impl Store {
    fn watermark_path(&self) -> std::path::PathBuf {
        Path::new(&self.path).join(WATERMARK)
    }

    /// The sequence last written to the watermark file (`None`: no file, or a torn one).
    fn watermark(&self) -> Option<u64> {
        let bytes = std::fs::read(self.watermark_path()).ok()?;
        open(&bytes, "watermark", &self.path).ok()?.try_into().ok().map(u64::from_le_bytes)
    }

    /// Removes the tokens of writes a crash stopped between their tokens and their transaction
    /// (mod.rs: tokens with no id entry, never acknowledged); how many. A write's tokens go under
    /// ids it takes from the unused ones or from `next_id` on, so only those are looked at: the
    /// documents' own tokens (most of the store) are not read.
    pub(super) fn unfinished_writes(&self) -> Result<usize> {
        let mut unfinished = Vec::new();
        for id in self.unused_ids()? {
            if self.vectors.contains_key(super::key(id))? {
                unfinished.push(super::key(id).to_vec());
            }
        }
        for k in self.vectors.range(super::key(self.manifest().next_id)..).keys() {
            unfinished.push(k?.to_vec());
        }
        for k in &unfinished {
            self.vectors.remove(k)?;
        }
        if !unfinished.is_empty() {
            self.db.flush()?;
            tracing::info!(path = %self.path, documents = unfinished.len(), "removed the tokens of unfinished writes");
        }
        Ok(unfinished.len())
    }

    /// Records that the write of `tally` is durable: in memory, and its sequence in the
    /// watermark file, synced.
    pub(super) fn acknowledged(&self, head: &mut super::Head, tally: Tally) -> Result<()> {
        use std::io::Write;
        head.tally = tally;
        let bytes = seal(tally.sequence.to_le_bytes().to_vec());
        let failed = |e: std::io::Error| Error::Storage(sled::Error::Io(e));
        let mut file = std::fs::File::create(self.watermark_path()).map_err(failed)?;
        file.write_all(&bytes).map_err(failed)?;
        file.sync_data().map_err(failed)
    }
}

/// Opens the sled database at `path`. sled lets go of a database's file lock only once the
/// frees it deferred have run (epoch-based reclamation, done as threads go on using sled), so a
/// store dropped a moment ago in this process can hold it a little longer: the lock is asked
/// for again for up to `LOCK_WAIT`. Another process holding it is named as such after that.
pub(super) fn open_db(path: &std::path::Path, cache_bytes: u64) -> Result<sled::Db> {
    const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= LOCK_WAIT {
                    return Err(Error::InUse { path: path.display().to_string() });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return Ok(opened?),
        }
    }
}
