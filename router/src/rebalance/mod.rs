//! Moves: adding a shard while the cluster serves, or draining one and dropping it, as a state
//! machine persisted in the cluster store (`state::Move`) so that any process can resume a move
//! another left. One process moves at a time (the store's move lock, held through its lease).
//! `walk.rs` has the steps and the invariant they keep; this file starts, resumes and serves
//! them (`Admin`, `jacolbert rebalance`, and each router's watch for a move nobody runs).

mod failpoint;
mod walk;

use std::sync::Arc;
use std::time::Duration;

use proto::v1::admin_server::Admin;
use proto::v1::{
    AddShardRequest, AddShardResponse, ClusterStatus, ClusterStatusRequest, RemoveShardRequest, ReplicaRetrain,
    RetrainRequest, RetrainShardsRequest, RetrainShardsResponse,
};
use tonic::transport::ClientTlsConfig;
use tonic::{Request, Response, Status};

use crate::service::Router;
use crate::state::follow::View;
use crate::state::gate::EpochGate;
use crate::state::{ClusterStore, MOVE_LOCK};
use crate::Error;

/// What to move.
#[derive(Debug, Clone, PartialEq)]
pub enum MoveRequest {
    /// Add a shard with these replicas (running and empty).
    Add(Vec<String>),
    /// Drain the shard at this position and drop it.
    Remove(usize),
    /// Finish the move under way, whatever it is.
    Resume,
}

/// How a move ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// The shard added or removed (its position), and the shards there are now.
    pub shard: u32,
    pub shards: u32,
    /// Documents moved (by this process and those before it on the same move).
    pub moved: u64,
}

/// Runs one move against `store` as `owner`; shard calls go over `tls` when it is given.
pub struct Mover {
    pub store: Arc<dyn ClusterStore>,
    pub owner: String,
    pub tls: Option<ClientTlsConfig>,
}

impl Mover {
    /// Takes the move lock (or says who holds it) and runs `request` to its end.
    pub async fn run(&self, request: MoveRequest) -> Result<Done, Error> {
        match self.lock_moves().await? {
            Some(holder) => Err(Error::Precondition(format!(
                "a move is being run by {holder}; it is resumed here once that process has ended \
                 (its lease runs out a few seconds after it dies)"
            ))),
            None => self.run_locked(request).await,
        }
    }

    /// Takes the move lock, or says who holds it.
    async fn lock_moves(&self) -> Result<Option<String>, Error> {
        // A move kept only in memory dies with the router half-done, and the router's config
        // then names the wrong shards: moves need a store that outlives the process.
        if !self.store.durable() {
            return Err(Error::Precondition(
                "this router keeps the cluster state in memory only: start it with --cluster-store \
                 (etcd://… or file:///…) to add or remove shards"
                    .into(),
            ));
        }
        self.store.lock(MOVE_LOCK, &self.owner).await
    }

    /// Runs `request` with the move lock held, and lets the lock go.
    async fn run_locked(&self, request: MoveRequest) -> Result<Done, Error> {
        let done = self.drive(request).await;
        if let Err(e) = self.store.unlock(MOVE_LOCK, &self.owner).await {
            tracing::warn!(error = %e, "could not let the move lock go; it lapses with this process's lease");
        }
        done
    }

    /// As `run`, waiting (and saying so every second) while another process holds the lock.
    /// When the move asked for is the one under way, this resumes it and never starts it again
    /// (a removal asked for twice must not remove a second shard).
    pub async fn run_when_free(&self, mut request: MoveRequest) -> Result<Done, Error> {
        if let Some(state) = self.store.load().await? {
            if state.moving.as_ref().is_some_and(|m| walk::same_move(&state, m, &request)) {
                request = MoveRequest::Resume;
            }
        }
        while let Some(holder) = self.lock_moves().await? {
            tracing::info!(%holder, "another process moves; waiting until it ends or its lease lapses");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.run_locked(request).await
    }
}

/// Each router resumes a move that no process runs (its mover died): every few seconds it
/// tries the move lock, which is free only then.
pub(crate) async fn resume_moves(
    gate: Arc<EpochGate<View>>,
    store: Arc<dyn ClusterStore>,
    owner: String,
    tls: Option<ClientTlsConfig>,
) {
    let mover = Mover { store, owner, tls };
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if gate.current().1.state.moving.is_none() {
            continue;
        }
        match mover.run(MoveRequest::Resume).await {
            Ok(done) => tracing::info!(moved = done.moved, shards = done.shards, "resumed a move and finished it"),
            Err(Error::Precondition(_)) => {}
            Err(e) => tracing::warn!(error = %e, "resuming the move failed; trying again"),
        }
    }
}

impl Router {
    /// Runs a move in its own task, so that a caller who gives up does not stop it half-way.
    async fn move_now(&self, request: MoveRequest) -> Result<Response<AddShardResponse>, Status> {
        let mover = Mover { store: self.store.clone(), owner: self.member.clone(), tls: self.tls.clone() };
        let done = tokio::spawn(async move { mover.run(request).await })
            .await
            .map_err(|e| Status::internal(format!("the move stopped: {e}")))??;
        Ok(Response::new(AddShardResponse { shard: done.shard, shards: done.shards, moved: done.moved }))
    }
}

#[tonic::async_trait]
impl Admin for Router {
    async fn add_shard(&self, request: Request<AddShardRequest>) -> Result<Response<AddShardResponse>, Status> {
        let replicas = request.into_inner().replicas;
        if replicas.is_empty() {
            return Err(Error::BadInput("a shard needs at least one replica address".into()).into());
        }
        self.move_now(MoveRequest::Add(replicas)).await
    }

    async fn remove_shard(&self, request: Request<RemoveShardRequest>) -> Result<Response<AddShardResponse>, Status> {
        self.move_now(MoveRequest::Remove(request.into_inner().shard as usize)).await
    }

    async fn retrain(&self, request: Request<RetrainShardsRequest>) -> Result<Response<RetrainShardsResponse>, Status> {
        let wanted = request.into_inner().shard;
        let (_, view) = self.gate.current();
        let chosen: Vec<_> = view.shards.iter().filter(|(id, _)| wanted.is_none_or(|w| w == *id)).collect();
        if chosen.is_empty() {
            return Err(Error::BadInput(format!("no shard {} in the cluster", wanted.unwrap_or_default())).into());
        }
        let mut asked = Vec::new();
        for (id, replicas) in chosen {
            for (r, address) in replicas.addresses.iter().enumerate() {
                let mut client = replicas.clients[r].clone();
                let mut request = replicas.request(r, RetrainRequest {});
                request.set_timeout(Duration::from_secs(10));
                let (id, address) = (*id, address.clone());
                asked.push(async move {
                    let answer = client.retrain(request).await;
                    let (started, error) = match answer {
                        Ok(a) => (a.into_inner().started, String::new()),
                        Err(status) => (false, format!("{:?}: {}", status.code(), status.message())),
                    };
                    ReplicaRetrain { shard: id, address, started, error }
                });
            }
        }
        let replicas = futures::future::join_all(asked).await;
        Ok(Response::new(RetrainShardsResponse { replicas }))
    }

    async fn status(&self, _: Request<ClusterStatusRequest>) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(Router::status(self).await))
    }
}
