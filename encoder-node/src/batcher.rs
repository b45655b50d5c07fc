//! The batcher behind the Encoder service: two lanes, so that a search's query never waits
//! behind a bulk load's documents.
//!
//! Queries and documents queue apart, and each lane has its own loop. Whatever queries arrive
//! within a short window (up to the text budget) form one forward pass; while it is gathered
//! and runs it holds the [`Gate`], and a document pass pauses at its next step (one op of one
//! layer) until the query pass is done. Documents are batched the same way and run
//! `document_chunk` texts at a time. A job whose deadline (the caller's `grpc-timeout`) has
//! passed, or whose caller has gone, is dropped before it runs, and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::cache::QueryCache;
use crate::gate::Gate;
use crate::model::ColbertModel;
use crate::service::BatchConfig;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Queries,
    Documents,
}

pub(crate) struct Job {
    pub texts: Vec<String>,
    /// When the caller stops waiting (`None`: it set no deadline).
    pub deadline: Option<Instant>,
    /// The request's span: the batch's span is its child (or follows from it).
    pub span: tracing::Span,
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
    /// Its texts' share of the queue's bound, given back when the job is done or dropped.
    pub _permit: OwnedSemaphorePermit,
}

impl Job {
    /// Nobody will read the answer: the deadline passed or the caller hung up.
    fn abandoned(&self) -> bool {
        self.reply.is_closed() || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn answer(self, rows: Result<Vec<Vec<f32>>>) {
        // A caller that gave up has dropped its receiver: nothing to do.
        let _ = self.reply.send(rows);
    }
}

/// What the encoder counts for its metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Forward-pass batches run, and the texts in them (their ratio is the mean batch size).
    pub batches: AtomicU64,
    pub batch_texts: AtomicU64,
    /// Document chunks run (a document batch runs as one or more).
    pub document_chunks: AtomicU64,
    /// Steps of document passes run (ops of a layer: `gate.rs` pauses between them).
    pub document_steps: AtomicU64,
    /// Requests refused because the queue was full.
    pub refused: AtomicU64,
    /// Requests dropped unrun: their deadline passed or their caller hung up while they waited.
    pub expired: AtomicU64,
    /// The most steps of document passes (ops of a layer) that ran while one query pass was
    /// gathered and ran: by design at most one, the step running as it arrived.
    pub query_overlap_steps: AtomicU64,
}

/// The two lanes' receiving ends.
pub(crate) struct Lanes {
    pub queries: mpsc::UnboundedReceiver<Job>,
    pub documents: mpsc::UnboundedReceiver<Job>,
}

pub(crate) async fn run(
    model: Arc<ColbertModel>,
    lanes: Lanes,
    config: BatchConfig,
    counters: Arc<Counters>,
    cache: Option<Arc<QueryCache>>,
) {
    let gate = Arc::new(Gate::new(counters.clone()));
    let batcher = Arc::new(Batcher { model, config, counters, cache, gate });
    let Lanes { mut queries, mut documents } = lanes;
    let for_documents = batcher.clone();
    let documents = tokio::spawn(async move {
        while let Some(first) = documents.recv().await {
            let jobs = for_documents.gather(first, &mut documents).await;
            for_documents.documents(jobs).await;
        }
    });
    while let Some(first) = queries.recv().await {
        batcher.queries(first, &mut queries).await;
    }
    // The service is gone: the document lane closes with it.
    let _ = documents.await;
}

struct Batcher {
    model: Arc<ColbertModel>,
    config: BatchConfig,
    counters: Arc<Counters>,
    cache: Option<Arc<QueryCache>>,
    gate: Arc<Gate>,
}

impl Batcher {
    /// `first` and what else arrives in its lane within the window, up to the text budget.
    async fn gather(&self, first: Job, lane: &mut mpsc::UnboundedReceiver<Job>) -> Vec<Job> {
        let mut texts = first.texts.len();
        let mut jobs = vec![first];
        let until = Instant::now() + Duration::from_micros(self.config.window_us);
        while texts < self.config.max_texts {
            match tokio::time::timeout_at(until, lane.recv()).await {
                Ok(Some(job)) => {
                    texts += job.texts.len();
                    jobs.push(job);
                }
                _ => break,
            }
        }
        jobs
    }

    /// The jobs still wanted; the others are answered as expired and counted.
    fn wanted(&self, jobs: Vec<Job>) -> Vec<Job> {
        let (gone, wanted): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(Job::abandoned);
        self.counters.expired.fetch_add(gone.len() as u64, Ordering::Relaxed);
        for job in gone {
            job.answer(Err(Error::Expired));
        }
        wanted
    }

