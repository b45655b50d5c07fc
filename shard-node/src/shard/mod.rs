//! A shard's life cycle. An empty shard keeps raw vectors (in sled and in memory) and answers
//! exactly until it holds `train_tokens` tokens; then it trains a codec, compresses what it
//! holds, and from then on compresses on arrival. `retrain` fits a new codec to the decoded
//! documents and rewrites them, losing none. Start-up rebuilds the in-memory layout from sled.

use std::collections::HashSet;

use crate::codec::{Codec, TrainParams};

use crate::fields::FieldIndex;
use crate::index::Index;
use crate::store::versions::now_ms;
use crate::store::{Document, Store, Tokens, Written};
use crate::{Error, Result};

/// How a shard stores and compresses (the `[index]` table of the shard's TOML config; a key
/// left out keeps its default).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardConfig {
    pub dim: usize,
    /// Tokens buffered before the first training.
    pub train_tokens: usize,
    pub train: TrainParams,
    /// Most tokens one document may have.
    pub max_doc_tokens: usize,
    /// Seconds a delete's tombstone is kept (forgotten at the next start after that).
    pub tombstone_ttl_s: u64,
    /// Most documents an `exact` search (every document scored) may cover; a larger shard
    /// refuses it.
    pub max_exact_documents: usize,
    /// Writes are refused while the store's file system has less free space than this, before
    /// sled runs out of it mid-write.
    pub min_free_bytes: u64,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            dim: 128,
            train_tokens: 100_000,
            train: TrainParams::default(),
            max_doc_tokens: 4096,
            tombstone_ttl_s: 7 * 24 * 3600,
            max_exact_documents: 100_000,
            min_free_bytes: 64 << 20,
        }
    }
}

impl ShardConfig {
    /// Refuses settings the codec cannot work with, naming the setting.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::BadInput(what));
        if !(1..=4096).contains(&self.dim) {
            return bad(format!("dim must be 1 to 4096, not {}", self.dim));
        }
        if ![1, 2, 4].contains(&self.train.nbits) {
            return bad(format!("nbits must be 1, 2 or 4, not {}", self.train.nbits));
        }
        if self.train.iterations == 0 || self.train.sample_per_centroid == 0 || self.max_doc_tokens == 0 {
            return bad("iterations, sample_per_centroid and max_doc_tokens must be at least 1".into());
        }
        Ok(())
    }
}

/// A document to write: its text and metadata, its token vectors `[n, dim]`, and the write's
/// version (0: unversioned).
pub struct NewDocument {
    pub doc: Document,
    pub vectors: Vec<f32>,
    pub version: u64,
}

/// A search result with the external id.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub id: String,
    pub score: f32,
}

enum State {
    /// Raw vectors by internal id, in id order.
    Buffering(Vec<(u32, Vec<f32>)>),
    Ready {
        index: Index,
        generation: u32,
    },
}

pub struct Shard {
    config: ShardConfig,
    store: Store,
    state: State,
    /// The documents' metadata fields, for filters.
    fields: FieldIndex,
    /// Salvaged: the documents the check found damaged (left out), and no writes.
    salvaged: Option<HashSet<u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub documents: usize,
    pub tokens: usize,
    pub trained: bool,
    pub memory_bytes: usize,
}

impl Shard {
    /// Opens the shard's store and rebuilds the search layout (documents left raw or encoded by
    /// an older codec, as a crash during training can leave them, are encoded now).
    pub fn open(path: &std::path::Path, config: ShardConfig) -> Result<Shard> {
        config.check()?;
        let store = Store::open(path, config.dim as u32, config.train.nbits as u32)?;
        Shard::with_store(store, config, None)
    }

    /// Opens a damaged store read-only, serving the documents its check found whole; says how
    /// many it left out.
    pub fn salvage(path: &std::path::Path, config: ShardConfig) -> Result<Shard> {
        config.check()?;
        let (store, damage) = Store::salvage(path, config.dim as u32, config.train.nbits as u32)?;
        tracing::warn!(
            path = store.path(),
            damaged = damage.count,
            documents_left_out = damage.documents.len(),
            first = damage.first.as_deref().unwrap_or("none"),
            "salvaged read-only: serving what is intact"
        );
        Shard::with_store(store, config, Some(damage.documents))
    }

