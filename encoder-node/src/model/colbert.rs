//! The ColBERT encoder: inputs built exactly as colbert-ai / PyLate build them
//! (docs/JACOLBERT_ENCODING.md §2), BERT, the linear projection, per-token L2 normalisation.

use std::ops::Range;
use std::path::{Path, PathBuf};

use kernels::cuda::Backend;

use super::bert::Batch;
use super::config::{BertConfig, ColbertSettings};
use super::encoder::Encoder;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// `[CLS] marker w… [SEP]` within `max_len` ids: the marker inserted after [CLS] (current
/// colbert-ai and PyLate), or with `legacy_dot_prefix` ". " + text tokenised and its "."
/// overwritten by the marker (colbert-ai before 2024-08). Truncation keeps [SEP].
pub fn marked_ids(tokenizer: &Tokenizer, text: &str, marker: u32, max_len: usize, legacy_dot_prefix: bool) -> Vec<u32> {
    marked(|t, n| tokenizer.encode_truncated(t, n), text, marker, max_len, legacy_dot_prefix)
}

/// `marked_ids` with each id's characters in `text` (`Tokenizer::encode_spans`; none for
/// [CLS], the marker and [SEP]).
pub fn marked_spans(
    tokenizer: &Tokenizer,
    text: &str,
    marker: u32,
    max_len: usize,
    legacy_dot_prefix: bool,
) -> Vec<(u32, Option<Range<usize>>)> {
    let mut tokens = marked(|t, n| tokenizer.encode_spans(t, n), text, (marker, None), max_len, legacy_dot_prefix);
    // With the legacy prefix the spans count the ". " in front of the text.
    let shift = if legacy_dot_prefix { 2 } else { 0 };
    for (_, span) in &mut tokens {
        *span = span.take().and_then(|r| (r.start >= shift).then(|| r.start - shift..r.end - shift));
    }
    tokens
}

fn marked<T>(encode: impl Fn(&str, usize) -> Vec<T>, text: &str, marker: T, max_len: usize, legacy: bool) -> Vec<T> {
    if legacy {
        let mut ids = encode(&format!(". {text}"), max_len);
        if ids.len() > 2 {
            ids[1] = marker;
        } else {
            ids.insert(1, marker);
        }
        ids
    } else {
        let mut ids = encode(text, max_len.saturating_sub(1));
        ids.insert(1, marker);
        ids
    }
}

/// A token of an encoded text with where it came from: the characters of the text
/// (`[start, end)` in Unicode scalar values; none for [CLS], markers, [SEP] and padding), and
/// for a query whether it is a [MASK] it was padded with (query expansion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSource {
    pub id: u32,
    pub span: Option<Range<usize>>,
    pub expansion: bool,
}

/// Python's `string.punctuation`: document tokens equal to one of these are dropped.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Choices that are not in the checkpoint.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// colbert-ai before 2024-08: tokenise ". " + text and overwrite the "." with the marker
    /// (how every JaColBERT up to v2.5 was trained); default is the current marker insertion.
    pub legacy_dot_prefix: bool,
    /// JaColBERTv2.5-style query length: `L + 8` if `L % 32 <= 8`, else L rounded up to 32.
    pub dynamic_query_length: bool,
    /// Texts per forward pass (grouped by length to cut padding).
    pub batch_size: usize,
    /// Where the forward pass runs.
    pub backend: Backend,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { legacy_dot_prefix: false, dynamic_query_length: false, batch_size: 32, backend: Backend::Cpu }
    }
}

/// One query: every position is kept, [MASK] expansion included.
#[derive(Debug, Clone)]
pub struct QueryEmbedding {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
    /// `[ids.len(), dim]`, rows of unit length.
    pub vectors: Vec<f32>,
}

/// One document: `ids` is the full input; `vectors` only the kept (non-punctuation) tokens.
#[derive(Debug, Clone)]
pub struct DocEmbedding {
    pub ids: Vec<u32>,
    pub kept_ids: Vec<u32>,
    pub vectors: Vec<f32>,
}

pub struct ColbertModel {
    dir: PathBuf,
    tokenizer: Tokenizer,
    encoder: Encoder,
    settings: ColbertSettings,
    options: EncodeOptions,
    query_marker: u32,
    doc_marker: u32,
    /// `skip[id]`: dropped from documents.
    skip: Vec<bool>,
}

