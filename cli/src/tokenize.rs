//! `jacolbert tokenize`: stdin lines in, `{"ids": [...]}` lines out (the full encoding with
//! [CLS] and [SEP], untruncated), optionally with MeCab's `words`.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use encoder_node::tokenizer::Tokenizer;
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory holding vocab.txt (and optionally the special-token files).
    #[arg(long)]
    model: PathBuf,
    /// MeCab dictionary directory (unidic-lite's `dicdir`).
    #[arg(long, env = "JACOLBERT_MECAB_DIC")]
    mecab_dic: Option<PathBuf>,
    /// Also print the special tokens and MeCab surfaces as "words".
    #[arg(long)]
    words: bool,
}

#[derive(Serialize)]
struct Line {
    ids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<Vec<String>>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let tokenizer = Tokenizer::load(&args.model, args.mecab_dic.as_deref())?;
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (n, line) in stdin.split(b'\n').enumerate() {
        let line = line.context("reading stdin")?;
        let text = std::str::from_utf8(&line).with_context(|| format!("line {} of stdin is not UTF-8", n + 1))?;
        let record = Line { ids: tokenizer.encode(text), words: args.words.then(|| tokenizer.words(text)) };
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
