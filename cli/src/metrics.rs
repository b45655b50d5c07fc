//! Prometheus metrics, one text endpoint per node (`--metrics-addr`, `GET /metrics`):
//! - every gRPC request, counted and timed by RPC and status code (a tower layer in front of
//!   the services);
//! - what each role adds: the router's shard and encoder failures, timeouts and retries, the
//!   encoder's queue depth and batch sizes, the shard's documents, tokens and bytes;
//! - spans dropped because the trace collector could not take them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codegen::http;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

#[derive(Default, Clone)]
struct Histogram {
    /// Counts per bucket (not cumulative), then the count above the last bound.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// Per (RPC path, status code).
static REQUESTS: Mutex<BTreeMap<(String, String), Histogram>> = Mutex::new(BTreeMap::new());

fn record(rpc: String, code: String, seconds: f64) {
    let mut requests = REQUESTS.lock().unwrap_or_else(|e| e.into_inner());
    let h = requests.entry((rpc, code)).or_default();
    h.buckets[BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(BUCKETS.len())] += 1;
    h.sum += seconds;
    h.count += 1;
}

/// The tower layer that counts and times every request a server answers.
pub fn layer<S>() -> impl tower::Layer<S, Service = Timed<S>> + Clone {
    tower::layer::layer_fn(Timed)
}

#[derive(Clone)]
pub struct Timed<S>(S);

impl<S, B, R> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = request.uri().path().to_string();
        let started = Instant::now();
        let answer = self.0.call(request);
        Box::pin(async move {
            let response = answer.await;
            // A failed unary call is "trailers only": its grpc-status is in the headers. A
            // successful one carries it in the trailers, after the body, so none here is OK.
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unknown,
            };
            record(rpc, format!("{code:?}"), started.elapsed().as_secs_f64());
            response
        })
    }
}

/// A role's own metrics, rendered at each scrape.
pub type Extra = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// The whole text exposition.
pub async fn render(extra: &[Extra]) -> String {
    let mut out = String::new();
    out += &header("counter", "jacolbert_rpc_requests_total", "gRPC requests answered, by RPC and status code.");
    let requests = REQUESTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for ((rpc, code), h) in &requests {
        let _ = writeln!(out, "jacolbert_rpc_requests_total{{rpc=\"{rpc}\",code=\"{code}\"}} {}", h.count);
    }
    out += &header("histogram", "jacolbert_rpc_duration_seconds", "Time to answer a gRPC request.");
    for ((rpc, code), h) in &requests {
        let labels = format!("rpc=\"{rpc}\",code=\"{code}\"");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(out, "jacolbert_rpc_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "jacolbert_rpc_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "jacolbert_rpc_duration_seconds_sum{{{labels}}} {}", h.sum);
        let _ = writeln!(out, "jacolbert_rpc_duration_seconds_count{{{labels}}} {}", h.count);
    }
    let dropped = &crate::telemetry::SPANS_DROPPED;
    out += &counter("jacolbert_trace_spans_dropped_total", "Spans the trace collector did not take.", dropped);
    for e in extra {
        out += &e().await;
    }
    out
}

/// A metric's HELP and TYPE lines.
fn header(kind: &str, name: &str, help: &str) -> String {
    format!("# HELP {name} {help}\n# TYPE {name} {kind}\n")
}

/// One counter (or, with `kind` "gauge", one gauge) with its HELP and TYPE lines.
fn metric(kind: &str, name: &str, help: &str, value: u64) -> String {
    header(kind, name, help) + &format!("{name} {value}\n")
}

/// A counter read from the atomic that counts it.
pub fn counter(name: &str, help: &str, value: &std::sync::atomic::AtomicU64) -> String {
    metric("counter", name, help, value.load(Ordering::Relaxed))
}

pub fn gauge(name: &str, help: &str, value: u64) -> String {
    metric("gauge", name, help, value)
}

pub fn router(counters: Arc<router::Counters>) -> Extra {
    Arc::new(move || {
        let c = counters.clone();
        Box::pin(async move {
            [
                counter("jacolbert_router_shard_failures_total", "Shard calls that failed.", &c.shard_failures),
                counter("jacolbert_router_shard_timeouts_total", "Shard calls past the deadline.", &c.shard_timeouts),
                counter("jacolbert_router_retries_total", "Reads retried on another replica.", &c.retries),
                counter("jacolbert_router_refused_total", "Searches refused at the concurrency limit.", &c.refused),
                counter(
                    "jacolbert_router_encoder_failures_total",
                    "Encoder calls that failed as unavailable or full.",
                    &c.encoder_failures,
                ),
                counter(
                    "jacolbert_router_encoder_retries_total",
                    "Encoder calls tried again on another encoder.",
                    &c.encoder_retries,
                ),
                gauge(
                    "jacolbert_router_encoders_down",
                    "Encoders skipped as unavailable, as of the last health check.",
                    c.encoders_down.load(Ordering::Relaxed),
                ),
                counter(
                    "jacolbert_router_marked_stale_total",
                    "Replicas marked stale after a failed write.",
                    &c.marked_stale,
                ),
                counter("jacolbert_router_repair_passes_total", "Repair passes over a replica.", &c.repair_passes),
                counter(
                    "jacolbert_router_repair_copied_total",
                    "Documents and tombstones repairs copied.",
                    &c.repair_copied,
                ),
                counter("jacolbert_router_repairs_total", "Replicas repairs brought back in sync.", &c.repairs_done),
                gauge(
                    "jacolbert_router_replicas_out_of_sync",
                    "Replicas joining, stale or syncing, as of the router's last look.",
                    c.replicas_out_of_sync.load(Ordering::Relaxed),
                ),
            ]
            .concat()
        })
    })
}

