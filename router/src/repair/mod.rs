//! Repair (DESIGN.md §9): every router looks each second for replicas that are not in sync
//! and, holding the shard's repair lock (one process per shard at a time), brings each back
//! from an in-sync replica of its shard:
//! 1. passes (`pass.rs`) until one copies nothing; the replica still takes every write;
//! 2. `syncing`: from now on a write that fails on it makes it stale again (replicate.rs). The
//!    repair waits until every router has learnt that, so no write begun before is still
//!    running, then passes again;
//! 3. a pass that copied nothing, with the replica still `syncing` and its source still in sync
//!    in the store: `in_sync`, recording the store identity it holds. Every write either ended
//!    before that last pass began (so the pass found it on the source), or reached the replica,
//!    or failed on it and so made it stale, which the last step checks for.
//!
//! Repairs wait while a move runs, and a move waits for the pages under way (each holds the
//! epoch). The same loop checks that every in-sync replica still holds the store it held when
//! it became in sync: one whose data was lost comes back empty under another identity, and is
//! marked stale (its reads are refused meanwhile: `proto::STORE_HEADER`).

mod pass;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1::shard_client::ShardClient;
use proto::v1::ListRequest;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::Code;

use crate::replicas::Replicas;
use crate::replicate::Acks;
use crate::state::follow::{barrier, View};
use crate::state::gate::EpochGate;
use crate::state::{now_ms, repair_lock, replica, ClusterState, ReplicaState};
use crate::Error;

/// How often a router looks for replicas to repair and checks the stores of in-sync ones.
const EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Repairer {
    pub gate: Arc<EpochGate<View>>,
    pub acks: Acks,
    pub owner: String,
    pub tls: Option<ClientTlsConfig>,
    pub tombstone_ttl_ms: u64,
}

