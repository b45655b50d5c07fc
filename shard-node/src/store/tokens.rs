//! A document's tokens as the `vectors` tree holds them: raw f32 before training, or the codec
//! generation, centroid codes and packed residuals after, with where the vectors as given (the
//! originals, f16) lie in the originals files (originals.rs) unless the shard keeps none; stores
//! written before those files hold the originals in the value itself. Sealed with a checksum.

use half::f16;

use super::codec_bytes::{self, seal, Reader};
use super::originals::Location;
use super::{id_of, key, Store};
use crate::{Error, Result};

/// The tags of a value: raw, encoded without originals, encoded with them inline (stores
/// written before the originals files), encoded with their location.
const RAW: u8 = 0;
const ENCODED: u8 = 1;
const INLINE: u8 = 2;
const LOCATED: u8 = 3;

/// A document's tokens as stored: raw, or encoded by the codec of generation `codec`.
#[derive(Debug, Clone, PartialEq)]
pub enum Tokens {
    Raw(Vec<f32>),
    Encoded {
        codec: u32,
        codes: Vec<u32>,
        residuals: Vec<u8>,
        /// The vectors as given, `[n, dim]` in f16: what exact scoring, retraining and moves
        /// read (`None` where the shard keeps no originals).
        originals: Option<Vec<f16>>,
    },
}

impl Tokens {
    /// The originals these tokens carry, if any.
    pub fn originals(&self) -> Option<&[f16]> {
        match self {
            Tokens::Encoded { originals: Some(o), .. } => Some(o),
            _ => None,
        }
    }

    /// The value, with the originals' location `at` in place of the originals when given.
    pub(super) fn to_bytes_at(&self, at: Option<Location>) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Tokens::Raw(v) => {
                out.push(RAW);
                out.extend((v.len() as u32).to_le_bytes());
                v.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
            Tokens::Encoded { codec, codes, residuals, originals } => {
                out.push(match (at, originals) {
                    (Some(_), _) => LOCATED,
                    (None, Some(_)) => INLINE,
                    (None, None) => ENCODED,
                });
                out.extend(codec.to_le_bytes());
                out.extend((codes.len() as u32).to_le_bytes());
                codes.iter().for_each(|c| out.extend(c.to_le_bytes()));
                match (at, originals) {
                    (Some(at), _) => {
                        out.extend(at.generation.to_le_bytes());
                        out.extend(at.offset.to_le_bytes());
                        out.extend(at.halves.to_le_bytes());
                        out.extend(at.crc.to_le_bytes());
                    }
                    (None, Some(originals)) => {
                        out.extend((originals.len() as u32).to_le_bytes());
                        originals.iter().for_each(|x| out.extend(x.to_le_bytes()));
                    }
                    (None, None) => {}
                }
                out.extend(residuals);
            }
        }
        seal(out)
    }

    /// The tokens of a value, and where their originals lie when the value names a location
    /// (the originals then left `None`, for the store to read).
    pub(super) fn from_bytes(bytes: &[u8], what: &str, path: &str) -> Result<(Tokens, Option<Location>)> {
        let payload = codec_bytes::open(bytes, what, path)?;
        let corrupt = || Error::Corrupt { path: path.to_string(), reason: format!("{what}: malformed") };
        let (&tag, rest) = payload.split_first().ok_or_else(corrupt)?;
        let mut r = Reader::new(rest, what);
        let codec = if tag > RAW { r.u32().map_err(|_| corrupt())? } else { 0 };
        let n = r.u32().map_err(|_| corrupt())? as usize;
        let words = |b: &[u8]| -> Vec<[u8; 4]> { b.chunks_exact(4).map(|c| c.try_into().unwrap()).collect() };
        match tag {
            RAW => Ok((
                Tokens::Raw(words(r.take(n * 4).map_err(|_| corrupt())?).into_iter().map(f32::from_le_bytes).collect()),
                None,
            )),
            ENCODED | INLINE | LOCATED => {
                let codes = words(r.take(n * 4).map_err(|_| corrupt())?).into_iter().map(u32::from_le_bytes).collect();
                let (mut originals, mut at) = (None, None);
                if tag == INLINE {
                    let m = r.u32().map_err(|_| corrupt())? as usize;
                    let halves = r.take(m.checked_mul(2).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
                    originals = Some(halves.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect());
                } else if tag == LOCATED {
                    let generation = r.u32().map_err(|_| corrupt())?;
                    let offset = u64::from_le_bytes(r.take(8).map_err(|_| corrupt())?.try_into().unwrap());
                    let (halves, crc) = (r.u32().map_err(|_| corrupt())?, r.u32().map_err(|_| corrupt())?);
                    at = Some(Location { generation, offset, halves, crc });
                }
                Ok((Tokens::Encoded { codec, codes, residuals: r.rest().to_vec(), originals }, at))
            }
            _ => Err(corrupt()),
        }
    }
}

impl Store {
    pub fn tokens(&self, id: u32) -> Result<Option<Tokens>> {
        match self.vectors.get(key(id))? {
            Some(bytes) => Ok(Some(self.parse_tokens(&bytes, id)?.0)),
            None => Ok(None),
        }
    }

    /// Replaces document `id`'s tokens with `new` if they are still `old` (a write since may
    /// have replaced or deleted the document); whether they were. Not flushed: both are valid
    /// encodings of the same vectors, and the next flush or a restart settles which one stays.
    pub fn swap_tokens(&self, id: u32, old: &Tokens, new: &Tokens) -> Result<bool> {
        let Some(stored) = self.vectors.get(key(id))? else { return Ok(false) };
        let now = self.parse_tokens(&stored, id)?;
        if now.0 != *old {
            return Ok(false);
        }
        let value = self.values(&[new], &[Some(now)])?.remove(0);
        let swapped = self.vectors.compare_and_swap(key(id), Some(stored), Some(value))?;
        Ok(swapped.is_ok())
    }

    /// Every stored document's tokens, in internal id order.
    pub fn all_tokens(&self) -> impl Iterator<Item = Result<(u32, Tokens)>> + '_ {
        self.vectors.iter().map(|entry| {
            let (k, v) = entry?;
            let id = id_of(&k, &self.path)?;
            Ok((id, self.parse_tokens(&v, id)?.0))
        })
    }

    /// Replaces stored documents' tokens (same internal ids), in batches of at most 1,000.
    /// Originals already in the originals files keep their place.
    pub fn rewrite(&self, tokens: impl Iterator<Item = (u32, Tokens)>) -> Result<()> {
        let mut pending = Vec::new();
        let write = |pending: &mut Vec<(u32, Tokens)>| -> Result<()> {
            let mut kept = Vec::with_capacity(pending.len());
            for (id, _) in pending.iter() {
                kept.push(self.vectors.get(key(*id))?.map(|v| self.parse_tokens(&v, *id)).transpose()?);
            }
            let new: Vec<&Tokens> = pending.iter().map(|(_, t)| t).collect();
            let mut batch = sled::Batch::default();
            for ((id, _), value) in pending.iter().zip(self.values(&new, &kept)?) {
                batch.insert(&key(*id), value);
            }
            self.vectors.apply_batch(batch)?;
            pending.clear();
            Ok(())
        };
        for entry in tokens {
            pending.push(entry);
            if pending.len() == 1000 {
                write(&mut pending)?;
            }
        }
        write(&mut pending)?;
        self.db.flush()?;
        Ok(())
    }
}
