//! The `jacolbert.v1.Encoder` gRPC service with dynamic batching: requests wait in two lanes
//! (queries, documents) bounded together by the texts they carry (full → RESOURCE_EXHAUSTED),
//! and one batcher serves them, queries first (`batcher.rs`). A request's `grpc-timeout`
//! travels with it: one whose deadline passes while it waits is not run.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use proto::v1::encoder_server::Encoder as EncoderRpc;
use proto::v1::{
    Dtype, EncodeRequest, EncodeResponse, Explanation, InfoRequest, InfoResponse, ScoreRequest, ScoreResponse, Span,
    TokenSource as WireSource, TokenSources, TokenizeRequest, TokenizeResponse,
};
use proto::Matrix;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use kernels::cuda::Backend;

pub use crate::batcher::Counters;
use crate::batcher::{Job, Kind, Lanes};
pub use crate::cache::QueryCache;
use crate::model::{ColbertModel, TokenSource};

/// Queue and batch limits (the `[batching]` table of the encoder's TOML config; a key left out
/// keeps its default).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Texts that may wait, in both lanes together; a request that would pass it is refused
    /// with RESOURCE_EXHAUSTED.
    pub queue_texts: usize,
    /// Texts per forward pass at most.
    pub max_texts: usize,
    /// Documents run this many texts at a time (a job whose caller gave up is dropped between
    /// chunks); queries do not wait for a chunk to end: a document pass pauses between its steps
    /// while they run.
    pub document_chunk: usize,
    /// How long the batcher waits for more requests after the first.
    pub window_us: u64,
    /// Query embeddings kept, by their exact input ids, least recently used out first (0: no
    /// cache).
    pub query_cache: usize,
    /// Texts one request may carry, and bytes per text.
    pub max_request_texts: usize,
    pub max_text_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            queue_texts: 1024,
            max_texts: 64,
            document_chunk: 4,
            window_us: 2_000,
            query_cache: 0,
            max_request_texts: 256,
            max_text_bytes: 64 * 1024,
        }
    }
}

pub struct EncoderService {
    model: Arc<ColbertModel>,
    queries: mpsc::UnboundedSender<Job>,
    documents: mpsc::UnboundedSender<Job>,
    /// One permit per text that may wait (`queue_texts`).
    room: Arc<Semaphore>,
    config: BatchConfig,
    counters: Arc<Counters>,
    cache: Option<Arc<QueryCache>>,
}

/// A view of a running encoder for its metrics: its counters and its queue.
#[derive(Clone)]
pub struct Metrics {
    pub counters: Arc<Counters>,
    pub cache: Option<Arc<QueryCache>>,
    room: Arc<Semaphore>,
    capacity: usize,
}

impl Metrics {
    /// Texts waiting for the model now (or being encoded).
    pub fn queued(&self) -> usize {
        self.capacity - self.room.available_permits()
    }
}

/// The caller's deadline, from its `grpc-timeout` header.
fn deadline<T>(request: &Request<T>) -> Option<Instant> {
    Instant::now().checked_add(proto::grpc_timeout(request.metadata())?)
}

impl EncoderService {
    /// Starts the batcher on the current Tokio runtime.
    pub fn start(model: Arc<ColbertModel>, config: BatchConfig) -> EncoderService {
        let (queries, query_lane) = mpsc::unbounded_channel();
        let (documents, document_lane) = mpsc::unbounded_channel();
        let counters = Arc::<Counters>::default();
        let lanes = Lanes { queries: query_lane, documents: document_lane };
        let cache = QueryCache::new(config.query_cache).map(Arc::new);
        tokio::spawn(crate::batcher::run(model.clone(), lanes, config, counters.clone(), cache.clone()));
        let room = Arc::new(Semaphore::new(config.queue_texts.max(1)));
        EncoderService { model, queries, documents, room, config, counters, cache }
    }

