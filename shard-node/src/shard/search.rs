//! A shard's searches. Without a filter: candidates from the index, re-scored exactly. With one
//! (an id list, or conditions on metadata fields: `fields/`), the allowed documents are found
//! first, from the field index, and a search never loses one of them to probing:
//! - when they are few (no more than the documents a search re-scores anyway), every one of them
//!   is scored exactly;
//! - otherwise candidate generation only considers allowed documents and probes wider (4× the
//!   centroids at a time) until it has `candidates` of them or has probed every centroid it
//!   may; when it still has fewer, the allowed documents are scored exactly.
//!
//! "Exactly" means MaxSim against the originals the shard keeps (`keep_originals`), so the
//! answer equals exhaustive MaxSim over the documents scored; only which documents are
//! scored is left to the compressed index. A search runs on the view it started with, and
//! again on a newer one if documents it found were rewritten meanwhile (`consistent`).

use std::collections::HashSet;

use proto::v1::Filter;
use rayon::prelude::*;

use super::encoding::{vectors, Codecs};
use super::{Found, Shard, State};
use crate::fields::Context;
use crate::index::{top_k, Hit, Index, SearchParams, MAX_NPROBE};
use crate::{Error, Result};

/// Documents read from the store and scored at a time by exact scoring.
const CHUNK: usize = 4096;

impl Shard {
    /// The internal ids `filter` allows in `view` (`None`: no filter, every document).
    fn allowed(&self, view: &State, filter: Option<&Filter>) -> Result<Option<HashSet<u32>>> {
        let Some(filter) = filter else { return Ok(None) };
        let live = || live(view);
        let ids = |ids: &[String]| -> Result<HashSet<u32>> {
            let mut set = HashSet::with_capacity(ids.len());
            for id in ids {
                if let Some((internal, _)) = self.store.get(id)? {
                    set.insert(internal);
                }
            }
            Ok(set)
        };
        Ok(Some(self.fields().evaluate(filter, &Context { live: &live, ids: &ids })?))
    }

    /// The external ids of the documents `filter` allows.
    pub fn matching(&self, filter: &Filter) -> Result<Vec<String>> {
        let allowed = self.allowed(&self.view(), Some(filter))?.unwrap_or_default();
        let mut ids = Vec::with_capacity(allowed.len());
        for id in allowed {
            ids.extend(self.store.external_id(id)?);
        }
        ids.sort();
        Ok(ids)
    }

    /// The top `params.k` documents that `filter` allows (see the module docs); exact over raw
    /// vectors before training.
    pub fn search(&self, query: &[f32], params: &SearchParams, filter: Option<&Filter>) -> Result<Vec<Found>> {
        self.check_search(query, params.k)?;
        self.consistent(|view| self.search_in(view, query, params, filter))
    }

    /// Runs `f` on the current view until it answers: a view whose documents were replaced or
    /// deleted since it was taken answers `None` (their tokens or ids are gone from the store),
    /// and `f` runs again on a newer one. The third try holds the writer lock, so that a search
    /// among documents rewritten without pause still ends.
    fn consistent<T>(&self, f: impl Fn(&State) -> Result<Option<T>>) -> Result<T> {
        for _ in 0..2 {
            if let Some(answer) = f(&self.view())? {
                return Ok(answer);
            }
        }
        let _writer = super::locked(&self.writer);
        f(&self.view())?.ok_or_else(|| Error::Corrupt {
            path: self.store.path().into(),
            reason: "a document of the search layout is missing from the store".into(),
        })
    }

