//! `jacolbert shard-bench`: builds a shard in a temporary directory from synthetic clustered
//! vectors (trained on all of them, or with `--grow` as a shard in service grows), searches it,
//! and prints one JSON object: recall@k against the exact mode, memory
//! and disk bytes per token, build time, latency percentiles and queries per second. With
//! `--write-vectors DIR` it also writes the very vectors and queries (raw little-endian f32)
//! so that a peer engine can index the same data (scripts/bench_shard.py).

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use shard_node::codec::TrainParams;
use shard_node::index::SearchParams;
use shard_node::shard::{Maintenance, NewDocument, Retrained, Shard, ShardConfig};
use shard_node::store::Document;
use shard_node::synthetic::{Collection, Spec};

#[derive(clap::Args)]
pub struct Args {
    /// Documents in the synthetic collection.
    #[arg(long, default_value_t = 20_000)]
    docs: usize,
    /// Mean tokens per document (each varies ±50%).
    #[arg(long, default_value_t = 100)]
    tokens_per_doc: usize,
    /// Queries (32 tokens each, drawn from random documents).
    #[arg(long, default_value_t = 100)]
    queries: usize,
    /// Hits per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Seed of the collection, the queries and the training.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Bits per residual dimension of the codec.
    #[arg(long, default_value_t = 2)]
    nbits: usize,
    /// Random centres the token vectors are drawn around.
    #[arg(long, default_value_t = 2048)]
    centres: usize,
    /// Override the default centroids probed per query token for this k.
    #[arg(long)]
    nprobe: Option<usize>,
    /// Override the default number of candidates re-scored exactly.
    #[arg(long)]
    candidates: Option<usize>,
    /// Search settings to compare on the one index, `nprobe:candidates,…` (one JSON line each).
    #[arg(long)]
    sweep: Option<String>,
    /// Filtered searches after the unfiltered ones, one JSON line per share of the documents
    /// the filter allows (comma-separated, e.g. 0.0001,0.01,0.1,1): each document has
    /// `{"bucket": i mod 10000}` and the filter is a range on it. Recall is against the exact
    /// mode under the same filter.
    #[arg(long, value_delimiter = ',')]
    filter_selectivity: Vec<f64>,
    /// Build through the production path: the shard trains by itself once it holds
    /// `--train-tokens` tokens (as a shard in service does), and the rest arrives through
    /// upserts, encoded by that first codec. Without it the codec is trained on the whole
    /// collection up front.
    #[arg(long)]
    grow: bool,
    /// With `--grow`: tokens buffered before the first training (the shard's `train_tokens`).
    #[arg(long, default_value_t = 100_000)]
    train_tokens: usize,
    /// With `--grow`: also measure on the way, when the shard reaches each of these sizes
    /// (tokens, comma-separated; e.g. 1000000 with `--docs 100000`): one JSON line per size,
    /// on the data and queries a run of that size would use, so the sizes compare in one run.
    /// Each size's `build_s` counts all building up to it, not the measuring before it.
    #[arg(long, value_delimiter = ',')]
    report_at: Vec<usize>,
    /// With `--grow`: the shard's `retrain_growth` (0: never retrain, the first codec stays).
    #[arg(long, default_value_t = 4.0)]
    retrain_growth: f64,
    /// The shard's `background_nice`: the CPU priority of encoding writes and retraining.
    #[arg(long, default_value_t = 10)]
    background_nice: i32,
    /// The shard's `background_idle`: that work under SCHED_IDLE (`--background-idle false`:
    /// niced only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    background_idle: bool,
    /// The shard's `give_way_ms`: how long background work waits at each step for running
    /// searches (0: never).
    #[arg(long, default_value_t = 50)]
    give_way_ms: u64,
    /// With `--under-writes`: each latency is over this many passes of the queries (p99 of a
    /// few hundred searches is their third slowest: noise).
    #[arg(long, default_value_t = 10)]
    passes: usize,
    /// Then search latency three ways in one run: alone, beside a writer upserting without
    /// pause, and beside the writer while a retraining runs (one JSON line).
    #[arg(long)]
    under_writes: bool,
    /// The shard's `store_cache_mb` (sled's page cache).
    #[arg(long, default_value_t = ShardConfig::default().store_cache_mb)]
    store_cache_mb: u64,
    /// Keep the shard in this directory rather than a temporary one. A later run with the same
    /// collection options finds it built and only measures it (at its whole size; `build_s` is
    /// then null): search settings compare on a 10 M-token shard without building it again.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Also write vectors.f32, doc_lens.u32, queries.f32 and meta.json here.
    #[arg(long)]
    write_vectors: Option<PathBuf>,
    /// One JSON line per report instead of pretty-printed JSON.
    #[arg(long)]
    json: bool,
}

