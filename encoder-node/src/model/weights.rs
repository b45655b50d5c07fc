//! Tensors of a checkpoint: `model.safetensors` (colbert-ai "HF_ColBERT": `bert.*` and
//! `linear.weight`; PyLate: a bare BertModel, with `linear.weight` in `1_Dense/`). Names are
//! looked up with or without the `bert.` prefix; the pooler and `position_ids` are ignored.
//!
//! The file is memory-mapped; each tensor is copied into f32 (f16 and bf16 widened) when it is
//! taken, and its pages are then released, so loading never holds the file and the model in
//! memory at once.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::tokenizer::map_file;

/// One file's tensors, by name without the `bert.` prefix.
pub struct Weights {
    path: PathBuf,
    map: Mmap,
    tensors: HashMap<String, (Vec<usize>, Dtype, Range<usize>)>,
}

impl Weights {
    pub fn load(path: &Path) -> Result<Weights> {
        let map = map_file(path)?;
        let file =
            SafeTensors::deserialize(&map).map_err(|e| Error::model(path, format!("not a safetensors file: {e}")))?;
        let base = map.as_ptr() as usize;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            if name.ends_with("position_ids") || name.contains("pooler.") {
                continue;
            }
            if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Err(Error::model(
                    path,
                    format!("tensor {name} has dtype {:?}; only F32, F16 and BF16 are read", view.dtype()),
                ));
            }
            let start = view.data().as_ptr() as usize - base;
            let key = name.strip_prefix("bert.").unwrap_or(&name).to_owned();
            tensors.insert(key, (view.shape().to_vec(), view.dtype(), start..start + view.data().len()));
        }
        Ok(Weights { path: path.to_path_buf(), map, tensors })
    }

    /// Takes tensor `name` (without `bert.`), which must have exactly `shape`, as f32.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (found, dtype, bytes) = self.tensors.remove(name).ok_or_else(|| {
            Error::model(&self.path, format!("tensor {name} (or bert.{name}) is missing; expected shape {shape:?}"))
        })?;
        if found != shape {
            return Err(Error::model(&self.path, format!("tensor {name} has shape {found:?}, expected {shape:?}")));
        }
        let data = &self.map[bytes.clone()];
        let values: Vec<f32> = match dtype {
            Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            _ => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        };
        self.release(bytes);
        Ok(values)
    }

    /// Drops the resident pages wholly inside `bytes` (they are read again only if touched).
    fn release(&self, bytes: Range<usize>) {
        const PAGE: usize = 4096;
        let (start, end) = (bytes.start.div_ceil(PAGE) * PAGE, bytes.end / PAGE * PAGE);
        if end > start {
            // SAFETY: a read-only private file mapping: MADV_DONTNEED only discards pages that
            // the kernel re-reads from the file on the next access; no data is lost.
            let _ = unsafe { self.map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start) };
        }
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(s, _, _)| s.as_slice())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