    fn search_in(
        &self,
        view: &State,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<Option<Vec<Found>>> {
        let allowed = self.allowed(view, filter)?;
        let ok = |d: u32| allowed.as_ref().is_none_or(|s| s.contains(&d));
        let dim = self.config.dim;
        let wanted = params.candidates.max(params.k);
        let hits = match view {
            State::Buffering(raw) => {
                let hits = raw
                    .iter()
                    .filter(|(id, _)| ok(*id))
                    .map(|(id, v)| Ok(Hit { doc: *id, score: kernels::cpu::maxsim(query, v, dim)? }))
                    .collect::<Result<_>>()?;
                top_k(hits, params.k)
            }
            State::Ready { index, generation } if allowed.as_ref().is_some_and(|a| a.len() <= wanted) => {
                let docs: Vec<u32> = allowed.iter().flatten().copied().filter(|&d| index.is_live(d)).collect();
                match self.exact_scores(index, *generation, &[query], &docs, params.k)? {
                    Some(mut hits) => hits.remove(0),
                    None => return Ok(None),
                }
            }
            State::Ready { index, generation } => {
                let mut probe = SearchParams { candidates: wanted, ..*params };
                let most = index.codec().k().min(MAX_NPROBE);
                let candidates = loop {
                    let found = index.candidates(query, &probe, &ok)?;
                    if allowed.is_none() || found.len() >= wanted || probe.nprobe >= most {
                        break found;
                    }
                    probe.nprobe = (probe.nprobe * 4).min(most);
                };
                let docs: Vec<u32> = match (&allowed, candidates.len() < wanted) {
                    // Probing ran out before finding enough allowed documents: score them all.
                    (Some(allowed), true) => allowed.iter().copied().filter(|&d| index.is_live(d)).collect(),
                    _ => candidates.iter().map(|c| c.doc).collect(),
                };
                match self.exact_scores(index, *generation, &[query], &docs, params.k)? {
                    Some(mut hits) => hits.remove(0),
                    None => return Ok(None),
                }
            }
        };
        self.found(hits)
    }

    /// Exact MaxSim of each query against `docs` (internal ids of `index`'s documents): the
    /// best `k` per query. Scored against the originals where the store keeps them (so the
    /// answer is exhaustive MaxSim over these documents), else against decoded vectors. Tokens
    /// are read here, a chunk at a time (sled is used from this thread only: its deferred
    /// frees would otherwise sit in the pool's threads and keep the database locked after the
    /// shard is dropped), then scored on all cores. `None` if a document is gone from the
    /// store (replaced or deleted since the view was taken).
    fn exact_scores(
        &self,
        index: &Index,
        generation: u32,
        queries: &[&[f32]],
        docs: &[u32],
        k: usize,
    ) -> Result<Option<Vec<Vec<Hit>>>> {
        let scorers: Vec<_> =
            queries.iter().map(|q| kernels::cpu::QueryScorer::new(q, self.config.dim)).collect::<Result<_, _>>()?;
        let mut best: Vec<Vec<Hit>> = vec![Vec::new(); queries.len()];
        let mut codecs = Codecs::new(&self.store, Some((generation, index.codec())));
        for chunk in docs.chunks(CHUNK) {
            let mut stored = Vec::with_capacity(chunk.len());
            for &doc in chunk {
                let Some(tokens) = self.store.tokens(doc)? else { return Ok(None) };
                codecs.prepare(&tokens)?;
                stored.push((doc, tokens));
            }
            let codec_of = |g: u32| codecs.codec(g);
            let scores: Vec<Vec<f32>> = stored
                .par_iter()
                .map_init(Vec::new, |sims, (_, tokens)| {
                    let vectors = vectors(tokens, codec_of);
                    scorers.iter().map(|s| s.score(&vectors, sims)).collect::<Result<Vec<f32>, _>>()
                })
                .collect::<Result<_, _>>()?;
            for (q, best) in best.iter_mut().enumerate() {
                let hits = stored.iter().zip(&scores).map(|((doc, _), s)| Hit { doc: *doc, score: s[q] });
                *best = top_k(best.drain(..).chain(hits).collect(), k);
            }
        }
        Ok(Some(best))
    }

    /// Exact MaxSim over every live document `filter` allows (see `exact_scores`; before
    /// training, over the raw vectors): the oracle.
    pub fn search_exact(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<Found>> {
        Ok(self.search_exact_batch(&[query], k, filter)?.remove(0))
    }

    /// `search_exact` for many queries at once (each document read once for all).
    pub fn search_exact_batch(&self, queries: &[&[f32]], k: usize, filter: Option<&Filter>) -> Result<Vec<Vec<Found>>> {
        for q in queries {
            self.check_search(q, k)?;
        }
        self.consistent(|view| match view {
            State::Buffering(_) => {
                let params = SearchParams::for_k(k);
                queries.iter().map(|q| self.search_in(view, q, &params, filter)).collect()
            }
            State::Ready { index, generation } => {
                let allowed = self.allowed(view, filter)?;
                let docs: Vec<u32> =
                    index.live_docs().filter(|d| allowed.as_ref().is_none_or(|s| s.contains(d))).collect();
                match self.exact_scores(index, *generation, queries, &docs, k)? {
                    Some(hits) => hits.into_iter().map(|hits| self.found(hits)).collect(),
                    None => Ok(None),
                }
            }
        })
    }

    /// The hits with their external ids; `None` if a document has none any more (replaced or
    /// deleted since the view was taken).
    fn found(&self, hits: Vec<Hit>) -> Result<Option<Vec<Found>>> {
        let mut found = Vec::with_capacity(hits.len());
        for h in hits {
            let Some(id) = self.store.external_id(h.doc)? else { return Ok(None) };
            found.push(Found { id, score: h.score });
        }
        Ok(Some(found))
    }
}

/// Every live document's internal id.
fn live(view: &State) -> HashSet<u32> {
    match view {
        State::Buffering(raw) => raw.iter().map(|(id, _)| *id).collect(),
        State::Ready { index, .. } => index.live_docs().collect(),
    }
}
