//! Codec generations in `meta`: `codec/N` (the codec, sealed) and `trained/N` (the collection
//! size it was trained for). The manifest names the current one; the others stay readable for
//! documents not yet re-encoded.

use sled::transaction::{ConflictableTransactionError, Transactional};

use super::codec_bytes::{self, seal};
use super::{transaction_error, Manifest, Store};
use crate::codec::Codec;
use crate::{Error, Result};

impl Store {
    /// The codec of generation `generation` (an error if it is missing or damaged).
    pub fn codec(&self, generation: u32) -> Result<Codec> {
        let corrupt = |reason: String| Error::Corrupt { path: self.path.clone(), reason };
        let name = format!("codec/{generation}");
        let bytes = self.meta.get(&name)?.ok_or_else(|| corrupt(format!("{name} is missing")))?;
        let payload = codec_bytes::open(&bytes, &name, &self.path)?;
        Codec::from_bytes(payload).map_err(|e| corrupt(e.to_string()))
    }

    /// Stores a new codec generation, trained for a collection of `tokens` tokens, without
    /// making it current; returns its generation (one past every stored one, so a generation
    /// left by an interrupted retraining is never reused for other centroids). Documents
    /// encoded by older generations stay readable (their codecs are kept), so rewriting them
    /// can stop at any point without losing any.
    pub fn add_codec(&self, codec: &Codec, tokens: u64) -> Result<u32> {
        let mut latest = 0;
        for key in self.meta.scan_prefix("codec/").keys() {
            let key = key?;
            latest = latest.max(std::str::from_utf8(&key[6..]).ok().and_then(|g| g.parse().ok()).unwrap_or(0));
        }
        let generation = latest.max(self.manifest().codec) + 1;
        (&self.meta,)
            .transaction(|(meta,)| {
                meta.insert(format!("codec/{generation}").as_bytes(), seal(codec.to_bytes()))?;
                meta.insert(format!("trained/{generation}").as_bytes(), &tokens.to_le_bytes())?;
                Ok::<_, ConflictableTransactionError<Error>>(())
            })
            .map_err(transaction_error)?;
        self.db.flush()?;
        Ok(generation)
    }

    /// Makes codec `generation` (stored by `add_codec`) the current one.
    pub fn use_codec(&self, generation: u32) -> Result<()> {
        self.codec(generation)?;
        let mut head = self.head();
        let manifest = Manifest { codec: generation, ..head.manifest };
        self.meta.insert("manifest", manifest.to_bytes())?;
        self.db.flush()?;
        head.manifest = manifest;
        Ok(())
    }

    /// Stores a new codec generation and makes it current; returns its generation.
    pub fn install_codec(&self, codec: &Codec, tokens: u64) -> Result<u32> {
        let generation = self.add_codec(codec, tokens)?;
        self.use_codec(generation)?;
        Ok(generation)
    }

    /// The collection size codec `generation` was trained for (`None`: a store from before
    /// this was kept).
    pub fn trained_tokens(&self, generation: u32) -> Result<Option<u64>> {
        Ok(self
            .meta
            .get(format!("trained/{generation}"))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_le_bytes)))
    }
}