    /// One forward pass over `texts` on the blocking pool (it uses every core); a failure as
    /// its message, for each job it fails.
    async fn forward(&self, kind: Kind, texts: Vec<String>, span: tracing::Span) -> Result<Vec<Vec<f32>>, String> {
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.batch_texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
        let (model, cache, gate) = (self.model.clone(), self.cache.clone(), self.gate.clone());
        let ran = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            match (kind, cache) {
                (Kind::Queries, Some(cache)) => cached_queries(&model, &cache, &texts),
                (Kind::Queries, None) => {
                    model.encode_queries(&texts).map(|e| e.into_iter().map(|q| q.vectors).collect())
                }
                (Kind::Documents, _) => model
                    .encode_documents_pausing(&texts, &|| gate.pause())
                    .map(|e| e.into_iter().map(|d| d.vectors).collect()),
            }
            .map_err(|e| format!("forward pass failed: {e}"))
        })
        .await;
        ran.unwrap_or_else(|e| Err(format!("the forward pass panicked: {e}")))
    }

    fn failure(&self, message: &str) -> Error {
        Error::model(self.model.dir(), message)
    }

    /// A batch's span: a child of its first job's, following from the others'.
    fn span(jobs: &[&Job], texts: usize) -> tracing::Span {
        let span = tracing::info_span!(parent: &jobs[0].span, "encoder.batch", requests = jobs.len() as i64, texts = texts as i64);
        for job in jobs {
            job.span.record("batch_size", texts as i64);
            span.follows_from(&job.span);
        }
        span
    }

    /// Serves `first` and the queries that join it, in one forward pass, holding the gate.
    async fn queries(&self, first: Job, lane: &mut mpsc::UnboundedReceiver<Job>) {
        let _held = self.gate.hold();
        let jobs = self.wanted(self.gather(first, lane).await);
        if jobs.is_empty() {
            return;
        }
        let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
        let span = Batcher::span(&jobs.iter().collect::<Vec<_>>(), texts.len());
        match self.forward(Kind::Queries, texts, span).await {
            Ok(rows) => {
                let mut rows = rows.into_iter();
                for job in jobs {
                    let mine = rows.by_ref().take(job.texts.len()).collect();
                    job.answer(Ok(mine));
                }
            }
            Err(e) => jobs.into_iter().for_each(|job| job.answer(Err(self.failure(&e)))),
        }
    }

    /// Runs document jobs `document_chunk` texts at a time; a job abandoned meanwhile has the
    /// rest of its texts skipped.
    async fn documents(&self, jobs: Vec<Job>) {
        let mut jobs: Vec<(Job, Vec<Vec<f32>>)> = self.wanted(jobs).into_iter().map(|j| (j, Vec::new())).collect();
        let order: Vec<(usize, usize)> =
            jobs.iter().enumerate().flat_map(|(j, (job, _))| (0..job.texts.len()).map(move |t| (j, t))).collect();
        let mut failed: Vec<Option<String>> = vec![None; jobs.len()];
        for chunk in order.chunks(self.config.document_chunk.max(1)) {
            let live: Vec<(usize, usize)> =
                chunk.iter().copied().filter(|&(j, _)| failed[j].is_none() && !jobs[j].0.abandoned()).collect();
            if live.is_empty() {
                continue;
            }
            let texts: Vec<String> = live.iter().map(|&(j, t)| jobs[j].0.texts[t].clone()).collect();
            let mut members: Vec<usize> = live.iter().map(|&(j, _)| j).collect();
            members.dedup();
            let span = Batcher::span(&members.iter().map(|&j| &jobs[j].0).collect::<Vec<_>>(), texts.len());
            self.counters.document_chunks.fetch_add(1, Ordering::Relaxed);
            match self.forward(Kind::Documents, texts, span).await {
                Ok(rows) => live.iter().zip(rows).for_each(|(&(j, _), row)| jobs[j].1.push(row)),
                Err(e) => live.iter().for_each(|&(j, _)| failed[j] = Some(e.clone())),
            }
        }
        let mut expired = 0;
        for ((job, rows), failed) in jobs.into_iter().zip(failed) {
            match failed {
                Some(e) => job.answer(Err(self.failure(&e))),
                None if rows.len() < job.texts.len() => {
                    expired += 1;
                    job.answer(Err(Error::Expired));
                }
                None => job.answer(Ok(rows)),
            }
        }
        self.counters.expired.fetch_add(expired, Ordering::Relaxed);
    }
}

/// Queries' vectors from the cache where it has their input ids, the rest encoded (and cached).
fn cached_queries(model: &ColbertModel, cache: &QueryCache, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let inputs: Vec<(Vec<u32>, Vec<u8>)> =
        tracing::info_span!("encoder.tokenize").in_scope(|| texts.iter().map(|t| model.query_input(t)).collect());
    let mut out: Vec<Option<Vec<f32>>> = inputs.iter().map(|(ids, _)| cache.get(ids)).collect();
    let missing: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
    if !missing.is_empty() {
        let fresh = model.encode_query_inputs(missing.iter().map(|&i| inputs[i].clone()).collect())?;
        for (&i, q) in missing.iter().zip(fresh) {
            cache.put(q.ids, q.vectors.clone());
            out[i] = Some(q.vectors);
        }
    }
    Ok(out.into_iter().map(|v| v.expect("cached or encoded")).collect())
}
