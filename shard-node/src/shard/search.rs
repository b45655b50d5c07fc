//! A shard's searches. Without a filter: candidates from the index, re-scored exactly. With one
//! (an id list, or conditions on metadata fields: `fields/`), the allowed documents are found
//! first, from the field index, and a search never loses one of them to probing:
//! - when they are few (no more than the documents a search re-scores anyway), every one of them
//!   is scored exactly;
//! - otherwise candidate generation only considers allowed documents and probes wider (4× the
//!   centroids at a time) until it has `candidates` of them or has probed every centroid it
//!   may; when it still has fewer, the allowed documents are scored exactly.

use std::collections::HashSet;

use proto::v1::Filter;
use rayon::prelude::*;

use super::{decode_all, Found, Shard, State};
use crate::codec::Codec;
use crate::fields::Context;
use crate::index::{top_k, Hit, SearchParams, MAX_NPROBE};
use crate::store::Tokens;
use crate::{Error, Result};

impl Shard {
    /// The internal ids `filter` allows (`None`: no filter, every document).
    fn allowed(&self, filter: Option<&Filter>) -> Result<Option<HashSet<u32>>> {
        let Some(filter) = filter else { return Ok(None) };
        let live = || self.live();
        let ids = |ids: &[String]| -> Result<HashSet<u32>> {
            let mut set = HashSet::with_capacity(ids.len());
            for id in ids {
                if let Some((internal, _)) = self.store.get(id)? {
                    set.insert(internal);
                }
            }
            Ok(set)
        };
        Ok(Some(self.fields.evaluate(filter, &Context { live: &live, ids: &ids })?))
    }

    /// Every live document's internal id.
    fn live(&self) -> HashSet<u32> {
        match &self.state {
            State::Buffering(raw) => raw.iter().map(|(id, _)| *id).collect(),
            State::Ready { index, .. } => index.live_docs().collect(),
        }
    }

    /// The external ids of the documents `filter` allows.
    pub fn matching(&self, filter: &Filter) -> Result<Vec<String>> {
        let allowed = self.allowed(Some(filter))?.unwrap_or_default();
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
        let allowed = self.allowed(filter)?;
        let ok = |d: u32| allowed.as_ref().is_none_or(|s| s.contains(&d));
        let dim = self.config.dim;
        let wanted = params.candidates.max(params.k);
        let hits = match &self.state {
            State::Buffering(raw) => {
                let hits = raw
                    .iter()
                    .filter(|(id, _)| ok(*id))
                    .map(|(id, v)| Ok(Hit { doc: *id, score: kernels::cpu::maxsim(query, v, dim)? }))
                    .collect::<Result<_>>()?;
                top_k(hits, params.k)
            }
            State::Ready { .. } if allowed.as_ref().is_some_and(|a| a.len() <= wanted) => {
                self.rescore(query, allowed.iter().flatten().copied(), params.k)?
            }
            State::Ready { index, .. } => {
                let mut probe = SearchParams { candidates: wanted, ..*params };
                let most = index.codec().k().min(MAX_NPROBE);
                let candidates = loop {
                    let found = index.candidates(query, &probe, &ok)?;
                    if allowed.is_none() || found.len() >= wanted || probe.nprobe >= most {
                        break found;
                    }
                    probe.nprobe = (probe.nprobe * 4).min(most);
                };
                match (&allowed, candidates.len() < wanted) {
                    // Probing ran out before finding enough allowed documents: score them all.
                    (Some(allowed), true) => self.rescore(query, allowed.iter().copied(), params.k)?,
                    _ => self.rescore(query, candidates.iter().map(|c| c.doc), params.k)?,
                }
            }
        };
        self.found(hits)
    }

    /// Exact MaxSim of `docs` (internal ids of encoded documents), the best `k`. Their tokens
    /// are read here (sled is used from this thread only: its deferred frees would otherwise
    /// sit in the pool's threads and keep the database locked after the shard is dropped), then
    /// decoded and scored on all cores.
    fn rescore(&self, query: &[f32], docs: impl Iterator<Item = u32>, k: usize) -> Result<Vec<Hit>> {
        let State::Ready { index, generation } = &self.state else {
            return Err(Error::BadInput("re-scoring needs a trained shard".into()));
        };
        let mut stored = Vec::new();
        // Documents an interrupted retraining left on an older codec (rare).
        let mut older: Vec<(u32, Codec)> = Vec::new();
        for doc in docs {
            if let Some(Tokens::Encoded { codec: g, codes, residuals }) = self.store.tokens(doc)? {
                if g != *generation && older.iter().all(|(o, _)| *o != g) {
                    older.push((g, self.store.codec(g)?));
                }
                stored.push((doc, g, codes, residuals));
            }
        }
        let codec_of = |g: u32| older.iter().find(|(o, _)| *o == g).map_or(index.codec(), |(_, c)| c);
        let scorer = kernels::cpu::QueryScorer::new(query, self.config.dim)?;
        let hits: Vec<Hit> = stored
            .par_iter()
            .map_init(Vec::new, |sims, (doc, g, codes, residuals)| {
                let vectors = decode_all(codec_of(*g), codes, residuals);
                Ok(Hit { doc: *doc, score: scorer.score(&vectors, sims)? })
            })
            .collect::<Result<_>>()?;
        Ok(top_k(hits, k))
    }

    /// Exact MaxSim over every live document `filter` allows, from decoded (or, before
    /// training, raw) vectors: the oracle.
    pub fn search_exact(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<Found>> {
        match &self.state {
            State::Buffering(_) => {
                self.check_search(query, k)?;
                self.search(query, &SearchParams::for_k(k), filter)
            }
            State::Ready { .. } => Ok(self.search_exact_batch(&[query], k, filter)?.remove(0)),
        }
    }

    /// `search_exact` for many queries at once (each document decoded once for all).
    pub fn search_exact_batch(&self, queries: &[&[f32]], k: usize, filter: Option<&Filter>) -> Result<Vec<Vec<Found>>> {
        for q in queries {
            self.check_search(q, k)?;
        }
        match &self.state {
            State::Buffering(_) => queries.iter().map(|q| self.search_exact(q, k, filter)).collect(),
            State::Ready { index, .. } => {
                let allowed = self.allowed(filter)?;
                let ok = |d: u32| allowed.as_ref().is_none_or(|s| s.contains(&d));
                index.exact(queries, k, &ok)?.into_iter().map(|hits| self.found(hits)).collect()
            }
        }
    }

    fn found(&self, hits: Vec<Hit>) -> Result<Vec<Found>> {
        hits.into_iter()
            .map(|h| {
                let id =
                    self.store.external_id(h.doc)?.ok_or_else(|| Error::NotFound(format!("internal {}", h.doc)))?;
                Ok(Found { id, score: h.score })
            })
            .collect()
    }
}
