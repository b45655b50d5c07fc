//! `jacolbert bench-tokenizer`: single-thread tokenizer throughput on the JSQuAD paragraphs,
//! the same workload as `scripts/bench_tokenizer.py` gives the Python reference.

use std::path::PathBuf;
use std::time::Instant;

use encoder_node::tokenizer::Tokenizer;
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory holding vocab.txt.
    #[arg(long, default_value = "tests/fixtures/bert-base-japanese-v3")]
    model: PathBuf,
    /// MeCab dictionary directory (unidic-lite's `dicdir`).
    #[arg(long, env = "JACOLBERT_MECAB_DIC")]
    mecab_dic: Option<PathBuf>,
    /// JSQuAD json whose paragraphs ("context") are tokenized.
    #[arg(long, default_value = "tests/fixtures/jsquad/jsquad-valid-v1.1.json")]
    jsquad: PathBuf,
    /// Timed passes over all paragraphs (after one warm-up pass).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    impl_name: &'static str,
    texts: usize,
    chars: usize,
    tokens: usize,
    seconds: f64,
    texts_per_s: f64,
    tokens_per_s: f64,
    load_s: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let tokenizer = Tokenizer::load(&args.model, args.mecab_dic.as_deref())?;
    let load_s = start.elapsed().as_secs_f64();
    // The raw paragraphs, headline and its [SEP] included: that exercises the special split too.
    let texts = crate::jsquad::load(&args.jsquad, true)?.contexts;
    let per_pass: usize = texts.iter().map(|t| tokenizer.encode(t).len()).sum();
    let start = Instant::now();
    let mut tokens = 0;
    for _ in 0..args.repeat.max(1) {
        tokens += texts.iter().map(|t| tokenizer.encode(t).len()).sum::<usize>();
    }
    let seconds = start.elapsed().as_secs_f64();
    let passes = args.repeat.max(1);
    anyhow::ensure!(tokens == per_pass * passes, "tokenization is not deterministic");
    let report = Report {
        impl_name: "jacolbert (Rust, 1 thread)",
        texts: texts.len() * passes,
        chars: texts.iter().map(|t| t.chars().count()).sum::<usize>() * passes,
        tokens,
        seconds,
        texts_per_s: (texts.len() * passes) as f64 / seconds,
        tokens_per_s: tokens as f64 / seconds,
        load_s,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} texts, {} tokens in {:.3}s: {:.0} texts/s, {:.0} tokens/s (dictionary load {:.3}s)",
            report.impl_name,
            report.texts,
            report.tokens,
            report.seconds,
            report.texts_per_s,
            report.tokens_per_s,
            report.load_s
        );
    }
    Ok(())
}
