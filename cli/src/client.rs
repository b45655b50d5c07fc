//! Client commands against a running router: `jacolbert index FILE.jsonl` (resumable: a run
//! that stops part-way records what the router acknowledged, and the next run of the same file
//! starts after it) and `jacolbert bench`.

use std::path::PathBuf;

use anyhow::Context;
use proto::v1::{Document, SearchRequest, UpsertRequest};

use crate::connection::Connection;

#[derive(clap::Args)]
pub struct IndexArgs {
    /// JSON lines: {"id": …, "text": …, "metadata"?: …}.
    file: PathBuf,
    #[command(flatten)]
    to: Connection,
    /// The most documents in one Upsert. Batches are sized so that each is acknowledged in
    /// about --ack-target-ms: a slow encoder gets smaller ones, and a batch refused as past its
    /// deadline or over the encoder's queue is sent again in halves.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// The acknowledgement time batches are sized for, in milliseconds; 0 sends every batch
    /// with --batch documents.
    #[arg(long, default_value_t = 2000)]
    ack_target_ms: u64,
    /// Send every line, ignoring how far an earlier, interrupted run got (FILE.progress).
    #[arg(long)]
    restart: bool,
}

/// How far an earlier `index` run of the same file got: its first `lines` lines (`bytes`
/// bytes, with checksum `crc32`) were acknowledged by `router`. Kept next to the file while a
/// run is under way, removed when one finishes.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Progress {
    router: String,
    lines: usize,
    bytes: usize,
    crc32: u32,
}

fn progress_path(file: &std::path::Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".progress");
    PathBuf::from(name)
}

/// How many leading lines of `text` an earlier run had acknowledged to the same router, provided
/// they are unchanged (0 otherwise).
fn resume_point(text: &str, progress: Option<Progress>, router: &str) -> usize {
    match progress {
        Some(p) if p.router == router && p.bytes <= text.len() => {
            let prefix = &text.as_bytes()[..p.bytes];
            let lines = prefix.iter().filter(|&&b| b == b'\n').count();
            if crc32fast::hash(prefix) == p.crc32 && lines == p.lines {
                p.lines
            } else {
                0
            }
        }
        _ => 0,
    }
}

fn parse_line(n: usize, line: &str) -> anyhow::Result<Document> {
    const SHAPE: &str = r#"each line is one JSON object: {"id": "doc-1", "text": "…", "metadata": {…}}"#;
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| anyhow::anyhow!("line {n} is not JSON ({e}); {SHAPE}"))?;
    anyhow::ensure!(v.is_object(), "line {n} is not a JSON object; {SHAPE}");
    let field = |name: &str| match v.get(name) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        None | Some(serde_json::Value::Null) => Err(anyhow::anyhow!("line {n} has no \"{name}\"; {SHAPE}")),
        Some(other) => {
            Err(anyhow::anyhow!("line {n}: \"{name}\" must be a string, not {other} (write \"{name}\": \"{other}\")"))
        }
    };
    let id = field("id")?;
    let text = field("text")?;
    // An object is kept as it is (compact JSON); a string is taken to hold the JSON already.
    let metadata = match v.get("metadata") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(m) => m.to_string(),
    };
    Ok(Document { id, text, metadata })
}

