//! What a shard checks before it writes or searches: that it may write at all (not salvaged,
//! enough free space), each document's id and vectors, the kinds of its metadata fields, and a
//! query's shape and k.

use std::collections::HashMap;

use super::{NewDocument, Shard};
use crate::fields::metadata::{Kind, Scalar};
use crate::index::MAX_K;
use crate::{Error, Result};

impl Shard {
    /// Refuses a write when the store is salvaged or its disk is nearly full.
    pub(super) fn check_writable(&self) -> Result<()> {
        if self.salvaged.is_some() {
            return Err(Error::ReadOnly(format!(
                "the store at {} was salvaged: it serves what is intact and takes no writes",
                self.store.path()
            )));
        }
        let floor = self.config.min_free_bytes;
        match self.store.free_bytes() {
            Some(free) if free < floor => Err(Error::DiskFull { path: self.store.path().into(), free, floor }),
            _ => Ok(()),
        }
    }

    pub(super) fn check_document(&self, d: &NewDocument) -> Result<()> {
        let dim = self.config.dim;
        let n = d.vectors.len() / dim;
        if d.doc.id.is_empty() || d.doc.id.len() > 512 {
            return Err(Error::BadInput(format!("a document id must be 1 to 512 bytes, got {}", d.doc.id.len())));
        }
        if d.vectors.is_empty() || !d.vectors.len().is_multiple_of(dim) || n > self.config.max_doc_tokens {
            return Err(Error::BadInput(format!(
                "document {:?}: {} values are not 1 to {} vectors of dim {dim}",
                d.doc.id,
                d.vectors.len(),
                self.config.max_doc_tokens
            )));
        }
        if d.vectors.iter().any(|x| !x.is_finite()) {
            return Err(Error::BadInput(format!("document {:?} has a NaN or infinite value", d.doc.id)));
        }
        Ok(())
    }

    /// Each document's metadata fields, checked against the kinds this shard has learned and
    /// against the batch's others; a clash names the document and the field.
    pub(super) fn check_metadata(&self, docs: &[NewDocument]) -> Result<Vec<Vec<(String, Scalar)>>> {
        let mut kinds: HashMap<String, Kind> = HashMap::new();
        let mut parsed = Vec::with_capacity(docs.len());
        let known = self.fields();
        for d in docs {
            let bad = |why: String| Error::BadInput(format!("document {:?}: {why}", d.doc.id));
            let fields = known.check(&d.doc.metadata).map_err(bad)?;
            for (path, scalar) in &fields {
                match kinds.insert(path.clone(), scalar.kind()) {
                    Some(k) if k != scalar.kind() => {
                        let why = format!("field {path:?} is {} in another document of the batch", k.name());
                        return Err(bad(why));
                    }
                    _ => {}
                }
            }
            parsed.push(fields);
        }
        Ok(parsed)
    }

    pub(super) fn check_search(&self, query: &[f32], k: usize) -> Result<()> {
        if k == 0 || k > MAX_K {
            return Err(Error::BadInput(format!("k must be in 1..={MAX_K}, not {k}")));
        }
        let dim = self.config.dim;
        if query.is_empty() || !query.len().is_multiple_of(dim) || query.len() / dim > 1024 {
            return Err(Error::BadInput(format!(
                "a query is 1 to 1024 vectors of dim {dim}: got {} values",
                query.len()
            )));
        }
        Ok(())
    }
}