    fn with_store(mut store: Store, config: ShardConfig, salvaged: Option<HashSet<u32>>) -> Result<Shard> {
        let skip = |id: u32| salvaged.as_ref().is_some_and(|s| s.contains(&id));
        let expired = match salvaged {
            Some(_) => 0,
            None => store.purge_tombstones(now_ms().saturating_sub(config.tombstone_ttl_s.saturating_mul(1000)))?,
        };
        if expired > 0 {
            tracing::info!(path = store.path(), expired, "forgot tombstones past their time to live");
        }
        let manifest = store.manifest();
        let mut fields = FieldIndex::default();
        for entry in store.documents() {
            let (id, doc) = match entry {
                Ok((id, _)) if skip(id) => continue,
                Ok(doc) => doc,
                Err(_) if salvaged.is_some() => continue,
                Err(e) => return Err(e),
            };
            // Stored metadata passed the check when written; a kind clash from before fields
            // were indexed (or a store written by hand) leaves the document out of filters.
            match fields.check(&doc.metadata) {
                Ok(parsed) => fields.add(id, parsed),
                Err(e) => tracing::warn!(id = %doc.id, error = %e, "metadata left out of the field index"),
            }
        }
        let mut shard = Shard { config, store, state: State::Buffering(Vec::new()), fields, salvaged };
        if manifest.codec == 0 {
            let mut raw = Vec::new();
            for entry in shard.intact_tokens() {
                match entry? {
                    (id, Tokens::Raw(v)) => raw.push((id, v)),
                    (id, Tokens::Encoded { .. }) => {
                        return Err(Error::Corrupt {
                            path: shard.store.path().into(),
                            reason: format!("document {id} is encoded but the store has no codec"),
                        })
                    }
                }
            }
            tracing::info!(path = shard.store.path(), documents = raw.len(), "opened untrained shard");
            shard.state = State::Buffering(raw);
            shard.train_if_due()?;
        } else {
            shard.load(manifest.codec)?;
        }
        Ok(shard)
    }

    /// Builds the index from the store, bringing every document to codec `generation`.
    fn load(&mut self, generation: u32) -> Result<()> {
        let codec = self.store.codec(generation)?;
        let mut index = Index::new(codec.clone());
        let mut stale = Vec::new();
        let mut old_codecs: Vec<(u32, Codec)> = Vec::new();
        let started = std::time::Instant::now();
        for (n, entry) in self.intact_tokens().enumerate() {
            let (id, tokens) = entry?;
            let (codes, residuals) = match tokens {
                Tokens::Encoded { codec: g, codes, residuals } if g == generation => (codes, residuals),
                other => {
                    let raw = match other {
                        Tokens::Raw(v) => v,
                        Tokens::Encoded { codec: g, codes, residuals } => {
                            if !old_codecs.iter().any(|(og, _)| *og == g) {
                                old_codecs.push((g, self.store.codec(g)?));
                            }
                            let old = &old_codecs.iter().find(|(og, _)| *og == g).unwrap().1;
                            decode_all(old, &codes, &residuals)
                        }
                    };
                    let (codes, residuals) = codec.encode(&raw)?;
                    stale.push((
                        id,
                        Tokens::Encoded { codec: generation, codes: codes.clone(), residuals: residuals.clone() },
                    ));
                    (codes, residuals)
                }
            };
            index.add(id, &codes, &residuals)?;
            if (n + 1) % 10_000 == 0 {
                tracing::info!(
                    documents = n + 1,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "rebuilding index"
                );
            }
        }
        if !stale.is_empty() && self.salvaged.is_none() {
            tracing::info!(documents = stale.len(), generation, "encoding documents stored raw or by an older codec");
            self.store.rewrite(stale.into_iter())?;
        }
        tracing::info!(
            path = self.store.path(),
            documents = index.len(),
            tokens = index.tokens(),
            k = codec.k(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index ready"
        );
        index.shrink_to_fit();
        self.state = State::Ready { index, generation };
        Ok(())
    }

    /// Every document's tokens; salvaged, only those of documents found whole.
    fn intact_tokens(&self) -> impl Iterator<Item = Result<(u32, Tokens)>> + '_ {
        self.store.all_tokens().filter(|entry| match (&self.salvaged, entry) {
            (None, _) => true,
            (Some(damaged), Ok((id, _))) => !damaged.contains(id),
            (Some(_), Err(_)) => false,
        })
    }

