//! `jacolbert eval-jsquad`: exact (exhaustive MaxSim) JSQuAD retrieval quality of a checkpoint,
//! R@1/5/10, computed as `eval_jsquad_pylate.py` computes it with PyLate (a question's rank is
//! the number of paragraphs scoring strictly higher than its gold one).

use std::path::PathBuf;
use std::time::Instant;

use encoder_node::model::EncodeOptions;
use serde::Serialize;

use crate::jsquad;
use crate::model_args::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value = "tests/fixtures/jsquad/jsquad-valid-v1.1.json")]
    jsquad: PathBuf,
    /// Keep the "title [SEP] " headline on paragraphs.
    #[arg(long)]
    keep_headline: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    queries: usize,
    docs: usize,
    recall_at_1: f64,
    recall_at_5: f64,
    recall_at_10: f64,
    encode_s: f64,
    score_s: f64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let data = jsquad::load(&args.jsquad, args.keep_headline)?;
    let model = args.model.load(EncodeOptions::default())?;
    let start = Instant::now();
    let docs = model.encode_documents(&data.contexts.iter().map(String::as_str).collect::<Vec<_>>())?;
    let queries = model.encode_queries(&data.questions.iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>())?;
    let encode_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let q: Vec<&[f32]> = queries.iter().map(|e| e.vectors.as_slice()).collect();
    let d: Vec<&[f32]> = docs.iter().map(|e| e.vectors.as_slice()).collect();
    let scores = kernels::cpu::maxsim_matrix(&q, &d, model.dim())?;
    let score_s = start.elapsed().as_secs_f64();
    let ranks: Vec<usize> = data
        .questions
        .iter()
        .enumerate()
        .map(|(i, &(_, gold))| {
            let row = &scores[i * d.len()..(i + 1) * d.len()];
            row.iter().filter(|&&s| s > row[gold]).count()
        })
        .collect();
    let recall = |k: usize| ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len().max(1) as f64;
    let report = Report {
        queries: q.len(),
        docs: d.len(),
        recall_at_1: recall(1),
        recall_at_5: recall(5),
        recall_at_10: recall(10),
        encode_s,
        score_s,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} questions, {} paragraphs: R@1 {:.4}  R@5 {:.4}  R@10 {:.4}  (encode {:.1}s, exhaustive MaxSim {:.1}s)",
            report.queries,
            report.docs,
            report.recall_at_1,
            report.recall_at_5,
            report.recall_at_10,
            report.encode_s,
            report.score_s
        );
    }
    Ok(())
}
