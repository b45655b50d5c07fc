//! The `jacolbert.v1.Shard` gRPC service over a `Shard`. Requests run on Tokio's blocking pool,
//! as they are CPU or disk bound; the shard orders writes itself, and searches never wait for
//! them. A maintenance thread retrains and compacts the shard as it grows.

use std::sync::Arc;

use proto::v1::shard_server::Shard as ShardRpc;
use proto::v1::{
    condition, Condition, DeleteRequest, DeleteResponse, Document as WireDocument, Dtype, EncodedDocument, Explanation,
    ExportRequest, ExportResponse, Filter, GetRequest, GetResponse, Hit, Ids, ListRequest, ListResponse,
    ListVersionsResponse, RetrainRequest, RetrainResponse, ShardSearchRequest, ShardSearchResponse, ShardStats,
    ShardUpsertRequest, StatsRequest, UpsertResponse, VersionEntry,
};
use proto::Matrix;
use tonic::{Request, Response, Status};

use crate::index::MAX_K;
use crate::shard::{NewDocument, Shard};
use crate::store::Document;
use crate::Error;

/// Most documents one upsert may carry, and most filter ids one search may name.
pub const MAX_BATCH: usize = 1000;
pub const MAX_FILTER_IDS: usize = 100_000;

#[derive(Clone)]
pub struct ShardService {
    shard: Arc<Shard>,
    /// This shard's number, reported in every hit.
    number: u32,
    dim: usize,
    /// The store's identity (`Store::identity`), which reads may be asked to match.
    identity: Arc<str>,
    /// False once the store failed (an I/O error, a damaged value): grpc.health.v1 then says
    /// NOT_SERVING, so that routers and Kubernetes stop sending here. A full disk is not a
    /// failure: reads go on.
    healthy: Arc<tokio::sync::watch::Sender<bool>>,
}

impl ShardService {
    pub fn new(shard: Shard, number: u32, dim: usize) -> ShardService {
        let identity = shard.identity().into();
        let healthy = Arc::new(tokio::sync::watch::Sender::new(true));
        let shard = Arc::new(shard);
        maintain(Arc::downgrade(&shard), healthy.clone());
        ShardService { shard, number, dim, identity, healthy }
    }

    /// Whether the store serves (see the field); follows every change.
    pub fn health(&self) -> tokio::sync::watch::Receiver<bool> {
        self.healthy.subscribe()
    }

    /// A read whose caller expects another store (`proto::STORE_HEADER`) is refused: this
    /// replica lost its data and was recreated, and must not answer as the one it replaced.
    fn check_store<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match request.metadata().get(proto::STORE_HEADER).map(|v| v.to_str().unwrap_or("")) {
            Some(expected) if expected != &*self.identity => Err(Status::failed_precondition(format!(
                "this replica holds store {}, not the store {expected} the caller knew: it was recreated and \
                 must be repaired before it serves reads",
                self.identity
            ))),
            _ => Ok(()),
        }
    }

    /// Runs `f` on the shard on the blocking pool. A panic in it fails this request only (the
    /// locks it held are taken back, not left poisoned); a storage failure marks the shard
    /// unhealthy.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shard) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Status> {
        let (shard, healthy) = (self.shard.clone(), self.healthy.clone());
        let done = tokio::task::spawn_blocking(move || contained(|| f(&shard), &healthy))
            .await
            .map_err(|e| Status::internal(format!("shard task failed: {e}")))?;
        done.map_err(Status::from)
    }

    fn matrix(&self, tensor: Option<&proto::v1::Tensor>, what: &str) -> Result<Matrix, Status> {
        let m = Matrix::from_tensor(tensor).map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?;
        if m.dim != self.dim {
            return Err(Status::invalid_argument(format!(
                "{what}: vectors of dim {}, this shard holds dim {}",
                m.dim, self.dim
            )));
        }
        Ok(m)
    }
}

