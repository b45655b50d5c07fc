//! The shard's index of its documents' metadata fields, in memory and rebuilt at start-up from
//! the stored documents (never from vectors). Field kinds are learned, not declared: the first
//! document with a field gives its kind, and a document whose field has another kind is refused
//! at upsert, naming the field. Per field: its postings (value → documents), the documents that
//! have it, and, for keyword fields, the values that are RFC 3339 timestamps. A filter
//! (`filter.rs`) is evaluated over these into the set of internal ids it allows.

mod filter;
pub mod metadata;
pub mod time;

use std::collections::{BTreeMap, HashMap, HashSet};

use metadata::{Kind, Scalar};

pub use filter::{Context, MAX_CONDITIONS};

#[derive(Default)]
struct Field {
    kind: Option<Kind>,
    postings: BTreeMap<Scalar, HashSet<u32>>,
    /// Keyword values that are timestamps, by Unix milliseconds.
    times: BTreeMap<i64, HashSet<u32>>,
    present: HashSet<u32>,
}

#[derive(Default)]
pub struct FieldIndex {
    fields: HashMap<String, Field>,
    /// Each document's fields, to take them out again.
    by_doc: HashMap<u32, Vec<(String, Scalar)>>,
}

impl FieldIndex {
    /// Checks `metadata` against the kinds learned so far (and parses it).
    pub fn check(&self, metadata: &str) -> Result<Vec<(String, Scalar)>, String> {
        let fields = metadata::fields(metadata)?;
        for (path, scalar) in &fields {
            if let Some(kind) = self.fields.get(path).and_then(|f| f.kind) {
                if kind != scalar.kind() {
                    return Err(format!(
                        "field {path:?} is {} here (as the shard's documents have it), not {}",
                        kind.name(),
                        scalar.kind().name()
                    ));
                }
            }
        }
        Ok(fields)
    }

    /// Adds document `id` with its (checked) fields.
    pub fn add(&mut self, id: u32, fields: Vec<(String, Scalar)>) {
        for (path, scalar) in &fields {
            let field = self.fields.entry(path.clone()).or_default();
            field.kind.get_or_insert(scalar.kind());
            if let Scalar::Keyword(text) = scalar {
                if let Some(ms) = time::unix_ms(text) {
                    field.times.entry(ms).or_default().insert(id);
                }
            }
            field.postings.entry(scalar.clone()).or_default().insert(id);
            field.present.insert(id);
        }
        if !fields.is_empty() {
            self.by_doc.insert(id, fields);
        }
    }

    /// Takes document `id` out. A field no document has any more forgets its kind.
    pub fn remove(&mut self, id: u32) {
        for (path, scalar) in self.by_doc.remove(&id).unwrap_or_default() {
            let Some(field) = self.fields.get_mut(&path) else { continue };
            let drop_empty = |set: &mut HashSet<u32>| {
                set.remove(&id);
                !set.is_empty()
            };
            if let Some(set) = field.postings.get_mut(&scalar) {
                if !drop_empty(set) {
                    field.postings.remove(&scalar);
                }
            }
            if let Scalar::Keyword(text) = &scalar {
                if let Some(ms) = time::unix_ms(text) {
                    if field.times.get_mut(&ms).is_some_and(|set| !drop_empty(set)) {
                        field.times.remove(&ms);
                    }
                }
            }
            field.present.remove(&id);
            if field.present.is_empty() {
                self.fields.remove(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests;
