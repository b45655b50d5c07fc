//! `jacolbert encode`: texts to ColBERT vectors in a safetensors file, with the tensor names
//! and dtypes of the reference files: `query_emb` [N, Lq, dim] f32, `query_ids` and
//! `query_mask` [N, Lq] i32, and per document i `doc_emb_i` [n_i, dim] f32 (kept tokens) and
//! `doc_ids_i` i32 (the full input ids).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use encoder_node::model::EncodeOptions;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::model_args::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Queries, one per line.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Documents, one per line.
    #[arg(long)]
    docs: Option<PathBuf>,
    /// A JSON object with "queries" and/or "docs" lists of strings.
    #[arg(long)]
    json_texts: Option<PathBuf>,
    /// Output safetensors file.
    #[arg(long)]
    out: PathBuf,
    /// colbert-ai's pre-2024-08 ". " placeholder instead of marker insertion.
    #[arg(long)]
    legacy_dot_prefix: bool,
    /// JaColBERTv2.5-style dynamic query length (queries shorter than the longest are padded
    /// with [PAD], mask 0 and zero vectors in `query_emb`).
    #[arg(long)]
    dynamic_query_length: bool,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

fn lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

fn json_list(value: &serde_json::Value, key: &str) -> anyhow::Result<Vec<String>> {
    match value.get(key) {
        None => Ok(Vec::new()),
        Some(list) => list
            .as_array()
            .with_context(|| format!("\"{key}\" is not a list"))?
            .iter()
            .map(|v| v.as_str().map(str::to_owned).with_context(|| format!("\"{key}\" holds a non-string")))
            .collect(),
    }
}

fn le_bytes<T: Copy>(values: &[T], to: impl Fn(T) -> [u8; 4]) -> Vec<u8> {
    values.iter().flat_map(|&v| to(v)).collect()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (mut queries, mut docs) = (Vec::new(), Vec::new());
    if let Some(path) = &args.json_texts {
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)?;
        queries = json_list(&value, "queries")?;
        docs = json_list(&value, "docs")?;
    }
    if let Some(path) = &args.queries {
        queries.extend(lines(path)?);
    }
    if let Some(path) = &args.docs {
        docs.extend(lines(path)?);
    }
    if queries.is_empty() && docs.is_empty() {
        bail!("nothing to encode: give --queries, --docs or --json-texts");
    }
    let options = EncodeOptions {
        legacy_dot_prefix: args.legacy_dot_prefix,
        dynamic_query_length: args.dynamic_query_length,
        batch_size: args.batch_size,
        ..EncodeOptions::default()
    };
    let model = args.model.load(options)?;
    let dim = model.dim();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    if !queries.is_empty() {
        let encoded = model.encode_queries(&queries.iter().map(String::as_str).collect::<Vec<_>>())?;
        let lq = encoded.iter().map(|q| q.ids.len()).max().unwrap_or(0);
        let (mut emb, mut ids, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for q in &encoded {
            emb.extend(q.vectors.iter().copied().chain(std::iter::repeat(0.0)).take(lq * dim));
            ids.extend(q.ids.iter().map(|&i| i as i32).chain(std::iter::repeat(0)).take(lq));
            mask.extend(q.mask.iter().map(|&m| m as i32).chain(std::iter::repeat(0)).take(lq));
        }
        let n = encoded.len();
        tensors.push(("query_emb".into(), Dtype::F32, vec![n, lq, dim], le_bytes(&emb, f32::to_le_bytes)));
        tensors.push(("query_ids".into(), Dtype::I32, vec![n, lq], le_bytes(&ids, i32::to_le_bytes)));
        tensors.push(("query_mask".into(), Dtype::I32, vec![n, lq], le_bytes(&mask, i32::to_le_bytes)));
    }
    if !docs.is_empty() {
        let encoded = model.encode_documents(&docs.iter().map(String::as_str).collect::<Vec<_>>())?;
        for (i, d) in encoded.iter().enumerate() {
            tensors.push((
                format!("doc_emb_{i}"),
                Dtype::F32,
                vec![d.kept_ids.len(), dim],
                le_bytes(&d.vectors, f32::to_le_bytes),
            ));
            let ids: Vec<i32> = d.ids.iter().map(|&v| v as i32).collect();
            tensors.push((format!("doc_ids_{i}"), Dtype::I32, vec![ids.len()], le_bytes(&ids, i32::to_le_bytes)));
        }
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| Ok((name.clone(), TensorView::new(*dtype, shape.clone(), data)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!(queries = queries.len(), docs = docs.len(), out = %args.out.display(), "encoded");
    Ok(())
}
