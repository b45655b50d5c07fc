//! The steps of a move. It starts with client writes fenced until every router has learnt both
//! placements (`Phase::Starting`). Then each source shard of the old map is walked in id order
//! (`Shard.List`), a page at a time; the documents of a page that placement now puts elsewhere
//! are moved as one batch:
//! 1. `Fenced`: client writes wait (every router has acknowledged the fence, so none is
//!    writing); the batch is exported from the source, with its versions, and written to every
//!    replica of its new shards, which refuse any copy older than what they hold.
//! 2. `Copied`: writes resume; once every router has acknowledged this epoch, no read that
//!    began before the copy is still running, so the batch is deleted from the source.
//! 3. `Walking` with the cursor past the batch.
//!
//! Client writes during a move go to a document's new shard only; a client delete also deletes
//! where the document used to be. Only the move deletes a document's old copy, and only behind
//! the barrier: a write that deleted it at once could make a search that read the new shard
//! before the write, and the old one after the delete, miss the document.
//!
//! The invariant: a document is on its old shard, its new one, or both (the merge keeps one
//! copy, the new shard's where both answer), and every read finds it: a read that began before
//! a batch's copy ended finishes before the batch is deleted from its old shard (the epoch
//! barrier, state/gate.rs), and a read that began later finds it on the new shard. Every router
//! reads and writes with both placements from the first step on. After a crash the next mover
//! redoes the batch after the cursor from its first step: the copies carry versions, so copying
//! again never overwrites a newer write or brings a deleted document back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::v1::shard_client::ShardClient;
use proto::v1::{EncodedDocument, ExportRequest, ListRequest, StatsRequest};
use tonic::transport::Channel;
use tonic::{Response, Status};

use super::{failpoint, Done, MoveRequest, Mover};
use crate::placement::group_by;
use crate::replicas::{read_replicas, Replicas};
use crate::replicate::Acks;
use crate::service::Counters;
use crate::state::follow::barrier;
use crate::state::{ClusterState, Move, MoveKind, Phase, Shard};
use crate::Error;

/// Ids read from a source shard per call, and how long one shard call of the move may take.
const PAGE: u32 = 256;
const STEP: Duration = Duration::from_secs(60);

impl Mover {
    pub(super) async fn drive(&self, request: MoveRequest) -> Result<Done, Error> {
        let Some(state) = self.store.load().await? else {
            return Err(Error::Precondition(format!(
                "the cluster store {} holds no cluster: run `jacolbert cluster init` first",
                self.store.describe()
            )));
        };
        let mut state = match (&state.moving, &request) {
            (None, MoveRequest::Resume) => return Ok(done(&state, 0)),
            (None, MoveRequest::Add(replicas)) if state.shards.iter().any(|s| &s.addresses() == replicas) => {
                return Ok(done(&state, 0));
            }
            (None, MoveRequest::Add(replicas)) => self.start_add(state, replicas).await?,
            (None, MoveRequest::Remove(position)) => self.start_remove(state, *position).await?,
            (Some(m), MoveRequest::Resume) => {
                tracing::info!(kind = ?m.kind, source = m.source, after = %m.after, "resuming a move");
                state
            }
            (Some(m), request) if same_move(&state, m, request) => state,
            (Some(m), _) => {
                return Err(Error::Precondition(format!(
                    "another move is under way ({}); run the same command again (or wait for a router to \
                     resume it) before starting a new one",
                    describe(m, &state)
                )))
            }
        };
        // Before any write (client or copy) uses the new placement, every router reads and
        // writes with both (client writes wait meanwhile: `Phase::Starting`).
        barrier(self.store.as_ref(), state.epoch).await?;
        if state.moving.as_ref().is_some_and(|m| m.phase == Phase::Starting) {
            state = self.commit(&state, |m| m.phase = Phase::Walking).await?;
        }
        let mut clients = HashMap::new();
        loop {
            let m = state.moving.clone().expect("a move is under way");
            let Some(source) = m.from.get(m.source) else { break };
            let source_replicas = self.replicas(&mut clients, source)?;
            let page = ListRequest { after: m.after.clone(), limit: PAGE };
            let ids = read(&source_replicas, |mut c, r| {
                let page = source_replicas.request(r, page.clone());
                async move { c.list(page).await }
            })
            .await?
            .ids;
            let Some(last) = ids.last().cloned() else {
                state = self
                    .commit(&state, |m| (m.source, m.after, m.phase) = (m.source + 1, String::new(), Phase::Walking))
                    .await?;
                continue;
            };
            let leaving: Vec<String> = ids.into_iter().filter(|id| state.home(id) != source.id).collect();
            let mut moved = 0;
            if !leaving.is_empty() {
                let from = (source.id, &source_replicas);
                moved = self.move_batch(&mut state, &mut clients, from, leaving, &last).await?;
            }
            state = self
                .commit(&state, |m| (m.after, m.phase, m.moved) = (last.clone(), Phase::Walking, m.moved + moved))
                .await?;
            if moved > 0 {
                let m = state.moving.as_ref().expect("still moving");
                tracing::info!(source = m.source, of = m.from.len(), moved = m.moved, "moving documents");
                failpoint::point("between").await;
            }
        }
        let moved = state.moving.as_ref().map_or(0, |m| m.moved);
        let kind = state.moving.as_ref().map(|m| m.kind.clone());
        state = self.commit_state(&state, |s| s.moving = None).await?;
        tracing::info!(?kind, moved, shards = state.shards.len(), epoch = state.epoch, "move done");
        Ok(done_of(&state, kind, moved))
    }

