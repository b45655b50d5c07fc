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
    /// The JSQuAD file whose questions and paragraphs are evaluated.
    #[arg(long, default_value = "tests/fixtures/jsquad/jsquad-valid-v1.1.json")]
    jsquad: PathBuf,
    /// Keep the "title [SEP] " headline on paragraphs.
    #[arg(long)]
    keep_headline: bool,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Evaluate through a running cluster instead: index the paragraphs there (ids `p<n>`),
    /// search every question through the router (k = 10), and rank by its hits (a question
    /// whose gold paragraph is not in its top 10 counts as a miss). `--model` is then unused.
    #[arg(long, conflicts_with = "shards")]
    router: Option<String>,
    /// Evaluate through a local cluster of this many shards started for the purpose (in a
    /// temporary directory, the router on `--listen`), as `--router` does.
    #[arg(long)]
    shards: Option<usize>,
    /// With --shards: the router's address for that cluster (its nodes take the ports after it).
    #[arg(long, default_value = "127.0.0.1:53051")]
    listen: String,
    /// The local cluster's config (as `jacolbert local --config` takes; its data_dir, shards
    /// and listen are replaced).
    #[arg(long, requires = "shards")]
    config: Option<PathBuf>,
    /// Through a cluster: centroids probed per query token and documents re-scored exactly
    /// (0: the shards' defaults for k = 10).
    #[arg(long, default_value_t = 0)]
    nprobe: u32,
    /// Through a cluster: documents re-scored exactly per shard (0: the shards' default).
    #[arg(long, default_value_t = 0)]
    candidates: u32,
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
    if let Some(router) = &args.router {
        return tokio::runtime::Runtime::new()?.block_on(through_router(router, &data, &args));
    }
    if let Some(shards) = args.shards {
        let model = std::sync::Arc::new(args.model.load(EncodeOptions::default())?);
        let dir = tempfile::tempdir()?;
        let config = crate::config::LocalFile {
            data_dir: dir.path().to_path_buf(),
            shards: Some(shards),
            listen: args.listen.clone(),
            ..crate::config::load(args.config.as_deref())?
        };
        return tokio::runtime::Runtime::new()?.block_on(async {
            let router = crate::local::start(model, &config).await?;
            through_router(&router, &data, &args).await
        });
    }
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
    let recall = |k: usize| recall_at(&ranks, k);
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

/// The share of questions whose gold paragraph ranks below `k` (rank 0 is the top).
fn recall_at(ranks: &[usize], k: usize) -> f64 {
    ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len().max(1) as f64
}

/// R@k through a router: index, then every question with a few in flight.
async fn through_router(router: &str, data: &jsquad::Jsquad, args: &Args) -> anyhow::Result<()> {
    let params = proto::v1::SearchParams { nprobe: args.nprobe, candidates: args.candidates, exact: false };
    use proto::v1::search_client::SearchClient;
    use proto::v1::{Document, SearchRequest, UpsertRequest};

    let mut client = SearchClient::connect(format!("http://{router}")).await?;
    let start = Instant::now();
    let docs: Vec<Document> = data
        .contexts
        .iter()
        .enumerate()
        .map(|(i, text)| Document { id: format!("p{i}"), text: text.clone(), metadata: String::new() })
        .collect();
    for (n, batch) in docs.chunks(64).enumerate() {
        client.upsert(UpsertRequest { documents: batch.to_vec() }).await?;
        eprint!("\rindexed {}/{} paragraphs", ((n + 1) * 64).min(docs.len()), docs.len());
    }
    eprintln!();
    let index_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut ranks = Vec::with_capacity(data.questions.len());
    for chunk in data.questions.chunks(8) {
        let mut calls = tokio::task::JoinSet::new();
        for (i, (question, gold)) in chunk.iter().enumerate() {
            let (mut c, gold) = (client.clone(), format!("p{gold}"));
            let request = SearchRequest {
                query: question.clone(),
                k: 10,
                filter_ids: vec![],
                params: Some(params),
                allow_partial: Some(false),
                include: None,
                filter: None,
                explain: false,
            };
            calls.spawn(async move {
                (i, c.search(request).await.map(|r| r.into_inner().hits.iter().position(|h| h.id == gold)))
            });
        }
        let mut got = vec![None; chunk.len()];
        while let Some(joined) = calls.join_next().await {
            let (i, rank) = joined?;
            got[i] = rank?;
        }
        ranks.extend(got.into_iter().map(|r| r.unwrap_or(usize::MAX)));
    }
    let search_s = start.elapsed().as_secs_f64();
    let (r1, r5, r10) = (recall_at(&ranks, 1), recall_at(&ranks, 5), recall_at(&ranks, 10));
    if args.json {
        println!(
            "{}",
            serde_json::json!({"r@1": r1, "r@5": r5, "r@10": r10, "queries": ranks.len(), "docs": docs.len(), "index_s": index_s, "search_s": search_s})
        );
    } else {
        println!(
            "{} questions, {} paragraphs through {router}: R@1 {r1:.4}  R@5 {r5:.4}  R@10 {r10:.4}  (index {index_s:.1}s, search {search_s:.1}s)",
            ranks.len(),
            docs.len()
        );
    }
    Ok(())
}