const DIM: usize = 128;
const QUERY_TOKENS: usize = 32;

fn write_vectors(dir: &std::path::Path, data: &Collection, queries: &[(usize, Vec<f32>)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let floats = |path: PathBuf, v: &mut dyn Iterator<Item = f32>| -> anyhow::Result<()> {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&path).with_context(|| path.display().to_string())?);
        for x in v {
            out.write_all(&x.to_le_bytes())?;
        }
        Ok(out.flush()?)
    };
    floats(dir.join("vectors.f32"), &mut data.vectors.iter().copied())?;
    floats(dir.join("queries.f32"), &mut queries.iter().flat_map(|(_, q)| q.iter().copied()))?;
    let lens: Vec<u8> = data.offsets.windows(2).flat_map(|w| ((w[1] - w[0]) as u32).to_le_bytes()).collect();
    std::fs::write(dir.join("doc_lens.u32"), lens)?;
    let meta = serde_json::json!({
        "dim": DIM, "docs": data.len(), "tokens": data.tokens(), "queries": queries.len(),
        "query_tokens": QUERY_TOKENS,
    });
    std::fs::write(dir.join("meta.json"), meta.to_string())?;
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.docs > 0 && args.queries > 0, "--docs and --queries must be positive");
    anyhow::ensure!(args.grow || args.report_at.is_empty(), "--report-at measures a growing shard: add --grow");
    let spec = Spec {
        docs: args.docs,
        tokens_per_doc: args.tokens_per_doc,
        centres: args.centres,
        dim: DIM,
        seed: args.seed,
        ..Default::default()
    };
    let data = Collection::generate(&spec);
    if let Some(dir) = &args.write_vectors {
        write_vectors(dir, &data, &data.queries(args.queries, QUERY_TOKENS, 0.3, args.seed))?;
    }
    // The document counts to measure at: the first that reach each `--report-at` size, then all.
    let mut stops = Vec::new();
    for &size in &args.report_at {
        let docs = data.offsets.partition_point(|&tokens| tokens < size);
        anyhow::ensure!(docs < data.len(), "--report-at {size}: the collection has only {} tokens", data.tokens());
        stops.push(docs.max(1));
    }
    stops.push(data.len());
    stops.sort_unstable();
    stops.dedup();
    let temporary = tempfile::tempdir()?;
    let dir = args.keep.as_deref().unwrap_or(temporary.path());
    let config = ShardConfig {
        dim: DIM,
        train_tokens: if args.grow { args.train_tokens } else { usize::MAX },
        train: TrainParams { nbits: args.nbits, seed: args.seed, ..Default::default() },
        retrain_growth: if args.grow { args.retrain_growth } else { 0.0 },
        background_nice: args.background_nice,
        background_idle: args.background_idle,
        give_way_ms: args.give_way_ms,
        store_cache_mb: args.store_cache_mb,
        ..Default::default()
    };
    let started = Instant::now();
    let shard = Shard::open(dir, config)?;
    let reused = shard.stats().documents;
    anyhow::ensure!(
        reused == 0 || reused == data.len(),
        "{} holds {reused} documents, not this collection's {}: remove it or keep the shard elsewhere",
        dir.display(),
        data.len()
    );
    if reused > 0 {
        stops.retain(|&stop| stop == data.len());
    } else if !args.grow {
        shard.train_on(&data.vectors)?;
    }
    let (mut build_s, mut built, mut retrainings) = (started.elapsed().as_secs_f64(), reused, Vec::new());
    let mut last = None;
    for &stop in &stops {
        let started = Instant::now();
        retrainings.extend(grow(&shard, &data, built..stop)?);
        shard.shrink_to_fit();
        build_s += started.elapsed().as_secs_f64();
        built = stop;
        let prefix;
        let view = match stop == data.len() {
            true => &data,
            false => {
                prefix = data.prefix(stop);
                &prefix
            }
        };
        let so_far = Built { shard: &shard, build_s: (reused == 0).then_some(build_s), retrainings: &retrainings };
        last = Some(measure(&args, &so_far, view, stop == data.len())?);
    }
    let (queries, params) = last.context("the full size is always measured")?;
    let refs: Vec<&[f32]> = queries.iter().map(|(_, q)| q.as_slice()).collect();
    for &share in &args.filter_selectivity {
        print(&filtered(&shard, &refs, params, share)?, args.json)?;
    }
    if args.under_writes {
        print(&under_writes(&shard, &data, &refs, params, args.passes)?, args.json)?;
    }
    Ok(())
}

