//! Cluster state in etcd (a real etcd server on loopback), every node its own process, in the
//! manner of Jepsen: a workload of searches and writes through two routers, a nemesis (a third
//! process moving shards, SIGKILLed at chosen points of a move; etcd SIGKILLed and restarted),
//! then a checker: every answer held every document exactly once, every acknowledged write is
//! read back from both routers, and the document count is exact.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cluster_status, documents, jacolbert, request, Cluster, Etcd, Node};
use proto::v1::search_client::SearchClient;
use proto::v1::{ClusterStatsRequest, Document, GetRequest, UpsertRequest};
use tonic::transport::Channel;

const DOCS: usize = 300;
/// Documents each writer rewrites, over and over (writer w takes ids w*REWRITTEN..).
const REWRITTEN: usize = 6;

/// What the workload saw.
#[derive(Default)]
struct History {
    answers: usize,
    /// Answers that missed or repeated a document, or said they were partial (each described).
    bad_answers: Vec<String>,
    /// Per rewritten id: the versions acknowledged, and the last one attempted.
    acked: BTreeMap<String, u64>,
    attempted: BTreeMap<String, u64>,
    write_errors: BTreeMap<String, usize>,
    /// Reads of a rewritten id through the other router right after its write was acknowledged,
    /// those that returned an older version (or nothing), and those that failed.
    reads: usize,
    stale_reads: Vec<String>,
    read_errors: BTreeMap<String, usize>,
}

/// Searches through every router in turn, and one writer per router rewriting its own ids,
/// until `done`; everything they see goes into the history.
fn workload(
    routers: Vec<SearchClient<Channel>>,
    done: Arc<AtomicBool>,
) -> (Arc<Mutex<History>>, Vec<tokio::task::JoinHandle<()>>) {
    let history = Arc::new(Mutex::new(History::default()));
    let everything: BTreeSet<String> = (0..DOCS).map(|i| format!("d{i}")).collect();
    let mut tasks = Vec::new();
    {
        let (routers, done, history) = (routers.clone(), done.clone(), history.clone());
        tasks.push(tokio::spawn(async move {
            let mut turn = 0;
            while !done.load(Ordering::Acquire) {
                let mut client = routers[turn % routers.len()].clone();
                turn += 1;
                let answer = client.search(request("日本の富士山", DOCS as u32 + 10, None)).await;
                let mut h = history.lock().unwrap();
                h.answers += 1;
                match answer {
                    Ok(a) => {
                        let a = a.into_inner();
                        let ids: Vec<String> = a.hits.iter().map(|h| h.id.clone()).collect();
                        let unique: BTreeSet<String> = ids.iter().cloned().collect();
                        if a.partial || ids.len() != DOCS || unique != everything {
                            h.bad_answers.push(format!(
                                "{} hits, {} distinct, partial {}, failures {:?}",
                                ids.len(),
                                unique.len(),
                                a.partial,
                                a.failures
                            ));
                        }
                    }
                    Err(s) => h.bad_answers.push(format!("search failed: {s:?}")),
                }
            }
        }));
    }
    for (w, router) in routers.iter().cloned().enumerate() {
        // Each acknowledged write is read back at once through the other router.
        let other = routers[(w + 1) % routers.len()].clone();
        let (done, history) = (done.clone(), history.clone());
        tasks.push(tokio::spawn(async move {
            let mut version = 0u64;
            while !done.load(Ordering::Acquire) {
                version += 1;
                let ids: Vec<String> = (0..REWRITTEN).map(|i| format!("d{}", w * REWRITTEN + i)).collect();
                let documents = ids
                    .iter()
                    .map(|id| Document { id: id.clone(), text: text(id, version), metadata: String::new() })
                    .collect();
                for id in &ids {
                    history.lock().unwrap().attempted.insert(id.clone(), version);
                }
                let mut call = tonic::Request::new(UpsertRequest { documents });
                call.set_timeout(Duration::from_secs(5));
                let result = router.clone().upsert(call).await;
                let failed = {
                    let mut h = history.lock().unwrap();
                    match result {
                        Ok(_) => {
                            for id in &ids {
                                h.acked.insert(id.clone(), version);
                            }
                            false
                        }
                        Err(s) => {
                            *h.write_errors.entry(format!("{:?}", s.code())).or_default() += 1;
                            true
                        }
                    }
                };
                if failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let id = &ids[version as usize % ids.len()];
                let mut read = tonic::Request::new(GetRequest { id: id.clone(), ids: vec![] });
                read.set_timeout(Duration::from_secs(5));
                let got = other.clone().get(read).await;
                let mut h = history.lock().unwrap();
                h.reads += 1;
                match got.map(|r| r.into_inner().document.map(|d| d.text)) {
                    Ok(Some(t)) if (version..=h.attempted[id]).any(|v| t == text(id, v)) => {}
                    Ok(t) => h.stale_reads.push(format!("{id} read {t:?} after version {version} was acknowledged")),
                    Err(s) => *h.read_errors.entry(format!("{:?}", s.code())).or_default() += 1,
                }
            }
        }));
    }
    (history, tasks)
}

