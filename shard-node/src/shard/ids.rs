//! Internal ids, reused. An internal id names a document in the search layout, the field index
//! and the store. Once a compaction drops a deleted document's entries from the runs its id is
//! vacant, and it goes to a new document as soon as no search can still be reading a view in
//! which it named the old one. So a shard's ids stay about as many as the documents it holds
//! (with those deleted since the last compaction), however many writes it takes in its life;
//! the table of documents and each search's score array stay that size too.
//!
//! When is "no search can still read it"? Views published between two compactions share an
//! epoch, which each view holds, and each epoch holds the next one: epoch k lives while any
//! view of epoch k or older does. A compaction starts a new epoch and parks the ids it freed
//! with the old one; they are free once it is gone.
//!
//! Epochs also say where documents went: a write records in the current epoch which documents
//! it replaced (by which ids) or deleted, so a search whose view names a document the store
//! no longer has follows it to its newer version instead of starting over (`View::moved`).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::{locked, State};
use crate::{Error, Result};

/// See the module docs.
#[derive(Default)]
pub(super) struct Epoch {
    next: OnceLock<Arc<Epoch>>,
    /// Documents replaced (by the id given) or deleted (`None`) while this epoch was current.
    moved: Mutex<HashMap<u32, Option<u32>>>,
}

/// A published search layout and the epoch it belongs to; it stays as it is however long it is
/// held, and holding it keeps its documents' ids from going to others.
#[derive(Clone)]
pub(super) struct View {
    state: Arc<State>,
    epoch: Arc<Epoch>,
}

impl Deref for View {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl View {
    pub(super) fn new(state: State) -> View {
        View { state: Arc::new(state), epoch: Arc::default() }
    }

    /// The next view, in this one's epoch.
    pub(super) fn then(&self, state: State) -> View {
        View { state: Arc::new(state), epoch: self.epoch.clone() }
    }

    /// Where document `id` went since this view was published: replaced by another id
    /// (`Some(Some(new))`), deleted (`Some(None)`), or not known to have moved (`None`: a write
    /// between its commit and its record).
    pub(super) fn moved(&self, id: u32) -> Option<Option<u32>> {
        let mut epoch = Some(&self.epoch);
        while let Some(e) = epoch {
            if let Some(&to) = locked(&e.moved).get(&id) {
                return Some(to);
            }
            epoch = e.next.get();
        }
        None
    }

    /// Records in this view's epoch (the current one: under the writer lock) where documents
    /// went.
    pub(super) fn record_moves(&self, moves: &[(u32, Option<u32>)]) {
        if !moves.is_empty() {
            locked(&self.epoch.moved).extend(moves.iter().copied());
        }
    }

    /// The next view, in a new epoch; and this epoch, gone once no view of it or older is held.
    pub(super) fn then_anew(&self, state: State) -> (View, Weak<Epoch>) {
        let next = Arc::new(Epoch::default());
        // Only the current view's epoch gets a successor, and it is current only until now.
        let _ = self.epoch.next.set(next.clone());
        (View { state: Arc::new(state), epoch: next }, Arc::downgrade(&self.epoch))
    }
}

/// The ids new documents get (changed under the shard's writer lock).
pub(super) struct Ids {
    /// Vacant ids, the smallest last (taken first, to keep the tables small).
    free: Vec<u32>,
    /// Ids a compaction freed, with the epoch before it.
    parked: Vec<(Weak<Epoch>, Vec<u32>)>,
    /// No id at or past this has been given out.
    next: u32,
}

impl Ids {
    /// `unused`: the ids below `next` no document has (`Store::unused_ids`), free at start-up,
    /// when no view is held.
    pub(super) fn new(unused: Vec<u32>, next: u32) -> Ids {
        let mut ids = Ids { free: Vec::new(), parked: Vec::new(), next };
        ids.give_back(unused);
        ids
    }

    /// `n` ids for new documents, each vacant in the layout now (`vacant`): a parked or free
    /// id that is not (a retraining's switch can bring back entries of one) is dropped; a
    /// later compaction frees it again.
    pub(super) fn take(&mut self, n: usize, vacant: impl Fn(u32) -> bool) -> Result<Vec<u32>> {
        let (released, parked): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.parked).into_iter().partition(|(epoch, _)| epoch.strong_count() == 0);
        self.parked = parked;
        if !released.is_empty() {
            self.give_back(released.into_iter().flat_map(|(_, ids)| ids).collect());
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.free.pop() {
                Some(id) if vacant(id) => out.push(id),
                Some(_) => {}
                None if self.next == u32::MAX => {
                    self.give_back(out);
                    return Err(Error::BadInput(format!(
                        "the shard has run out of internal ids: it holds {} documents, deleted ones awaiting \
                         compaction included; spread the collection over more shards",
                        u32::MAX
                    )));
                }
                None => {
                    out.push(self.next);
                    self.next += 1;
                }
            }
        }
        Ok(out)
    }