    fn train_if_due(&mut self) -> Result<()> {
        if self.salvaged.is_some() {
            return Ok(());
        }
        let State::Buffering(raw) = &self.state else { return Ok(()) };
        let tokens: usize = raw.iter().map(|(_, v)| v.len() / self.config.dim).sum();
        if tokens >= self.config.train_tokens.max(16) {
            self.train_from(raw.iter().flat_map(|(_, v)| v.iter().copied()).collect())?;
        }
        Ok(())
    }

    /// Trains a codec on `vectors`, installs it, and re-encodes every document with it.
    fn train_from(&mut self, vectors: Vec<f32>) -> Result<()> {
        let codec = Codec::train(&vectors, self.config.dim, self.config.train)?;
        drop(vectors);
        let generation = self.store.install_codec(&codec)?;
        self.load(generation)
    }

    /// Fits a new codec to the decoded live documents and rewrites them all with it (also
    /// dropping deleted documents from the search layout). Before the first training, trains.
    pub fn retrain(&mut self) -> Result<()> {
        let vectors: Vec<f32> = match &self.state {
            State::Buffering(raw) => raw.iter().flat_map(|(_, v)| v.iter().copied()).collect(),
            State::Ready { index, .. } => {
                let mut all = Vec::with_capacity(index.tokens() * self.config.dim);
                for entry in self.store.all_tokens() {
                    if let (_, Tokens::Encoded { codec: g, codes, residuals }) = entry? {
                        all.extend(decode_all(&self.store.codec(g)?, &codes, &residuals));
                    }
                }
                all
            }
        };
        self.train_from(vectors)
    }

    /// Trains a codec on `vectors` `[n, dim]` (a sample of what the shard will hold) and
    /// re-encodes any documents already stored: for bulk loads that know their data up front.
    pub fn train_on(&mut self, vectors: &[f32]) -> Result<()> {
        self.train_from(vectors.to_vec())
    }

    /// Writes documents (replacing any with the same id, unless the shard holds a write of the
    /// id as new or newer); returns the writes that applied, once they are durable.
    pub fn upsert(&mut self, docs: Vec<NewDocument>) -> Result<Vec<Written>> {
        self.check_writable()?;
        docs.iter().try_for_each(|d| self.check_document(d))?;
        let parsed = self.check_metadata(&docs)?;
        let versions: Vec<u64> = docs.iter().map(|d| d.version).collect();
        let batch: Vec<(Document, Tokens)> = match &self.state {
            State::Buffering(_) => docs.into_iter().map(|d| (d.doc, Tokens::Raw(d.vectors))).collect(),
            State::Ready { index, generation } => {
                // One encode for the whole batch: nearest-centroid search is a matrix product
                // that pays its set-up once per call.
                let codec = index.codec();
                let all: Vec<f32> = docs.iter().flat_map(|d| d.vectors.iter().copied()).collect();
                let (codes, residuals) = codec.encode(&all)?;
                let (mut at, bytes) = (0, codec.residual_bytes());
                docs.into_iter()
                    .map(|d| {
                        let n = d.vectors.len() / self.config.dim;
                        let tokens = Tokens::Encoded {
                            codec: *generation,
                            codes: codes[at..at + n].to_vec(),
                            residuals: residuals[at * bytes..(at + n) * bytes].to_vec(),
                        };
                        at += n;
                        (d.doc, tokens)
                    })
                    .collect()
            }
        };
        let written = self.store.upsert_versioned(&batch, &versions)?;
        let applied: Vec<(Written, Tokens, _)> = written
            .into_iter()
            .zip(batch)
            .zip(parsed)
            .filter_map(|((w, (_, tokens)), fields)| Some((w?, tokens, fields)))
            .collect();
        let written: Vec<Written> = applied.iter().map(|(w, _, _)| *w).collect();
        for (w, tokens, fields) in applied {
            self.forget(w.replaced);
            self.fields.add(w.id, fields);
            match (&mut self.state, tokens) {
                (State::Buffering(raw), Tokens::Raw(v)) => raw.push((w.id, v)),
                (State::Ready { index, .. }, Tokens::Encoded { codes, residuals, .. }) => {
                    index.add(w.id, &codes, &residuals)?
                }
                _ => unreachable!("tokens were made for this state above"),
            }
        }
        self.train_if_due()?;
        Ok(written)
    }