    /// Steps 1 and 2 of the module docs for one batch of the source shard `(id, replicas)`;
    /// returns how many moved.
    async fn move_batch(
        &self,
        state: &mut ClusterState,
        clients: &mut HashMap<String, ShardClient<Channel>>,
        (source, from): (u64, &Replicas),
        ids: Vec<String>,
        last: &str,
    ) -> Result<u64, Error> {
        *state = self.commit(state, |m| m.phase = Phase::Fenced { last: last.to_string() }).await?;
        barrier(self.store.as_ref(), state.epoch).await?;
        failpoint::point("fenced").await;
        let export = ExportRequest { ids };
        let documents = read(from, |mut c, r| {
            let export = from.request(r, export.clone());
            async move { c.export(export).await }
        })
        .await?
        .documents;
        let home = |d: &EncodedDocument| d.document.as_ref().map(|d| state.home(&d.id));
        let mut copied = Vec::new();
        for (home, documents) in group_by(documents, home) {
            let shard = state.shard(home).expect("homes are shards of the map");
            copied.extend(documents.iter().filter_map(|d| d.document.as_ref().map(|d| d.id.clone())));
            self.acks().upsert(&self.replicas(clients, shard)?, documents, Instant::now() + STEP).await?;
        }
        failpoint::point("copied").await;
        *state = self.commit(state, |m| m.phase = Phase::Copied { last: last.to_string() }).await?;
        barrier(self.store.as_ref(), state.epoch).await?;
        failpoint::point("acknowledged").await;
        let count = copied.len() as u64;
        if !copied.is_empty() {
            // Unversioned: the documents moved, they were not deleted, so no tombstone.
            let from = self.replicas(clients, state.shard(source).expect("the source is read until the end"))?;
            self.acks().delete(&from, copied, 0, None, Instant::now() + STEP).await?;
        }
        Ok(count)
    }

    /// Puts a new shard (running and empty on every replica) at the end of the map.
    async fn start_add(&self, state: ClusterState, replicas: &[String]) -> Result<ClusterState, Error> {
        let id = state.next_id;
        let shard = Shard::new(id, replicas);
        check_empty(&Replicas::connect(&shard, self.tls.as_ref(), &HashMap::new())?).await?;
        self.commit_state(&state, |s| {
            s.moving = Some(Move::new(MoveKind::Add { shard: id }, s.shards.clone()));
            s.shards.push(shard.clone());
            s.next_id += 1;
        })
        .await
    }

