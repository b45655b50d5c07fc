//! `Router`: the Search service over encoder and shard clients.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::encoder_client::EncoderClient;
use proto::v1::search_server::Search;
use proto::v1::{
    ClusterStats, ClusterStatsRequest, DeleteRequest, DeleteResponse, Dtype, EncodeRequest, GetRequest, GetResponse,
    RerankRequest, RerankResponse, ScoreRequest, SearchBatchRequest, SearchBatchResponse, SearchRequest,
    SearchResponse, ShardFailure, ShardSearchRequest, StatsRequest, UpsertRequest, UpsertResponse,
};
use tokio::task::JoinSet;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use crate::merge::keep_home_copies;
use crate::replicas::{read_replicas, remaining, Replicas};
use crate::replicate::Acks;
use crate::state::follow::{acknowledge, follow, View};
use crate::state::gate::EpochGate;
use crate::state::hlc::Clock;
use crate::state::{ClusterState, ClusterStore, FileStore};
use crate::writes::Writer;
use crate::{merge, Error, RouterConfig};

pub struct Router {
    /// The cluster as of the current epoch; every read and write holds the epoch it began
    /// under (state/gate.rs).
    pub(crate) gate: Arc<EpochGate<View>>,
    pub(crate) store: Arc<dyn ClusterStore>,
    /// This router's name in the store: its acknowledgements, and the move lock when it moves.
    pub(crate) member: String,
    /// How to reach nodes (TLS), for shards added later.
    pub(crate) tls: Option<ClientTlsConfig>,
    pub(crate) writer: Arc<Writer>,
    pub(crate) config: RouterConfig,
    in_flight: Arc<tokio::sync::Semaphore>,
    pub(crate) counters: Arc<Counters>,
    _tasks: Tasks,
}

/// The router's background tasks (following the state, acknowledging epochs, resuming moves),
/// stopped with it.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// What the router counts for its metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Shard calls that failed (after the retry, when there was one), by any cause.
    pub shard_failures: AtomicU64,
    /// Of those, the ones that ran out of time.
    pub shard_timeouts: AtomicU64,
    /// Reads retried on another replica after an unreachable one (`replicas::unreachable`).
    pub retries: AtomicU64,
    /// Encoder calls that failed as unreachable or full, and those tried again on another
    /// encoder.
    pub encoder_failures: AtomicU64,
    pub encoder_retries: AtomicU64,
    /// Encoders being skipped as unreachable, as of the last health check.
    pub encoders_down: AtomicU64,
    /// Searches refused at the concurrency limit.
    pub refused: AtomicU64,
    /// Replicas marked stale after a write failed on them.
    pub marked_stale: AtomicU64,
    /// Repair passes over a replica, documents and tombstones they copied, and replicas they
    /// brought back in sync.
    pub repair_passes: AtomicU64,
    pub repair_copied: AtomicU64,
    pub repairs_done: AtomicU64,
    /// Replicas not in sync (joining, stale, syncing) as of the router's last look.
    pub replicas_out_of_sync: AtomicU64,
}

/// What a shard call came to.
enum Outcome {
    /// The shard's position among those asked, and its hits.
    Hits(usize, Vec<proto::v1::Hit>),
    /// The shard refused the request as bad (INVALID_ARGUMENT): every shard would.
    Refused(usize, Status),
    Failed(ShardFailure, bool),
}

impl Router {
    /// A router over its own state in memory: `shards[i]` lists shard i's replica addresses
    /// (`host:port`).
    pub async fn new(encoders: &[String], shards: &[Vec<String>], config: RouterConfig) -> Result<Router, Error> {
        Router::connect(encoders, shards, config, None).await
    }

    /// As `new`, calling the nodes over TLS with `tls` (the cluster CA, and this router's
    /// certificate for mutual TLS) when it is given.
    pub async fn connect(
        encoders: &[String],
        shards: &[Vec<String>],
        config: RouterConfig,
        tls: Option<ClientTlsConfig>,
    ) -> Result<Router, Error> {
        if encoders.is_empty() || shards.is_empty() || shards.iter().any(Vec::is_empty) {
            return Err(Error::BadInput("a router needs an encoder and at least one replica per shard".into()));
        }
        let store = Arc::new(FileStore::memory(ClusterState::new(encoders.to_vec(), shards)));
        Router::start(store, config, tls).await
    }

