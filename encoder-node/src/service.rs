//! The `jacolbert.v1.Encoder` gRPC service with dynamic batching: requests wait in a bounded
//! queue (full → RESOURCE_EXHAUSTED); one batcher takes whatever has arrived within a short
//! window, up to a text budget, runs one forward pass per kind (queries, documents) on the
//! blocking pool, hands each request its rows, and only then forms the next batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::v1::encoder_server::Encoder as EncoderRpc;
use proto::v1::{Dtype, EncodeRequest, EncodeResponse, InfoRequest, InfoResponse, ScoreRequest, ScoreResponse};
use proto::Matrix;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use kernels::cuda::Backend;

use crate::model::ColbertModel;
use crate::{Error, Result};

/// Queue and batch limits (the `[batching]` table of the encoder's TOML config; a key left out
/// keeps its default).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Requests that may wait; more are refused with RESOURCE_EXHAUSTED.
    pub queue: usize,
    /// Texts per forward pass at most.
    pub max_texts: usize,
    /// How long the batcher waits for more requests after the first.
    pub window_us: u64,
    /// Texts one request may carry, and bytes per text.
    pub max_request_texts: usize,
    pub max_text_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { queue: 256, max_texts: 64, window_us: 2_000, max_request_texts: 256, max_text_bytes: 64 * 1024 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Queries,
    Documents,
}

struct Job {
    kind: Kind,
    texts: Vec<String>,
    /// The request's span: the batch's span is its child (or follows from it).
    span: tracing::Span,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

pub struct EncoderService {
    model: Arc<ColbertModel>,
    queue: mpsc::Sender<Job>,
    config: BatchConfig,
    counters: Arc<Counters>,
}

/// What the encoder counts for its metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Forward-pass batches run, and the texts in them (their ratio is the mean batch size).
    pub batches: AtomicU64,
    pub batch_texts: AtomicU64,
    /// Requests refused because the queue was full.
    pub refused: AtomicU64,
}

/// A view of a running encoder for its metrics: its counters and its queue.
#[derive(Clone)]
pub struct Metrics {
    pub counters: Arc<Counters>,
    queue: mpsc::Sender<Job>,
}

impl Metrics {
    /// Requests waiting for the model now.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

impl EncoderService {
    /// Starts the batcher on the current Tokio runtime.
    pub fn start(model: Arc<ColbertModel>, config: BatchConfig) -> EncoderService {
        let (queue, jobs) = mpsc::channel(config.queue.max(1));
        let counters = Arc::<Counters>::default();
        tokio::spawn(batcher(model.clone(), jobs, config, counters.clone()));
        EncoderService { model, queue, config, counters }
    }

    pub fn metrics(&self) -> Metrics {
        Metrics { counters: self.counters.clone(), queue: self.queue.clone() }
    }

    fn check(&self, texts: &[String]) -> Result<(), Status> {
        let limit = self.config.max_request_texts;
        if texts.is_empty() || texts.len() > limit {
            return Err(Status::invalid_argument(format!("a request carries 1 to {limit} texts, got {}", texts.len())));
        }
        if let Some((i, t)) = texts.iter().enumerate().find(|(_, t)| t.len() > self.config.max_text_bytes) {
            return Err(Status::invalid_argument(format!(
                "text {i} has {} bytes; the limit is {}",
                t.len(),
                self.config.max_text_bytes
            )));
        }
        Ok(())
    }

    /// Queues texts and waits for their vectors.
    async fn encode(&self, kind: Kind, texts: Vec<String>) -> Result<Vec<Vec<f32>>, Status> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Job { kind, texts, reply, span: tracing::Span::current() }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                Status::resource_exhausted(format!("encoder queue is full ({} requests waiting)", self.config.queue))
            }
            mpsc::error::TrySendError::Closed(_) => Status::unavailable("encoder is shutting down"),
        })?;
        answer.await.map_err(|_| Status::internal("the batcher dropped a request"))?.map_err(Status::from)
    }

    #[tracing::instrument(name = "encoder.encode", skip_all, err(Display, level = "info"), fields(texts = request.texts.len() as i64, kind = ?kind,
        device = ?self.model.encoder().backend(), batch_size = tracing::field::Empty, tokens = tracing::field::Empty))]
    async fn respond(&self, kind: Kind, request: EncodeRequest) -> Result<Response<EncodeResponse>, Status> {
        self.check(&request.texts)?;
        let dtype = if request.dtype == Dtype::F16 as i32 { Dtype::F16 } else { Dtype::F32 };
        let dim = self.model.dim();
        let rows = self.encode(kind, request.texts).await?;
        tracing::Span::current().record("tokens", rows.iter().map(|r| (r.len() / dim) as i64).sum::<i64>());
        let embeddings =
            rows.into_iter().map(|values| Matrix { rows: values.len() / dim, dim, values }.to_tensor(dtype)).collect();
        Ok(Response::new(EncodeResponse { embeddings }))
    }
}