    /// Takes the shard at `position` out of the map (the last one takes its place); its
    /// documents are then moved to where placement over the others puts them.
    async fn start_remove(&self, state: ClusterState, position: usize) -> Result<ClusterState, Error> {
        let shards = state.shards.len();
        if position >= shards {
            return Err(Error::BadInput(format!("there is no shard {position}: the cluster has {shards}")));
        }
        if shards == 1 {
            return Err(Error::Precondition("the last shard cannot be removed".into()));
        }
        self.commit_state(&state, |s| {
            let from = s.shards.clone();
            let gone = s.shards.swap_remove(position);
            s.moving = Some(Move::new(MoveKind::Remove { shard: gone.id }, from));
        })
        .await
    }

    /// The state with the move changed by `change`, stored.
    async fn commit(&self, state: &ClusterState, change: impl Fn(&mut Move)) -> Result<ClusterState, Error> {
        self.commit_state(state, |s| change(s.moving.as_mut().expect("a move is under way"))).await
    }

    /// `change` applied to the stored state. Routers change replica states at any time, a
    /// move's first step included (a failed write marks a replica stale, a router records a new
    /// replica's store): on such a change the step is applied to the state as it is now. Any
    /// other change means another process moves; an unchanged state that still cannot be
    /// replaced means this process lost the move lock.
    async fn commit_state(
        &self,
        state: &ClusterState,
        change: impl Fn(&mut ClusterState),
    ) -> Result<ClusterState, Error> {
        let mut now = state.clone();
        loop {
            let next = now.changed(&change);
            if self.store.replace(Some(&now), &next, Some(&self.owner)).await? {
                return Ok(next);
            }
            match self.store.load().await? {
                Some(stored) if stored != now && progress(&stored) == progress(state) => now = stored,
                _ => {
                    return Err(Error::Precondition(
                        "the cluster state changed under this move (the move lock was lost, or another \
                         process moved); run the command again to resume"
                            .into(),
                    ))
                }
            }
        }
    }

    /// `shard`'s replicas as the move's state has them now (their channels kept by address).
    fn replicas(&self, clients: &mut HashMap<String, ShardClient<Channel>>, shard: &Shard) -> Result<Replicas, Error> {
        let replicas = Replicas::connect(shard, self.tls.as_ref(), clients)?;
        clients.extend(replicas.known());
        Ok(replicas)
    }

    /// How the move's writes are acknowledged (replicate.rs), as a router's are.
    fn acks(&self) -> Acks {
        Acks { store: self.store.clone(), quorum: 1, counters: Default::default() }
    }
}

impl Move {
    fn new(kind: MoveKind, from: Vec<Shard>) -> Move {
        Move { kind, from, source: 0, after: String::new(), phase: Phase::Starting, moved: 0 }
    }
}

/// Whether `request` asks for the move `m` already under way (so running it again resumes it).
pub(super) fn same_move(state: &ClusterState, m: &Move, request: &MoveRequest) -> bool {
    match (&m.kind, request) {
        (MoveKind::Add { shard }, MoveRequest::Add(replicas)) => {
            state.shards.iter().any(|s| s.id == *shard && &s.addresses() == replicas)
        }
        (MoveKind::Remove { shard }, MoveRequest::Remove(position)) => {
            m.from.get(*position).is_some_and(|s| s.id == *shard)
        }
        _ => false,
    }
}

fn describe(m: &Move, state: &ClusterState) -> String {
    let shard = |id: u64| state.shard(id).map(|s| s.addresses().join(",")).unwrap_or_default();
    match &m.kind {
        MoveKind::Add { shard: id } => format!("adding shard {}", shard(*id)),
        MoveKind::Remove { shard: id } => format!("removing shard {}", shard(*id)),
    }
}

fn done(state: &ClusterState, moved: u64) -> Done {
    let shards = state.shards.len() as u32;
    Done { shard: shards.saturating_sub(1), shards, moved }
}