pub fn index(args: IndexArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| args.file.display().to_string())?;
    let progress_file = progress_path(&args.file);
    let earlier = std::fs::read(&progress_file).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let skip = if args.restart { 0 } else { resume_point(&text, earlier, &args.to.router) };
    // (line number, byte offset after the line, document); every line is checked before any
    // is sent.
    let mut docs = Vec::new();
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        offset += line.len();
        if n >= skip && !line.trim().is_empty() {
            docs.push((n + 1, offset, parse_line(n + 1, line)?));
        }
    }
    if skip > 0 {
        eprintln!("resuming after line {skip} (acknowledged by an earlier run; --restart to send everything)");
    }
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut client = args.to.search().await?;
        let started = std::time::Instant::now();
        let mut done = 0;
        // The checksum of the acknowledged prefix, extended batch by batch (rehashing the whole
        // prefix each time would make a long file quadratic).
        let mut hashed = text.split_inclusive('\n').take(skip).map(str::len).sum::<usize>();
        let mut prefix = crc32fast::Hasher::new();
        prefix.update(&text.as_bytes()[..hashed]);
        let mut size = Sizing::new(args.batch, args.ack_target_ms);
        let (mut batches, mut progress_line) = (0, ProgressLine::new());
        while done < docs.len() {
            let batch = &docs[done..(done + size.next).min(docs.len())];
            let documents = batch.iter().map(|(_, _, d)| d.clone()).collect();
            let (first, last) = (batch[0].0, batch[batch.len() - 1].0);
            let sent = std::time::Instant::now();
            match client.upsert(UpsertRequest { documents }).await {
                Ok(_) => size.acknowledged(batch.len(), sent.elapsed()),
                // Upserts are idempotent: the same documents again, fewer at a time.
                Err(s) if too_big(&s) && size.next > 1 => {
                    size.refused();
                    continue;
                }
                Err(s) => {
                    let hint = match too_big(&s) {
                        true => " (one document at a time was too slow: raise the router's [limits] write_deadline_ms)",
                        false => "",
                    };
                    anyhow::bail!("lines {first}-{last}: {:?}: {}{hint}", s.code(), s.message());
                }
            }
            batches += 1;
            let (lines, bytes) = (last, batch[batch.len() - 1].1);
            prefix.update(&text.as_bytes()[hashed..bytes]);
            hashed = bytes;
            let progress = Progress { router: args.to.router.clone(), lines, bytes, crc32: prefix.clone().finalize() };
            // Written aside and renamed, so a crash leaves the old record or the new one.
            let aside = progress_file.with_extension("progress.tmp");
            std::fs::write(&aside, serde_json::to_vec(&progress)?)?;
            std::fs::rename(&aside, &progress_file)?;
            done += batch.len();
            let line = format!(
                "indexed {done}/{} documents ({:.1} documents/s, batches of {})",
                docs.len(),
                done as f64 / started.elapsed().as_secs_f64(),
                batch.len()
            );
            progress_line.show(&line, done == docs.len());
        }
        let _ = std::fs::remove_file(&progress_file);
        println!(
            "indexed {done} documents in {batches} batches ({:.1} documents/s), skipped {skip} lines already acknowledged",
            done as f64 / started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

/// `index`'s progress on stderr: one line rewritten in place on a terminal; in a log file a line
/// every 10 seconds and the last one, so the file stays readable.
struct ProgressLine {
    terminal: bool,
    shown: Option<std::time::Instant>,
}

impl ProgressLine {
    fn new() -> ProgressLine {
        use std::io::IsTerminal;
        ProgressLine { terminal: std::io::stderr().is_terminal(), shown: None }
    }

    fn show(&mut self, line: &str, last: bool) {
        if self.terminal {
            eprint!("\r{line}");
            if last {
                eprintln!();
            }
        } else if last || self.shown.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(10)) {
            eprintln!("{line}");
            self.shown = Some(std::time::Instant::now());
        }
    }
}

/// A refusal that a smaller batch may not get: past the deadline, or over the encoder's queue.
fn too_big(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted)
}

/// How many documents the next Upsert of `index` carries: sized from the acknowledgement times
/// seen so that one takes about `target`, at most `most`, growing at most 2× a batch (a short
/// batch's time says little), halved on a refusal.
struct Sizing {
    next: usize,
    most: usize,
    /// None: every batch `most`.
    target: Option<std::time::Duration>,
}

impl Sizing {
    fn new(most: usize, target_ms: u64) -> Sizing {
        // The first batch is a probe: small enough for any encoder, big enough to time.
        let most = most.max(1);
        match target_ms {
            0 => Sizing { next: most, most, target: None },
            ms => Sizing { next: most.min(8), most, target: Some(std::time::Duration::from_millis(ms)) },
        }
    }

    fn acknowledged(&mut self, documents: usize, took: std::time::Duration) {
        if let Some(target) = self.target {
            let fits = documents as f64 * target.as_secs_f64() / took.as_secs_f64().max(1e-6);
            self.next = (fits as usize).clamp(1, (documents * 2).min(self.most));
        }
    }

