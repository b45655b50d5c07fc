//! A shard's life cycle. An empty shard keeps raw vectors (in sled and in memory) and answers
//! exactly until it holds `train_tokens` tokens; then it trains a codec, compresses what it
//! holds, and from then on compresses on arrival, keeping each token's vector as given in f16
//! beside its code (`keep_originals`) for exact scoring. As it grows past `retrain_growth`
//! times what its codec was trained for, it retrains in the background (`grow.rs`), and it
//! compacts its runs once enough of them is dead. Start-up rebuilds the in-memory layout from
//! sled.
//!
//! Searches never wait for writes: the search layout is published as an immutable snapshot
//! (`view`), and each write makes a copy-on-write clone of it, changes that, and swaps it in.
//! Writes, training and codec switches take `writer`, one at a time; a search only takes the
//! view's lock for as long as it takes to clone an `Arc`. Internal ids of documents gone are
//! given to new ones once no view that named the old ones is held (`ids.rs`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};

use crate::codec::Codec;
use encoding::{without_made_up_originals, Codecs};
use ids::{Epoch, Ids, View};

use crate::fields::FieldIndex;
use crate::index::Index;
use crate::store::versions::now_ms;
use crate::store::{Document, Store, Tokens};
use crate::{Error, Result};

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

/// What searches read. Cloning it is cheap: raw vectors are shared, and an index clone shares
/// its runs until a write changes them.
#[derive(Clone)]
enum State {
    /// Raw vectors by internal id.
    Buffering(Vec<(u32, Arc<Vec<f32>>)>),
    Ready {
        index: Index,
        generation: u32,
    },
}

pub struct Shard {
    config: ShardConfig,
    store: Store,
    /// The published search layout (see the module docs).
    view: RwLock<View>,
    /// The documents' metadata fields, for filters; changed with each publish.
    fields: RwLock<FieldIndex>,
    /// One write, training, compaction or codec switch at a time.
    writer: Mutex<()>,
    /// The internal ids new documents get (under `writer`).
    ids: Mutex<Ids>,
    /// Salvaged: the documents the check found damaged (left out), and no writes.
    salvaged: Option<HashSet<u32>>,
    /// Set while a retraining runs.
    retraining: AtomicBool,
    /// Searches that ran again on a newer view (`search.rs`).
    retried: AtomicU64,
}

pub use config::ShardConfig;
pub use grow::{Maintenance, Retrained};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub documents: usize,
    pub tokens: usize,
    pub trained: bool,
    pub memory_bytes: usize,
    /// The codec searches use (0 before training) and its centroids.
    pub generation: u32,
    pub centroids: usize,
    pub dead_tokens: usize,
}

