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
//! scored is left to the compressed index. A search runs on the view it started with; a
//! document of it replaced since is scored as its newer version, one deleted since is left
//! out (`follow`), and where the store cannot yet say which (a write between its commit and
//! its record; or, with a metadata filter, any replacement, whose new fields the view cannot
//! judge) the search runs again on a newer view (`consistent`).

use std::collections::HashSet;

use proto::v1::Filter;
use rayon::prelude::*;

use super::encoding::{vectors, Codecs};
use super::ids::View;
use super::{Found, Shard, State};
use crate::fields::Context;
use crate::index::{top_k, Hit, Index, SearchParams, MAX_NPROBE};
use crate::store::Document;
use crate::{Error, Result};

/// Documents read from the store and scored at a time by exact scoring.
const CHUNK: usize = 4096;

/// What a search does with a document of its view that was replaced since.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replaced {
    /// Scores the newer version.
    Follow,
    /// Runs again on a newer view.
    Retry,
}

impl Replaced {
    /// A filtered search cannot judge a newer version's fields by its view.
    fn under(filter: Option<&Filter>) -> Replaced {
        if filter.is_none() {
            Replaced::Follow
        } else {
            Replaced::Retry
        }
    }
}

/// What the store holds now for a document of a view.
enum Followed<T> {
    /// Under this id: the document's, or its newer version's.
    At(u32, T),
    Deleted,
    /// Gone, and no write has said where yet.
    Unknown,
}