/// Runs `f`, turning a panic into `Error::Panicked`; a storage failure (not a full disk) marks
/// the shard unhealthy.
fn contained<T>(f: impl FnOnce() -> Result<T, Error>, healthy: &tokio::sync::watch::Sender<bool>) -> Result<T, Error> {
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what =
            panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
        Err(Error::Panicked(what.unwrap_or_else(|| "a request panicked".into())))
    });
    if let Err(e @ (Error::Storage(_) | Error::Corrupt { .. })) = &done {
        if !matches!(e, Error::Storage(s) if crate::error::out_of_space(s)) {
            tracing::error!(error = %e, "the store failed: reporting NOT_SERVING");
            healthy.send_replace(false);
        }
    }
    done
}

/// The shard's maintenance thread: every second, whatever retraining or compaction is due
/// (`Shard::maintain`), until the shard is dropped. A failed step is logged and tried again.
fn maintain(shard: std::sync::Weak<Shard>, healthy: Arc<tokio::sync::watch::Sender<bool>>) {
    let spawned = std::thread::Builder::new().name("shard-maintenance".into()).spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let Some(shard) = shard.upgrade() else { return };
        if let Err(e) = contained(|| shard.maintain(), &healthy) {
            tracing::warn!(error = %e, "maintenance failed; trying again");
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the maintenance thread: the shard will not retrain by itself");
    }
}

/// A stored document as the wire carries it.
fn wire(doc: Document) -> WireDocument {
    WireDocument { id: doc.id, text: doc.text, metadata: doc.metadata }
}

/// A search's id list and filter as one filter (both must hold), `None` when neither is given.
fn combined(ids: Vec<String>, filter: Option<Filter>) -> Option<Filter> {
    let ids = (!ids.is_empty()).then(|| Condition { condition: Some(condition::Condition::Ids(Ids { ids })) });
    match (ids, filter) {
        (None, filter) => filter,
        (Some(ids), None) => Some(Filter { must: vec![ids], ..Default::default() }),
        (Some(ids), Some(filter)) => Some(Filter {
            must: vec![ids, Condition { condition: Some(condition::Condition::Filter(filter)) }],
            ..Default::default()
        }),
    }
}

/// A page's `limit` is 1 to `MAX_BATCH`.
fn check_limit(limit: u32) -> Result<(), Status> {
    match limit == 0 || limit as usize > MAX_BATCH {
        true => Err(Status::invalid_argument(format!("limit must be in 1..={MAX_BATCH}, got {limit}"))),
        false => Ok(()),
    }
}

