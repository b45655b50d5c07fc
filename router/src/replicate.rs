//! A write to one shard's replicas, and when it counts as done (DESIGN.md §9). It goes to every
//! replica not removed. It is acknowledged when every `in_sync` replica flushed it, or when each
//! that failed has first been marked `stale` in the store and at least `write_quorum` in-sync
//! replicas flushed it; otherwise UNAVAILABLE, outcome unknown, retry safe (a retry is a newer
//! version). A `syncing` replica that fails is marked stale too, whatever the outcome, so that
//! its repair checks it again.
//!
//! Replicas the caller's view has `stale` or `joining` get the write but are not waited for: a
//! repair covers what they miss (it waits for every write begun before it started its last
//! check, and that check finds the write on an in-sync replica).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::shard_client::ShardClient;
use proto::v1::{DeleteRequest, EncodedDocument, Filter, ShardUpsertRequest, UpsertResponse};
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};
use tracing::Instrument;

use crate::replicas::{remaining, Replicas};
use crate::service::Counters;
use crate::state::{replica, ClusterStore, ReplicaState};
use crate::Error;

/// What a write needs besides its replicas: the store to mark failed replicas stale in, the
/// quorum, and the counters.
#[derive(Clone)]
pub(crate) struct Acks {
    pub store: Arc<dyn ClusterStore>,
    pub quorum: usize,
    pub counters: Arc<Counters>,
}

/// How long a write waits for the other in-sync replicas once one has flushed it: at least
/// this, and at least 3× the time the first took. One that has not answered by then is
/// marked stale (a frozen node must not hold every write for the whole deadline).
const GRACE: Duration = Duration::from_secs(1);

type Call<R, T> = fn(ShardClient<Channel>, tonic::Request<R>) -> BoxCall<T>;
type BoxCall<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, Status>> + Send>>;

impl Acks {
    /// Sends `request` to the replicas of `replicas.shard` and applies the module's rule.
    async fn write<R: Clone + Send + 'static, T: Send + 'static>(
        &self,
        replicas: &Replicas,
        request: R,
        deadline: Instant,
        call: Call<R, T>,
    ) -> Result<T, Error> {
        let s = replicas.shard;
        let started = Instant::now();
        let mut set = JoinSet::new();
        for (r, client) in replicas.clients.iter().enumerate() {
            let send = call(client.clone(), replicas.request(r, request.clone()));
            let send = async move { (r, tokio::time::timeout(remaining(deadline), send).await) };
            match waited(replicas.states[r]) {
                true => drop(set.spawn(send.instrument(tracing::Span::current()))),
                false => drop(tokio::spawn(send)),
            }
        }
        // Time left after the replicas' answers, to mark the failed ones and reply.
        let margin = (remaining(deadline) / 5).min(Duration::from_secs(1));
        let mut cutoff = tokio::time::Instant::from_std(deadline.checked_sub(margin).unwrap_or(deadline));
        let (mut value, mut flushed, mut failed) = (None, 0, Vec::new());
        let mut answered = vec![false; replicas.clients.len()];
        loop {
            let next = match tokio::time::timeout_at(cutoff, set.join_next()).await {
                Ok(Some(joined)) => joined.map_err(|e| Error::Unavailable(format!("shard {s}: {e}")))?,
                Ok(None) => break,
                Err(_) => break,
            };
            let (r, result) = next;
            answered[r] = true;
            match result {
                Ok(Ok(v)) => {
                    if replicas.states[r] == ReplicaState::InSync {
                        flushed += 1;
                        let grace = GRACE.max(started.elapsed() * 3);
                        cutoff = cutoff.min(tokio::time::Instant::now() + grace);
                    }
                    value = value.or(Some(v));
                }
                // Every replica gets the same request: what one refuses as bad, all do.
                Ok(Err(status)) if matches!(status.code(), Code::InvalidArgument | Code::NotFound) => {
                    return Err(Error::Upstream(status));
                }
                Ok(Err(status)) => failed.push((r, format!("{:?}: {}", status.code(), status.message()))),
                Err(_) => failed.push((r, "no answer within the deadline".into())),
            }
        }
        set.abort_all();
        for r in (0..answered.len()).filter(|&r| !answered[r] && waited(replicas.states[r])) {
            failed.push((r, "no answer in time".into()));
        }
        if !failed.is_empty() {
            self.mark(replicas, &failed, flushed > 0, deadline).await?;
        }
        let in_sync_failed = failed.iter().any(|(r, _)| replicas.states[*r] == ReplicaState::InSync);
        match value {
            Some(v) if flushed > 0 && (!in_sync_failed || flushed >= self.quorum) => Ok(v),
            _ => {
                let what: Vec<String> =
                    failed.iter().map(|(r, why)| format!("{} {why}", replicas.addresses[*r])).collect();
                let readers = replicas.readable.len();
                Err(Error::Unavailable(format!(
                    "shard {s}: {flushed} of its {readers} replicas in sync flushed the write (write_quorum {}){}{}; \
                     the outcome is unknown and a retry is safe",
                    self.quorum,
                    if what.is_empty() { "" } else { "; failed: " },
                    what.join(", ")
                )))
            }
        }
    }

