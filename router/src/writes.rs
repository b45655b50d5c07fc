//! The router's writes (Upsert and Delete, after their edge checks in service.rs): entering the
//! epoch under the move fence, stamping the version, and sending each document to its shard
//! (mid-move, deletes also where a document used to be). Each write runs in its own task: a
//! caller that goes away must not stop it between replicas, with some holding the write and
//! the ones that failed not yet marked stale (replicate.rs).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use proto::v1::{Document, EncodedDocument, Filter, Tensor, UpsertResponse};
use tracing::Instrument;

use crate::placement::group_by;
use crate::replicas::remaining;
use crate::replicate::Acks;
use crate::state::follow::View;
use crate::state::gate::{Entered, EpochGate};
use crate::state::hlc::Clock;
use crate::state::ClusterStore;
use crate::Error;

/// What writes need of the router, shared with their tasks.
pub(crate) struct Writer {
    pub gate: Arc<EpochGate<View>>,
    pub store: Arc<dyn ClusterStore>,
    /// The versions this router stamps on writes.
    pub clock: Clock,
    pub acks: Acks,
}

/// Runs `write` to its end in a task of its own, whatever becomes of the caller.
async fn detached<T: Send + 'static>(
    write: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    tokio::spawn(write.instrument(tracing::Span::current()))
        .await
        .map_err(|e| Error::Unavailable(format!("the write stopped: {e}")))?
}

impl Writer {
    /// Upserts encoded documents (see `write_documents`).
    pub(crate) async fn upsert(
        self: &Arc<Self>,
        docs: Vec<Document>,
        vectors: Vec<Tensor>,
        deadline: Instant,
    ) -> Result<UpsertResponse, Error> {
        let writer = self.clone();
        detached(async move { writer.write_documents(docs, vectors, deadline).await }).await
    }

    /// Deletes ids and what `filter` matches (see `delete_ids`).
    pub(crate) async fn delete(
        self: &Arc<Self>,
        ids: Vec<String>,
        filter: Option<Filter>,
        deadline: Instant,
    ) -> Result<u32, Error> {
        let writer = self.clone();
        detached(async move { writer.delete_ids(ids, filter, deadline).await }).await
    }

    /// Enters the current epoch for a write: waits while a move's batch is being copied (the
    /// fence), and refuses while this router is out of touch with the store (it may be missing
    /// a change that a write depends on).
    async fn enter_for_write(&self, deadline: Instant) -> Result<Entered<View>, Error> {
        loop {
            if !self.store.in_touch() {
                return Err(Error::Unavailable(format!(
                    "this router has lost touch with the cluster store {}; writes wait until it is back",
                    self.store.describe()
                )));
            }
            let entered = self.gate.enter();
            if !entered.view().state.fenced() {
                return Ok(entered);
            }
            let epoch = entered.epoch();
            drop(entered);
            tokio::time::timeout(remaining(deadline), self.gate.beyond(epoch))
                .await
                .map_err(|_| Error::Deadline("waiting for a move to copy a batch".into()))?;
        }
    }

    /// Writes encoded documents, each to every replica of its shard, at one new version.
    async fn write_documents(
        &self,
        docs: Vec<Document>,
        vectors: Vec<Tensor>,
        deadline: Instant,
    ) -> Result<UpsertResponse, Error> {
        let entered = self.enter_for_write(deadline).await?;
        let view = entered.view();
        let version = self.clock.now();
        let documents = docs.into_iter().zip(vectors).map(|(doc, v)| EncodedDocument {
            document: Some(doc),
            vectors: Some(v),
            version,
        });
        let (mut written, mut replaced) = (0, 0);
        // Mid-move, an older copy may still sit where a document used to be placed. It stays
        // there until the move reaches it: deleting it now could make a search that read the
        // new shard before this write, and the old one after the delete, miss the document.
        // The move's copy of it is older than this write, so the shard refuses it, and the move
        // deletes the old copy behind its barrier; meanwhile the merge prefers this one.
        let home = |d: &EncodedDocument| d.document.as_ref().map(|d| view.state.home(&d.id));
        for (s, documents) in group_by(documents, home) {
            let done = self.acks.upsert(view.replicas(s), documents, deadline).await?;
            written += done.written;
            replaced += done.replaced;
        }
        Ok(UpsertResponse { written, replaced })
    }

    /// Deletes `ids`, and with `filter` every document it matches, at one new version: ids where
    /// they are placed and, mid-move, where they used to be; the filter on every shard. Returns
    /// how many were there.
    async fn delete_ids(&self, ids: Vec<String>, filter: Option<Filter>, deadline: Instant) -> Result<u32, Error> {
        let entered = self.enter_for_write(deadline).await?;
        let view = entered.view();
        let version = self.clock.now();
        let mut groups = group_by(ids.iter().cloned(), |id| view.state.old_home(id));
        for (s, ids) in group_by(ids, |id| Some(view.state.home(id))) {
            groups.entry(s).or_default().extend(ids);
        }
        if filter.is_some() {
            for (s, _) in &view.shards {
                groups.entry(*s).or_default();
            }
        }
        let mut deleted = 0;
        for (s, ids) in groups {
            deleted += self.acks.delete(view.replicas(s), ids, version, filter.clone(), deadline).await?;
        }
        Ok(deleted)
    }
}
