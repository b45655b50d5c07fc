//! What the store knows of each id's last write: the `versions` tree, external id → its
//! version, whether that write was a delete (a tombstone), and when a tombstone was written.
//! A write applies only when it is newer than this (DESIGN.md §9), so replicas that saw the
//! same writes in any order hold the same documents. Version 0 is "unversioned": it always
//! applies and leaves no record (what writes were before versions, and what tests send).
//! Here too the store's reads of them (`record`, `versions_after`: what a repair compares)
//! and the purge of expired tombstones.

use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree, UnabortableTransactionError};

use super::codec_bytes::{self, seal, Reader};
use super::{check, transaction_error};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub version: u64,
    /// Milliseconds since the Unix epoch when the delete was applied; `None` for a live document.
    pub deleted_at: Option<u64>,
}

impl Record {
    pub(super) fn to_bytes(self) -> Vec<u8> {
        let mut out = self.version.to_le_bytes().to_vec();
        out.extend(self.deleted_at.map_or(u64::MAX, |t| t).to_le_bytes());
        seal(out)
    }

    pub(super) fn from_bytes(bytes: &[u8], id: &[u8], path: &str) -> Result<Record> {
        let what = format!("version of {:?}", String::from_utf8_lossy(id));
        let mut r = Reader::new(codec_bytes::open(bytes, &what, path)?, what);
        let version = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
        let deleted = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
        Ok(Record { version, deleted_at: (deleted != u64::MAX).then_some(deleted) })
    }
}

/// Inside a write's transaction: what `known` (the versions tree) holds for `id`.
pub(super) fn read(
    known: &TransactionalTree,
    id: &str,
    path: &str,
) -> std::result::Result<Option<Record>, ConflictableTransactionError<Error>> {
    match known.get(id.as_bytes())? {
        Some(bytes) => {
            Record::from_bytes(&bytes, id.as_bytes(), path).map(Some).map_err(ConflictableTransactionError::Abort)
        }
        None => Ok(None),
    }
}

/// Inside a write's transaction: records that `id` was written at `version` (deleted at
/// `deleted_at`, for a delete); an unversioned write forgets what was known of it. Returns how
/// the number of records changed (-1, 0 or 1).
pub(super) fn remember(
    known: &TransactionalTree,
    id: &str,
    version: u64,
    deleted_at: Option<u64>,
) -> std::result::Result<i64, UnabortableTransactionError> {
    Ok(match version {
        0 => -(known.remove(id.as_bytes())?.is_some() as i64),
        v => known.insert(id.as_bytes(), Record { version: v, deleted_at }.to_bytes())?.is_none() as i64,
    })
}

/// Whether a write at `version` of an id last written at `known` applies. Equal versions are
/// the same write seen again (a retry, a copy): it does not apply twice.
pub fn applies(version: u64, known: Option<Record>) -> bool {
    version == 0 || known.is_none_or(|k| version > k.version)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl super::Store {
    /// What the store knows of `external`'s last write (`None`: nothing, or unversioned).
    pub fn record(&self, external: &str) -> Result<Option<Record>> {
        match self.versions.get(external.as_bytes())? {
            Some(bytes) => Ok(Some(Record::from_bytes(&bytes, external.as_bytes(), &self.path)?)),
            None => Ok(None),
        }
    }

    /// Forgets tombstones written before `before_ms` (Unix milliseconds); returns how many.
    pub fn purge_tombstones(&self, before_ms: u64) -> Result<usize> {
        let mut expired = Vec::new();
        for entry in self.versions.iter() {
            let (id, bytes) = entry?;
            if Record::from_bytes(&bytes, &id, &self.path)?.deleted_at.is_some_and(|t| t < before_ms) {
                expired.push(id);
            }
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let mut head = self.head();
        let before = head.tally;
        let result = (&self.versions, &self.meta).transaction(|(known, meta)| {
            let mut tally = before.next();
            for id in &expired {
                tally.versions -= known.remove(id)?.is_some() as i64;
            }
            meta.insert(check::TALLY, tally.to_bytes())?;
            Ok::<_, ConflictableTransactionError<Error>>(tally)
        });
        let tally = result.map_err(transaction_error)?;
        self.db.flush()?;
        self.acknowledged(&mut head, tally)?;
        Ok(expired.len())
    }

    /// Up to `limit` ids after `after` (exclusive), in id order, with what the store knows of
    /// each: the ids of live documents and of tombstones, with their versions (0: a document
    /// written unversioned). What a repair compares between two replicas.
    pub fn versions_after(&self, after: &str, limit: usize) -> Result<Vec<(String, Record)>> {
        let start = || (std::ops::Bound::Excluded(after.as_bytes()), std::ops::Bound::Unbounded);
        let mut live = self.docs.range::<&[u8], _>(start()).keys().peekable();
        let mut known = self.versions.range::<&[u8], _>(start()).peekable();
        let mut out = Vec::with_capacity(limit.min(4096));
        while out.len() < limit {
            // The smaller id of the two walks comes next; an id in both is one entry.
            let next_live = live.peek().map(|k| k.as_ref().map(|k| k.to_vec()).map_err(|e| e.clone()));
            let next_known = known.peek().map(|k| k.as_ref().map(|(k, _)| k.to_vec()).map_err(|e| e.clone()));
            let (live_id, known_id) = (next_live.transpose()?, next_known.transpose()?);
            let id = match (&live_id, &known_id) {
                (None, None) => break,
                (Some(l), Some(k)) => l.min(k).clone(),
                (Some(l), None) => l.clone(),
                (None, Some(k)) => k.clone(),
            };
            let record = match known_id.as_ref() == Some(&id) {
                true => {
                    let (_, bytes) = known.next().expect("peeked")?;
                    Record::from_bytes(&bytes, &id, &self.path)?
                }
                false => Record { version: 0, deleted_at: None },
            };
            if live_id.as_ref() == Some(&id) {
                live.next();
            }
            out.push((String::from_utf8_lossy(&id).into_owned(), record));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newer_writes_apply_and_records_round_trip() {
        let live = Record { version: 7, deleted_at: None };
        let dead = Record { version: 9, deleted_at: Some(1_700_000_000_000) };
        assert!(applies(8, Some(live)) && !applies(7, Some(live)) && !applies(3, Some(dead)));
        assert!(applies(0, Some(dead)) && applies(1, None));
        for r in [live, dead] {
            assert_eq!(Record::from_bytes(&r.to_bytes(), b"x", "p").unwrap(), r);
        }
        let mut damaged = dead.to_bytes();
        damaged[3] ^= 1;
        assert!(Record::from_bytes(&damaged, b"x", "p").is_err());
    }
}