    /// A router that serves the cluster `store` holds, following its changes.
    pub async fn start(
        store: Arc<dyn ClusterStore>,
        config: RouterConfig,
        tls: Option<ClientTlsConfig>,
    ) -> Result<Router, Error> {
        let member = member_name();
        // Known to movers before the state is read: a move that changes the state after this
        // read waits for this router's acknowledgement of the change.
        store.ack(&member, 0).await?;
        let state = store.load().await?.ok_or_else(|| {
            Error::Precondition(format!(
                "the cluster store {} holds no cluster: run `jacolbert cluster init` first",
                store.describe()
            ))
        })?;
        let epoch = state.epoch;
        let gate = Arc::new(EpochGate::new(epoch, View::build(state, None, tls.as_ref())?));
        store.ack(&member, epoch).await?;
        let counters: Arc<Counters> = Arc::default();
        let acks = Acks { store: store.clone(), quorum: config.write_quorum.max(1), counters: counters.clone() };
        let repairer = crate::repair::Repairer {
            gate: gate.clone(),
            acks: acks.clone(),
            owner: member.clone(),
            tls: tls.clone(),
            tombstone_ttl_ms: config.tombstone_ttl_s.saturating_mul(1000),
        };
        let tasks = vec![
            tokio::spawn(follow(gate.clone(), store.clone(), tls.clone())),
            tokio::spawn(acknowledge(gate.clone(), store.clone(), member.clone())),
            tokio::spawn(crate::rebalance::resume_moves(gate.clone(), store.clone(), member.clone(), tls.clone())),
            tokio::spawn(repairer.run()),
            tokio::spawn(check_encoders(gate.clone(), counters.clone())),
        ];
        tracing::info!(store = %store.describe(), epoch, member = %member, "router follows the cluster state");
        let writer = Writer { gate: gate.clone(), store: store.clone(), clock: Clock::new(&member), acks };
        Ok(Router {
            gate,
            store,
            writer: Arc::new(writer),
            member,
            tls,
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent.max(1))),
            config,
            counters,
            _tasks: Tasks(tasks),
        })
    }

    /// The router's counters, shared: they keep counting after the router is served.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The caller's deadline (`grpc-timeout`), or the default.
    fn deadline<T>(&self, request: &Request<T>) -> Instant {
        deadline(request, self.config.default_deadline_ms)
    }

    /// The same for a write, whose default is `write_deadline_ms`.
    fn write_deadline<T>(&self, request: &Request<T>) -> Instant {
        deadline(request, self.config.write_deadline_ms)
    }

    async fn encode(
        &self,
        texts: Vec<String>,
        queries: bool,
        deadline: Instant,
    ) -> Result<Vec<proto::v1::Tensor>, Error> {
        let (_, view) = self.gate.current();
        let n = texts.len();
        let call = |mut encoder: EncoderClient<Channel>, time| {
            let mut request = proto::trace::traced(EncodeRequest { texts: texts.clone(), dtype: Dtype::F16 as i32 });
            // The encoder drops what is past this before running it.
            request.set_timeout(time);
            async move {
                match queries {
                    true => encoder.encode_queries(request).await,
                    false => encoder.encode_documents(request).await,
                }
            }
        };
        Ok(view.encoders.call("while encoding", n, deadline, &self.counters, call).await?.embeddings)
    }

    /// Shard `s`'s answer: one replica, then (when it is unavailable and time remains) another.
    async fn search_shard(
        s: usize,
        replicas: Arc<Replicas>,
        first: usize,
        request: ShardSearchRequest,
        deadline: Instant,
        counters: Arc<Counters>,
    ) -> Outcome {
        let failure = |address: String, code: Code, message: String| ShardFailure {
            shard: s as u32,
            address,
            code: format!("{code:?}"),
            message,
        };
        match read_replicas(&replicas, first, deadline, &counters, |mut c, r| {
            let request = replicas.request(r, request.clone());
            async move { c.search(request).await }
        })
        .await
        {
            Ok(response) => Outcome::Hits(s, response.hits),
            Err((r, None)) => {
                Outcome::Failed(failure(r, Code::DeadlineExceeded, "no answer within the deadline".into()), true)
            }
            Err((_, Some(status))) if status.code() == Code::InvalidArgument => Outcome::Refused(s, status),
            Err((r, Some(status))) => {
                let timed_out = status.code() == Code::DeadlineExceeded;
                Outcome::Failed(failure(r, status.code(), status.message().to_string()), timed_out)
            }
        }
    }

    /// A slot for one search: waits up to `max_queue_ms` (and never past `deadline`) while
    /// all are taken, then RESOURCE_EXHAUSTED.
    async fn admit(&self, deadline: Instant) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        let wait = Duration::from_millis(self.config.max_queue_ms).min(remaining(deadline));
        match tokio::time::timeout(wait, self.in_flight.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                Err(Status::resource_exhausted(format!(
                    "the router is at its limit of {} searches in flight and none ended within {} ms; retry later",
                    self.config.max_concurrent,
                    wait.as_millis()
                )))
            }
        }
    }

    /// One search under `deadline` (see the module docs).
    #[tracing::instrument(name = "router.search", skip_all, err(Display, level = "info"), fields(k = r.k as i64, shards = tracing::field::Empty,
        partial = tracing::field::Empty, timed_out = tracing::field::Empty, hits = tracing::field::Empty))]
    async fn search_one(&self, r: SearchRequest, deadline: Instant) -> Result<SearchResponse, Status> {
        let started = Instant::now();
        self.config.check_search(&r)?;
        let k = r.k as usize;
        let _slot = self.admit(deadline).await?;
        let explained = r.explain.then(|| r.query.clone());
        let query = self.encode(vec![r.query], true, deadline).await?.pop();
        let entered = self.gate.enter();
        // Shards get the caller's remaining time less a margin to merge and reply in (a tenth,
        // at most a second), so that a late shard costs its hits, not the whole answer.
        let (reply_by, include) = (deadline, r.include.unwrap_or_default());
        let margin = (remaining(deadline) / 10).min(Duration::from_secs(1));
        let deadline = deadline.checked_sub(margin).unwrap_or(deadline);
        let shard_request = ShardSearchRequest {
            query,
            k: r.k,
            filter_ids: r.filter_ids,
            params: r.params,
            include: r.include,
            filter: r.filter,
            explain: r.explain,
        };
        let shards = &entered.view().shards;
        tracing::Span::current().record("shards", shards.len() as i64);
        let mut set = JoinSet::new();
        for (s, (_, replicas)) in shards.iter().enumerate() {
            let first = replicas.next.fetch_add(1, Ordering::Relaxed);
            let span = tracing::info_span!("router.shard", shard = s as i64, replicas = replicas.clients.len() as i64);
            let search = Router::search_shard(
                s,
                replicas.clone(),
                first,
                shard_request.clone(),
                deadline,
                self.counters.clone(),
            );
            set.spawn(search.instrument(span));
        }
        let (mut lists, mut failures, mut timed_out) = (Vec::new(), Vec::new(), false);
        while let Some(joined) = set.join_next().await {
            match joined.map_err(|e| Status::internal(format!("shard call failed: {e}")))? {
                Outcome::Hits(s, hits) => lists.push((shards[s].0, hits)),
                Outcome::Refused(s, status) => {
                    return Err(Status::invalid_argument(format!("shard {s}: {}", status.message())));
                }
                Outcome::Failed(f, late) => {
                    self.counters.shard_failures.fetch_add(1, Ordering::Relaxed);
                    self.counters.shard_timeouts.fetch_add(late as u64, Ordering::Relaxed);
                    tracing::info!(shard = f.shard, address = %f.address, code = %f.code, error = %f.message, "shard failed");
                    timed_out |= late;
                    failures.push(f);
                }
            }
        }
        failures.sort_by_key(|f| f.shard);
        let total = shards.len() as u32;
        if !failures.is_empty() && !r.allow_partial.unwrap_or(true) {
            let what: Vec<String> =
                failures.iter().map(|f| format!("shard {} ({}): {}", f.shard, f.code, f.message)).collect();
            return Err(Error::Unavailable(format!(
                "{} of {total} shards failed: {}",
                failures.len(),
                what.join("; ")
            ))
            .into());
        }
        let ok = lists.len() as u32;
        let state = &entered.view().state;
        let mut hits = tracing::info_span!("router.merge", lists = lists.len() as i64, k = k as i64).in_scope(|| {
            if state.moving.is_some() {
                keep_home_copies(&mut lists, |id| state.home(id));
            }
            merge(lists.into_iter().map(|(_, hits)| hits).collect(), k)
        });
        if let Some(query) = explained {
            self.describe(query, &mut hits, include, reply_by).await?;
        }
        let span = tracing::Span::current();
        span.record("partial", !failures.is_empty()).record("timed_out", timed_out).record("hits", hits.len() as i64);
        Ok(SearchResponse {
            hits,
            shards_total: total,
            shards_ok: ok,
            partial: !failures.is_empty(),
            failures,
            timed_out,
            took_micros: started.elapsed().as_micros() as u64,
        })
    }
}

