//! Talking to shards: each shard's replicas, their states and channels (TLS when configured),
//! and reads that go to in-sync replicas only, retrying once on another. Writes are in
//! `replicate.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proto::v1::shard_client::ShardClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Code, Request, Response, Status};

use crate::service::Counters;
use crate::state::{Replica, ReplicaState, Shard};
use crate::Error;

/// One shard's replicas that take writes (all but removed ones), with their states as the view
/// has them; reads go round robin to the `in_sync` ones only.
pub(crate) struct Replicas {
    pub(crate) shard: u64,
    pub(crate) addresses: Vec<String>,
    pub(crate) clients: Vec<ShardClient<Channel>>,
    pub(crate) states: Vec<ReplicaState>,
    /// The store each was known to hold (reads name it: `proto::STORE_HEADER`).
    stores: Vec<Option<MetadataValue<Ascii>>>,
    /// The positions of the `in_sync` replicas.
    pub(crate) readable: Vec<usize>,
    pub(crate) next: AtomicUsize,
}

impl Replicas {
    /// Clients for `shard`'s replicas, reusing `known`'s channel for an address it has.
    pub(crate) fn connect(
        shard: &Shard,
        tls: Option<&ClientTlsConfig>,
        known: &HashMap<String, ShardClient<Channel>>,
    ) -> Result<Replicas, Error> {
        let client =
            |c| ShardClient::new(c).max_decoding_message_size(NODE_MESSAGE).max_encoding_message_size(NODE_MESSAGE);
        let taking: Vec<&Replica> = shard.replicas.iter().filter(|r| r.state != ReplicaState::Removed).collect();
        let mut clients = Vec::with_capacity(taking.len());
        for r in &taking {
            clients.push(match known.get(&r.address) {
                Some(c) => c.clone(),
                None => channel(&r.address, tls).map(client)?,
            });
        }
        let readable = (0..taking.len()).filter(|&i| taking[i].state == ReplicaState::InSync).collect();
        Ok(Replicas {
            shard: shard.id,
            addresses: taking.iter().map(|r| r.address.clone()).collect(),
            clients,
            states: taking.iter().map(|r| r.state).collect(),
            stores: taking.iter().map(|r| r.store.as_deref().and_then(|s| s.parse().ok())).collect(),
            readable,
            next: AtomicUsize::new(0),
        })
    }

    /// `message` for replica `r`, traced, naming the store it must hold when one is known.
    pub(crate) fn request<T>(&self, r: usize, message: T) -> Request<T> {
        let mut request = proto::trace::traced(message);
        if let Some(store) = &self.stores[r] {
            request.metadata_mut().insert(proto::STORE_HEADER, store.clone());
        }
        request
    }

    /// The address → client pairs, for the next view to reuse.
    pub(crate) fn known(&self) -> impl Iterator<Item = (String, ShardClient<Channel>)> + '_ {
        self.addresses.iter().cloned().zip(self.clients.iter().cloned())
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

pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Whether a call failed because its node could not be reached or went away mid-call: refused
/// connections are UNAVAILABLE, a connection that breaks under a call comes back as UNKNOWN
/// ("transport error"). Reads and encodes change nothing, so either is worth another node.
pub(crate) fn unreachable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::Unknown)
}

/// A read on the `in_sync` replica `first` (modulo their number), tried once more on the next
/// one when it is `unreachable` or holds another store than the one known, and never past
/// `deadline`. `call` gets the client and the replica's position (for `Replicas::request`).
/// A failure names the replica that failed last and its status (`None`: the deadline passed
/// first).
pub(crate) async fn read_replicas<T, F, Fut>(
    replicas: &Replicas,
    first: usize,
    deadline: Instant,
    counters: &Counters,
    call: F,
) -> Result<T, (String, Option<Status>)>
where
    F: Fn(ShardClient<Channel>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let readable = &replicas.readable;
    if readable.is_empty() {
        let states: Vec<String> =
            replicas.addresses.iter().zip(&replicas.states).map(|(a, s)| format!("{a} {s:?}")).collect();
        let why = format!(
            "no replica of shard {} is in sync ({}); it serves no reads until one is repaired",
            replicas.shard,
            states.join(", ")
        );
        return Err((replicas.addresses.join(","), Some(Status::unavailable(why))));
    }
    let mut last = None;
    for attempt in 0..readable.len().min(2) {
        let r = readable[(first + attempt) % readable.len()];
        let address = replicas.addresses[r].clone();
        let time = remaining(deadline);
        if time.is_zero() {
            return Err((address, None));
        }
        if attempt > 0 {
            counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        match tokio::time::timeout(time, call(replicas.clients[r].clone(), r)).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            // FAILED_PRECONDITION from a shard's read: it holds another store than the one
            // named (it was recreated); the repairer's check marks it stale.
            Ok(Err(status)) if unreachable(&status) || status.code() == Code::FailedPrecondition => {
                last = Some((address, Some(status)))
            }
            Ok(Err(status)) => return Err((address, Some(status))),
            Err(_) => return Err((address, None)),
        }
    }
    Err(last.expect("at least one replica was tried"))
}
