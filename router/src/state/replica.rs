//! Changing replicas in the store: each change reads the state, changes it and compares-and-
//! replaces it, again when another process changed it meanwhile (a router marking another
//! replica stale, a move's step). The changes: a failed write marks replicas stale, an
//! operator adds or removes one (`jacolbert replica`), a repair moves one back to in sync.

use super::{ClusterState, ClusterStore, Replica, ReplicaState};
use crate::Error;

/// Applies `change` to the stored state until it sticks; `change` returning `None` means there
/// is nothing to do (returned as `None`).
pub async fn update(
    store: &dyn ClusterStore,
    mut change: impl FnMut(&ClusterState) -> Result<Option<ClusterState>, Error>,
) -> Result<Option<ClusterState>, Error> {
    loop {
        let Some(state) = store.load().await? else {
            return Err(Error::Precondition(format!(
                "the cluster store {} holds no cluster: run `jacolbert cluster init` first",
                store.describe()
            )));
        };
        let Some(next) = change(&state)? else { return Ok(None) };
        if store.replace(Some(&state), &next, None).await? {
            return Ok(Some(next));
        }
    }
}

/// Marks the replicas at `addresses` of shard `id` stale after a write failed on them: each
/// that is `syncing`, and each that is `in_sync` when `in_sync_too` (a write left a replica
/// in sync that flushed it; without one, marking the rest would leave the shard none to
/// read or repair from). Returns how many changed. It reads the stored state, not the
/// caller's view: a repair may have moved a replica the view calls stale to `syncing`.
pub async fn mark_stale(
    store: &dyn ClusterStore,
    id: u64,
    addresses: &[String],
    in_sync_too: bool,
) -> Result<usize, Error> {
    let now = crate::state::now_ms();
    let mut marked = 0;
    update(store, |state| {
        let shard = state.shard(id).ok_or_else(|| Error::Precondition(format!("shard {id} is gone")))?;
        let due: Vec<&String> = addresses
            .iter()
            .filter(|a| {
                shard.replica(a).is_some_and(|r| {
                    r.state == ReplicaState::Syncing || (in_sync_too && r.state == ReplicaState::InSync)
                })
            })
            .collect();
        marked = due.len();
        if due.is_empty() {
            return Ok(None);
        }
        Ok(Some(state.changed(|s| {
            for address in due {
                s.change_replica(id, address, |r| r.leave_sync(ReplicaState::Stale, now));
            }
        })))
    })
    .await?;
    Ok(marked)
}

/// `jacolbert replica add`: an empty replica for the shard at `position`, `joining` until a
/// repair has filled it (an address removed before comes back the same way).
pub async fn add(store: &dyn ClusterStore, position: usize, address: &str) -> Result<ClusterState, Error> {
    let now = crate::state::now_ms();
    let added = update(store, |state| {
        let shard = placed(state, position)?;
        match shard.replica(address).map(|r| r.state) {
            Some(ReplicaState::Removed) | None => {}
            Some(s) => {
                return Err(Error::Precondition(format!("{address} is already a replica of shard {position} ({s:?})")))
            }
        }
        let id = shard.id;
        Ok(Some(state.changed(|s| {
            let shard = s.shards.iter_mut().find(|s| s.id == id).expect("placed");
            shard.replicas.retain(|r| r.address != address);
            let mut joining = Replica::new(address, ReplicaState::Joining);
            joining.since_ms = Some(now);
            shard.replicas.push(joining);
        })))
    })
    .await?;
    Ok(added.expect("an added replica changes the state"))
}

/// `jacolbert replica remove`: the replica takes no more reads or writes. The last replica in
/// sync cannot go (the shard would lose what only it holds).
pub async fn remove(store: &dyn ClusterStore, position: usize, address: &str) -> Result<ClusterState, Error> {
    let removed = update(store, |state| {
        let shard = placed(state, position)?;
        let replica = shard
            .replica(address)
            .filter(|r| r.state != ReplicaState::Removed)
            .ok_or_else(|| Error::BadInput(format!("{address} is not a replica of shard {position}")))?;
        let in_sync = shard.replicas.iter().filter(|r| r.state == ReplicaState::InSync).count();
        if replica.state == ReplicaState::InSync && in_sync == 1 {
            return Err(Error::Precondition(format!(
                "{address} is the last replica of shard {position} in sync: add another and let it be repaired first"
            )));
        }
        let id = shard.id;
        Ok(Some(state.changed(|s| {
            s.change_replica(id, address, |r| r.state = ReplicaState::Removed);
        })))
    })
    .await?;
    Ok(removed.expect("a removed replica changes the state"))
}

/// The shard at `position` of the map; replicas change only between moves (a move's copies
/// and deletes go to the replicas it read at its last step).
fn placed(state: &ClusterState, position: usize) -> Result<&super::Shard, Error> {
    if state.moving.is_some() {
        return Err(Error::Precondition(
            "a move is under way: change replicas once it has ended (`jacolbert cluster status`)".into(),
        ));
    }
    let shards = state.shards.len();
    state
        .shards
        .get(position)
        .ok_or_else(|| Error::BadInput(format!("there is no shard {position}: the cluster has {shards}")))
}
