//! A document's tokens as the `vectors` tree holds them: raw f32 before training, or the codec
//! generation, centroid codes and packed residuals after, with the vectors as given in f16
//! (the originals) unless the shard keeps none; sealed with a checksum.

use half::f16;

use super::codec_bytes::{self, seal, Reader};
use crate::{Error, Result};

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
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Tokens::Raw(v) => {
                out.push(0);
                out.extend((v.len() as u32).to_le_bytes());
                v.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
            Tokens::Encoded { codec, codes, residuals, originals } => {
                out.push(if originals.is_some() { 2 } else { 1 });
                out.extend(codec.to_le_bytes());
                out.extend((codes.len() as u32).to_le_bytes());
                codes.iter().for_each(|c| out.extend(c.to_le_bytes()));
                if let Some(originals) = originals {
                    out.extend((originals.len() as u32).to_le_bytes());
                    originals.iter().for_each(|x| out.extend(x.to_le_bytes()));
                }
                out.extend(residuals);
            }
        }
        seal(out)
    }

    pub(super) fn from_bytes(bytes: &[u8], what: &str, path: &str) -> Result<Tokens> {
        let payload = codec_bytes::open(bytes, what, path)?;
        let corrupt = || Error::Corrupt { path: path.to_string(), reason: format!("{what}: malformed") };
        let (&tag, rest) = payload.split_first().ok_or_else(corrupt)?;
        let mut r = Reader::new(rest, what);
        let codec = if tag > 0 { r.u32().map_err(|_| corrupt())? } else { 0 };
        let n = r.u32().map_err(|_| corrupt())? as usize;
        let words = |b: &[u8]| -> Vec<[u8; 4]> { b.chunks_exact(4).map(|c| c.try_into().unwrap()).collect() };
        match tag {
            0 => Ok(Tokens::Raw(
                words(r.take(n * 4).map_err(|_| corrupt())?).into_iter().map(f32::from_le_bytes).collect(),
            )),
            1 | 2 => {
                let codes = words(r.take(n * 4).map_err(|_| corrupt())?).into_iter().map(u32::from_le_bytes).collect();
                let originals = match tag {
                    2 => {
                        let m = r.u32().map_err(|_| corrupt())? as usize;
                        let halves = r.take(m.checked_mul(2).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
                        Some(halves.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect())
                    }
                    _ => None,
                };
                Ok(Tokens::Encoded { codec, codes, residuals: r.rest().to_vec(), originals })
            }
            _ => Err(corrupt()),
        }
    }
}