#[tonic::async_trait]
impl ShardRpc for ShardService {
    #[tracing::instrument(name = "shard.search", skip_all, err(Display, level = "info"), fields(shard = self.number as i64, k = tracing::field::Empty,
        query_tokens = tracing::field::Empty, exact = tracing::field::Empty, centroids_probed = tracing::field::Empty,
        candidates = tracing::field::Empty, hits = tracing::field::Empty))]
    async fn search(&self, request: Request<ShardSearchRequest>) -> Result<Response<ShardSearchResponse>, Status> {
        self.check_store(&request)?;
        let r = request.into_inner();
        let query = self.matrix(r.query.as_ref(), "query")?;
        let k = r.k as usize;
        if k == 0 || k > MAX_K {
            return Err(Status::invalid_argument(format!("k must be in 1..={MAX_K}, got {k}")));
        }
        if r.filter_ids.len() > MAX_FILTER_IDS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_FILTER_IDS} filter ids, got {}",
                r.filter_ids.len()
            )));
        }
        let wire = r.params.unwrap_or_default();
        let mut params = self.shard.default_params(k);
        if wire.nprobe > 0 {
            params.nprobe = wire.nprobe as usize;
        }
        if wire.candidates > 0 {
            params.candidates = wire.candidates as usize;
        }
        let span = tracing::Span::current();
        span.record("k", k as i64).record("query_tokens", query.rows as i64).record("exact", wire.exact);
        if !wire.exact {
            // Each query token probes `nprobe` centroids; at most `candidates` documents are
            // re-scored exactly.
            span.record("centroids_probed", (params.nprobe * query.rows) as i64)
                .record("candidates", params.candidates as i64);
        }
        let filter = combined(r.filter_ids, r.filter);
        let (include, explain, number) = (r.include.unwrap_or_default(), r.explain, self.number);
        let hits: Vec<Hit> = self
            .run(move |shard| {
                let found = match wire.exact {
                    true => {
                        let (documents, limit) = (shard.stats().documents, shard.config().max_exact_documents);
                        if documents > limit {
                            return Err(Error::BadInput(format!(
                                "an exact search scores every document; this shard holds {documents}, more than \
                                 max_exact_documents = {limit}"
                            )));
                        }
                        shard.search_exact(&query.values, k, filter.as_ref())?
                    }
                    false => shard.search(&query.values, &params, filter.as_ref())?,
                };
                // An explanation comes with the text it explains (the router finds the spans
                // in it), read with the vectors so that both are of one version.
                let mut explained = match explain {
                    true => {
                        let ids: Vec<String> = found.iter().map(|f| f.id.clone()).collect();
                        shard.explain(&query.values, &ids)?.into_iter()
                    }
                    false => Vec::new().into_iter(),
                };
                let mut hits = Vec::with_capacity(found.len());
                for f in found {
                    let (doc, explanation) = match explain {
                        true => match explained.next().flatten() {
                            Some((doc, matches)) => (Some(doc), Some(Explanation::from_matches(matches))),
                            None => continue,
                        },
                        false if include.text || include.metadata => (Some(shard.get(&f.id)?), None),
                        false => (None, None),
                    };
                    let document = doc.map(|doc| WireDocument {
                        id: doc.id,
                        text: if include.text || explain { doc.text } else { String::new() },
                        metadata: if include.metadata { doc.metadata } else { String::new() },
                    });
                    hits.push(Hit { id: f.id, score: f.score, shard: number, document, explanation });
                }
                Ok(hits)
            })
            .await?;
        span.record("hits", hits.len() as i64);
        Ok(Response::new(ShardSearchResponse { hits }))
    }

    async fn upsert(&self, request: Request<ShardUpsertRequest>) -> Result<Response<UpsertResponse>, Status> {
        let r = request.into_inner();
        if r.documents.is_empty() || r.documents.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "an upsert carries 1 to {MAX_BATCH} documents, got {}",
                r.documents.len()
            )));
        }
        let mut docs = Vec::with_capacity(r.documents.len());
        for (i, d) in r.documents.into_iter().enumerate() {
            let vectors = self.matrix(d.vectors.as_ref(), &format!("document {i}"))?.values;
            let WireDocument { id, text, metadata } =
                d.document.ok_or_else(|| Status::invalid_argument(format!("document {i}: missing")))?;
            docs.push(NewDocument { doc: Document { id, text, metadata }, vectors, version: d.version });
        }
        let written = self
            .run(move |shard| {
                crate::failpoint::panic_on_upsert(docs.iter().map(|d| d.doc.id.as_str()));
                shard.upsert(docs)
            })
            .await?;
        let replaced = written.iter().filter(|w| w.replaced.is_some()).count() as u32;
        Ok(Response::new(UpsertResponse { written: written.len() as u32, replaced }))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let DeleteRequest { mut ids, version, filter } = request.into_inner();
        if ids.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!("a delete names at most {MAX_BATCH} ids, got {}", ids.len())));
        }
        let deleted = self
            .run(move |shard| {
                if let Some(filter) = &filter {
                    ids.extend(shard.matching(filter)?);
                }
                shard.delete(&ids, version)
            })
            .await?;
        Ok(Response::new(DeleteResponse { deleted: deleted as u32 }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.check_store(&request)?;
        let GetRequest { id, mut ids } = request.into_inner();
        if ids.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!("a get names at most {MAX_BATCH} ids, got {}", ids.len())));
        }
        if ids.is_empty() {
            let doc = self.run(move |shard| shard.get(&id)).await?;
            return Ok(Response::new(GetResponse { document: Some(wire(doc)), ..Default::default() }));
        }
        if !id.is_empty() {
            ids.insert(0, id);
        }
        let (found, missing) = self.run(move |shard| shard.get_many(&ids)).await?;
        Ok(Response::new(GetResponse { document: None, documents: found.into_iter().map(wire).collect(), missing }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        self.check_store(&request)?;
        let ListRequest { after, limit } = request.into_inner();
        check_limit(limit)?;
        let ids = self.run(move |shard| shard.list(&after, limit as usize)).await?;
        Ok(Response::new(ListResponse { ids }))
    }

    async fn export(&self, request: Request<ExportRequest>) -> Result<Response<ExportResponse>, Status> {
        self.check_store(&request)?;
        let ids = request.into_inner().ids;
        if ids.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!("at most {MAX_BATCH} ids, got {}", ids.len())));
        }
        let dim = self.dim;
        let found = self
            .run(move |shard| {
                let mut found = Vec::with_capacity(ids.len());
                for id in &ids {
                    match shard.export(id) {
                        Ok(doc) => found.push(doc),
                        Err(Error::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(found)
            })
            .await?;
        let documents = found
            .into_iter()
            .map(|(doc, values, version)| EncodedDocument {
                document: Some(wire(doc)),
                vectors: Some(Matrix { rows: values.len() / dim, dim, values }.to_tensor(Dtype::F32)),
                version,
            })
            .collect();
        Ok(Response::new(ExportResponse { documents }))
    }

    async fn list_versions(&self, request: Request<ListRequest>) -> Result<Response<ListVersionsResponse>, Status> {
        self.check_store(&request)?;
        let ListRequest { after, limit } = request.into_inner();
        check_limit(limit)?;
        let listed = self.run(move |shard| shard.versions(&after, limit as usize)).await?;
        let entries = listed
            .into_iter()
            .map(|(id, r)| VersionEntry { id, version: r.version, deleted: r.deleted_at.is_some() })
            .collect();
        Ok(Response::new(ListVersionsResponse { entries, store: self.identity.to_string() }))
    }

    async fn stats(&self, request: Request<StatsRequest>) -> Result<Response<ShardStats>, Status> {
        self.check_store(&request)?;
        let (stats, disk) = self.run(|shard| Ok((shard.stats(), shard.disk_bytes()?))).await?;
        Ok(Response::new(ShardStats {
            documents: stats.documents as u64,
            tokens: stats.tokens as u64,
            trained: stats.trained,
            memory_bytes: stats.memory_bytes as u64,
            disk_bytes: disk,
            store: self.identity.to_string(),
            codec_generation: stats.generation,
            centroids: stats.centroids as u64,
            retraining: self.shard.retraining(),
            dead_tokens: stats.dead_tokens as u64,
        }))
    }

    async fn retrain(&self, _request: Request<RetrainRequest>) -> Result<Response<RetrainResponse>, Status> {
        if !self.shard.claim_retraining() {
            return Ok(Response::new(RetrainResponse { started: false }));
        }
        let (shard, healthy) = (self.shard.clone(), self.healthy.clone());
        let spawned = std::thread::Builder::new().name("shard-retrain".into()).spawn(move || {
            match contained(|| shard.retrain_claimed(), &healthy) {
                Ok(done) => tracing::info!(?done, "retraining asked for: done"),
                Err(e) => tracing::warn!(error = %e, "retraining asked for: failed"),
            }
        });
        if let Err(e) = spawned {
            self.shard.release_retraining();
            return Err(Status::internal(format!("cannot start the retraining: {e}")));
        }
        Ok(Response::new(RetrainResponse { started: true }))
    }
}
