//! Talking to shards: each shard's replicas and their channels (TLS when configured), reads
//! that retry once on another replica, and writes that every replica must acknowledge.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proto::v1::shard_client::ShardClient;
use proto::v1::{DeleteRequest, EncodedDocument, ShardUpsertRequest, UpsertResponse};
use tokio::task::JoinSet;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Code, Response, Status};
use tracing::Instrument;

use crate::service::Counters;
use crate::Error;

/// One shard's replicas, read round robin.
pub(crate) struct Replicas {
    pub(crate) addresses: Vec<String>,
    pub(crate) clients: Vec<ShardClient<Channel>>,
    pub(crate) next: AtomicUsize,
}

impl Replicas {
    pub(crate) fn connect(addresses: &[String], tls: Option<&ClientTlsConfig>) -> Result<Replicas, Error> {
        let client =
            |c| ShardClient::new(c).max_decoding_message_size(NODE_MESSAGE).max_encoding_message_size(NODE_MESSAGE);
        let clients = addresses.iter().map(|a| channel(a, tls).map(client)).collect::<Result<_, _>>()?;
        Ok(Replicas { addresses: addresses.to_vec(), clients, next: AtomicUsize::new(0) })
    }
}

/// Most bytes of one message between the router and a node: a batch of documents' vectors
/// (256 documents of 300 tokens × 128 f32 values is 39 MB).
pub const NODE_MESSAGE: usize = 256 << 20;

/// A channel to `host:port`, over TLS when `tls` is given (the host must be in the peer's
/// certificate).
pub(crate) fn channel(address: &str, tls: Option<&ClientTlsConfig>) -> Result<Channel, Error> {
    let bad = |reason: String| Error::Address { address: address.to_string(), reason };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{address}")).map_err(|e| bad(e.to_string()))?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(|e| bad(e.to_string()))?;
    }
    // Lazy: a node that is down now is an UNAVAILABLE call later, not a start-up failure.
    Ok(endpoint.connect_lazy())
}

/// Sends `request` to every replica of shard `s` (`replicas`); all must succeed.
async fn write_shard<R: Clone + Send + 'static, T: Send + 'static>(
    s: u64,
    replicas: &Replicas,
    request: R,
    deadline: Instant,
    call: fn(ShardClient<Channel>, R) -> futures_call::BoxCall<T>,
) -> Result<T, Error> {
    let mut set = JoinSet::new();
    for (r, client) in replicas.clients.iter().enumerate() {
        let (client, request) = (client.clone(), request.clone());
        let call = async move { (r, tokio::time::timeout(remaining(deadline), call(client, request)).await) };
        set.spawn(call.instrument(tracing::Span::current()));
    }
    let mut first = None;
    while let Some(joined) = set.join_next().await {
        let (r, result) = joined.map_err(|e| Error::Unavailable(format!("shard {s}: {e}")))?;
        let address = &replicas.addresses[r];
        match result {
            Ok(Ok(value)) => first = first.or(Some(value)),
            Ok(Err(status)) if status.code() == Code::InvalidArgument || status.code() == Code::NotFound => {
                return Err(Error::Upstream(status))
            }
            Ok(Err(status)) => {
                return Err(Error::Unavailable(format!("shard {s} replica {address}: {}", status.message())))
            }
            Err(_) => return Err(Error::Deadline(format!("waiting for shard {s} replica {address}"))),
        }
    }
    first.ok_or_else(|| Error::Unavailable(format!("shard {s} has no replica that takes writes")))
}

/// Writes `documents` to every replica of shard `s`.
pub(crate) async fn upsert_on(
    s: u64,
    replicas: &Replicas,
    documents: Vec<EncodedDocument>,
    deadline: Instant,
) -> Result<UpsertResponse, Error> {
    write_shard(s, replicas, ShardUpsertRequest { documents }, deadline, |mut c, r| {
        Box::pin(async move { c.upsert(proto::trace::traced(r)).await.map(Response::into_inner) })
    })
    .await
}

/// Deletes `ids` at `version` on every replica of shard `s`; returns how many were there.
pub(crate) async fn delete_on(
    s: u64,
    replicas: &Replicas,
    ids: Vec<String>,
    version: u64,
    deadline: Instant,
) -> Result<u32, Error> {
    let done = write_shard(s, replicas, DeleteRequest { ids, version }, deadline, |mut c, r| {
        Box::pin(async move { c.delete(proto::trace::traced(r)).await.map(Response::into_inner) })
    })
    .await?;
    Ok(done.deleted)
}

/// Boxed shard calls, so `write_shard` can take any of them.
mod futures_call {
    use std::future::Future;
    use std::pin::Pin;

    pub type BoxCall<T> = Pin<Box<dyn Future<Output = Result<T, tonic::Status>> + Send>>;
}

pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A read on replica `first`, tried once more on the next replica when it is UNAVAILABLE, and
/// never past `deadline`. A failure names the replica that failed last and its status (`None`:
/// the deadline passed first).
pub(crate) async fn read_replicas<T, F, Fut>(
    clients: &[ShardClient<Channel>],
    first: usize,
    deadline: Instant,
    counters: &Counters,
    call: F,
) -> Result<T, (usize, Option<Status>)>
where
    F: Fn(ShardClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let mut last = None;
    for attempt in 0..clients.len().min(2) {
        let r = (first + attempt) % clients.len();
        let time = remaining(deadline);
        if time.is_zero() {
            return Err((r, None));
        }
        if attempt > 0 {
            counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        match tokio::time::timeout(time, call(clients[r].clone())).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) if status.code() == Code::Unavailable => last = Some((r, Some(status))),
            Ok(Err(status)) => return Err((r, Some(status))),
            Err(_) => return Err((r, None)),
        }
    }
    Err(last.unwrap_or((first, Some(Status::unavailable("the shard has no replicas")))))
}