    /// Makes vacant ids free: taken but not used (their writes did not apply), released from
    /// parking, or found unused at start-up.
    pub(super) fn give_back(&mut self, ids: Vec<u32>) {
        self.free.extend(ids);
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Ids a compaction freed: free once `before` (the epoch it ended) is gone.
    pub(super) fn park(&mut self, before: Weak<Epoch>, ids: Vec<u32>) {
        if !ids.is_empty() {
            self.parked.push((before, ids));
        }
    }

    /// A new layout replaced the one the free and parked ids were vacant in (a retraining's
    /// switch): `vacant`, the ids vacant in the new one, replace them all, free once `before`
    /// is gone.
    pub(super) fn reset(&mut self, before: Weak<Epoch>, vacant: Vec<u32>) {
        self.free.clear();
        self.parked.clear();
        self.park(before, vacant);
    }

    /// No id at or past this has been given out.
    pub(super) fn limit(&self) -> u32 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View::new(State::Buffering(Vec::new()))
    }

    #[test]
    fn fresh_ids_follow_the_free_ones_smallest_first() {
        let mut ids = Ids::new(vec![7, 2, 5], 9);
        assert_eq!(ids.take(5, |_| true).unwrap(), [2, 5, 7, 9, 10]);
        ids.give_back(vec![10, 5]);
        assert_eq!(ids.take(1, |_| true).unwrap(), [5]);
        assert_eq!(ids.take(2, |id| id != 10).unwrap(), [11, 12], "an id no longer vacant is dropped");
    }

    #[test]
    fn freed_ids_wait_until_no_view_of_their_epoch_or_older_is_held() {
        let mut ids = Ids::new(Vec::new(), 100);
        let oldest = view();
        let older = oldest.then(State::Buffering(Vec::new()));
        let (current, before) = older.then_anew(State::Buffering(Vec::new()));
        ids.park(before, vec![3, 4]);
        let (latest, before) = current.then_anew(State::Buffering(Vec::new()));
        ids.park(before, vec![8]);
        drop(current);
        assert_eq!(ids.take(1, |_| true).unwrap(), [100], "views of the first epoch are held");
        drop(older);
        assert_eq!(ids.take(1, |_| true).unwrap(), [101], "one is still held");
        drop(oldest);
        assert_eq!(ids.take(4, |_| true).unwrap(), [3, 4, 8, 102], "the second epoch went with the first");
        drop(latest);
    }

    #[test]
    fn moves_are_followed_into_later_epochs() {
        let first = view();
        first.record_moves(&[(1, Some(5))]);
        let (second, _) = first.then_anew(State::Buffering(Vec::new()));
        second.record_moves(&[(5, Some(9)), (2, None)]);
        assert_eq!(first.moved(1), Some(Some(5)));
        assert_eq!(first.moved(5), Some(Some(9)), "recorded after the view, in the next epoch");
        assert_eq!(first.moved(2), Some(None));
        assert_eq!(second.moved(1), None, "moved before the view: it never named 1");
        assert_eq!(first.moved(3), None);
    }

    #[test]
    fn a_reset_forgets_what_was_free() {
        let mut ids = Ids::new(vec![1, 2], 10);
        let held = view();
        let (_current, before) = held.then_anew(State::Buffering(Vec::new()));
        ids.reset(before, vec![2, 6]);
        assert_eq!(ids.take(1, |_| true).unwrap(), [10]);
        drop(held);
        assert_eq!(ids.take(3, |_| true).unwrap(), [2, 6, 11]);
        assert_eq!(ids.limit(), 12);
    }

    #[test]
    fn the_last_id_is_refused_with_a_remedy() {
        let mut ids = Ids::new(vec![4], u32::MAX - 1);
        let err = ids.take(3, |_| true).unwrap_err().to_string();
        assert!(err.contains("run out of internal ids") && err.contains("more shards"), "{err}");
        assert_eq!(ids.take(2, |_| true).unwrap(), [4, u32::MAX - 1], "a refused take gives back what it held");
    }
}