impl Repairer {
    pub(crate) async fn run(self) {
        // Failures already told, so that a replica that stays down is logged once.
        let mut told: HashMap<String, String> = HashMap::new();
        loop {
            tokio::time::sleep(EVERY).await;
            let (_, view) = self.gate.current();
            let out = view.state.shards.iter().flat_map(|s| &s.replicas).filter(|r| out_of_sync(r.state)).count();
            self.acks.counters.replicas_out_of_sync.store(out as u64, Ordering::Relaxed);
            if view.state.moving.is_some() {
                continue;
            }
            self.check_stores(&view).await;
            for shard in &view.state.shards {
                for target in shard.replicas.iter().filter(|r| out_of_sync(r.state)) {
                    let key = format!("{}/{}", shard.id, target.address);
                    match self.repair_locked(shard.id, &target.address).await {
                        Ok(Some(copied)) => {
                            told.remove(&key);
                            tracing::info!(shard = shard.id, replica = %target.address, copied, "replica repaired: in sync");
                        }
                        Ok(None) => {}
                        Err(e) if told.get(&key) != Some(&e.to_string()) => {
                            tracing::warn!(shard = shard.id, replica = %target.address, error = %e, "repair stopped; retrying");
                            told.insert(key, e.to_string());
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }

    /// Repairs one replica holding its shard's repair lock; `None` when another process holds
    /// it, else what the repair copied.
    async fn repair_locked(&self, id: u64, address: &str) -> Result<Option<u64>, Error> {
        let store = self.acks.store.as_ref();
        let lock = repair_lock(id);
        if store.lock(&lock, &self.owner).await?.is_some() {
            return Ok(None);
        }
        let done = self.repair(id, address).await;
        let _ = store.report(&format!("{id}/{address}"), "").await;
        if let Err(e) = store.unlock(&lock, &self.owner).await {
            tracing::warn!(error = %e, "could not let the repair lock go; it lapses with this process's lease");
        }
        done.map(Some)
    }

    /// The steps of the module docs for the replica `address` of shard `id`.
    async fn repair(&self, id: u64, address: &str) -> Result<u64, Error> {
        let store = self.acks.store.clone();
        let mut copied = 0;
        let mut passes = 0u64;
        let started = Instant::now();
        // Channels by address, kept from pass to pass.
        let mut clients = HashMap::new();
        loop {
            let state = store.load().await?.ok_or_else(|| Error::Precondition("the cluster is gone".into()))?;
            let Some((shard, source, target)) = roles(&state, id, address, self.tls.as_ref(), &clients)? else {
                return Ok(copied);
            };
            clients.extend(shard.known());
            let verifying = shard.states[target] == ReplicaState::Syncing;
            if verifying {
                barrier(store.as_ref(), state.epoch).await?;
            }
            let since = state.shard(id).and_then(|s| s.replica(address)).and_then(|r| r.since_ms);
            let untrusted_before = since.filter(|&t| now_ms().saturating_sub(t) > self.tombstone_ttl_ms);
            let from = shard.addresses[source].clone();
            let mut last_report = Instant::now();
            let mut report = |p: &pass::Passed| {
                if last_report.elapsed() >= EVERY {
                    last_report = Instant::now();
                    let line = serde_json::json!({
                        "owner": self.owner, "from": from, "pass": passes + 1, "walked": p.walked,
                        "copied": p.copied, "seconds": started.elapsed().as_secs(),
                    });
                    let store = store.clone();
                    let key = format!("{id}/{address}");
                    tokio::spawn(async move { store.report(&key, &line.to_string()).await });
                }
            };
            let passed = self.pass(&shard, (source, target), untrusted_before, &mut report).await?;
            passes += 1;
            copied += passed.copied;
            self.acks.counters.repair_passes.fetch_add(1, Ordering::Relaxed);
            self.acks.counters.repair_copied.fetch_add(passed.copied, Ordering::Relaxed);
            tracing::info!(shard = id, replica = %address, from = %shard.addresses[source], pass = passes,
                walked = passed.walked, copied = passed.copied, verifying, "repair pass");
            let (Some(identity), 0) = (passed.target_store.clone(), passed.copied) else { continue };
            let source_address = shard.addresses[source].clone();
            let next = if verifying { ReplicaState::InSync } else { ReplicaState::Syncing };
            let changed = replica::update(store.as_ref(), |now| {
                let Some(s) = now.shard(id) else { return Ok(None) };
                let (t, src) = (s.replica(address), s.replica(&source_address));
                let expected = if verifying {
                    [ReplicaState::Syncing].as_slice()
                } else {
                    &[ReplicaState::Stale, ReplicaState::Joining]
                };
                let ready = now.moving.is_none()
                    && t.is_some_and(|t| expected.contains(&t.state))
                    && src.is_some_and(|r| r.state == ReplicaState::InSync);
                Ok(ready.then(|| {
                    now.changed(|s| {
                        s.change_replica(id, address, |r| {
                            r.state = next;
                            if next == ReplicaState::InSync {
                                (r.store, r.since_ms) = (Some(identity.clone()), None);
                            }
                        });
                    })
                }))
            })
            .await?;
            if changed.is_some() && next == ReplicaState::InSync {
                self.acks.counters.repairs_done.fetch_add(1, Ordering::Relaxed);
                return Ok(copied);
            }
        }
    }

    /// Records the store of each in-sync replica that has none recorded yet, and marks stale
    /// each that holds another store than the one recorded.
    async fn check_stores(&self, view: &View) {
        let store = self.acks.store.as_ref();
        for (id, replicas) in &view.shards {
            for &r in &replicas.readable {
                let probe = replicas.request(r, ListRequest { after: String::new(), limit: 1 });
                let answer = tokio::time::timeout(EVERY, replicas.clients[r].clone().list_versions(probe)).await;
                let address = &replicas.addresses[r];
                let result = match answer {
                    Ok(Ok(listed)) => record_store(store, *id, address, listed.into_inner().store, false).await,
                    Ok(Err(status)) if status.code() == Code::FailedPrecondition => {
                        tracing::warn!(shard = id, replica = %address, error = status.message(), "a replica lost its store");
                        self.lost_store(*id, address, &replicas.clients[r]).await
                    }
                    _ => Ok(()),
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "checking replica stores");
                }
            }
        }
    }

    /// An in-sync replica came back with another store: it is marked stale, unless it is the
    /// shard's last one in sync. Then what it lost is lost; it goes on serving what it holds
    /// (under its new store), and repairs of the other replicas copy back what they have.
    async fn lost_store(&self, id: u64, address: &str, client: &ShardClient<Channel>) -> Result<(), Error> {
        let store = self.acks.store.as_ref();
        let state = store.load().await?.ok_or_else(|| Error::Precondition("the cluster is gone".into()))?;
        let others = state.shard(id).map_or(0, |s| {
            s.replicas.iter().filter(|r| r.address != address && r.state == ReplicaState::InSync).count()
        });
        if others > 0 {
            return replica::mark_stale(store, id, &[address.to_string()], true).await.map(drop);
        }
        let listed = client.clone().list_versions(ListRequest { after: String::new(), limit: 1 }).await?;
        let identity = listed.into_inner().store;
        tracing::error!(shard = id, replica = %address, store = %identity,
            "the last in-sync replica of the shard lost its data: it serves what it holds now");
        record_store(store, id, address, identity, true).await
    }
}

fn out_of_sync(state: ReplicaState) -> bool {
    matches!(state, ReplicaState::Joining | ReplicaState::Stale | ReplicaState::Syncing)
}

/// Shard `id`'s replicas as the state has them, the position of an in-sync one to repair from
/// and that of `address`; `None` when `address` needs no repair (any more).
fn roles(
    state: &ClusterState,
    id: u64,
    address: &str,
    tls: Option<&ClientTlsConfig>,
    known: &HashMap<String, ShardClient<Channel>>,
) -> Result<Option<(Replicas, usize, usize)>, Error> {
    let Some(shard) = state.shard(id) else { return Ok(None) };
    if state.moving.is_some() {
        return Err(Error::Precondition("a move is under way; the repair waits for it to end".into()));
    }
    let replicas = Replicas::connect(shard, tls, known)?;
    let Some(target) = replicas.addresses.iter().position(|a| a == address) else { return Ok(None) };
    if !out_of_sync(replicas.states[target]) {
        return Ok(None);
    }
    let source = *replicas
        .readable
        .first()
        .ok_or_else(|| Error::Unavailable(format!("shard {id} has no replica in sync to repair {address} from")))?;
    Ok(Some((replicas, source, target)))
}

/// Records `identity` as the store of the in-sync replica `address`: when none is recorded, or
/// in place of the one recorded when `replace`.
async fn record_store(
    store: &dyn crate::state::ClusterStore,
    id: u64,
    address: &str,
    identity: String,
    replace: bool,
) -> Result<(), Error> {
    replica::update(store, |state| {
        let known = state.shard(id).and_then(|s| s.replica(address));
        let due = known.is_some_and(|r| r.state == ReplicaState::InSync && (replace || r.store.is_none()));
        Ok(due.then(|| {
            state.changed(|s| {
                s.change_replica(id, address, |r| r.store = Some(identity.clone()));
            })
        }))
    })
    .await
    .map(drop)
}