    /// Marks the replicas that failed stale (see `replica::mark_stale`) before the write is
    /// acknowledged. When the store cannot be reached in time the write fails, and the
    /// marking goes on in the background: the replicas may hold a write the others lack.
    async fn mark(
        &self,
        replicas: &Replicas,
        failed: &[(usize, String)],
        in_sync_too: bool,
        deadline: Instant,
    ) -> Result<(), Error> {
        let (store, s) = (self.store.clone(), replicas.shard);
        let addresses: Vec<String> = failed.iter().map(|(r, _)| replicas.addresses[*r].clone()).collect();
        for ((r, why), address) in failed.iter().zip(&addresses) {
            tracing::info!(shard = s, replica = %address, state = ?replicas.states[*r], error = %why, "a replica failed a write");
        }
        let counters = self.counters.clone();
        let marking = tokio::spawn(async move {
            loop {
                match replica::mark_stale(store.as_ref(), s, &addresses, in_sync_too).await {
                    Ok(marked) => {
                        counters.marked_stale.fetch_add(marked as u64, Ordering::Relaxed);
                        if marked > 0 {
                            tracing::warn!(shard = s, replicas = ?addresses, "marked replicas stale after a failed write");
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(shard = s, error = %e, "cannot mark replicas stale yet; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        let wait = remaining(deadline).max(Duration::from_millis(100));
        match tokio::time::timeout(wait, marking).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::Unavailable(format!(
                "shard {s}: a replica failed the write and the cluster store could not record it in time; the \
                 outcome is unknown and a retry is safe"
            ))),
        }
    }

    /// Writes `documents` to the replicas of `replicas.shard`.
    pub(crate) async fn upsert(
        &self,
        replicas: &Replicas,
        documents: Vec<EncodedDocument>,
        deadline: Instant,
    ) -> Result<UpsertResponse, Error> {
        self.write(replicas, ShardUpsertRequest { documents }, deadline, |mut c, r| {
            Box::pin(async move { c.upsert(r).await.map(Response::into_inner) })
        })
        .await
    }

    /// Deletes `ids`, and what `filter` matches, at `version` on the replicas of
    /// `replicas.shard`; returns how many were there.
    pub(crate) async fn delete(
        &self,
        replicas: &Replicas,
        ids: Vec<String>,
        version: u64,
        filter: Option<Filter>,
        deadline: Instant,
    ) -> Result<u32, Error> {
        let done = self
            .write(replicas, DeleteRequest { ids, version, filter }, deadline, |mut c, r| {
                Box::pin(async move { c.delete(r).await.map(Response::into_inner) })
            })
            .await?;
        Ok(done.deleted)
    }
}

/// Whether a write waits for a replica in `state` (the others are sent it and left to it).
fn waited(state: ReplicaState) -> bool {
    matches!(state, ReplicaState::InSync | ReplicaState::Syncing)
}