/// Takes jobs as they come: the first one opens a window; what arrives in it (up to the text
/// budget) joins the batch.
async fn batcher(
    model: Arc<ColbertModel>,
    mut jobs: mpsc::Receiver<Job>,
    config: BatchConfig,
    counters: Arc<Counters>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        let mut texts = batch[0].texts.len();
        let deadline = tokio::time::Instant::now() + Duration::from_micros(config.window_us);
        while texts < config.max_texts {
            match tokio::time::timeout_at(deadline, jobs.recv()).await {
                Ok(Some(job)) => {
                    texts += job.texts.len();
                    batch.push(job);
                }
                _ => break,
            }
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.batch_texts.fetch_add(texts as u64, Ordering::Relaxed);
        let model = model.clone();
        // One forward pass at a time (it uses every core): requests queue meanwhile, and the
        // queue's bound is the back-pressure.
        if let Err(e) = tokio::task::spawn_blocking(move || run(&model, batch)).await {
            tracing::error!(error = %e, "encoder batch panicked");
        }
    }
}

/// One forward pass per kind; each job gets its own rows, or the error.
fn run(model: &ColbertModel, batch: Vec<Job>) {
    let (queries, documents): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|j| j.kind == Kind::Queries);
    for jobs in [queries, documents] {
        let Some(kind) = jobs.first().map(|j| j.kind) else { continue };
        let texts: Vec<&str> = jobs.iter().flat_map(|j| j.texts.iter().map(String::as_str)).collect();
        let span = tracing::info_span!(parent: &jobs[0].span, "encoder.batch", requests = jobs.len() as i64, texts = texts.len() as i64);
        for job in &jobs {
            job.span.record("batch_size", texts.len() as i64);
            span.follows_from(&job.span);
        }
        let _entered = span.enter();
        let result: Result<Vec<Vec<f32>>> = match kind {
            Kind::Queries => model.encode_queries(&texts).map(|e| e.into_iter().map(|q| q.vectors).collect()),
            Kind::Documents => model.encode_documents(&texts).map(|e| e.into_iter().map(|d| d.vectors).collect()),
        };
        match result {
            Ok(rows) => {
                let mut rows = rows.into_iter();
                for job in jobs {
                    let mine = rows.by_ref().take(job.texts.len()).collect();
                    // A caller that gave up (deadline) has dropped its receiver: nothing to do.
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(Error::model(model.dir(), format!("forward pass failed: {message}"))));
                }
            }
        }
    }
}

/// MaxSim of `query` against each of `docs` where the model runs: on its GPU (f16 vectors, f32
/// sums), or on the CPU where there is none or the GPU fails.
fn score(scorer: &Backend, query: &[f32], docs: &[Vec<f32>], dim: usize) -> Result<Vec<f32>, Status> {
    if let Backend::Cuda(device) = scorer {
        let half = |v: &[f32]| v.iter().map(|&x| half::f16::from_f32(x)).collect::<Vec<_>>();
        let mut offsets = vec![0u32];
        for d in docs {
            offsets.push(offsets[offsets.len() - 1] + (d.len() / dim) as u32);
        }
        // Converted straight into one f16 buffer, without an f32 copy of them all first.
        let all: Vec<half::f16> = docs.iter().flatten().map(|&x| half::f16::from_f32(x)).collect();
        match device.maxsim(&half(query), &all, &offsets, dim) {
            Ok(scores) => return Ok(scores),
            Err(e) => tracing::warn!(error = %e, "GPU MaxSim failed; scoring on the CPU"),
        }
    }
    docs.iter().map(|d| kernels::cpu::maxsim(query, d, dim).map_err(|e| Status::internal(e.to_string()))).collect()
}

#[tonic::async_trait]
impl EncoderRpc for EncoderService {
    async fn encode_queries(&self, request: Request<EncodeRequest>) -> Result<Response<EncodeResponse>, Status> {
        self.respond(Kind::Queries, request.into_inner()).await
    }

    async fn encode_documents(&self, request: Request<EncodeRequest>) -> Result<Response<EncodeResponse>, Status> {
        self.respond(Kind::Documents, request.into_inner()).await
    }

    async fn score(&self, request: Request<ScoreRequest>) -> Result<Response<ScoreResponse>, Status> {
        let ScoreRequest { query, texts } = request.into_inner();
        self.check(&texts)?;
        self.check(std::slice::from_ref(&query))?;
        let dim = self.model.dim();
        let q = self.encode(Kind::Queries, vec![query]).await?.remove(0);
        let docs = self.encode(Kind::Documents, texts).await?;
        let model = self.model.clone();
        let scores = tokio::task::spawn_blocking(move || score(model.encoder().backend(), &q, &docs, dim))
            .await
            .map_err(|e| Status::internal(format!("scoring failed: {e}")))??;
        Ok(Response::new(ScoreResponse { scores }))
    }

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let s = self.model.settings();
        Ok(Response::new(InfoResponse {
            model: self.model.dir().display().to_string(),
            dim: self.model.dim() as u32,
            query_maxlen: s.query_maxlen as u32,
            doc_maxlen: s.doc_maxlen as u32,
        }))
    }
}