#[tonic::async_trait]
impl Search for Router {
    async fn search(&self, request: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        let deadline = self.deadline(&request);
        Ok(Response::new(self.search_one(request.into_inner(), deadline).await?))
    }

    async fn search_batch(
        &self,
        request: Request<SearchBatchRequest>,
    ) -> Result<Response<SearchBatchResponse>, Status> {
        let deadline = self.deadline(&request);
        let requests = request.into_inner().requests;
        if requests.is_empty() || requests.len() > self.config.max_batch {
            let limit = self.config.max_batch;
            return Err(
                Error::BadInput(format!("a batch carries 1 to {limit} searches, got {}", requests.len())).into()
            );
        }
        let answers = futures::future::join_all(requests.into_iter().map(|r| self.search_one(r, deadline))).await;
        Ok(Response::new(SearchBatchResponse { responses: answers.into_iter().collect::<Result<_, _>>()? }))
    }

    async fn rerank(&self, request: Request<RerankRequest>) -> Result<Response<RerankResponse>, Status> {
        let deadline = self.deadline(&request);
        let RerankRequest { query, texts, explain } = request.into_inner();
        if query.trim().is_empty() || texts.is_empty() || texts.len() > self.config.max_batch {
            let limit = self.config.max_batch;
            return Err(Error::BadInput(format!("a rerank needs a query and 1 to {limit} texts")).into());
        }
        let (_, view) = self.gate.current();
        let call = |mut encoder: EncoderClient<Channel>, time| {
            let mut request =
                proto::trace::traced(ScoreRequest { query: query.clone(), texts: texts.clone(), explain });
            request.set_timeout(time);
            async move { encoder.score(request).await }
        };
        let scores = view.encoders.call("while scoring", texts.len(), deadline, &self.counters, call).await?;
        Ok(Response::new(RerankResponse { scores: scores.scores, explanations: scores.explanations }))
    }