    fn forget(&mut self, id: Option<u32>) {
        let Some(id) = id else { return };
        self.fields.remove(id);
        match &mut self.state {
            State::Buffering(raw) => raw.retain(|(i, _)| *i != id),
            State::Ready { index, .. } => {
                index.delete(id);
            }
        }
    }

    /// Deletes documents by id at `version` (0: unversioned); returns how many existed.
    pub fn delete(&mut self, ids: &[String], version: u64) -> Result<usize> {
        self.check_writable()?;
        let removed = self.store.delete_versioned(ids, version)?;
        for &id in &removed {
            self.forget(Some(id));
        }
        Ok(removed.len())
    }

    pub fn get(&self, id: &str) -> Result<Document> {
        self.store.get(id)?.map(|(_, d)| d).ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// The documents of `ids` that exist, in that order, and the ids that do not.
    pub fn get_many(&self, ids: &[String]) -> Result<(Vec<Document>, Vec<String>)> {
        let (mut found, mut missing) = (Vec::new(), Vec::new());
        for id in ids {
            match self.store.get(id)? {
                Some((_, doc)) => found.push(doc),
                None => missing.push(id.clone()),
            }
        }
        Ok((found, missing))
    }

    /// Up to `limit` document ids after `after`, in id order.
    pub fn list(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        self.store.ids_after(after, limit)
    }

    /// Up to `limit` ids after `after` with their versions, tombstones included
    /// (`Store::versions_after`).
    pub fn versions(&self, after: &str, limit: usize) -> Result<Vec<(String, crate::store::Record)>> {
        self.store.versions_after(after, limit)
    }

    /// The store's identity, made when it was created.
    pub fn identity(&self) -> &str {
        self.store.identity()
    }

    /// A document, its vectors `[n, dim]` as stored (raw before training, decoded after: what
    /// another shard's upsert takes) and its version.
    pub fn export(&self, id: &str) -> Result<(Document, Vec<f32>, u64)> {
        let (internal, doc) = self.store.get(id)?.ok_or_else(|| Error::NotFound(id.to_string()))?;
        let vectors = match self.store.tokens(internal)? {
            Some(Tokens::Raw(v)) => v,
            Some(Tokens::Encoded { codec: g, codes, residuals }) => match &self.state {
                State::Ready { index, generation } if *generation == g => decode_all(index.codec(), &codes, &residuals),
                _ => decode_all(&self.store.codec(g)?, &codes, &residuals),
            },
            None => return Err(Error::NotFound(id.to_string())),
        };
        Ok((doc, vectors, self.store.record(id)?.map_or(0, |r| r.version)))
    }

    pub fn stats(&self) -> Stats {
        match &self.state {
            State::Buffering(raw) => Stats {
                documents: raw.len(),
                tokens: raw.iter().map(|(_, v)| v.len() / self.config.dim).sum(),
                trained: false,
                memory_bytes: raw.iter().map(|(_, v)| v.len() * 4).sum(),
            },
            State::Ready { index, .. } => Stats {
                documents: index.len(),
                tokens: index.tokens(),
                trained: true,
                memory_bytes: index.memory().total(),
            },
        }
    }

    /// Gives back spare capacity of the search layout (after a bulk load; a restart leaves
    /// the same).
    pub fn shrink_to_fit(&mut self) {
        if let State::Ready { index, .. } = &mut self.state {
            index.shrink_to_fit();
        }
    }

    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    pub fn index(&self) -> Option<&Index> {
        match &self.state {
            State::Ready { index, .. } => Some(index),
            State::Buffering(_) => None,
        }
    }

    pub fn disk_bytes(&self) -> Result<u64> {
        self.store.disk_bytes()
    }
}

fn decode_all(codec: &Codec, codes: &[u32], residuals: &[u8]) -> Vec<f32> {
    let (dim, bytes) = (codec.dim, codec.residual_bytes());
    let mut out = vec![0.0f32; codes.len() * dim];
    for ((&c, r), v) in codes.iter().zip(residuals.chunks_exact(bytes)).zip(out.chunks_exact_mut(dim)) {
        codec.decode(c, r, v);
    }
    out
}

mod checks;
mod search;
#[cfg(test)]
mod tests;
