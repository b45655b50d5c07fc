//! Adding a shard while the cluster serves (`Admin.AddShard`). Jump consistent hashing moves
//! only documents to the new shard, about 1/(n+1) of each old shard's. The router:
//! 1. checks the new shard answers on every replica and is empty;
//! 2. puts it in the shard map and marks the move (`moving_from`): from then on searches fan
//!    out to it too, Get looks where a document used to be when it is not found where it now
//!    belongs, and Upsert and Delete also remove the copy where it used to be;
//! 3. walks each old shard's ids (`Shard.List`), and for the ones placed on the new shard
//!    copies them there (`Shard.Export`, then `Shard.Upsert` on every replica) and deletes them
//!    from the old one, a batch at a time. A document is in one place or, between those two
//!    steps, in both (the merge keeps one copy), never in none;
//! 4. ends the move.
//!
//! A batch excludes client writes while it runs (`write_fence`), so a client's newer version
//! can never be overwritten by the copy the batch exported. That holds for one router; with
//! several, writes should be paused (or sent to this router) while a shard is added.
//! A move that fails part-way leaves the map and the mark in place, and calling AddShard again
//! with the same replicas resumes it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::admin_server::Admin;
use proto::v1::shard_client::ShardClient;
use proto::v1::{AddShardRequest, AddShardResponse, ExportRequest, ListRequest, StatsRequest};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::placement::shard_of;
use crate::replicas::Replicas;
use crate::service::Router;
use crate::Error;

/// Ids read from an old shard per call, and how long one step of the move may take.
const PAGE: u32 = 256;
const STEP: Duration = Duration::from_secs(60);

#[tonic::async_trait]
impl Admin for Router {
    async fn add_shard(&self, request: Request<AddShardRequest>) -> Result<Response<AddShardResponse>, Status> {
        let replicas = request.into_inner().replicas;
        if replicas.is_empty() {
            return Err(Error::BadInput("a shard needs at least one replica address".into()).into());
        }
        let Ok(_one_at_a_time) = self.adding.try_lock() else {
            return Err(Error::Precondition("a shard is being added already".into()).into());
        };
        let map = self.shard_map();
        let moving = self.moving_from.load(Ordering::Acquire) > 0;
        let resuming = moving && map.last().is_some_and(|last| last.addresses == replicas);
        if !resuming {
            if moving {
                return Err(Error::Precondition(
                    "an earlier AddShard did not finish: call it again with the same replicas to resume".into(),
                )
                .into());
            }
            let new = Arc::new(Replicas::connect(&replicas, self.tls.as_ref())?);
            check_empty(&new).await?;
            self.moving_from.store(map.len(), Ordering::Release);
            let mut grown = map.as_ref().clone();
            grown.push(new);
            *self.shards.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(grown);
            tracing::info!(shard = map.len(), replicas = ?replicas, "shard added; moving its documents");
        }
        let moved = self.move_documents().await?;
        self.moving_from.store(0, Ordering::Release);
        let shards = self.shard_map().len() as u32;
        tracing::info!(shard = shards - 1, moved, "move done");
        Ok(Response::new(AddShardResponse { shard: shards - 1, shards, moved }))
    }
}

/// Every replica of a new shard must answer and hold nothing.
async fn check_empty(replicas: &Replicas) -> Result<(), Error> {
    for (client, address) in replicas.clients.iter().zip(&replicas.addresses) {
        let stats = tokio::time::timeout(STEP, client.clone().stats(StatsRequest {}))
            .await
            .map_err(|_| Error::Unavailable(format!("the new shard's replica {address} did not answer")))?
            .map_err(|s| Error::Unavailable(format!("the new shard's replica {address}: {}", s.message())))?;
        if stats.get_ref().documents > 0 {
            return Err(Error::Precondition(format!(
                "the new shard's replica {address} already holds {} documents",
                stats.get_ref().documents
            )));
        }
    }
    Ok(())
}

impl Router {
    /// Moves, from every old shard, the documents now placed on the last one.
    async fn move_documents(&self) -> Result<u64, Error> {
        let map = self.shard_map();
        let (shards, target) = (map.len(), map.len() - 1);
        let before = self.moving_from.load(Ordering::Acquire);
        let mut moved = 0u64;
        for (s, old) in map.iter().enumerate().take(before) {
            let source = old.clients[0].clone();
            let mut after = String::new();
            loop {
                let page = ListRequest { after: after.clone(), limit: PAGE };
                let ids = call(source.clone().list(page)).await?.ids;
                let Some(last) = ids.last() else { break };
                after = last.clone();
                let ids: Vec<String> = ids.into_iter().filter(|id| shard_of(id, shards) == target).collect();
                if !ids.is_empty() {
                    moved += self.move_batch(&source, s, target, ids).await?;
                    tracing::info!(from = s, to = target, moved, "moving documents");
                }
            }
        }
        Ok(moved)
    }

    /// Copies `ids` from shard `from` (read from `source`, one of its replicas) to every
    /// replica of `to`, then deletes them from every replica of `from`; client writes wait.
    async fn move_batch(
        &self,
        source: &ShardClient<Channel>,
        from: usize,
        to: usize,
        ids: Vec<String>,
    ) -> Result<u64, Error> {
        let _fence = self.write_fence.write().await;
        let documents = call(source.clone().export(ExportRequest { ids })).await?.documents;
        if documents.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = documents.iter().filter_map(|d| d.document.as_ref().map(|d| d.id.clone())).collect();
        self.upsert_on(to, documents, Instant::now() + STEP).await?;
        let count = ids.len() as u64;
        self.delete_on(from, ids, Instant::now() + STEP).await?;
        Ok(count)
    }
}

/// One shard call under the step's time limit.
async fn call<T>(f: impl std::future::Future<Output = Result<Response<T>, Status>>) -> Result<T, Error> {
    match tokio::time::timeout(STEP, f).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Error::Unavailable(format!("moving documents: {}", status.message()))),
        Err(_) => Err(Error::Deadline("moving documents".into())),
    }
}
