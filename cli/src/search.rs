//! `jacolbert search "query"` against a running router: a table (or one JSON object) of the
//! hits, with `--explain` what matched each query word.

use proto::v1::SearchRequest;

use crate::connection::{refused, Connection};

#[derive(clap::Args)]
pub struct SearchArgs {
    /// The question or keywords to search for, in Japanese (quote it as one argument).
    query: String,
    /// How many hits to return (1 to the router's `max_k`).
    #[arg(short, default_value_t = 10)]
    k: u32,
    #[command(flatten)]
    to: Connection,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Only documents this filter matches, as JSON: {"must": [{"match": {"field": F, "value":
    /// V}}, {"range": {"field": F, "gte": N}}, {"exists": F}, {"ids": [..]}], "should": [..],
    /// "must_not": [..]} (README, "Search for applications").
    #[arg(long)]
    filter: Option<String>,
    /// What the hits carry: text, metadata, or both (comma-separated).
    #[arg(long, default_value = "text", value_delimiter = ',')]
    include: Vec<String>,
    /// Show why each hit matched: for each query word piece, the document's word piece that
    /// matched it best, where it is in the text, and the similarity.
    #[arg(long)]
    explain: bool,
}

pub fn search(args: SearchArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut client = args.to.search().await?;
        let filter = args.filter.as_deref().map(proto::filter_json::parse).transpose().map_err(anyhow::Error::msg)?;
        let mut include = proto::v1::Include::default();
        for what in &args.include {
            match what.as_str() {
                "text" => include.text = true,
                "metadata" => include.metadata = true,
                "" | "none" => {}
                other => anyhow::bail!("--include takes text and metadata, not {other:?}"),
            }
        }
        let request = SearchRequest {
            query: args.query.clone(),
            k: args.k,
            filter_ids: vec![],
            params: None,
            allow_partial: None,
            include: Some(include),
            filter,
            explain: args.explain,
        };
        let answer = client.search(request).await.map_err(refused)?.into_inner();
        if answer.hits.is_empty() && !args.json {
            // Nothing found in an empty cluster is the first thing a new user meets.
            let stats = client.stats(proto::v1::ClusterStatsRequest::default()).await;
            if stats.is_ok_and(|s| s.get_ref().documents == 0) {
                eprintln!(
                    "the cluster holds no documents yet: index some with `jacolbert index FILE.jsonl` (one \
                     {{\"id\": …, \"text\": …}} per line)"
                );
            }
        }
        let hits: Vec<serde_json::Value> = answer
            .hits
            .iter()
            .map(|h| {
                let doc = h.document.clone().unwrap_or_default();
                let metadata = serde_json::from_str::<serde_json::Value>(&doc.metadata).unwrap_or(serde_json::Value::Null);
                let mut hit =
                    serde_json::json!({"id": h.id, "score": h.score, "shard": h.shard, "text": doc.text, "metadata": metadata});
                if let Some(e) = &h.explanation {
                    hit["matches"] = e.matches.iter().map(explained).collect();
                }
                hit
            })
            .collect();
        if args.json {
            let out = serde_json::json!({
                "query": args.query, "hits": hits, "shards_total": answer.shards_total, "shards_ok": answer.shards_ok,
                "partial": answer.partial, "timed_out": answer.timed_out, "took_ms": answer.took_micros as f64 / 1e3,
            });
            println!("{out}");
        } else {
            println!(
                "{}  ({} of {} shards, {:.1} ms)",
                args.query,
                answer.shards_ok,
                answer.shards_total,
                answer.took_micros as f64 / 1e3
            );
            for (rank, h) in hits.iter().enumerate() {
                let text: String = h["text"].as_str().unwrap_or("").chars().take(60).collect();
                let metadata = match &h["metadata"] {
                    serde_json::Value::Null => String::new(),
                    m => format!("  {m}"),
                };
                println!(
                    "{:>3}. {:>8.3}  {:<12} {text}{metadata}",
                    rank + 1,
                    h["score"].as_f64().unwrap_or(0.0),
                    h["id"].as_str().unwrap_or("")
                );
                if let Some(e) = &answer.hits[rank].explanation {
                    // The query's own words (not [CLS], markers or expansion), best first.
                    let mut words: Vec<_> = e.matches.iter().filter(|m| m.query_span.is_some()).collect();
                    words.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
                    let shown: Vec<String> = words
                        .iter()
                        .map(|m| format!("{}→{} {:.2}", m.query_text, m.document_text, m.similarity))
                        .collect();
                    println!("{:>26}{}", "", shown.join(", "));
                }
            }
        }
        Ok(())
    })
}

/// One token match as `search --json --explain` prints it.
fn explained(m: &proto::v1::TokenMatch) -> serde_json::Value {
    let span = |s: &Option<proto::v1::Span>| s.map(|s| serde_json::json!([s.start, s.end]));
    serde_json::json!({
        "query_token": m.query_token, "query_text": m.query_text, "query_span": span(&m.query_span),
        "expansion": m.expansion, "document_token": m.document_token, "document_text": m.document_text,
        "span": span(&m.span), "similarity": m.similarity,
    })
}