/// Reads document `doc` of `view` with `read`, following it through the replacements made
/// since the view to the version the store has.
fn follow<T>(view: &View, mut doc: u32, read: impl Fn(u32) -> Result<Option<T>>) -> Result<Followed<T>> {
    loop {
        if let Some(found) = read(doc)? {
            return Ok(Followed::At(doc, found));
        }
        // No cycle: an id replaced is not given out again while a view naming it is held.
        match view.moved(doc) {
            Some(Some(next)) => doc = next,
            Some(None) => return Ok(Followed::Deleted),
            None => return Ok(Followed::Unknown),
        }
    }
}

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
        let _searching = crate::give_way::searching();
        self.consistent(|view| self.search_in(view, query, params, filter))
    }

    /// Runs `f` on the current view until it answers: `None` says a document of the view is
    /// gone from the store in a way it could not follow (see the module docs), and `f` runs
    /// again on a newer view. The third try holds the writer lock, so that a search among
    /// documents rewritten without pause still ends.
    fn consistent<T>(&self, f: impl Fn(&View) -> Result<Option<T>>) -> Result<T> {
        for _ in 0..2 {
            if let Some(answer) = f(&self.view())? {
                return Ok(answer);
            }
            self.retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let _writer = super::locked(&self.writer);
        f(&self.view())?.ok_or_else(|| Error::Corrupt {
            path: self.store.path().into(),
            reason: "a document of the search layout is missing from the store".into(),
        })
    }

    fn search_in(
        &self,
        view: &View,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&Filter>,
    ) -> Result<Option<Vec<Found>>> {
        let allowed = self.allowed(view, filter)?;
        let ok = |d: u32| allowed.as_ref().is_none_or(|s| s.contains(&d));
        let dim = self.config.dim;
        let wanted = params.candidates.max(params.k);
        let replaced = Replaced::under(filter);
        let hits = match &**view {
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
                match self.exact_scores(view, (index, *generation), &[query], &docs, params.k, replaced)? {
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
                match self.exact_scores(view, (index, *generation), &[query], &docs, params.k, replaced)? {
                    Some(mut hits) => hits.remove(0),
                    None => return Ok(None),
                }
            }
        };
        self.found(view, hits)
    }

    /// Exact MaxSim of each query against `docs` (internal ids of `index`'s documents): the
    /// best `k` per query. Scored against the originals where the store keeps them (so the
    /// answer is exhaustive MaxSim over these documents), else against decoded vectors. Tokens
    /// are read here, a chunk at a time (sled is used from this thread only: its deferred
    /// frees would otherwise sit in the pool's threads and keep the database locked after the
    /// shard is dropped), then scored on all cores. `None` if a document is gone from the
    /// store and `follow` cannot say where it went (with `Replaced::Retry`, if it was replaced).
    fn exact_scores(
        &self,
        view: &View,
        (index, generation): (&Index, u32),
        queries: &[&[f32]],
        docs: &[u32],
        k: usize,
        replaced: Replaced,
    ) -> Result<Option<Vec<Vec<Hit>>>> {
        let scorers: Vec<_> =
            queries.iter().map(|q| kernels::cpu::QueryScorer::new(q, self.config.dim)).collect::<Result<_, _>>()?;
        let mut best: Vec<Vec<Hit>> = vec![Vec::new(); queries.len()];
        let mut codecs = Codecs::new(&self.store, Some((generation, index.codec())));
        for chunk in docs.chunks(CHUNK) {
            let mut stored = Vec::with_capacity(chunk.len());
            for &doc in chunk {
                let (doc, tokens) = match follow(view, doc, |d| self.store.tokens(d))? {
                    Followed::At(now, _) if now != doc && replaced == Replaced::Retry => return Ok(None),
                    Followed::At(now, tokens) => (now, tokens),
                    Followed::Deleted => continue,
                    Followed::Unknown => return Ok(None),
                };
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
        let _searching = crate::give_way::searching();
        self.consistent(|view| match &**view {
            State::Buffering(_) => {
                let params = SearchParams::for_k(k);
                queries.iter().map(|q| self.search_in(view, q, &params, filter)).collect()
            }
            State::Ready { index, generation } => {
                let allowed = self.allowed(view, filter)?;
                let docs: Vec<u32> =
                    index.live_docs().filter(|d| allowed.as_ref().is_none_or(|s| s.contains(d))).collect();
                match self.exact_scores(view, (index, *generation), queries, &docs, k, Replaced::under(filter))? {
                    Some(hits) => hits.into_iter().map(|hits| self.found(view, hits)).collect(),
                    None => Ok(None),
                }
            }
        })
    }

    /// Each of documents `ids` and, for each query token, the document token that matches it
    /// best with their similarity (`kernels::cpu::maxsim_matches`, over the vectors exact
    /// scoring uses): the explanations of a search's hits, each document's read together so
    /// that the two are of one version. `None` for a document gone (deleted since the search).
    pub fn explain(&self, query: &[f32], ids: &[String]) -> Result<Vec<Option<(Document, Vec<(u32, f32)>)>>> {
        self.check_search(query, 1)?;
        let view = self.view();
        let current = match &*view {
            State::Ready { index, generation } => Some((*generation, index.codec())),
            State::Buffering(_) => None,
        };
        // One set of codecs for all: a document on an older generation reads it once.
        let mut codecs = Codecs::new(&self.store, current);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some((internal, document)) = self.store.get(id)? else {
                out.push(None);
                continue;
            };
            let Some(tokens) = self.store.tokens(internal)? else {
                out.push(None);
                continue;
            };
            let vectors = codecs.vectors(&tokens)?;
            out.push(Some((document, kernels::cpu::maxsim_matches(query, &vectors, self.config.dim)?)));
        }
        Ok(out)
    }

    /// The hits with their external ids (a document replaced since keeps its name; one
    /// deleted since is left out); `None` if the store cannot say where one went.
    fn found(&self, view: &View, hits: Vec<Hit>) -> Result<Option<Vec<Found>>> {
        let mut found = Vec::with_capacity(hits.len());
        for h in hits {
            match follow(view, h.doc, |d| self.store.external_id(d))? {
                Followed::At(_, id) => found.push(Found { id, score: h.score }),
                Followed::Deleted => {}
                Followed::Unknown => return Ok(None),
            }
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