    fn refused(&mut self) {
        self.next = (self.next / 2).max(1);
    }
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    to: Connection,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Searches in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Hits per search.
    #[arg(short, default_value_t = 10)]
    k: u32,
    /// Questions to send, round robin (a JSQuAD file).
    #[arg(long, default_value = "tests/fixtures/jsquad/jsquad-valid-v1.1.json")]
    jsquad: PathBuf,
    /// Centroids probed per query token and documents re-scored exactly (0: the shards'
    /// defaults for k), to see what search costs where.
    #[arg(long, default_value_t = 0)]
    nprobe: u32,
    /// Documents re-scored exactly per shard (0: the shards' default for k).
    #[arg(long, default_value_t = 0)]
    candidates: u32,
    /// Searches per second in all, sent on a fixed schedule whatever the answers take (an open
    /// loop: the load another job adds shows as latency, counted from each search's scheduled
    /// time). 0: each worker sends its next search as soon as the last is answered.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Ask for each hit's match explanation, to see what explaining costs.
    #[arg(long)]
    explain: bool,
    /// One JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

/// `jacolbert bench`: concurrent searches against a router for a while; QPS, latency
/// percentiles and errors.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let questions: Vec<String> =
        crate::jsquad::load(&args.jsquad, false)?.questions.into_iter().map(|(q, _)| q).collect();
    anyhow::ensure!(!questions.is_empty(), "no questions in {}", args.jsquad.display());
    let questions = std::sync::Arc::new(questions);
    tokio::runtime::Runtime::new()?.block_on(async {
        let client = args.to.search().await?;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(args.duration);
        let started = std::time::Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        let concurrency = args.concurrency.max(1);
        for w in 0..concurrency {
            let (mut client, questions, k, rate, explain) =
                (client.clone(), questions.clone(), args.k, args.rate, args.explain);
            let params = proto::v1::SearchParams { nprobe: args.nprobe, candidates: args.candidates, exact: false };
            workers.spawn(async move {
                let (mut latencies, mut errors, mut partial, mut refused) = (Vec::new(), 0usize, 0usize, 0usize);
                let mut i = w;
                // With a rate, worker w of c sends at started + (w + n·c) / rate.
                let every = (rate > 0.0).then(|| std::time::Duration::from_secs_f64(concurrency as f64 / rate));
                let mut due =
                    started + every.map_or(std::time::Duration::ZERO, |e| e.mul_f64(w as f64 / concurrency as f64));
                while std::time::Instant::now().max(due) < end {
                    let request = SearchRequest {
                        query: questions[i % questions.len()].clone(),
                        k,
                        filter_ids: vec![],
                        params: Some(params),
                        allow_partial: None,
                        include: None,
                        filter: None,
                        explain,
                    };
                    let t = match every {
                        Some(every) => {
                            tokio::time::sleep_until(due.into()).await;
                            let scheduled = due;
                            due += every;
                            scheduled
                        }
                        None => std::time::Instant::now(),
                    };
                    match client.search(request).await {
                        Ok(r) => {
                            latencies.push(t.elapsed().as_secs_f64() * 1e3);
                            partial += r.into_inner().partial as usize;
                        }
                        // The router is full: wait a little and send the same search again.
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                            refused += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(20 * refused.min(50) as u64)).await;
                            continue;
                        }
                        Err(_) => errors += 1,
                    }
                    i += STRIDE;
                }
                (latencies, errors, partial, refused)
            });
        }
        let (mut latencies, mut errors, mut partial, mut refused) = (Vec::new(), 0, 0, 0);
        while let Some(done) = workers.join_next().await {
            let (l, e, p, r) = done?;
            latencies.extend(l);
            errors += e;
            partial += p;
            refused += r;
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            latencies.get(((latencies.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN)
        };
        let report = serde_json::json!({
            "searches": latencies.len(), "errors": errors, "partial": partial, "refused": refused,
            "concurrency": args.concurrency, "rate": args.rate,
            "seconds": elapsed, "qps": latencies.len() as f64 / elapsed,
            "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
        });
        if args.json {
            println!("{report}");
        } else {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Ok(())
    })
}

/// Workers step through the questions with a stride, so concurrent workers ask different ones.
const STRIDE: usize = 7;

#[cfg(test)]
mod tests {
    use super::*;

    fn after(text: &str, lines: usize) -> Progress {
        let bytes: usize = text.split_inclusive('\n').take(lines).map(str::len).sum();
        Progress { router: "r".into(), lines, bytes, crc32: crc32fast::hash(&text.as_bytes()[..bytes]) }
    }

    #[test]
    fn resumes_only_where_the_acknowledged_lines_are_unchanged() {
        let text = "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"c\"}\n";
        assert_eq!(resume_point(text, Some(after(text, 2)), "r"), 2);
        assert_eq!(resume_point(text, None, "r"), 0);
        assert_eq!(resume_point(text, Some(after(text, 2)), "another router"), 0);
        // A later line changed: the acknowledged prefix still holds.
        assert_eq!(resume_point("{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"C\"}\n", Some(after(text, 2)), "r"), 2);
        // An acknowledged line changed, or the file shrank: start over.
        assert_eq!(resume_point("{\"id\":\"A\"}\n{\"id\":\"b\"}\n{\"id\":\"c\"}\n", Some(after(text, 2)), "r"), 0);
        assert_eq!(resume_point("{\"id\":\"a\"}\n", Some(after(text, 2)), "r"), 0);
    }

    #[test]
    fn batches_are_sized_by_acknowledgement_times() {
        let ms = std::time::Duration::from_millis;
        let mut size = Sizing::new(64, 2000);
        assert_eq!(size.next, 8, "the first batch is a probe");
        size.acknowledged(8, ms(100));
        assert_eq!(size.next, 16, "fast answers grow it at most 2× a batch");
        size.acknowledged(16, ms(100));
        size.acknowledged(32, ms(200));
        assert_eq!(size.next, 64, "never past --batch");
        size.acknowledged(64, ms(8000));
        assert_eq!(size.next, 16, "a slow answer shrinks it to what fits the target");
        size.acknowledged(16, ms(60_000));
        assert_eq!(size.next, 1, "never below one");
        let mut size = Sizing::new(64, 2000);
        size.refused();
        size.refused();
        size.refused();
        size.refused();
        assert_eq!(size.next, 1, "refusals halve it");
        let mut fixed = Sizing::new(20, 0);
        fixed.acknowledged(20, ms(60_000));
        assert_eq!(fixed.next, 20, "--ack-target-ms 0 keeps --batch");
        assert_eq!(Sizing::new(0, 2000).next, 1);
    }
}
