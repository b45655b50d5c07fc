//! One repair pass over a replica (the target) against an in-sync one (the source): both are
//! walked in id order a page at a time (`Shard.ListVersions`), and what one holds newer is
//! copied to the other: documents with their versions and vectors, tombstones as versioned
//! deletes. What only the target holds newer goes to the shard as a write (every replica, so
//! that the in-sync ones stay alike). A target out of sync for longer than the tombstone time
//! to live is not trusted for what it holds from before it left: a delete may have been
//! forgotten since, so those entries are cleared from it instead of copied back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Repairer;
use crate::replicas::Replicas;
use crate::state::hlc;
use crate::Error;
use proto::v1::{DeleteRequest, ExportRequest, ListRequest, ShardUpsertRequest, VersionEntry};

/// Ids compared per page, and how long one shard call of a repair may take.
const PAGE: u32 = 256;
const STEP: Duration = Duration::from_secs(60);

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Passed {
    /// Ids compared, and copies made (either way, clears included).
    pub walked: u64,
    pub copied: u64,
    /// The target's store identity, or `None` when it changed during the pass.
    pub target_store: Option<String>,
}

/// What to do with one id, from what the source and the target hold of it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    ToTarget(VersionEntry),
    ToShard(VersionEntry),
    /// The target's entry for this id is older than what can be trusted: remove it (then copy
    /// the source's, when there is one).
    Clear(String, Option<VersionEntry>),
}

/// The rule for one id; `untrusted_before` (Unix ms) is set when the target was out of sync
/// for longer than the tombstone time to live.
pub(super) fn decide(
    source: Option<&VersionEntry>,
    target: Option<&VersionEntry>,
    untrusted_before: Option<u64>,
) -> Option<Action> {
    let untrusted = |t: &VersionEntry| untrusted_before.is_some_and(|before| hlc::unix_ms(t.version) < before);
    match (source, target) {
        (None, None) => None,
        (Some(s), None) => Some(Action::ToTarget(s.clone())),
        (s, Some(t)) if s.is_none_or(|s| t.version > s.version) => match untrusted(t) {
            true => Some(Action::Clear(t.id.clone(), s.cloned())),
            false => Some(Action::ToShard(t.clone())),
        },
        (Some(s), Some(t)) if s.version > t.version => Some(Action::ToTarget(s.clone())),
        _ => None,
    }
}

impl Repairer {
    /// One pass of `target` against `source`, both replicas of `shard` (as the state had them
    /// when the pass began). Each page runs under the epoch gate and stops when a move has
    /// begun: a move starts only once every page begun before it has ended.
    pub(super) async fn pass(
        &self,
        shard: &Replicas,
        (source, target): (usize, usize),
        untrusted_before: Option<u64>,
        report: &mut (dyn FnMut(&Passed) + Send),
    ) -> Result<Passed, Error> {
        let (src, dst) = (shard.clients[source].clone(), shard.clients[target].clone());
        let mut passed = Passed::default();
        let mut after = String::new();
        loop {
            let entered = self.gate.enter();
            if entered.view().state.moving.is_some() {
                return Err(Error::Precondition("a move began; the repair waits for it to end".into()));
            }
            let page = ListRequest { after: after.clone(), limit: PAGE };
            let (mut src, mut dst) = (src.clone(), dst.clone());
            let (a, b) = tokio::try_join!(
                call(src.list_versions(shard.request(source, page.clone()))),
                call(dst.list_versions(page)),
            )?;
            let seen = Some(b.store.clone());
            passed.target_store = match passed.walked {
                0 => seen,
                _ if passed.target_store == seen => seen,
                _ => None,
            };
            // Compare up to where both pages reach (a page shorter than asked reaches the end).
            let last =
                |p: &[VersionEntry]| (p.len() == PAGE as usize).then(|| p.last().map(|e| e.id.clone())).flatten();
            let end = match (last(&a.entries), last(&b.entries)) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            let mut both: BTreeMap<String, (Option<VersionEntry>, Option<VersionEntry>)> = BTreeMap::new();
            let within = |e: &VersionEntry| end.as_ref().is_none_or(|end| &e.id <= end);
            for e in a.entries.into_iter().filter(within) {
                let id = e.id.clone();
                both.entry(id).or_default().0 = Some(e);
            }
            for e in b.entries.into_iter().filter(within) {
                let id = e.id.clone();
                both.entry(id).or_default().1 = Some(e);
            }
            passed.walked += both.len() as u64;
            let actions: Vec<Action> =
                both.values().filter_map(|(s, t)| decide(s.as_ref(), t.as_ref(), untrusted_before)).collect();
            passed.copied += actions.len() as u64;
            self.apply(shard, (source, target), actions).await?;
            drop(entered);
            report(&passed);
            match end {
                Some(end) => after = end,
                None => return Ok(passed),
            }
        }
    }