fn text(id: &str, version: u64) -> String {
    format!("{id}の版{version}は富士山の文書")
}

/// The checker: answers complete, acknowledged writes read back (at their last acknowledged
/// version, or a later attempted one) through every router, the count exact.
async fn check(history: &History, routers: &[SearchClient<Channel>]) {
    println!(
        "answers {}, bad {}; writes acknowledged {:?}, write errors {:?}; reads after a write {}, stale {}, \
         failed {:?}",
        history.answers,
        history.bad_answers.len(),
        history.acked.values().collect::<Vec<_>>(),
        history.write_errors,
        history.reads,
        history.stale_reads.len(),
        history.read_errors
    );
    assert!(history.stale_reads.is_empty(), "stale reads: {:?}", history.stale_reads);
    assert!(history.answers > 0, "no search ran");
    assert!(history.bad_answers.is_empty(), "answers that missed or repeated documents: {:?}", history.bad_answers);
    assert!(!history.acked.is_empty(), "no write was acknowledged");
    for mut router in routers.iter().cloned() {
        for (id, acked) in &history.acked {
            let got =
                router.get(GetRequest { id: id.clone(), ids: vec![] }).await.unwrap().into_inner().document.unwrap();
            let attempted = history.attempted[id];
            let ok = (*acked..=attempted).any(|v| got.text == text(id, v));
            assert!(ok, "{id}: read {:?}, acknowledged version {acked} (attempted up to {attempted})", got.text);
        }
        let stats = router.stats(ClusterStatsRequest {}).await.unwrap().into_inner();
        assert_eq!(stats.documents, DOCS as u64, "documents counted after the moves");
    }
}

async fn client(address: &str) -> SearchClient<Channel> {
    SearchClient::connect(format!("http://{address}")).await.unwrap()
}

async fn load(router: &mut SearchClient<Channel>) {
    for batch in documents(DOCS).chunks(100) {
        router.upsert(UpsertRequest { documents: batch.to_vec() }).await.unwrap();
    }
}

