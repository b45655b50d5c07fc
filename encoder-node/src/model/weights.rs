//! Tensors of a checkpoint: `model.safetensors` (colbert-ai "HF_ColBERT": `bert.*` and
//! `linear.weight`; PyLate: a bare BertModel, with `linear.weight` in `1_Dense/`). Names are
//! looked up with or without the `bert.` prefix; the pooler and `position_ids` are ignored.
//! The file is memory-mapped and each tensor copied once into f32 (f16 and bf16 are widened).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::tokenizer::map_file;

/// One file's tensors, by name without the `bert.` prefix.
pub struct Weights {
    path: PathBuf,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights {
    pub fn load(path: &Path) -> Result<Weights> {
        let bytes = map_file(path)?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| Error::model(path, format!("not a safetensors file: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            if name.ends_with("position_ids") || name.contains("pooler.") {
                continue;
            }
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                other => return Err(Error::model(path, format!("tensor {name} has dtype {other:?}; only F32, F16 and BF16 are read"))),
            };
            let key = name.strip_prefix("bert.").unwrap_or(&name).to_owned();
            tensors.insert(key, (view.shape().to_vec(), values));
        }
        Ok(Weights { path: path.to_path_buf(), tensors })
    }

    /// Takes tensor `name` (without `bert.`), which must have exactly `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.tensors.remove(name) {
            None => Err(Error::model(&self.path, format!("tensor {name} (or bert.{name}) is missing; expected shape {shape:?}"))),
            Some((found, _)) if found != shape => Err(Error::model(
                &self.path,
                format!("tensor {name} has shape {found:?}, expected {shape:?}"),
            )),
            Some((_, values)) => Ok(values),
        }
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(s, _)| s.as_slice())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
