//! A router following the cluster state: the view it serves with (the state, a client for every
//! shard a read must ask, the encoders), switched whole at each new epoch; and the
//! acknowledgement a move waits for, sent once nothing begun under an older epoch still runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::ClientTlsConfig;

use super::gate::EpochGate;
use super::{ClusterState, ClusterStore};
use crate::encoders::Encoders;
use crate::replicas::Replicas;
use crate::Error;

/// What one epoch of the cluster looks like to a router.
pub(crate) struct View {
    pub state: ClusterState,
    /// Every shard a read must ask (`ClusterState::all_shards`), by id, in that order.
    pub shards: Vec<(u64, Arc<Replicas>)>,
    pub encoders: Arc<Encoders>,
    encoder_addresses: Vec<String>,
}

impl View {
    /// The view of `state`, reusing `before`'s channels where the addresses are the same.
    pub fn build(state: ClusterState, before: Option<&View>, tls: Option<&ClientTlsConfig>) -> Result<View, Error> {
        if state.encoders.is_empty() || state.shards.is_empty() {
            return Err(Error::Store("the cluster state lists no encoder or no shard".into()));
        }
        // Channels are kept by address: a replica's new state needs no new connection.
        let known: HashMap<String, _> =
            before.iter().flat_map(|v| v.shards.iter().flat_map(|(_, r)| r.known())).collect();
        let mut shards = Vec::new();
        for shard in state.all_shards() {
            shards.push((shard.id, Arc::new(Replicas::connect(shard, tls, &known)?)));
        }
        let encoders = match before {
            Some(v) if v.encoder_addresses == state.encoders => v.encoders.clone(),
            _ => Arc::new(Encoders::connect(&state.encoders, tls, before.map(|v| &*v.encoders))?),
        };
        Ok(View { encoder_addresses: state.encoders.clone(), state, shards, encoders })
    }

    /// The replicas of the shard with id `id`.
    pub fn replicas(&self, id: u64) -> &Arc<Replicas> {
        &self.shards.iter().find(|(s, _)| *s == id).expect("every shard of the state has a view").1
    }
}

/// Installs every newer state the store reports, for as long as the router lives.
pub(crate) async fn follow(gate: Arc<EpochGate<View>>, store: Arc<dyn ClusterStore>, tls: Option<ClientTlsConfig>) {
    let mut failing = false;
    loop {
        let (epoch, view) = gate.current();
        match store.changed_after(epoch).await.and_then(|s| View::build(s, Some(&view), tls.as_ref())) {
            Ok(next) => {
                let (epoch, moving) = (next.state.epoch, next.state.moving.is_some());
                gate.advance_to(epoch, next);
                if std::mem::take(&mut failing) {
                    tracing::info!(epoch, store = %store.describe(), "following the cluster state again");
                }
                tracing::debug!(epoch, moving, "cluster state installed");
            }
            Err(e) => {
                // Keep serving with the last map; reads stay correct while nothing can change it.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, store = %store.describe(), "cannot follow the cluster state; retrying");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Acknowledges each epoch once every operation begun under an older one has ended.
pub(crate) async fn acknowledge(gate: Arc<EpochGate<View>>, store: Arc<dyn ClusterStore>, member: String) {
    let mut acked = 0;
    loop {
        let (epoch, _) = gate.current();
        if epoch > acked {
            gate.drained(epoch).await;
            match store.ack(&member, epoch).await {
                Ok(()) => acked = epoch,
                Err(e) => {
                    tracing::warn!(error = %e, epoch, "cannot acknowledge the epoch; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        gate.beyond(acked).await;
    }
}

/// Waits until every live router has acknowledged `epoch` (so none serves with an older view,
/// and nothing any of them began under an older one still runs).
pub(crate) async fn barrier(store: &dyn ClusterStore, epoch: u64) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let mut told = Duration::ZERO;
    loop {
        let lagging: Vec<(String, u64)> = store.acks().await?.into_iter().filter(|(_, e)| *e < epoch).collect();
        if lagging.is_empty() {
            return Ok(());
        }
        if started.elapsed() > told + Duration::from_secs(5) {
            told = started.elapsed();
            tracing::info!(epoch, lagging = ?lagging, "waiting for routers to reach the epoch");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
