//! What the cluster state holds (one JSON document in the store): the shard map with each
//! replica's address and state, the encoders, the move in progress, and an epoch that grows by
//! one with every change.

use serde::{Deserialize, Serialize};

use crate::placement::shard_of;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterState {
    /// Grows by one with every change; a router acknowledges the epochs it serves under.
    pub epoch: u64,
    pub encoders: Vec<String>,
    /// The shards in placement order (a document's shard is `shard_of(id, shards.len())`).
    pub shards: Vec<Shard>,
    /// The id the next shard gets (ids are never reused, positions are).
    pub next_id: u64,
    /// The move under way, if any.
    #[serde(default, rename = "move", skip_serializing_if = "Option::is_none")]
    pub moving: Option<Move>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// Stable across moves, unlike the shard's position.
    pub id: u64,
    pub replicas: Vec<Replica>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    pub address: String,
    pub state: ReplicaState,
    /// The identity of the store it held when it was last known in sync (`ShardStats.store`):
    /// reads name it, so a replica recreated empty refuses them instead of answering wrongly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// When it left `in_sync` (Unix milliseconds): past the shards' tombstone time to live, a
    /// repair no longer trusts what only it holds from before then (a purged delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
}

/// DESIGN.md §9: `joining` is being filled, `in_sync` serves reads, `stale` missed writes
/// (receives writes, serves no reads until repaired), `removed` takes nothing. One more than
/// the design names: `syncing`, a replica a repair found caught up and checks once more with
/// writes flowing; a write that fails on it makes it `stale` again, so a replica becomes
/// `in_sync` only when no write it missed can have slipped past the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    Joining,
    InSync,
    Syncing,
    Stale,
    Removed,
}

impl ReplicaState {
    /// Its name as the cluster state spells it (`in_sync`, …), for status output.
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    }
}

/// A move: documents go from where placement over `from` put them to where placement over the
/// state's `shards` puts them, one source shard and one batch at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub kind: MoveKind,
    /// The shard map before the move.
    pub from: Vec<Shard>,
    /// The position in `from` of the shard being walked.
    pub source: usize,
    /// Ids of that shard up to and including this one are done.
    pub after: String,
    pub phase: Phase,
    /// Documents moved so far.
    pub moved: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveKind {
    /// The shard with this id was added.
    Add { shard: u64 },
    /// The shard with this id is being drained, then dropped.
    Remove { shard: u64 },
}

/// Where the batch after `after` stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The move has begun: client writes wait until every router has learnt both placements.
    /// Otherwise a router that had could write a document to its new shard while another,
    /// still on the old map alone, reads only the old one and misses it.
    Starting,
    /// Between batches.
    Walking,
    /// Client writes wait while the batch ending at `last` is exported and copied.
    Fenced { last: String },
    /// The batch is on its new shards; it is deleted from the old one once no read that began
    /// before the copy is still running.
    Copied { last: String },
}

impl ClusterState {
    /// A new cluster: shard i has the replicas `shards[i]`, all in sync.
    pub fn new(encoders: Vec<String>, shards: &[Vec<String>]) -> ClusterState {
        let shards: Vec<Shard> = shards.iter().enumerate().map(|(i, r)| Shard::new(i as u64, r)).collect();
        ClusterState { epoch: 1, encoders, next_id: shards.len() as u64, shards, moving: None }
    }

    /// This state with one more change: the same, `change`d, at the next epoch.
    pub fn changed(&self, change: impl FnOnce(&mut ClusterState)) -> ClusterState {
        let mut next = self.clone();
        change(&mut next);
        next.epoch = self.epoch + 1;
        next
    }

    /// Every shard a read must ask: the map's, then (mid-move) those only the old map has.
    pub fn all_shards(&self) -> Vec<&Shard> {
        let mut all: Vec<&Shard> = self.shards.iter().collect();
        for old in self.moving.iter().flat_map(|m| &m.from) {
            if !all.iter().any(|s| s.id == old.id) {
                all.push(old);
            }
        }
        all
    }

    /// The shard with id `id`, in the map or (mid-move) only in the old one.
    pub fn shard(&self, id: u64) -> Option<&Shard> {
        self.all_shards().into_iter().find(|s| s.id == id)
    }

    /// Where `id` belongs now (a shard id).
    pub fn home(&self, id: &str) -> u64 {
        home(&self.shards, id)
    }

