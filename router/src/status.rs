//! `Admin.Status`: the cluster as this router sees it, for operators and the web console. Each
//! replica is asked for its `ShardStats` now, all at once and briefly, so one that hangs delays
//! the answer by `ASK_FOR` at most and shows as not answering.

use std::time::Duration;

use proto::v1::{ClusterStatus, MoveStatus, ReplicaStatus, ShardStatus, StatsRequest};

use crate::state::{MoveKind, ReplicaState};
use crate::Router;

/// How long a replica has to answer its Stats call.
const ASK_FOR: Duration = Duration::from_secs(2);

impl Router {
    pub(crate) async fn status(&self) -> ClusterStatus {
        let (epoch, view) = self.gate.current();
        let state = &view.state;
        // Every replica of every shard at once: one that hangs delays the answer by ASK_FOR.
        let shards = state.all_shards().into_iter().map(|shard| {
            let replicas = view.replicas(shard.id);
            let asked = shard.replicas.iter().map(move |replica| {
                // Removed replicas have no client: nothing is asked of them.
                let r = replicas.addresses.iter().position(|a| *a == replica.address);
                let call = r.filter(|_| replica.state != ReplicaState::Removed).map(|r| {
                    let mut client = replicas.clients[r].clone();
                    let mut request = replicas.request(r, StatsRequest {});
                    request.set_timeout(ASK_FOR);
                    async move { tokio::time::timeout(ASK_FOR, client.stats(request)).await }
                });
                async move {
                    let (stats, error) = match call {
                        None => (None, String::new()),
                        Some(call) => match call.await {
                            Ok(Ok(stats)) => (Some(stats.into_inner()), String::new()),
                            Ok(Err(status)) => (None, format!("{:?}: {}", status.code(), status.message())),
                            Err(_) => (None, format!("no answer within {} s", ASK_FOR.as_secs())),
                        },
                    };
                    ReplicaStatus { address: replica.address.clone(), state: replica.state.name(), stats, error }
                }
            });
            async move {
                ShardStatus {
                    id: shard.id,
                    position: state.shards.iter().position(|s| s.id == shard.id).map(|p| p as u32),
                    replicas: futures::future::join_all(asked).await,
                }
            }
        });
        let shards = futures::future::join_all(shards).await;
        let moving = state.moving.as_ref().map(|m| {
            let (kind, shard) = match m.kind {
                MoveKind::Add { shard } => ("add", shard),
                MoveKind::Remove { shard } => ("remove", shard),
            };
            MoveStatus { kind: kind.into(), shard, moved: m.moved }
        });
        ClusterStatus { epoch, shards, encoders: view.encoders.status(), r#move: moving }
    }
}