/// `jacolbert rebalance --cluster-store STORE ARGS…` to its end; its stdout.
async fn rebalance(store: &str, args: &[&str]) -> String {
    let mut command = jacolbert();
    command.args(["rebalance", "--cluster-store", store]).args(args);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "rebalance {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// etcd, two shards, two routers on the store with the documents loaded, and the workload
/// running through both routers.
struct Run {
    _dir: tempfile::TempDir,
    etcd: Etcd,
    store: String,
    c: Cluster,
    routers: Vec<SearchClient<Channel>>,
    done: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Run {
    async fn start(prefix: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start(dir.path());
        let store = etcd.url(prefix);
        let mut c = Cluster::start_on_store(dir.path(), 2, 1, &store);
        let second = c.start_router();
        let routers = vec![client(&c.router).await, client(&second).await];
        load(&mut routers[0].clone()).await;
        let done = Arc::new(AtomicBool::new(false));
        let (history, tasks) = workload(routers.clone(), done.clone());
        Run { _dir: dir, etcd, store, c, routers, done, history, tasks }
    }

    /// Stops the workload and checks what it saw.
    async fn check(&mut self) {
        self.done.store(true, Ordering::Release);
        for task in self.tasks.drain(..) {
            task.await.unwrap();
        }
        check(&self.history.lock().unwrap(), &self.routers).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_routers_serve_while_a_third_process_adds_a_shard_then_removes_one() {
    let mut run = Run::start("grow").await;
    let (store, new_shard) = (run.store.clone(), run.c.start_unlisted_shard());
    let added = rebalance(&store, &["--add-shard", &new_shard]).await;
    assert!(added.starts_with("added shard 2 of 3; moved "), "{added}");
    let removed = rebalance(&store, &["--remove-shard", "0"]).await;
    assert!(removed.starts_with("removed shard 0; 2 shards; moved "), "{removed}");
    run.check().await;
    println!("{added}{removed}");

    // The map: shard 0 was drained and dropped, the added shard took its position.
    let status = cluster_status(&store);
    assert_eq!(status["move"], serde_json::Value::Null);
    let addresses: Vec<&str> =
        status["shards"].as_array().unwrap().iter().map(|s| s["replicas"][0]["address"].as_str().unwrap()).collect();
    assert_eq!(addresses, [new_shard.as_str(), run.c.shard_addresses[1][0].as_str()]);
    assert!(status["epoch"].as_u64().unwrap() > 3);
    let drained = format!("http://{}", run.c.shard_addresses[0][0]);
    let mut drained = proto::v1::shard_client::ShardClient::connect(drained).await.unwrap();
    let left = drained.stats(proto::v1::StatsRequest {}).await.unwrap().into_inner().documents;
    assert_eq!(left, 0, "the removed shard still holds documents");
}

/// Starts `jacolbert rebalance` with a failpoint, waits until it stands at that point, and
/// SIGKILLs it there.
fn kill_at(store: &str, args: &[&str], failpoint: &str) {
    let mut child = jacolbert()
        .args(["rebalance", "--cluster-store", store])
        .args(args)
        .env("JACOLBERT_FAILPOINT", failpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mover = Node(child);
    let name = failpoint.split(':').next().unwrap();
    let started = Instant::now();
    let mut said = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains(&format!("failpoint {name} reached")) {
            drop(mover); // SIGKILL, right there
            println!("killed the mover at {failpoint} after {:?}", started.elapsed());
            return;
        }
        said.push(line);
    }
    panic!("the mover ended without reaching {failpoint} after {:?}; it said:\n{}", started.elapsed(), said.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mover_killed_at_any_step_is_resumed_by_another_process() {
    let mut run = Run::start("crash").await;
    let (store, new_shard) = (run.store.clone(), run.c.start_unlisted_shard());
    let store = store.as_str();
    // Killed while writes are fenced, then resumed by the same command run again.
    kill_at(store, &["--add-shard", &new_shard], "fenced:2");
    rebalance(store, &["--add-shard", &new_shard]).await;
    // Killed after a copy and before the delete; then after every router acknowledged the
    // copy; then between batches: each resumed by `--resume`, or by a router first.
    kill_at(store, &["--remove-shard", "1"], "copied:1");
    rebalance(store, &["--resume"]).await;
    kill_at(store, &["--remove-shard", "0"], "acknowledged:1");
    rebalance(store, &["--resume"]).await;
    let status = cluster_status(store);
    assert_eq!(status["shards"].as_array().unwrap().len(), 1);
    let again = run.c.start_unlisted_shard();
    kill_at(store, &["--add-shard", &again], "between:1");
    rebalance(store, &["--add-shard", &again]).await;
    run.check().await;
    let status = cluster_status(store);
    assert_eq!((status["move"].clone(), status["shards"].as_array().unwrap().len()), (serde_json::Value::Null, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn searches_go_on_while_etcd_is_down_and_writes_never_lie() {
    let mut run = Run::start("outage").await;
    let history = run.history.clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.etcd.kill();
    // Longer than a router's lease: the routers lose touch and refuse writes; searches answer.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let acked = || history.lock().unwrap().acked.values().sum::<u64>();
    let refused = history.lock().unwrap().write_errors.get("Unavailable").copied();
    let acked_while_out = acked();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(acked(), acked_while_out, "a write was acknowledged while the routers were out of touch");
    run.etcd.restart();
    // Writes are taken again once the routers are back in touch.
    let back = Instant::now();
    loop {
        if acked() > acked_while_out + 2 * REWRITTEN as u64 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(30), "writes did not resume after etcd came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("writes refused while etcd was down: {refused:?}; taken again after {:?}", back.elapsed());
    assert!(refused.unwrap_or(0) > 0, "no write was refused while etcd was down");
    // A move works again too.
    let new_shard = run.c.start_unlisted_shard();
    rebalance(&run.store, &["--add-shard", &new_shard]).await;
    run.check().await;
}
