//! Writes: upserts and deletes, one at a time under the writer lock, each publishing a new
//! view. They run on the caller's thread (sled is only used from threads that go on using it:
//! what it defers to a thread, its frees, would otherwise keep the database open after the
//! shard is dropped); their encoding and run copying go to the pool below the searches' CPU
//! priority (`in_background`).

use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

use super::{locked, NewDocument, Shard, State};
use crate::store::{Document, Tokens, Written};
use crate::Result;

impl Shard {
    /// Writes documents (replacing any with the same id, unless the shard holds a write of the
    /// id as new or newer); returns the writes that applied, once they are durable.
    pub fn upsert(&self, docs: Vec<NewDocument>) -> Result<Vec<Written>> {
        let _writer = locked(&self.writer);
        self.check_writable()?;
        docs.iter().try_for_each(|d| self.check_document(d))?;
        let parsed = self.check_metadata(&docs)?;
        let versions: Vec<u64> = docs.iter().map(|d| d.version).collect();
        let view = self.view();
        let batch: Vec<(Document, Tokens)> = match &*view {
            State::Buffering(_) => docs.into_iter().map(|d| (d.doc, Tokens::Raw(d.vectors))).collect(),
            State::Ready { index, generation } => {
                let given: Vec<_> = docs.iter().map(|d| std::borrow::Cow::Borrowed(d.vectors.as_slice())).collect();
                let tokens = self.encode(index.codec(), *generation, &given, &vec![None; docs.len()])?;
                docs.into_iter().map(|d| d.doc).zip(tokens).collect()
            }
        };
        let given = self.ids().take(batch.len(), |id| match &*view {
            State::Ready { index, .. } => index.is_vacant(id),
            // Before training only ids no document had at start-up are reused.
            State::Buffering(_) => true,
        })?;
        // The store's write holds a lock every sled read waits for (store/mod.rs): best begun
        // between searches.
        crate::give_way::step();
        let written = match self.store.upsert_versioned(&batch, &versions, &given, |moves| view.record_moves(moves)) {
            Ok(written) => written,
            Err(e) => {
                // A write that failed after its transaction (a flush) holds its ids still.
                let held = |id: &u32| !matches!(self.store.external_id(*id), Ok(None));
                self.ids().give_back(given.into_iter().filter(|id| !held(id)).collect());
                return Err(e);
            }
        };
        let used: HashSet<u32> = written.iter().flatten().map(|w| w.id).collect();
        self.ids().give_back(given.into_iter().filter(|id| !used.contains(id)).collect());
        let applied: Vec<(Written, Tokens, _)> = written
            .into_iter()
            .zip(batch)
            .zip(parsed)
            .filter_map(|((w, (_, tokens)), fields)| Some((w?, tokens, fields)))
            .collect();
        let written: Vec<Written> = applied.iter().map(|(w, _, _)| *w).collect();
        let mut next = State::clone(&view);
        drop(view);
        // The runs changed are copied (copy-on-write): CPU work a search should not wait for.
        let added = self.in_background(|| -> Result<Vec<_>> {
            let mut added = Vec::with_capacity(applied.len());
            for (w, tokens, fields) in applied {
                forget(&mut next, w.replaced);
                match (&mut next, tokens) {
                    (State::Buffering(raw), Tokens::Raw(v)) => raw.push((w.id, Arc::new(v))),
                    (State::Ready { index, .. }, Tokens::Encoded { codes, residuals, .. }) => {
                        index.add(w.id, &codes, &residuals)?
                    }
                    _ => unreachable!("tokens were made for this state above"),
                }
                added.push((w, fields));
            }
            Ok(added)
        })?;
        {
            let mut index = self.fields.write().unwrap_or_else(PoisonError::into_inner);
            for (w, fields) in added {
                w.replaced.into_iter().for_each(|old| index.remove(old));
                index.add(w.id, fields);
            }
            self.publish(next);
        }
        self.train_if_due()?;
        Ok(written)
    }

    /// Deletes documents by id at `version` (0: unversioned); returns how many existed.
    pub fn delete(&self, ids: &[String], version: u64) -> Result<usize> {
        let _writer = locked(&self.writer);
        self.check_writable()?;
        let view = self.view();
        let removed = self.store.delete_versioned(ids, version, |moves| view.record_moves(moves))?;
        let mut next = State::clone(&view);
        drop(view);
        removed.iter().for_each(|&id| forget(&mut next, Some(id)));
        let mut fields = self.fields.write().unwrap_or_else(PoisonError::into_inner);
        removed.iter().for_each(|&id| fields.remove(id));
        self.publish(next);
        Ok(removed.len())
    }
}

/// Takes document `id` (replaced or deleted) out of a state being made.
fn forget(state: &mut State, id: Option<u32>) {
    let Some(id) = id else { return };
    match state {
        State::Buffering(raw) => raw.retain(|(i, _)| *i != id),
        State::Ready { index, .. } => {
            index.delete(id);
        }
    }
}