impl ColbertModel {
    /// Loads a checkpoint directory (colbert-ai or PyLate layout) and its tokenizer.
    pub fn load(dir: &Path, mecab_dic: Option<&Path>, options: EncodeOptions) -> Result<ColbertModel> {
        let config = BertConfig::load(dir)?;
        let mut settings = ColbertSettings::load(dir)?;
        // Settings the checkpoint cannot serve are refused before its weights are read.
        let max_len = config.max_position_embeddings;
        if settings.query_maxlen > max_len || settings.doc_maxlen > max_len {
            return Err(Error::model(dir, format!("query_maxlen/doc_maxlen exceed max_position_embeddings {max_len}")));
        }
        let encoder = Encoder::load(dir, &options.backend)?;
        let dim = encoder.dim();
        if dim != settings.dim {
            tracing::warn!(
                metadata_dim = settings.dim,
                weight_dim = dim,
                "dim in the metadata differs from linear.weight; using the weight"
            );
            settings.dim = dim;
        }
        let tokenizer = Tokenizer::load(dir, mecab_dic)?;
        let vocab = tokenizer.vocab();
        if vocab.len() > config.vocab_size {
            return Err(Error::model(
                dir,
                format!("vocab.txt has {} tokens but the embeddings only {}", vocab.len(), config.vocab_size),
            ));
        }
        let marker = |token: &str| {
            vocab.id(token).ok_or_else(|| Error::model(dir, format!("marker {token:?} is not in vocab.txt")))
        };
        let (query_marker, doc_marker) = (marker(&settings.query_marker)?, marker(&settings.doc_marker)?);
        let mut skip = vec![false; vocab.len()];
        if settings.mask_punctuation {
            for c in PUNCTUATION.chars() {
                if let Some(id) = vocab.id(&c.to_string()) {
                    skip[id as usize] = true;
                }
            }
        }
        tracing::info!(
            dir = %dir.display(),
            layers = config.num_hidden_layers,
            hidden = config.hidden_size,
            dim,
            backend = ?options.backend,
            "ColBERT model loaded"
        );
        Ok(ColbertModel {
            dir: dir.to_path_buf(),
            tokenizer,
            encoder,
            settings,
            options,
            query_marker,
            doc_marker,
            skip,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn settings(&self) -> &ColbertSettings {
        &self.settings
    }
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    pub fn dim(&self) -> usize {
        self.settings.dim
    }

    fn marked_ids(&self, text: &str, marker: u32, max_len: usize) -> Vec<u32> {
        marked_ids(&self.tokenizer, text, marker, max_len, self.options.legacy_dot_prefix)
    }

    /// Whether a document token is dropped after the forward pass (ASCII punctuation).
    pub fn is_skipped(&self, id: u32) -> bool {
        self.skip.get(id as usize).copied().unwrap_or(false)
    }

    /// Query ids and attention mask: padded with [MASK] (attended only if the checkpoint says so).
    pub fn query_input(&self, text: &str) -> (Vec<u32>, Vec<u8>) {
        self.query_input_with(text, |t, m, n| self.marked_ids(t, m, n), self.tokenizer.specials().mask)
    }

    /// `query_input` built from `marked` (ids, or ids with spans), padded with `pad`.
    fn query_input_with<T: Clone>(
        &self,
        text: &str,
        marked: impl Fn(&str, u32, usize) -> Vec<T>,
        pad: T,
    ) -> (Vec<T>, Vec<u8>) {
        let max_position = self.encoder.config().max_position_embeddings;
        let (mut ids, len) = if self.options.dynamic_query_length {
            let ids = marked(text, self.query_marker, max_position.min(511));
            let l = ids.len();
            let padded = if l % 32 <= 8 { l + 8 } else { l.div_ceil(32) * 32 };
            (ids, padded.min(max_position))
        } else {
            (marked(text, self.query_marker, self.settings.query_maxlen), self.settings.query_maxlen)
        };
        let mut mask = vec![1u8; ids.len()];
        mask.resize(len, self.settings.attend_to_mask_tokens as u8);
        ids.resize(len, pad);
        (ids, mask)
    }

    /// The tokens of `text`'s query embedding, one per row, with their sources.
    pub fn query_tokens(&self, text: &str) -> Vec<TokenSource> {
        let legacy = self.options.legacy_dot_prefix;
        let marked = |t: &str, m: u32, n: usize| {
            let spans = marked_spans(&self.tokenizer, t, m, n, legacy);
            spans.into_iter().map(|(id, span)| TokenSource { id, span, expansion: false }).collect()
        };
        let pad = TokenSource { id: self.tokenizer.specials().mask, span: None, expansion: true };
        self.query_input_with(text, marked, pad).0
    }

    /// The tokens of `text`'s document embedding, one per row (punctuation dropped), with
    /// their sources.
    pub fn doc_tokens(&self, text: &str) -> Vec<TokenSource> {
        let spans = marked_spans(
            &self.tokenizer,
            text,
            self.doc_marker,
            self.settings.doc_maxlen,
            self.options.legacy_dot_prefix,
        );
        spans
            .into_iter()
            .filter(|(id, _)| !self.is_skipped(*id))
            .map(|(id, span)| TokenSource { id, span, expansion: false })
            .collect()
    }

    /// Document ids: `[CLS] [D] w… [SEP]` within doc_maxlen.
    pub fn doc_input(&self, text: &str) -> Vec<u32> {
        self.marked_ids(text, self.doc_marker, self.settings.doc_maxlen)
    }

    pub fn encode_queries(&self, texts: &[&str]) -> Result<Vec<QueryEmbedding>> {
        let inputs: Vec<(Vec<u32>, Vec<u8>)> =
            tracing::info_span!("encoder.tokenize").in_scope(|| texts.iter().map(|t| self.query_input(t)).collect());
        self.encode_query_inputs(inputs)
    }

    /// `encode_queries` from inputs already made (`query_input`).
    pub fn encode_query_inputs(&self, inputs: Vec<(Vec<u32>, Vec<u8>)>) -> Result<Vec<QueryEmbedding>> {
        let outputs = self.encode(&inputs, self.tokenizer.specials().mask, |_| true, &|| {})?;
        Ok(inputs
            .into_iter()
            .zip(outputs)
            .map(|((ids, mask), vectors)| QueryEmbedding { ids, mask, vectors })
            .collect())
    }

    pub fn encode_documents(&self, texts: &[&str]) -> Result<Vec<DocEmbedding>> {
        self.encode_documents_pausing(texts, &|| {})
    }

    /// [`ColbertModel::encode_documents`] calling `pause` between steps of the forward pass, where
    /// the batcher holds it while queries run.
    pub fn encode_documents_pausing(&self, texts: &[&str], pause: &dyn Fn()) -> Result<Vec<DocEmbedding>> {
        let inputs: Vec<(Vec<u32>, Vec<u8>)> = tracing::info_span!("encoder.tokenize").in_scope(|| {
            texts
                .iter()
                .map(|t| self.doc_input(t))
                .map(|ids| {
                    let n = ids.len();
                    (ids, vec![1; n])
                })
                .collect()
        });
        let outputs = self.encode(&inputs, self.tokenizer.specials().pad, |id| !self.is_skipped(id), pause)?;
        Ok(inputs
            .into_iter()
            .zip(outputs)
            .map(|((ids, _), vectors)| {
                let kept_ids = ids.iter().copied().filter(|&id| !self.is_skipped(id)).collect();
                DocEmbedding { kept_ids, ids, vectors }
            })
            .collect())
    }

    /// BERT and the projection, on the device the model was loaded onto.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Runs the encoder over inputs grouped by length, padding each group with `pad`
    /// (attention 0). Returns, for each input, the unit vectors of its tokens that `kept`
    /// accepts, `[kept, dim]`.
    fn encode(
        &self,
        inputs: &[(Vec<u32>, Vec<u8>)],
        pad: u32,
        kept: impl Fn(u32) -> bool,
        pause: &dyn Fn(),
    ) -> Result<Vec<Vec<f32>>> {
        let tokens: i64 = inputs.iter().map(|(ids, _)| ids.len() as i64).sum();
        let _span = tracing::info_span!("encoder.forward", texts = inputs.len() as i64, tokens).entered();
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs[i].0.len());
        let mut out = vec![Vec::new(); inputs.len()];
        let dim = self.dim();
        for group in order.chunks(self.options.batch_size.max(1)) {
            let seq = group.iter().map(|&i| inputs[i].0.len()).max().unwrap_or(0);
            let (mut ids, mut mask) = (Vec::with_capacity(group.len() * seq), Vec::with_capacity(group.len() * seq));
            for &i in group {
                let (input_ids, input_mask) = &inputs[i];
                ids.extend(input_ids.iter().copied().chain(std::iter::repeat(pad)).take(seq));
                mask.extend(input_mask.iter().copied().chain(std::iter::repeat(0)).take(seq));
            }
            let mut keep = Vec::new();
            let mut counts = Vec::with_capacity(group.len());
            for (slot, &i) in group.iter().enumerate() {
                let before = keep.len();
                let rows = inputs[i].0.iter().enumerate().filter(|&(_, &id)| kept(id));
                keep.extend(rows.map(|(t, _)| (slot * seq + t) as u32));
                counts.push(keep.len() - before);
            }
            let vectors = self.encoder.encode_pausing(
                &Batch { ids: &ids, mask: &mask, batch: group.len(), seq },
                &keep,
                pause,
            )?;
            let mut rest = vectors.as_slice();
            for (&i, n) in group.iter().zip(counts) {
                let (mine, after) = rest.split_at(n * dim);
                out[i] = mine.to_vec();
                rest = after;
            }
        }
        Ok(out)
    }
}