/// Upserts documents `range` in batches of 500 while a maintenance thread retrains in the
/// background, as in service; returns when the last retraining due has finished.
fn grow(shard: &Shard, data: &Collection, range: std::ops::Range<usize>) -> anyhow::Result<Vec<Retrained>> {
    let indexing = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|s| -> anyhow::Result<Vec<Retrained>> {
        let maintenance = s.spawn(|| -> anyhow::Result<Vec<Retrained>> {
            let mut done = Vec::new();
            loop {
                let still = indexing.load(std::sync::atomic::Ordering::SeqCst);
                match shard.maintain()? {
                    Some(Maintenance::Retrained(r)) => done.push(r),
                    Some(Maintenance::Compacted(_) | Maintenance::CompactedOriginals(_)) => {}
                    None if !still => return Ok(done),
                    None => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            }
        });
        let written = (|| -> anyhow::Result<()> {
            for first in range.clone().step_by(500) {
                let end = (first + 500).min(range.end);
                shard.upsert(documents(data, first..end, ""))?;
                tracing::info!(documents = end, of = data.len(), "indexing");
            }
            Ok(())
        })();
        indexing.store(false, std::sync::atomic::Ordering::SeqCst);
        let done = maintenance.join().map_err(|_| anyhow::anyhow!("the maintenance thread panicked"))?;
        written.and(done)
    })
}

/// A shard as built so far.
struct Built<'a> {
    shard: &'a Shard,
    /// None for a shard an earlier run built.
    build_s: Option<f64>,
    retrainings: &'a [Retrained],
}

