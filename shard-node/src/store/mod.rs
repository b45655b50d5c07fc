//! Durable state in sled. Trees: `meta` (the checksummed manifest and the codec), `docs`
//! (external id → internal id, text, metadata), `ids` (internal id → external id) and
//! `vectors` (internal id → the document's tokens: raw f32 before the codec is trained, codes
//! and residuals after; one value per document, as sled inflates many small ones). A write
//! changes all trees in one transaction and returns only after sled has flushed it, except for
//! its new documents' tokens, written under their (unused) ids just before it: a sled
//! transaction holds a lock every read in the process waits for, and searches read tokens, so
//! the big values stay out of it. A crash between the two leaves tokens of no id entry, removed
//! at open (`unfinished_writes`). Replacing a document removes the old version in the same
//! transaction. `versions` (versions.rs) keeps each id's last write's version, and a versioned
//! delete's tombstone.

mod check;
mod codec_bytes;
mod compact;
mod generations;
mod originals;
mod tokens;
pub mod versions;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::{Error, Result};
pub use check::Damage;
use codec_bytes::{put_string, seal, Reader};
pub use tokens::Tokens;
pub use versions::Record;

const MAGIC: &[u8; 4] = b"JCBS";
pub const VERSION: u32 = 1;

/// What the store says about itself; in `meta` under `manifest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    pub dim: u32,
    pub nbits: u32,
    pub next_id: u32,
    /// The current codec's generation; 0 before the first training.
    pub codec: u32,
}

impl Manifest {
    fn to_bytes(self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for v in [VERSION, self.dim, self.nbits, self.next_id, self.codec] {
            out.extend(v.to_le_bytes());
        }
        seal(out)
    }

    fn from_bytes(bytes: &[u8], path: &str) -> Result<Manifest> {
        let corrupt = |reason: String| Error::Corrupt { path: path.to_string(), reason };
        let payload = codec_bytes::open(bytes, "manifest", path)?;
        let mut r = Reader::new(payload, "manifest");
        if r.take(4).ok() != Some(MAGIC.as_slice()) {
            return Err(corrupt("manifest: not a jacolbert shard store".into()));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(corrupt(format!("manifest: store version {version}, this build reads version {VERSION}")));
        }
        let (dim, nbits, next_id, codec) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        Ok(Manifest { dim, nbits, next_id, codec })
    }
}

/// A document as the store keeps it, without its vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    pub text: String,
    pub metadata: String,
}

pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    docs: sled::Tree,
    ids: sled::Tree,
    vectors: sled::Tree,
    versions: sled::Tree,
    /// The documents' originals, out of sled (originals.rs).
    originals: originals::Originals,
    path: String,
    /// The manifest and the tally, changed by writes: one write at a time holds this from its
    /// transaction to its watermark, so the sequence on disk follows the order of writes.
    head: std::sync::Mutex<Head>,
    /// Made when the store is created: a replica whose data was lost comes back under another
    /// identity, and the router stops reading it until it is repaired.
    identity: String,
}

/// What writes change besides the trees' contents.
#[derive(Debug, Clone, Copy)]
struct Head {
    manifest: Manifest,
    /// Writes (upserts and deletes) this store has made durable and what they left, in `meta`
    /// and (the sequence) in the watermark file beside sled's (check.rs).
    tally: check::Tally,
}

/// What an upsert did to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub id: u32,
    pub replaced: Option<u32>,
}

/// The internal id at the head of a stored `docs` value, once its checksum holds.
fn stored_id(value: &[u8], external: &str, path: &str) -> Result<u32> {
    let what = format!("document {external:?}");
    Reader::new(codec_bytes::open(value, &what, path)?, what).u32()
}

