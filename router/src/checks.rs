//! What the router checks at its edge before a request costs anything: the sizes and bounds of
//! searches, documents and id lists (`RouterConfig`), each refused with the limit it broke.

use proto::v1::{Document, SearchRequest};

use crate::{Error, RouterConfig};

impl RouterConfig {
    /// A search's query, k and parameters.
    pub(crate) fn check_search(&self, r: &SearchRequest) -> Result<(), Error> {
        let bad = |why: String| Err(Error::BadInput(why));
        let (k, max_k, max_bytes) = (r.k as usize, self.max_k, self.max_query_bytes);
        if r.query.trim().is_empty() {
            return bad("the query is empty".into());
        }
        if r.query.len() > max_bytes {
            return bad(format!("the query has {} bytes; the limit is {max_bytes}", r.query.len()));
        }
        if k == 0 || k > max_k {
            return bad(format!("k must be in 1..={max_k}, got {k}"));
        }
        if r.filter_ids.len() > self.max_filter_ids {
            return bad(format!("{} filter ids; the limit is {}", r.filter_ids.len(), self.max_filter_ids));
        }
        let params = r.params.unwrap_or_default();
        if params.nprobe as usize > self.max_nprobe {
            return bad(format!("nprobe {} is above the limit of {}", params.nprobe, self.max_nprobe));
        }
        if params.candidates as usize > self.max_candidates {
            return bad(format!("candidates {} is above the limit of {}", params.candidates, self.max_candidates));
        }
        Ok(())
    }

    /// An upsert's documents: how many, their ids, and metadata that is a JSON object (or
    /// nothing), each refusal naming the document.
    pub(crate) fn check_documents(&self, docs: &[Document]) -> Result<(), Error> {
        let limit = self.max_batch;
        if docs.is_empty() || docs.len() > limit {
            return Err(Error::BadInput(format!("an upsert carries 1 to {limit} documents, got {}", docs.len())));
        }
        for d in docs {
            if d.id.is_empty() || d.id.len() > 512 {
                return Err(Error::BadInput(format!("document ids are 1 to 512 bytes, got {:?}", d.id)));
            }
            if d.metadata.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(&d.metadata) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => return Err(Error::BadInput(format!("document {:?}: metadata must be a JSON object", d.id))),
                Err(e) => return Err(Error::BadInput(format!("document {:?}: metadata is not valid JSON: {e}", d.id))),
            }
        }
        Ok(())
    }
}