    /// Mid-move: where `id` belonged before, when that differs from where it belongs now.
    pub fn old_home(&self, id: &str) -> Option<u64> {
        let old = home(&self.moving.as_ref()?.from, id);
        (old != self.home(id)).then_some(old)
    }

    /// Changes the replica `address` of shard `id` with `change`, in the map and (mid-move) in
    /// the old one, which keep their own copies; whether it was there.
    pub fn change_replica(&mut self, id: u64, address: &str, change: impl Fn(&mut Replica)) -> bool {
        let mut found = false;
        let old = self.moving.iter_mut().flat_map(|m| m.from.iter_mut());
        for shard in self.shards.iter_mut().chain(old).filter(|s| s.id == id) {
            for replica in shard.replicas.iter_mut().filter(|r| r.address == address) {
                change(replica);
                found = true;
            }
        }
        found
    }

    /// Whether client writes must wait now.
    pub fn fenced(&self) -> bool {
        matches!(self.moving, Some(Move { phase: Phase::Starting | Phase::Fenced { .. }, .. }))
    }
}

/// The id of the shard that placement over `shards` gives `id`.
pub fn home(shards: &[Shard], id: &str) -> u64 {
    shards[shard_of(id, shards.len())].id
}

impl Shard {
    pub fn new(id: u64, addresses: &[String]) -> Shard {
        let replicas = addresses.iter().map(|a| Replica::new(a, ReplicaState::InSync)).collect();
        Shard { id, replicas }
    }

    /// The replica at `address`.
    pub fn replica(&self, address: &str) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.address == address)
    }

    /// The addresses of the replicas that take writes (all but removed ones).
    pub fn addresses(&self) -> Vec<String> {
        self.replicas.iter().filter(|r| r.state != ReplicaState::Removed).map(|r| r.address.clone()).collect()
    }
}

impl Replica {
    pub fn new(address: &str, state: ReplicaState) -> Replica {
        Replica { address: address.to_string(), state, store: None, since_ms: None }
    }

    /// This replica out of sync from now on (`Stale`, or another state out of sync).
    pub fn leave_sync(&mut self, state: ReplicaState, now_ms: u64) {
        if self.state == ReplicaState::InSync || self.since_ms.is_none() {
            self.since_ms = Some(now_ms);
        }
        self.state = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(n: usize) -> Vec<Vec<String>> {
        (0..n).map(|i| vec![format!("127.0.0.1:{}", 7000 + i)]).collect()
    }

    #[test]
    fn mid_move_reads_ask_both_maps_and_old_homes_are_known() {
        let before = ClusterState::new(vec!["e".into()], &addresses(3));
        let grown = before.changed(|s| {
            s.moving = Some(Move {
                kind: MoveKind::Add { shard: 3 },
                from: s.shards.clone(),
                source: 0,
                after: String::new(),
                phase: Phase::Starting,
                moved: 0,
            });
            s.shards.push(Shard::new(3, &["127.0.0.1:7003".into()]));
            s.next_id = 4;
        });
        assert_eq!(grown.epoch, 2);
        assert!(grown.fenced() && !before.fenced());
        assert!(!grown.changed(|s| s.moving.as_mut().unwrap().phase = Phase::Walking).fenced());
        assert_eq!(grown.all_shards().len(), 4);
        for i in 0..200 {
            let id = format!("d{i}");
            let (now, old) = (grown.home(&id), grown.old_home(&id));
            assert_eq!(old.is_some(), now == 3, "{id}");
            assert!(old.is_none_or(|o| o == before.home(&id)));
        }
        // Draining shard 1 of 3: it leaves the map (the last shard takes its position) but is
        // still read until the move ends.
        let draining = before.changed(|s| {
            let from = s.shards.clone();
            s.shards.swap_remove(1);
            s.moving = Some(Move {
                kind: MoveKind::Remove { shard: 1 },
                from,
                source: 0,
                after: String::new(),
                phase: Phase::Fenced { last: "d9".into() },
                moved: 0,
            });
        });
        assert!(draining.fenced());
        assert_eq!(draining.all_shards().iter().map(|s| s.id).collect::<Vec<_>>(), [0, 2, 1]);
        assert!((0..200).all(|i| draining.home(&format!("d{i}")) != 1));
        let json = serde_json::to_string(&draining).unwrap();
        assert_eq!(serde_json::from_str::<ClusterState>(&json).unwrap(), draining);
    }
}