/// A fresh identity: the creation time, the process and the path, hashed (FNV-1a), in hex.
fn new_identity(path: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let seed = format!("{nanos}/{}/{path}", std::process::id());
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

fn key(id: u32) -> [u8; 4] {
    id.to_be_bytes()
}

/// The internal id a key of `ids` or `vectors` names.
fn id_of(key: &[u8], path: &str) -> Result<u32> {
    let corrupt = || Error::Corrupt { path: path.to_string(), reason: "a key of ids or vectors is not an id".into() };
    Ok(u32::from_be_bytes(key.try_into().map_err(|_| corrupt())?))
}

/// sled's own default page cache (1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

impl Store {
    /// Opens (or creates) the store at `path` for vectors of `dim` at `nbits`. An existing
    /// store must have a sound manifest of this version and the same dim; its nbits wins.
    /// The store is checked whole before it is returned (`check.rs`): a damaged one is refused
    /// by name, and no panic of sled's gets out.
    /// sled's page cache holds up to `cache_bytes`.
    pub fn open(path: &std::path::Path, dim: u32, nbits: u32, cache_bytes: u64) -> Result<Store> {
        let (store, damage) = Store::salvage(path, dim, nbits, cache_bytes)?;
        match damage.first {
            None => {
                store.compact_originals_at_open(damage.originals_bytes)?;
                Ok(store)
            }
            Some(first) => Err(Error::Corrupt {
                path: store.path.clone(),
                reason: format!("{} damaged entries, the first: {first}; {}", damage.count, check::REMEDY),
            }),
        }
    }

    /// Opens the store however damaged it is (when sled can), with what its check found: for
    /// serving what is intact.
    pub fn salvage(path: &std::path::Path, dim: u32, nbits: u32, cache_bytes: u64) -> Result<(Store, check::Damage)> {
        let shown = path.display().to_string();
        check::clean_leftovers(path);
        let corrupt = |e: sled::Error| match e {
            sled::Error::Corruption { .. } => {
                Error::Corrupt { path: shown.clone(), reason: format!("sled: {e}; {}", check::REMEDY) }
            }
            e => Error::Storage(e),
        };
        check::contained(&shown, || {
            let store = Store::open_trees(path, dim, nbits, cache_bytes).map_err(|e| match e {
                Error::Storage(e) => corrupt(e),
                e => e,
            })?;
            let damage = store.damage().map_err(|e| match e {
                Error::Storage(e) => corrupt(e),
                e => e,
            })?;
            Ok((store, damage))
        })
    }

    fn open_trees(path: &std::path::Path, dim: u32, nbits: u32, cache_bytes: u64) -> Result<Store> {
        let shown = path.display().to_string();
        let db = check::open_db(path, cache_bytes)?;
        let tree = |name: &str| db.open_tree(name);
        let (meta, docs, ids, vectors) = (tree("meta")?, tree("docs")?, tree("ids")?, tree("vectors")?);
        let versions = tree("versions")?;
        let manifest = match meta.get("manifest")? {
            Some(bytes) => Manifest::from_bytes(&bytes, &shown)?,
            None if docs.is_empty() && vectors.is_empty() => {
                let m = Manifest { dim, nbits, next_id: 0, codec: 0 };
                meta.insert("manifest", m.to_bytes())?;
                db.flush()?;
                m
            }
            None => return Err(Error::Corrupt { path: shown, reason: "documents but no manifest".into() }),
        };
        if manifest.dim != dim {
            return Err(Error::BadInput(format!("store {shown} holds vectors of dim {}, not {dim}", manifest.dim)));
        }
        let identity = match meta.get("identity")? {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => {
                let made = new_identity(&shown);
                meta.insert("identity", made.as_bytes())?;
                db.flush()?;
                made
            }
        };
        let tally = check::Tally::stored(&meta, docs.len(), versions.len(), &shown)?;
        let head = std::sync::Mutex::new(Head { manifest, tally });
        let originals = originals::Originals::open(path)?;
        let store = Store { db, meta, docs, ids, vectors, versions, originals, path: shown, head, identity };
        store.unfinished_writes()?;
        if manifest.codec > 0 {
            store.codec(manifest.codec)?;
        }
        Ok(store)
    }

    pub fn manifest(&self) -> Manifest {
        self.head().manifest
    }

    /// The head, for one write (a write that panicked left it as it was: it is only changed
    /// once the write is durable).
    fn head(&self) -> std::sync::MutexGuard<'_, Head> {
        self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This store's identity (see the field).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Bytes free to this process on the store's file system (`None` when it cannot be told).
    pub fn free_bytes(&self) -> Option<u64> {
        let path = std::ffi::CString::new(self.path.as_bytes()).ok()?;
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a statvfs struct of our own to fill.
        match unsafe { libc::statvfs(path.as_ptr(), &mut stat) } {
            0 => Some(stat.f_bavail as u64 * stat.f_frsize as u64),
            _ => None,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Writes documents with their tokens at `versions[i]` under internal ids `given[i]` (ids
    /// no stored document has: the shard hands them out, `shard/ids.rs`): each replaces any
    /// document with the same external id, unless what the store holds for the id is as new or
    /// newer (then `None`, and its internal id stays unused). `moved` hears of each internal id
    /// replaced and by which, as soon as the transaction commits (before it is flushed).
    pub fn upsert_versioned(
        &self,
        batch: &[(Document, Tokens)],
        versions: &[u64],
        given: &[u32],
        moved: impl FnOnce(&[(u32, Option<u32>)]),
    ) -> Result<Vec<Option<Written>>> {
        assert_eq!(given.len(), batch.len(), "one internal id per document");
        let mut head = self.head();
        let limit = given.iter().map(|&id| id as u64 + 1).max().unwrap_or(0);
        let next_id = u32::try_from(limit.max(head.manifest.next_id as u64))
            .map_err(|_| Error::BadInput("the shard has run out of internal ids".into()))?;
        let manifest = Manifest { next_id, ..head.manifest };
        let (path, before) = (&self.path, head.tally);
        for (&id, (doc, _)) in given.iter().zip(batch) {
            if let Some(holder) = self.ids.get(key(id))? {
                // Never expected: an id in use given again would merge two documents.
                let holder = String::from_utf8_lossy(&holder).into_owned();
                let reason = format!("internal id {id} given to {:?} belongs to {holder:?}", doc.id);
                return Err(Error::Corrupt { path: path.clone(), reason });
            }
        }
        let tokens: Vec<&Tokens> = batch.iter().map(|(_, t)| t).collect();
        for (&id, value) in given.iter().zip(self.values(&tokens, &[])?) {
            self.vectors.insert(key(id), value)?;
        }
        let result = self.upsert_transaction(batch, versions, given, manifest, before);
        let unused = |written: &[Option<Written>]| {
            let used: std::collections::HashSet<u32> = written.iter().flatten().map(|w| w.id).collect();
            given.iter().filter(move |id| !used.contains(id)).try_for_each(|&id| self.vectors.remove(key(id)).map(drop))
        };
        let (written, tally, moves) = match result {
            Ok(done) => done,
            Err(e) => {
                unused(&[])?;
                return Err(e);
            }
        };
        unused(&written)?;
        moved(&moves);
        self.db.flush()?;
        head.manifest = manifest;
        self.acknowledged(&mut head, tally)?;
        Ok(written)
    }

    /// `upsert_versioned`'s transaction: every tree but the new documents' tokens.
    #[allow(clippy::type_complexity)]
    fn upsert_transaction(
        &self,
        batch: &[(Document, Tokens)],
        versions: &[u64],
        given: &[u32],
        manifest: Manifest,
        before: check::Tally,
    ) -> Result<(Vec<Option<Written>>, check::Tally, Vec<(u32, Option<u32>)>)> {
        let path = &self.path;
        let trees = (&self.docs, &self.ids, &self.vectors, &self.meta, &self.versions);
        let result = trees.transaction(|(docs, ids, vectors, meta, known)| {
            let mut written: Vec<Option<Written>> = Vec::with_capacity(batch.len());
            let mut moves = Vec::new();
            let mut tally = before.next();
            for (i, ((doc, _), &version)) in batch.iter().zip(versions).enumerate() {
                let id = given[i];
                let record = versions::read(known, &doc.id, path)?;
                // The same id twice in one batch (one version): the later one wins.
                let again = batch[..i].iter().zip(&written).any(|((d, _), w)| w.is_some() && d.id == doc.id);
                if !versions::applies(version, record) && !again {
                    written.push(None);
                    continue;
                }
                tally.versions += versions::remember(known, &doc.id, version, None)?;
                let mut value = id.to_le_bytes().to_vec();
                put_string(&mut value, &doc.text);
                put_string(&mut value, &doc.metadata);
                let replaced = match docs.insert(doc.id.as_bytes(), seal(value))? {
                    Some(old) => Some(stored_id(&old, &doc.id, path).map_err(ConflictableTransactionError::Abort)?),
                    None => None,
                };
                tally.docs += replaced.is_none() as i64;
                if let Some(old) = replaced {
                    ids.remove(&key(old))?;
                    vectors.remove(&key(old))?;
                    moves.push((old, Some(id)));
                }
                ids.insert(&key(id), doc.id.as_bytes())?;
                // A document given twice in one batch: the later one wins, the earlier is gone.
                for w in written.iter_mut() {
                    if w.is_some_and(|w| Some(w.id) == replaced) {
                        *w = None;
                    }
                }
                written.push(Some(Written { id, replaced }));
            }
            meta.insert("manifest", manifest.to_bytes())?;
            meta.insert(check::TALLY, tally.to_bytes())?;
            Ok::<_, ConflictableTransactionError<Error>>((written, tally, moves))
        });
        result.map_err(transaction_error)
    }

    /// Removes documents by external id at `version`, leaving a tombstone at that version
    /// (version 0: none, and what was known of the id is forgotten); an id the store holds a
    /// write as new or newer of is left as it is. Returns the internal ids that were live;
    /// `moved` hears of them as soon as the transaction commits.
    pub fn delete_versioned(
        &self,
        external: &[String],
        version: u64,
        moved: impl FnOnce(&[(u32, Option<u32>)]),
    ) -> Result<Vec<u32>> {
        let mut head = self.head();
        let (path, now, before) = (&self.path, versions::now_ms(), head.tally);
        let trees = (&self.docs, &self.ids, &self.vectors, &self.versions, &self.meta);
        let result = trees.transaction(|(docs, ids, vectors, known, meta)| {
            let mut tally = before.next();
            let mut removed = Vec::new();
            for id in external {
                if !versions::applies(version, versions::read(known, id, path)?) {
                    continue;
                }
                tally.versions += versions::remember(known, id, version, Some(now))?;
                if let Some(old) = docs.remove(id.as_bytes())? {
                    tally.docs -= 1;
                    let old = stored_id(&old, id, path).map_err(ConflictableTransactionError::Abort)?;
                    ids.remove(&key(old))?;
                    vectors.remove(&key(old))?;
                    removed.push(old);
                }
            }
            meta.insert(check::TALLY, tally.to_bytes())?;
            Ok::<_, ConflictableTransactionError<Error>>((removed, tally))
        });
        let (removed, tally) = result.map_err(transaction_error)?;
        moved(&removed.iter().map(|&id| (id, None)).collect::<Vec<_>>());
        self.db.flush()?;
        self.acknowledged(&mut head, tally)?;
        Ok(removed)
    }

    /// A document and its internal id, by external id.
    pub fn get(&self, external: &str) -> Result<Option<(u32, Document)>> {
        let Some(bytes) = self.docs.get(external.as_bytes())? else { return Ok(None) };
        self.document(external, &bytes).map(Some)
    }

    /// A `docs` value read back: the internal id and the document.
    fn document(&self, external: &str, bytes: &[u8]) -> Result<(u32, Document)> {
        let what = format!("document {external:?}");
        let mut r = Reader::new(codec_bytes::open(bytes, &what, &self.path)?, what);
        let id = r.u32()?;
        let (text, metadata) = (r.string()?, r.string()?);
        Ok((id, Document { id: external.to_string(), text, metadata }))
    }

    /// Every document with its internal id, in external id order.
    pub fn documents(&self) -> impl Iterator<Item = Result<(u32, Document)>> + '_ {
        self.docs.iter().map(move |entry| {
            let (key, bytes) = entry?;
            self.document(&String::from_utf8_lossy(&key), &bytes)
        })
    }

    /// Up to `limit` external ids after `after` (exclusive), in id order.
    pub fn ids_after(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        let start = std::ops::Bound::Excluded(after.as_bytes());
        self.docs
            .range::<&[u8], _>((start, std::ops::Bound::Unbounded))
            .keys()
            .take(limit)
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// The internal ids below the manifest's `next_id` that no stored document has.
    pub fn unused_ids(&self) -> Result<Vec<u32>> {
        let mut unused = Vec::new();
        let mut expected = 0u32;
        for k in self.ids.iter().keys() {
            let id = id_of(&k?, &self.path)?;
            unused.extend(expected..id);
            expected = id + 1;
        }
        unused.extend(expected..self.manifest().next_id);
        Ok(unused)
    }

    /// The external id of an internal one.
    pub fn external_id(&self, id: u32) -> Result<Option<String>> {
        Ok(self.ids.get(key(id))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes sled and the originals files use on disk.
    pub fn disk_bytes(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()? + self.originals.bytes())
    }
}

fn transaction_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Storage(e),
    }
}

#[cfg(test)]
mod tests;