    pub fn metrics(&self) -> Metrics {
        let (counters, cache, room) = (self.counters.clone(), self.cache.clone(), self.room.clone());
        Metrics { counters, cache, room, capacity: self.config.queue_texts.max(1) }
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

    /// Queues texts in their kind's lane and waits for their vectors.
    async fn encode(&self, kind: Kind, texts: Vec<String>, deadline: Option<Instant>) -> Result<Vec<Vec<f32>>, Status> {
        let capacity = self.config.queue_texts.max(1);
        // A request larger than the whole bound waits for an empty queue rather than never.
        let wanted = texts.len().min(capacity) as u32;
        let permit = self.room.clone().try_acquire_many_owned(wanted).map_err(|_| {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            let waiting = capacity - self.room.available_permits();
            Status::resource_exhausted(format!(
                "encoder queue is full: {waiting} texts waiting, {} more would pass its bound of {capacity}; \
                 retry later or raise [batching] queue_texts",
                texts.len()
            ))
        })?;
        let (reply, answer) = oneshot::channel();
        let job = Job { texts, deadline, reply, span: tracing::Span::current(), _permit: permit };
        let lane = match kind {
            Kind::Queries => &self.queries,
            Kind::Documents => &self.documents,
        };
        lane.send(job).map_err(|_| Status::unavailable("encoder is shutting down"))?;
        answer.await.map_err(|_| Status::internal("the batcher dropped a request"))?.map_err(Status::from)
    }

    #[tracing::instrument(name = "encoder.encode", skip_all, err(Display, level = "info"), fields(texts = request.get_ref().texts.len() as i64, kind = ?kind,
        device = ?self.model.encoder().backend(), batch_size = tracing::field::Empty, tokens = tracing::field::Empty))]
    async fn respond(&self, kind: Kind, request: Request<EncodeRequest>) -> Result<Response<EncodeResponse>, Status> {
        let deadline = deadline(&request);
        let request = request.into_inner();
        self.check(&request.texts)?;
        let dtype = if request.dtype == Dtype::F16 as i32 { Dtype::F16 } else { Dtype::F32 };
        let dim = self.model.dim();
        let rows = self.encode(kind, request.texts, deadline).await?;
        tracing::Span::current().record("tokens", rows.iter().map(|r| (r.len() / dim) as i64).sum::<i64>());
        let embeddings =
            rows.into_iter().map(|values| Matrix { rows: values.len() / dim, dim, values }.to_tensor(dtype)).collect();
        let mut response = Response::new(EncodeResponse { embeddings });
        response.metadata_mut().insert(proto::QUEUED_HEADER, self.metrics().queued().into());
        Ok(response)
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

/// The tokens of a query's and of documents' embeddings, one per row, on the wire.
fn tokenized(model: &ColbertModel, query: &str, texts: &[String]) -> TokenizeResponse {
    let wire = |tokens: Vec<TokenSource>| -> Vec<WireSource> {
        let vocab = model.tokenizer().vocab();
        tokens
            .into_iter()
            .map(|t| WireSource {
                text: vocab.token(t.id).unwrap_or_default().to_owned(),
                span: t.span.map(|r| Span { start: r.start as u32, end: r.end as u32 }),
                expansion: t.expansion,
            })
            .collect()
    };
    TokenizeResponse {
        query: wire(model.query_tokens(query)),
        documents: texts.iter().map(|t| TokenSources { tokens: wire(model.doc_tokens(t)) }).collect(),
    }
}

#[tonic::async_trait]
impl EncoderRpc for EncoderService {
    async fn encode_queries(&self, request: Request<EncodeRequest>) -> Result<Response<EncodeResponse>, Status> {
        self.respond(Kind::Queries, request).await
    }

    async fn encode_documents(&self, request: Request<EncodeRequest>) -> Result<Response<EncodeResponse>, Status> {
        self.respond(Kind::Documents, request).await
    }

    async fn score(&self, request: Request<ScoreRequest>) -> Result<Response<ScoreResponse>, Status> {
        let deadline = deadline(&request);
        let ScoreRequest { query, texts, explain } = request.into_inner();
        self.check(&texts)?;
        self.check(std::slice::from_ref(&query))?;
        let dim = self.model.dim();
        let kept = explain.then(|| (query.clone(), texts.clone()));
        let q = self.encode(Kind::Queries, vec![query], deadline).await?.remove(0);
        let docs = self.encode(Kind::Documents, texts, deadline).await?;
        let model = self.model.clone();
        let (scores, explanations) = tokio::task::spawn_blocking(move || {
            let scores = score(model.encoder().backend(), &q, &docs, dim)?;
            let Some((query, texts)) = kept else { return Ok((scores, Vec::new())) };
            let tokens = tokenized(&model, &query, &texts);
            let explanations = docs
                .iter()
                .zip(&tokens.documents)
                .map(|(d, t)| {
                    let matches =
                        kernels::cpu::maxsim_matches(&q, d, dim).map_err(|e| Status::internal(e.to_string()))?;
                    let mut e = Explanation::from_matches(matches);
                    e.describe(&tokens.query, &t.tokens);
                    Ok(e)
                })
                .collect::<Result<_, Status>>()?;
            Ok::<_, Status>((scores, explanations))
        })
        .await
        .map_err(|e| Status::internal(format!("scoring failed: {e}")))??;
        Ok(Response::new(ScoreResponse { scores, explanations }))
    }

    async fn tokenize(&self, request: Request<TokenizeRequest>) -> Result<Response<TokenizeResponse>, Status> {
        let TokenizeRequest { query, texts } = request.into_inner();
        self.check(std::slice::from_ref(&query))?;
        if !texts.is_empty() {
            self.check(&texts)?;
        }
        let model = self.model.clone();
        let tokens = tokio::task::spawn_blocking(move || tokenized(&model, &query, &texts))
            .await
            .map_err(|e| Status::internal(format!("tokenizing failed: {e}")))?;
        Ok(Response::new(tokens))
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
