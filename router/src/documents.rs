//! Get: documents by id, from an in-sync replica of each one's shard (mid-move, where it used to
//! be when its new shard does not have it yet). One id answers NOT_FOUND when it does not exist;
//! a list answers with those that exist and the ids that do not.

use std::sync::atomic::Ordering;
use std::time::Instant;

use proto::v1::{Document, GetRequest, GetResponse};
use tonic::{Code, Status};

use crate::placement::group_by;
use crate::replicas::{read_replicas, Replicas};
use crate::service::Router;
use crate::Error;

impl Router {
    pub(crate) async fn get_documents(&self, r: GetRequest, deadline: Instant) -> Result<GetResponse, Status> {
        let GetRequest { id, mut ids } = r;
        if ids.len() > self.config.max_batch {
            return Err(Error::BadInput(format!(
                "a get names at most {} ids, got {}",
                self.config.max_batch,
                ids.len()
            ))
            .into());
        }
        if ids.is_empty() {
            let document = self.lookup(vec![id.clone()], deadline).await?.0.pop().ok_or_else(|| not_found(&id))?;
            return Ok(GetResponse { document: Some(document), ..Default::default() });
        }
        if !id.is_empty() {
            ids.insert(0, id);
        }
        let (documents, missing) = self.lookup(ids, deadline).await?;
        Ok(GetResponse { document: None, documents, missing })
    }

    /// The documents of `ids` that exist, in that order, and the ids that do not: each from its
    /// shard, and mid-move from where it used to be when its new shard lacks it.
    async fn lookup(&self, ids: Vec<String>, deadline: Instant) -> Result<(Vec<Document>, Vec<String>), Status> {
        let entered = self.gate.enter();
        let view = entered.view();
        let mut found: Vec<Document> = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        for (s, ids) in group_by(ids.iter().cloned(), |id| Some(view.state.home(id))) {
            let (docs, absent) = self.get_from(view.replicas(s), ids, deadline).await?;
            found.extend(docs);
            missing.extend(absent);
        }
        // Mid-move, what the new shards lack may still be where it was.
        let old = group_by(std::mem::take(&mut missing), |id| view.state.old_home(id).or(Some(u64::MAX)));
        for (s, ids) in old {
            match s {
                u64::MAX => missing.extend(ids),
                s => {
                    let (docs, absent) = self.get_from(view.replicas(s), ids, deadline).await?;
                    found.extend(docs);
                    missing.extend(absent);
                }
            }
        }
        // In request order.
        let order = |i: &str| ids.iter().position(|x| x == i).unwrap_or(usize::MAX);
        found.sort_by_key(|d| order(&d.id));
        missing.sort_by_key(|i| order(i));
        Ok((found, missing))
    }

    /// The documents of `ids` an in-sync replica of `replicas` holds, and the ids it does not.
    async fn get_from(
        &self,
        replicas: &Replicas,
        ids: Vec<String>,
        deadline: Instant,
    ) -> Result<(Vec<Document>, Vec<String>), Status> {
        let first = replicas.next.fetch_add(1, Ordering::Relaxed);
        let read = read_replicas(replicas, first, deadline, &self.counters, |mut c, r| {
            let request = replicas.request(r, GetRequest { id: String::new(), ids: ids.clone() });
            async move { c.get(request).await }
        });
        match read.await {
            Ok(response) => Ok((response.documents, response.missing)),
            Err((_, Some(status))) if status.code() == Code::NotFound => Ok((Vec::new(), ids)),
            Err((_, Some(status))) => Err(status),
            Err((_, None)) => Err(Error::Deadline(format!("reading {} documents", ids.len())).into()),
        }
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("unknown document id {id:?}"))
}