/// Searches the shard holding exactly `data` with each setting and prints one JSON line each:
/// recall against the exact mode and against exhaustive MaxSim over the raw vectors, memory,
/// disk, build time and latency (of a second pass of the queries). Returns the queries and
/// the first setting.
fn measure(
    args: &Args,
    built: &Built,
    data: &Collection,
    last: bool,
) -> anyhow::Result<(Vec<(usize, Vec<f32>)>, SearchParams)> {
    let shard = built.shard;
    let queries = data.queries(args.queries, QUERY_TOKENS, 0.3, args.seed);
    let mut settings = Vec::new();
    match &args.sweep {
        Some(list) => {
            for pair in list.split(',') {
                let (nprobe, candidates) = pair.split_once(':').context("--sweep takes nprobe:candidates pairs")?;
                settings.push(SearchParams {
                    k: args.k,
                    nprobe: nprobe.trim().parse()?,
                    candidates: candidates.trim().parse()?,
                });
            }
        }
        None => {
            let mut params = shard.default_params(args.k);
            params.nprobe = args.nprobe.unwrap_or(params.nprobe);
            params.candidates = args.candidates.unwrap_or(params.candidates);
            settings.push(params);
        }
    }
    let refs: Vec<&[f32]> = queries.iter().map(|(_, q)| q.as_slice()).collect();
    let exact: Vec<HashSet<String>> = shard
        .search_exact_batch(&refs, args.k, None)?
        .into_iter()
        .map(|hits| hits.into_iter().map(|f| f.id).collect())
        .collect();
    // Ground truth without compression: exhaustive MaxSim over the raw vectors.
    let docs: Vec<&[f32]> = (0..data.len()).map(|i| data.doc(i)).collect();
    let raw = kernels::cpu::maxsim_matrix(&refs, &docs, DIM)?;
    let raw_top: Vec<HashSet<String>> = raw
        .chunks_exact(data.len())
        .map(|scores| {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            order[..args.k.min(order.len())].iter().map(|i| i.to_string()).collect()
        })
        .collect();
    for params in &settings {
        // One untimed pass first: the latencies are of a shard in service, not of the first
        // reads of a store just opened (sled's cache and the OS's page cache).
        for q in &refs {
            shard.search(q, params, None)?;
        }
        let mut latencies = Vec::with_capacity(queries.len());
        let mut results = Vec::with_capacity(queries.len());
        let search_started = Instant::now();
        for q in &refs {
            let t = Instant::now();
            results.push(shard.search(q, params, None)?);
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let qps = queries.len() as f64 / search_started.elapsed().as_secs_f64();
        let recall = |truth: &[HashSet<String>]| {
            let found: usize =
                results.iter().zip(truth).map(|(got, want)| got.iter().filter(|f| want.contains(&f.id)).count()).sum();
            found as f64 / (args.k * queries.len()) as f64
        };
        if let (Some(dir), true) = (&args.write_vectors, last) {
            // Our top-k per query (document numbers), so the peer script can score both
            // engines against the same ground truth.
            let ids: Vec<Vec<usize>> =
                results.iter().map(|r| r.iter().map(|f| f.id.parse().unwrap_or(usize::MAX)).collect()).collect();
            std::fs::write(dir.join("jacolbert_topk.json"), serde_json::to_string(&ids)?)?;
        }
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        let tokens = shard.stats().tokens as f64;
        let memory = shard.index().context("the shard is trained")?.memory();
        let report = serde_json::json!({
            "docs": data.len(), "tokens": tokens, "k": args.k, "nbits": args.nbits,
            "trained_on": if args.grow { format!("the first {} tokens", args.train_tokens) } else { "all".into() },
            "retrainings": built.retrainings.iter().map(|r| serde_json::json!({
                "at_tokens": r.tokens, "k": r.k, "sample": r.sample, "s": r.elapsed_ms as f64 / 1e3,
            })).collect::<Vec<_>>(),
            "nprobe": params.nprobe, "candidates": params.candidates,
            "centroids": shard.index().map(|i| i.codec().k()),
            "recall_at_k": recall(&exact),
            "recall_at_k_raw": recall(&raw_top),
            "bytes_per_token": memory.total() as f64 / tokens,
            "bytes_per_token_parts": {
                "residuals": memory.residuals as f64 / tokens, "doc_ids": memory.ids as f64 / tokens,
                "centroids": memory.centroids as f64 / tokens, "doc_table": memory.docs as f64 / tokens,
            },
            "disk_bytes_per_token": shard.disk_bytes()? as f64 / tokens,
            "build_s": built.build_s, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "qps": qps,
        });
        print(&report, args.json)?;
    }
    Ok((queries, settings[0]))
}

/// Documents `range` of `data` as upserts, ids suffixed with `suffix`.
fn documents(data: &Collection, range: std::ops::Range<usize>, suffix: &str) -> Vec<NewDocument> {
    range
        .map(|i| NewDocument {
            doc: Document { id: format!("{i}{suffix}"), text: String::new(), metadata: metadata(i) },
            vectors: data.doc(i).to_vec(),
            version: 0,
        })
        .collect()
}

/// Search latency alone, beside a writer upserting replacements without pause (batches of
/// 32), and beside the writer while a retraining runs; each the same queries, in one run.
fn under_writes(
    shard: &Shard,
    data: &Collection,
    queries: &[&[f32]],
    params: SearchParams,
    passes: usize,
) -> anyhow::Result<serde_json::Value> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let pass = |until: &dyn Fn(usize) -> bool| -> anyhow::Result<Vec<f64>> {
        let mut latencies = Vec::new();
        while !until(latencies.len()) {
            for q in queries {
                let t = Instant::now();
                shard.search(q, &params, None)?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    };
    let pct = |l: &[f64], p: f64| l[((l.len() - 1) as f64 * p).round() as usize];
    let rounds = passes.max(1) * queries.len();
    let alone = pass(&|n| n >= rounds)?;
    let (stop, written) = (AtomicBool::new(false), AtomicUsize::new(0));
    let (beside, retraining, retrained) = std::thread::scope(|s| -> anyhow::Result<_> {
        let writer = s.spawn(|| -> anyhow::Result<()> {
            let mut at = 0;
            while !stop.load(Ordering::SeqCst) {
                let end = (at + 32).min(data.len());
                shard.upsert(documents(data, at..end, ""))?;
                written.fetch_add(end - at, Ordering::SeqCst);
                at = if end == data.len() { 0 } else { end };
            }
            Ok(())
        });
        let started = Instant::now();
        let beside = pass(&|n| n >= rounds);
        let rate = written.load(Ordering::SeqCst) as f64 / started.elapsed().as_secs_f64();
        let retrain = s.spawn(|| shard.retrain());
        let during = pass(&|n| n >= queries.len() && retrain.is_finished());
        let retrained = retrain.join().map_err(|_| anyhow::anyhow!("the retraining panicked"))?;
        stop.store(true, Ordering::SeqCst);
        writer.join().map_err(|_| anyhow::anyhow!("the writer panicked"))??;
        Ok(((beside?, rate), during?, retrained?))
    })?;
    let (beside, writes_per_s) = beside;
    Ok(serde_json::json!({
        "under_writes": true, "documents_written": written.load(Ordering::SeqCst),
        "searches_run_again": shard.retried_searches(),
        "retraining_s": retrained.map(|r| r.elapsed_ms as f64 / 1e3),
        "alone": {"searches": alone.len(), "p50_ms": pct(&alone, 0.5), "p99_ms": pct(&alone, 0.99)},
        "beside_writer": {
            "searches": beside.len(), "p50_ms": pct(&beside, 0.5), "p99_ms": pct(&beside, 0.99),
            "documents_written_per_s": writes_per_s,
        },
        "beside_writer_and_retraining": {"searches": retraining.len(), "p50_ms": pct(&retraining, 0.5), "p99_ms": pct(&retraining, 0.99)},
        "p99_ratio_writer": pct(&beside, 0.99) / pct(&alone, 0.99),
        "p99_ratio_writer_and_retraining": pct(&retraining, 0.99) / pct(&alone, 0.99),
    }))
}

fn print(report: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    match json {
        true => println!("{report}"),
        false => println!("{}", serde_json::to_string_pretty(report)?),
    }
    Ok(())
}

/// Buckets of `--filter-selectivity`.
const BUCKETS: usize = 10_000;

fn metadata(i: usize) -> String {
    format!("{{\"bucket\": {}}}", i % BUCKETS)
}

/// Searches allowing `share` of the documents (a range on `bucket`): recall@k against the exact
/// mode under the same filter, and latency.
fn filtered(shard: &Shard, queries: &[&[f32]], params: SearchParams, share: f64) -> anyhow::Result<serde_json::Value> {
    use proto::v1::{bound, condition, Bound, Condition, Filter, Range};
    let below = (share * BUCKETS as f64).round().max(1.0);
    let range = Range {
        field: "bucket".into(),
        lt: Some(Bound { value: Some(bound::Value::Number(below)) }),
        ..Default::default()
    };
    let filter =
        Filter { must: vec![Condition { condition: Some(condition::Condition::Range(range)) }], ..Default::default() };
    let allowed = shard.matching(&filter)?.len();
    let mut truth = Vec::with_capacity(queries.len());
    for batch in queries.chunks(16) {
        for hits in shard.search_exact_batch(batch, params.k, Some(&filter))? {
            truth.push(hits.into_iter().map(|f| f.id).collect::<HashSet<String>>());
        }
    }
    let (mut found, mut latencies) = (0, Vec::with_capacity(queries.len()));
    for (q, want) in queries.iter().zip(&truth) {
        let t = Instant::now();
        let got = shard.search(q, &params, Some(&filter))?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        found += got.iter().filter(|f| want.contains(&f.id)).count();
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let wanted: usize = truth.iter().map(HashSet::len).sum();
    Ok(serde_json::json!({
        "selectivity": share, "allowed": allowed, "k": params.k,
        "recall_at_k": found as f64 / wanted.max(1) as f64, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
    }))
}