    async fn stats(&self, request: Request<ClusterStatsRequest>) -> Result<Response<ClusterStats>, Status> {
        let deadline = self.deadline(&request);
        let mut out = ClusterStats::default();
        let (_, view) = self.gate.current();
        for (_, replicas) in &view.shards {
            let first = replicas.next.fetch_add(1, Ordering::Relaxed);
            let answer = read_replicas(replicas, first, deadline, &self.counters, |mut c, r| {
                let request = replicas.request(r, StatsRequest {});
                async move { c.stats(request).await }
            })
            .await
            .ok();
            out.shards_ok += answer.is_some() as u32;
            let stats = answer.unwrap_or_default();
            out.documents += stats.documents;
            out.tokens += stats.tokens;
            out.shards.push(stats);
        }
        Ok(Response::new(out))
    }

    async fn upsert(&self, request: Request<UpsertRequest>) -> Result<Response<UpsertResponse>, Status> {
        let deadline = self.write_deadline(&request);
        let docs = request.into_inner().documents;
        self.config.check_documents(&docs)?;
        let vectors = self.encode(docs.iter().map(|d| d.text.clone()).collect(), false, deadline).await?;
        Ok(Response::new(self.writer.upsert(docs, vectors, deadline).await?))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let deadline = self.write_deadline(&request);
        let DeleteRequest { ids, filter, .. } = request.into_inner();
        if ids.len() > self.config.max_batch {
            return Err(Error::BadInput(format!("a delete names at most {} ids", self.config.max_batch)).into());
        }
        if ids.is_empty() && filter.is_none() {
            return Err(Error::BadInput("a delete names ids or a filter".into()).into());
        }
        Ok(Response::new(DeleteResponse { deleted: self.writer.delete(ids, filter, deadline).await? }))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let deadline = self.deadline(&request);
        Ok(Response::new(self.get_documents(request.into_inner(), deadline).await?))
    }
}

/// The caller's deadline (`grpc-timeout`), capped at 6× `default_ms`, else `default_ms`.
fn deadline<T>(request: &Request<T>, default_ms: u64) -> Instant {
    let default = Duration::from_millis(default_ms);
    Instant::now() + proto::grpc_timeout(request.metadata()).unwrap_or(default).min(default * 6)
}

/// A name for this router in the store, unique to the process.
fn member_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "router".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    format!("{host}-{}-{nanos:08x}", std::process::id())
}

/// Checks the encoders' health every `HEALTH_EVERY`, for as long as the router lives.
async fn check_encoders(gate: Arc<EpochGate<View>>, counters: Arc<Counters>) {
    let mut every = tokio::time::interval(crate::encoders::HEALTH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (_, view) = gate.current();
        view.encoders.check_health().await;
        counters.encoders_down.store(view.encoders.down() as u64, Ordering::Relaxed);
    }
}
