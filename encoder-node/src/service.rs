//! The `jacolbert.v1.Encoder` gRPC service with dynamic batching: requests wait in a bounded
//! queue (full → RESOURCE_EXHAUSTED); one batcher takes whatever has arrived within a short
//! window, up to a text budget, runs one forward pass per kind (queries, documents) on the
//! blocking pool, hands each request its rows, and only then forms the next batch.

use std::sync::Arc;
use std::time::Duration;

use proto::v1::encoder_server::Encoder as EncoderRpc;
use proto::v1::{Dtype, EncodeRequest, EncodeResponse, InfoRequest, InfoResponse, ScoreRequest, ScoreResponse};
use proto::Matrix;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Queries,
    Documents,
}

struct Job {
    kind: Kind,
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

pub struct EncoderService {
    model: Arc<ColbertModel>,
    queue: mpsc::Sender<Job>,
    config: BatchConfig,
}

impl EncoderService {
    /// Starts the batcher on the current Tokio runtime.
    pub fn start(model: Arc<ColbertModel>, config: BatchConfig) -> EncoderService {
        let (queue, jobs) = mpsc::channel(config.queue.max(1));
        tokio::spawn(batcher(model.clone(), jobs, config));
        EncoderService { model, queue, config }
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
        self.queue.try_send(Job { kind, texts, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                Status::resource_exhausted(format!("encoder queue is full ({} requests waiting)", self.config.queue))
            }
            mpsc::error::TrySendError::Closed(_) => Status::unavailable("encoder is shutting down"),
        })?;
        answer.await.map_err(|_| Status::internal("the batcher dropped a request"))?.map_err(Status::from)
    }

    async fn respond(&self, kind: Kind, request: EncodeRequest) -> Result<Response<EncodeResponse>, Status> {
        self.check(&request.texts)?;
        let dtype = if request.dtype == Dtype::F16 as i32 { Dtype::F16 } else { Dtype::F32 };
        let dim = self.model.dim();
        let rows = self.encode(kind, request.texts).await?;
        let embeddings =
            rows.into_iter().map(|values| Matrix { rows: values.len() / dim, dim, values }.to_tensor(dtype)).collect();
        Ok(Response::new(EncodeResponse { embeddings }))
    }
}

/// Takes jobs as they come: the first one opens a window; what arrives in it (up to the text
/// budget) joins the batch.
async fn batcher(model: Arc<ColbertModel>, mut jobs: mpsc::Receiver<Job>, config: BatchConfig) {
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
        let scores = docs
            .iter()
            .map(|d| kernels::cpu::maxsim(&q, d, dim).map_err(|e| Status::internal(e.to_string())))
            .collect::<Result<_, _>>()?;
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