/// What a finished move reports: the added shard's position, or the removed one's.
fn done_of(state: &ClusterState, kind: Option<MoveKind>, moved: u64) -> Done {
    let mut report = done(state, moved);
    if let Some(MoveKind::Add { shard }) = kind {
        report.shard = state.shards.iter().position(|s| s.id == shard).unwrap_or_default() as u32;
    }
    report
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

/// A read of the move from an in-sync replica of `replicas` (another when one is down),
/// under the step's time limit.
async fn read<T, F, Fut>(replicas: &Replicas, call: F) -> Result<T, Error>
where
    F: Fn(ShardClient<Channel>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let counters = Counters::default();
    match read_replicas(replicas, 0, Instant::now() + STEP, &counters, call).await {
        Ok(answer) => Ok(answer),
        Err((address, Some(status))) => {
            Err(Error::Unavailable(format!("moving documents: {address}: {}", status.message())))
        }
        Err((address, None)) => Err(Error::Deadline(format!("moving documents, waiting for {address}"))),
    }
}

/// What only a mover changes: the shards and the move's steps (not replica states).
fn progress(state: &ClusterState) -> (Vec<u64>, Option<(MoveKind, usize, String, Phase, u64)>) {
    let m = state.moving.as_ref().map(|m| (m.kind.clone(), m.source, m.after.clone(), m.phase.clone(), m.moved));
    (state.shards.iter().map(|s| s.id).collect(), m)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::{replica, ClusterStore, FileStore, MOVE_LOCK};

    /// A durable store of three one-replica shards, the move lock held by "mover".
    async fn three_shards(dir: &std::path::Path) -> (Arc<FileStore>, Mover) {
        let store = Arc::new(FileStore::open(&dir.join("cluster.json")).unwrap());
        let shards: Vec<Vec<String>> = (0..3).map(|i| vec![format!("127.0.0.1:{}", 7000 + i)]).collect();
        assert!(store.replace(None, &ClusterState::new(vec!["e:1".into()], &shards), None).await.unwrap());
        assert_eq!(store.lock(MOVE_LOCK, "mover").await.unwrap(), None);
        (store.clone(), Mover { store, owner: "mover".into(), tls: None })
    }

    /// What a router does at any moment, a move's first step included: records the store of a
    /// replica that has none recorded.
    async fn router_records_a_store(store: &dyn ClusterStore) {
        let recorded = replica::update(store, |s| {
            Ok(Some(s.changed(|s| {
                s.change_replica(2, "127.0.0.1:7002", |r| r.store = Some("store-of-2".into()));
            })))
        })
        .await
        .unwrap();
        assert!(recorded.is_some());
    }

    #[tokio::test]
    async fn a_move_starts_over_a_replica_change_made_since_it_read_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mover) = three_shards(dir.path()).await;
        let read = store.load().await.unwrap().unwrap();
        router_records_a_store(store.as_ref()).await;
        // The removal is applied to the state as it is now: the router's change is kept.
        let started = mover.start_remove(read, 1).await.unwrap();
        assert_eq!(store.load().await.unwrap().unwrap(), started);
        assert_eq!(started.moving.as_ref().map(|m| m.kind.clone()), Some(MoveKind::Remove { shard: 1 }));
        assert_eq!(started.shards.iter().map(|s| s.id).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(started.shard(2).unwrap().replicas[0].store.as_deref(), Some("store-of-2"));
    }

    #[tokio::test]
    async fn a_move_refuses_another_movers_change_and_a_lost_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mover) = three_shards(dir.path()).await;
        let read = store.load().await.unwrap().unwrap();
        // Another process changed the map since: this one must not start over it.
        let moved = read.changed(|s| drop(s.shards.pop()));
        assert!(store.replace(Some(&read), &moved, None).await.unwrap());
        let refused = mover.start_remove(read, 1).await.unwrap_err();
        assert!(matches!(refused, Error::Precondition(_)), "{refused:?}");
        // The lock gone to another owner, an unchanged state is refused too (and at once, not
        // by retrying for ever).
        store.unlock(MOVE_LOCK, "mover").await.unwrap();
        assert_eq!(store.lock(MOVE_LOCK, "other").await.unwrap(), None);
        let refused = tokio::time::timeout(Duration::from_secs(5), mover.start_remove(moved, 0)).await.unwrap();
        assert!(matches!(refused, Err(Error::Precondition(_))), "{refused:?}");
    }
}