/// A lock's guard, whoever held it before having panicked (what it guards is only ever
/// replaced whole, so a panic cannot leave it half-changed).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shard {
    /// Opens the shard's store and rebuilds the search layout (documents left raw or encoded by
    /// an older codec, as a crash during training can leave them, are encoded now).
    pub fn open(path: &std::path::Path, config: ShardConfig) -> Result<Shard> {
        config.check()?;
        let store = Store::open(path, config.dim as u32, config.train.nbits as u32, config.store_cache_bytes())?;
        Shard::with_store(store, config, None)
    }

    /// Opens a damaged store read-only, serving the documents its check found whole; says how
    /// many it left out.
    pub fn salvage(path: &std::path::Path, config: ShardConfig) -> Result<Shard> {
        config.check()?;
        let (store, damage) =
            Store::salvage(path, config.dim as u32, config.train.nbits as u32, config.store_cache_bytes())?;
        tracing::warn!(
            path = store.path(),
            damaged = damage.count,
            documents_left_out = damage.documents.len(),
            first = damage.first.as_deref().unwrap_or("none"),
            "salvaged read-only: serving what is intact"
        );
        Shard::with_store(store, config, Some(damage.documents))
    }

    fn with_store(store: Store, config: ShardConfig, salvaged: Option<HashSet<u32>>) -> Result<Shard> {
        crate::give_way::configure(config.give_way_ms);
        let skip = |id: u32| salvaged.as_ref().is_some_and(|s| s.contains(&id));
        let expired = match salvaged {
            Some(_) => 0,
            None => store.purge_tombstones(now_ms().saturating_sub(config.tombstone_ttl_s.saturating_mul(1000)))?,
        };
        if expired > 0 {
            tracing::info!(path = store.path(), expired, "forgot tombstones past their time to live");
        }
        let manifest = store.manifest();
        let unused = match salvaged {
            Some(_) => Vec::new(),
            None => store.unused_ids()?,
        };
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
        let shard = Shard {
            config,
            store,
            view: RwLock::new(View::new(State::Buffering(Vec::new()))),
            fields: RwLock::new(fields),
            writer: Mutex::new(()),
            ids: Mutex::new(Ids::new(unused, manifest.next_id)),
            salvaged,
            retraining: AtomicBool::new(false),
            retried: AtomicU64::new(0),
        };
        if manifest.codec == 0 {
            let mut raw = Vec::new();
            for entry in shard.intact_tokens() {
                match entry? {
                    (id, Tokens::Raw(v)) => raw.push((id, Arc::new(v))),
                    (id, Tokens::Encoded { .. }) => {
                        return Err(Error::Corrupt {
                            path: shard.store.path().into(),
                            reason: format!("document {id} is encoded but the store has no codec"),
                        })
                    }
                }
            }
            tracing::info!(path = shard.store.path(), documents = raw.len(), "opened untrained shard");
            shard.publish(State::Buffering(raw));
            shard.train_if_due()?;
        } else {
            let index = shard.load(manifest.codec)?;
            shard.publish(State::Ready { index, generation: manifest.codec });
        }
        Ok(shard)
    }

    /// The search layout as of now; it stays as it is however long it is held.
    fn view(&self) -> View {
        self.view.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn publish(&self, state: State) {
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        *view = view.then(state);
    }

    /// Publishes `state` in a new epoch (after ids were freed); the epoch before it.
    fn publish_anew(&self, state: State) -> Weak<Epoch> {
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        let (next, before) = view.then_anew(state);
        *view = next;
        before
    }

    fn ids(&self) -> MutexGuard<'_, Ids> {
        locked(&self.ids)
    }

    fn fields(&self) -> std::sync::RwLockReadGuard<'_, FieldIndex> {
        self.fields.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds an index from the store, bringing every document to codec `generation` (those
    /// raw, or encoded by another generation, are encoded from their originals, or else from
    /// what their codec decodes them to, and rewritten).
    fn load(&self, generation: u32) -> Result<Index> {
        let codec = self.store.codec(generation)?;
        let mut index = Index::new(codec.clone());
        let mut stale = Vec::new();
        let mut codecs = Codecs::new(&self.store, None);
        let started = std::time::Instant::now();
        for (n, entry) in self.intact_tokens().enumerate() {
            let (id, tokens) = entry?;
            let tokens = match tokens {
                Tokens::Encoded { codec: g, .. } if g == generation => tokens,
                other => {
                    let again = self.encode(&codec, generation, &[codecs.vectors(&other)?], &[other.originals()])?;
                    let again = without_made_up_originals(&other, again.into_iter().next().expect("one document"));
                    stale.push((id, again.clone()));
                    again
                }
            };
            let Tokens::Encoded { codes, residuals, .. } = &tokens else { unreachable!("encoded above") };
            index.add(id, codes, residuals)?;
            if (n + 1) % 10_000 == 0 {
                tracing::info!(
                    documents = n + 1,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "rebuilding index"
                );
            }
        }
        if !stale.is_empty() && self.salvaged.is_none() {
            tracing::info!(documents = stale.len(), generation, "encoding documents stored raw or by another codec");
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
        Ok(index)
    }

    /// Every document's tokens; salvaged, only those of documents found whole.
    fn intact_tokens(&self) -> impl Iterator<Item = Result<(u32, Tokens)>> + '_ {
        self.store.all_tokens().filter(|entry| match (&self.salvaged, entry) {
            (None, _) => true,
            (Some(damaged), Ok((id, _))) => !damaged.contains(id),
            (Some(_), Err(_)) => false,
        })
    }

    /// The first training, once the buffered tokens reach `train_tokens` (under `writer`).
    fn train_if_due(&self) -> Result<()> {
        self.train_buffered(false).map(drop)
    }

    /// Trains the first codec on the buffered raw vectors when they reach `train_tokens`, or
    /// at once if `now` (under `writer`).
    fn train_buffered(&self, now: bool) -> Result<Option<Retrained>> {
        if self.salvaged.is_some() {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let view = self.view();
        let State::Buffering(raw) = &*view else { return Ok(None) };
        let tokens: usize = raw.iter().map(|(_, v)| v.len() / self.config.dim).sum();
        if !now && tokens < self.config.train_tokens.max(16) {
            return Ok(None);
        }
        let vectors: Vec<f32> = raw.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        drop(view);
        self.train_and_load(&vectors, started).map(Some)
    }

    /// Trains a codec on `vectors` `[n, dim]`, makes it current, brings every document to it
    /// and publishes the index (under `writer`).
    fn train_and_load(&self, vectors: &[f32], started: std::time::Instant) -> Result<Retrained> {
        let codec = Codec::train(vectors, self.config.dim, self.config.train)?;
        let (k, tokens) = (codec.k(), vectors.len() / self.config.dim);
        let generation = self.store.install_codec(&codec, tokens as u64)?;
        let index = self.load(generation)?;
        let documents = index.len();
        self.publish(State::Ready { index, generation });
        let elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(Retrained { generation, k, tokens, sample: tokens, documents, elapsed_ms })
    }

    /// Trains a codec on `vectors` `[n, dim]` (a sample of what the shard will hold) and
    /// re-encodes any documents already stored: for bulk loads that know their data up front.
    pub fn train_on(&self, vectors: &[f32]) -> Result<()> {
        let _writer = locked(&self.writer);
        self.train_and_load(vectors, std::time::Instant::now()).map(drop)
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

    /// A document, its vectors `[n, dim]` (as given: raw before training, the originals after,
    /// decoded where the shard keeps none: what another shard's upsert takes) and its version.
    pub fn export(&self, id: &str) -> Result<(Document, Vec<f32>, u64)> {
        let (internal, doc) = self.store.get(id)?.ok_or_else(|| Error::NotFound(id.to_string()))?;
        let tokens = self.store.tokens(internal)?.ok_or_else(|| Error::NotFound(id.to_string()))?;
        let vectors = Codecs::new(&self.store, None).vectors(&tokens)?.into_owned();
        Ok((doc, vectors, self.store.record(id)?.map_or(0, |r| r.version)))
    }

    pub fn stats(&self) -> Stats {
        match &*self.view() {
            State::Buffering(raw) => Stats {
                documents: raw.len(),
                tokens: raw.iter().map(|(_, v)| v.len() / self.config.dim).sum(),
                trained: false,
                memory_bytes: raw.iter().map(|(_, v)| v.len() * 4).sum(),
                generation: 0,
                centroids: 0,
                dead_tokens: 0,
            },
            State::Ready { index, generation } => Stats {
                documents: index.len(),
                tokens: index.tokens(),
                trained: true,
                memory_bytes: index.memory().total(),
                generation: *generation,
                centroids: index.codec().k(),
                dead_tokens: index.dead_tokens(),
            },
        }
    }

    /// Gives back spare capacity of the search layout (after a bulk load; a restart leaves
    /// the same).
    pub fn shrink_to_fit(&self) {
        let _writer = locked(&self.writer);
        let mut next = State::clone(&self.view());
        if let State::Ready { index, .. } = &mut next {
            index.shrink_to_fit();
        }
        self.publish(next);
    }

    /// The default search settings for `k` on the index as it is now (`SearchParams::for_index`).
    pub fn default_params(&self, k: usize) -> crate::index::SearchParams {
        let centroids = match &*self.view() {
            State::Ready { index, .. } => index.codec().k(),
            State::Buffering(_) => 0,
        };
        crate::index::SearchParams::for_index(k, centroids)
    }

    /// Searches so far that had to run again on a newer view (see `search.rs`).
    pub fn retried_searches(&self) -> u64 {
        self.retried.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// The index searches read now (`None` before training).
    pub fn index(&self) -> Option<Index> {
        match &*self.view() {
            State::Ready { index, .. } => Some(index.clone()),
            State::Buffering(_) => None,
        }
    }

    pub fn disk_bytes(&self) -> Result<u64> {
        self.store.disk_bytes()
    }
}

mod checks;
mod config;
mod encoding;
mod grow;
#[cfg(test)]
mod grow_tests;
mod ids;
mod search;
#[cfg(test)]
mod tests;
mod write;