pub fn encoder(metrics: encoder_node::service::Metrics) -> Extra {
    Arc::new(move || {
        let m = metrics.clone();
        Box::pin(async move {
            [
                gauge("jacolbert_encoder_queue_depth", "Texts waiting for the model or in it.", m.queued() as u64),
                counter("jacolbert_encoder_batches_total", "Forward-pass batches run.", &m.counters.batches),
                counter("jacolbert_encoder_batch_texts_total", "Texts in those batches.", &m.counters.batch_texts),
                counter(
                    "jacolbert_encoder_document_chunks_total",
                    "Document forward passes (chunks of a batch).",
                    &m.counters.document_chunks,
                ),
                counter(
                    "jacolbert_encoder_document_steps_total",
                    "Steps of document passes (ops of a layer), each followed by a pause while a query pass runs.",
                    &m.counters.document_steps,
                ),
                counter("jacolbert_encoder_refused_total", "Requests refused, queue full.", &m.counters.refused),
                counter(
                    "jacolbert_encoder_expired_total",
                    "Requests dropped unrun: deadline passed or caller gone while they waited.",
                    &m.counters.expired,
                ),
                metric(
                    "counter",
                    "jacolbert_encoder_query_cache_hits_total",
                    "Queries answered from the query-embedding cache (0 without one).",
                    m.cache.as_ref().map_or(0, |c| c.hits.load(Ordering::Relaxed)),
                ),
                metric(
                    "counter",
                    "jacolbert_encoder_query_cache_misses_total",
                    "Queries the query-embedding cache did not hold.",
                    m.cache.as_ref().map_or(0, |c| c.misses.load(Ordering::Relaxed)),
                ),
                gauge(
                    "jacolbert_encoder_query_overlap_steps_max",
                    "Most steps of document passes (ops of a layer) run while one query pass was gathered and ran.",
                    m.counters.query_overlap_steps.load(Ordering::Relaxed),
                ),
            ]
            .concat()
        })
    })
}

/// A shard gauge: name, help, and how to read it from the shard's stats.
type ShardGauge = (&'static str, &'static str, fn(&proto::v1::ShardStats) -> u64);

/// The shards of this process (one, or `jacolbert local`'s), labelled by number.
pub fn shards(shards: Vec<(u32, shard_node::service::ShardService)>) -> Extra {
    use proto::v1::shard_server::Shard as _;
    Arc::new(move || {
        let shards = shards.clone();
        Box::pin(async move {
            let mut stats = Vec::new();
            for (number, service) in &shards {
                if let Ok(s) = service.stats(tonic::Request::new(proto::v1::StatsRequest {})).await {
                    stats.push((number, s.into_inner()));
                }
            }
            let mut out = String::new();
            let table: [ShardGauge; 5] = [
                ("jacolbert_shard_documents", "Live documents.", |s| s.documents),
                ("jacolbert_shard_tokens", "Token vectors of the live documents.", |s| s.tokens),
                ("jacolbert_shard_memory_bytes", "Bytes the search layout holds.", |s| s.memory_bytes),
                ("jacolbert_shard_disk_bytes", "Bytes the store takes on disk.", |s| s.disk_bytes),
                ("jacolbert_shard_trained", "1 once the codec is trained.", |s| s.trained as u64),
            ];
            for (name, help, value) in table {
                out += &header("gauge", name, help);
                for (number, s) in &stats {
                    let _ = writeln!(out, "{name}{{shard=\"{number}\"}} {}", value(s));
                }
            }
            out
        })
    })
}

/// Serves `GET /metrics` on `address` in the background; returns the bound address.
pub async fn serve(address: &str, extra: Vec<Extra>) -> anyhow::Result<String> {
    let listener =
        tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding metrics on {address}"))?;
    let bound = listener.local_addr()?.to_string();
    let extra = Arc::new(extra);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let extra = extra.clone();
            tokio::spawn(async move {
                // One request per connection; only its first line matters.
                let mut head = vec![0u8; 4096];
                let n = stream.read(&mut head).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&head[..n]);
                let (status, body) = match head.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                    ["GET", "/metrics"] => ("200 OK", render(&extra).await),
                    _ => ("404 Not Found", "try GET /metrics\n".to_string()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(bound)
}
