//! JSQuAD v1.1 as the retrieval task of the JaColBERT paper: the corpus is the paragraphs, the
//! queries are the questions, each with one gold paragraph.

use std::path::Path;

use anyhow::Context;

pub struct Jsquad {
    pub contexts: Vec<String>,
    /// (question, index of its gold context)
    pub questions: Vec<(String, usize)>,
}

/// Reads a JSQuAD json. Contexts start with a "title [SEP] " headline, which the paper's task
/// strips (`keep_headline` keeps it).
pub fn load(path: &Path, keep_headline: bool) -> anyhow::Result<Jsquad> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Jsquad { contexts: Vec::new(), questions: Vec::new() };
    for article in doc["data"].as_array().context("no data array")? {
        for paragraph in article["paragraphs"].as_array().context("no paragraphs")? {
            let context = paragraph["context"].as_str().context("no context")?;
            let context = match context.split_once(" [SEP] ") {
                Some((_, body)) if !keep_headline => body,
                _ => context,
            };
            out.contexts.push(context.to_owned());
            for qa in paragraph["qas"].as_array().context("no qas")? {
                out.questions
                    .push((qa["question"].as_str().context("no question")?.to_owned(), out.contexts.len() - 1));
            }
        }
    }
    Ok(out)
}