    /// Carries out one page's actions.
    async fn apply(
        &self,
        shard: &Replicas,
        (source, target): (usize, usize),
        actions: Vec<Action>,
    ) -> Result<(), Error> {
        let (src, dst) = (shard.clients[source].clone(), shard.clients[target].clone());
        let (mut to_target, mut to_shard, mut clear) = (Vec::new(), Vec::new(), Vec::new());
        for action in actions {
            match action {
                Action::ToTarget(e) => to_target.push(e),
                Action::ToShard(e) => to_shard.push(e),
                Action::Clear(id, then) => {
                    clear.push(id);
                    to_target.extend(then);
                }
            }
        }
        let deadline = Instant::now() + STEP;
        if !clear.is_empty() {
            // Unversioned: the entry and what the target knew of the id go.
            call(dst.clone().delete(DeleteRequest { ids: clear, version: 0, filter: None })).await?;
        }
        // Tombstones first, then live documents, exported from the side that holds them newer.
        let (dead, live): (Vec<_>, Vec<_>) = to_target.into_iter().partition(|e| e.deleted);
        for (version, ids) in by_version(dead) {
            call(dst.clone().delete(DeleteRequest { ids, version, filter: None })).await?;
        }
        if !live.is_empty() {
            let ids = live.into_iter().map(|e| e.id).collect();
            let documents = call(src.clone().export(shard.request(source, ExportRequest { ids }))).await?.documents;
            if !documents.is_empty() {
                call(dst.clone().upsert(ShardUpsertRequest { documents })).await?;
            }
        }
        let (dead, live): (Vec<_>, Vec<_>) = to_shard.into_iter().partition(|e| e.deleted);
        for (version, ids) in by_version(dead) {
            self.acks.delete(shard, ids, version, None, deadline).await?;
        }
        if !live.is_empty() {
            let ids = live.into_iter().map(|e| e.id).collect();
            let documents = call(dst.clone().export(ExportRequest { ids })).await?.documents;
            if !documents.is_empty() {
                self.acks.upsert(shard, documents, deadline).await?;
            }
        }
        Ok(())
    }
}

/// Tombstones grouped by version, one delete each.
fn by_version(entries: Vec<VersionEntry>) -> BTreeMap<u64, Vec<String>> {
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in entries {
        groups.entry(e.version).or_default().push(e.id);
    }
    groups
}

/// One shard call of a repair under its time limit.
async fn call<T>(f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>) -> Result<T, Error> {
    match tokio::time::timeout(STEP, f).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Error::Unavailable(format!("repairing: {:?}: {}", status.code(), status.message()))),
        Err(_) => Err(Error::Deadline("repairing".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u64, deleted: bool) -> VersionEntry {
        VersionEntry { id: "d".into(), version, deleted }
    }

    #[test]
    fn the_newer_side_wins_and_old_entries_of_a_long_stale_target_are_cleared() {
        let (live, dead, newer) = (entry(10 << 22, false), entry(11 << 22, true), entry(12 << 22, false));
        assert_eq!(decide(None, None, None), None);
        assert_eq!(decide(Some(&live), Some(&live), None), None, "equal versions are the same write");
        assert_eq!(decide(Some(&live), None, None), Some(Action::ToTarget(live.clone())));
        assert_eq!(decide(Some(&dead), Some(&live), None), Some(Action::ToTarget(dead.clone())));
        assert_eq!(decide(Some(&live), Some(&dead), None), Some(Action::ToShard(dead.clone())));
        assert_eq!(decide(None, Some(&live), None), Some(Action::ToShard(live.clone())));
        // Out of sync past the tombstone time to live: what the target holds from before
        // `untrusted_before` is cleared; what it took since (live writes reach stale replicas)
        // still wins.
        let before = hlc::unix_ms(newer.version);
        assert_eq!(decide(None, Some(&live), Some(before)), Some(Action::Clear("d".into(), None)));
        assert_eq!(decide(Some(&live), Some(&dead), Some(before)), Some(Action::Clear("d".into(), Some(live.clone()))));
        assert_eq!(decide(Some(&live), Some(&newer), Some(before)), Some(Action::ToShard(newer.clone())));
        assert_eq!(decide(None, Some(&entry(0, false)), Some(before)), Some(Action::Clear("d".into(), None)));
    }
}
