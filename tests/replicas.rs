//! Replica consistency (DESIGN.md §9), every node its own process, the cluster state in a real
//! etcd on loopback. In the manner of Jepsen: writers through two routers (upserts, deletes and
//! rewrites of the same ids) and searchers while a nemesis SIGKILLs and SIGSTOPs replicas and
//! brings them back; then, healed and repaired, a checker: every replica of a shard lists the
//! same ids at the same versions, every acknowledged write and delete holds, repeated queries
//! answer alike, Stats is exact. And the single faults one by one: a dead replica while writes
//! go on, a replica whose data was deleted, a replica added and one removed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cluster_status, documents, jacolbert, request, sample, scrape, Cluster, Etcd};
use proto::v1::search_client::SearchClient;
use proto::v1::shard_client::ShardClient;
use proto::v1::{ClusterStatsRequest, DeleteRequest, Document, ExportRequest, GetRequest, ListRequest, UpsertRequest};
use tonic::transport::Channel;

/// Ids both writers rewrite and delete, and documents loaded before the faults.
const POOL: usize = 40;
const LOADED: usize = 120;

async fn client(address: &str) -> SearchClient<Channel> {
    SearchClient::connect(format!("http://{address}")).await.unwrap()
}

/// One replica's whole versions list: (id, version, tombstone).
async fn listing(address: &str) -> Vec<(String, u64, bool)> {
    let mut shard = ShardClient::connect(format!("http://{address}")).await.unwrap();
    let (mut out, mut after) = (Vec::new(), String::new());
    loop {
        let page = ListRequest { after: after.clone(), limit: 1000 };
        let entries = shard.list_versions(page).await.unwrap().into_inner().entries;
        out.extend(entries.iter().map(|e| (e.id.clone(), e.version, e.deleted)));
        match entries.last() {
            Some(last) if entries.len() == 1000 => after = last.id.clone(),
            _ => return out,
        }
    }
}

/// The texts a replica holds for `ids` (those it has).
async fn texts(address: &str, ids: Vec<String>) -> BTreeMap<String, String> {
    let mut shard = ShardClient::connect(format!("http://{address}")).await.unwrap();
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(100) {
        let docs = shard.export(ExportRequest { ids: chunk.to_vec() }).await.unwrap().into_inner().documents;
        out.extend(docs.into_iter().filter_map(|d| d.document).map(|d| (d.id, d.text)));
    }
    out
}

/// Every replica of every shard the state lists as not removed: in sync, with identical
/// versions lists (tombstones included). Returns the live ids of each shard.
async fn identical_replicas(store: &str) -> Vec<(String, Vec<String>)> {
    let status = cluster_status(store);
    let mut shards = Vec::new();
    for shard in status["shards"].as_array().unwrap() {
        let replicas: Vec<&str> = shard["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] != "removed")
            .map(|r| r["address"].as_str().unwrap())
            .collect();
        let first = listing(replicas[0]).await;
        for other in &replicas[1..] {
            let listed = listing(other).await;
            if listed != first {
                let (a, b): (BTreeSet<_>, BTreeSet<_>) = (first.iter().collect(), listed.iter().collect());
                let only: Vec<_> = a.symmetric_difference(&b).take(10).collect();
                panic!(
                    "replicas {} and {other} differ ({} and {} entries); first differences: {only:?}",
                    replicas[0],
                    first.len(),
                    listed.len()
                );
            }
        }
        let live = first.into_iter().filter(|e| !e.2).map(|e| e.0).collect();
        shards.push((replicas[0].to_string(), live));
    }
    shards
}

/// Waits until every replica not removed is in sync (at most `limit`).
async fn wait_in_sync(store: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = cluster_status(store);
        let states: Vec<String> = status["shards"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["replicas"].as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap().to_string()))
            .filter(|s| s != "removed")
            .collect();
        if states.iter().all(|s| s == "in_sync") {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "replicas not in sync after {limit:?}: {status}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The state of replica `address` in `cluster status`.
fn replica_state(store: &str, address: &str) -> String {
    let status = cluster_status(store);
    let replicas = status["shards"].as_array().unwrap().iter().flat_map(|s| s["replicas"].as_array().unwrap().clone());
    let found =
        replicas.into_iter().find(|r| r["address"] == address).unwrap_or_else(|| panic!("{address} in {status}"));
    found["state"].as_str().unwrap().to_string()
}

/// One write of the workload: ids, their texts (`None`: a delete), when it ran, whether it
/// was acknowledged.
struct Op {
    ids: Vec<String>,
    texts: Option<Vec<String>>,
    start: Instant,
    end: Instant,
    acked: bool,
}

/// A small seeded generator (the seed is printed, so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Writer `w` through `router` until `done`: batches of 1–3 pool ids and one id of its own,
/// three upserts to each delete.
async fn writer(
    w: usize,
    mut router: SearchClient<Channel>,
    seed: u64,
    done: Arc<AtomicBool>,
    ops: Arc<Mutex<Vec<Op>>>,
) {
    let mut rng = Rng(seed ^ (w as u64 + 1));
    let mut seq = 0;
    while !done.load(Ordering::Acquire) {
        seq += 1;
        let mut ids: BTreeSet<String> = (0..1 + rng.below(3)).map(|_| format!("d{}", rng.below(POOL))).collect();
        let delete = rng.below(4) == 0;
        // And an id written once and never again (an upsert makes one, a delete takes an older
        // one): what a replica misses of those, only a repair brings.
        ids.insert(format!("n{w}-{}", if delete { rng.below(seq) } else { seq }));
        let ids: Vec<String> = ids.into_iter().collect();
        let start = Instant::now();
        let (texts, acked) = if delete {
            let mut call = tonic::Request::new(DeleteRequest { ids: ids.clone(), version: 0, filter: None });
            call.set_timeout(Duration::from_secs(3));
            (None, router.delete(call).await.is_ok())
        } else {
            let texts: Vec<String> = ids.iter().map(|id| format!("{id}は富士山の文書、書き手{w}の{seq}番")).collect();
            let documents = ids.iter().zip(&texts).map(|(id, t)| Document {
                id: id.clone(),
                text: t.clone(),
                metadata: String::new(),
            });
            let mut call = tonic::Request::new(UpsertRequest { documents: documents.collect() });
            call.set_timeout(Duration::from_secs(3));
            (Some(texts), router.upsert(call).await.is_ok())
        };
        ops.lock().unwrap().push(Op { ids, texts, start, end: Instant::now(), acked });
        if !acked {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The checker of one id: what the replicas hold of it (`Some(text)`, or `None`: nothing) must
/// come from a write of it (or the load) that no acknowledged write of it began after, a few
/// milliseconds past its end (the routers' clocks are the same here; versions within one
/// millisecond are ordered by router, not by time).
fn check_id(id: &str, held: Option<&String>, ops: &[Op], loaded: (Option<String>, Instant)) -> Result<(), String> {
    let slack = Duration::from_millis(5);
    let mut candidates: Vec<Instant> = Vec::new();
    if held == loaded.0.as_ref() {
        candidates.push(loaded.1);
    }
    for op in ops {
        let Some(i) = op.ids.iter().position(|x| x == id) else { continue };
        let wrote = op.texts.as_ref().map(|t| &t[i]);
        if wrote == held {
            candidates.push(op.end);
        }
    }
    let newest_acked = ops.iter().filter(|o| o.acked && o.ids.iter().any(|x| x == id)).map(|o| o.start).max();
    let explained = candidates.iter().any(|end| newest_acked.is_none_or(|start| start <= *end + slack));
    match (candidates.is_empty(), explained) {
        (true, _) => Err(format!("{id}: holds {held:?}, which no write of it wrote")),
        (false, false) => Err(format!("{id}: holds {held:?}, but a later write of it was acknowledged")),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_survive_killed_and_frozen_replicas_and_repair_makes_them_identical() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let store = etcd.url("jepsen");
    let mut c = Cluster::start_on_store(dir.path(), 2, 3, &store);
    let second = c.start_router();
    let routers = vec![client(&c.router).await, client(&second).await];
    let loaded_docs = documents(LOADED);
    for batch in loaded_docs.chunks(60) {
        routers[0].clone().upsert(UpsertRequest { documents: batch.to_vec() }).await.unwrap();
    }
    let loaded_at = Instant::now();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    println!("seed {seed}");

    // The workload: a writer per router, a searcher over both.
    let (done, ops) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let mut tasks = Vec::new();
    for (w, router) in routers.iter().enumerate() {
        tasks.push(tokio::spawn(writer(w, router.clone(), seed, done.clone(), ops.clone())));
    }
    let answers = Arc::new(Mutex::new(BTreeMap::<&str, usize>::new()));
    {
        let (routers, done, answers) = (routers.clone(), done.clone(), answers.clone());
        tasks.push(tokio::spawn(async move {
            let mut turn = 0;
            while !done.load(Ordering::Acquire) {
                let mut call = tonic::Request::new(request("日本の富士山", 200, None));
                call.set_timeout(Duration::from_secs(2));
                turn += 1;
                let kind = match routers[turn % 2].clone().search(call).await {
                    Ok(a) => {
                        let a = a.into_inner();
                        let unique: BTreeSet<&String> = a.hits.iter().map(|h| &h.id).collect();
                        assert_eq!(unique.len(), a.hits.len(), "an answer repeated a document");
                        if a.partial {
                            "partial"
                        } else {
                            "complete"
                        }
                    }
                    Err(_) => "failed",
                };
                *answers.lock().unwrap().entry(kind).or_default() += 1;
            }
        }));
    }

    // The nemesis: one replica at a time, SIGKILL (then a restart on its data) or SIGSTOP
    // (then SIGCONT), held 1–2.5 s, for 24 s, and on (up to 60 s) until enough writes and
    // deletes were acknowledged to judge: a loaded machine writes fewer in 24 s.
    let mut rng = Rng(seed);
    let (mut kills, mut stops) = (0, 0);
    let nemesis = Instant::now();
    let enough = |ops: &Mutex<Vec<Op>>| {
        let ops = ops.lock().unwrap();
        let acked = ops.iter().filter(|o| o.acked).count();
        acked > 100 && ops.iter().filter(|o| o.acked && o.texts.is_none()).count() > 10
    };
    let going = |time: Duration| time < Duration::from_secs(24) || (!enough(&ops) && time < Duration::from_secs(60));
    while going(nemesis.elapsed()) {
        let (s, r) = (rng.below(2), rng.below(3));
        let hold = Duration::from_millis(1000 + rng.below(1500) as u64);
        if rng.below(2) == 0 {
            kills += 1;
            drop(c.shards[s][r].take());
            tokio::time::sleep(hold).await;
            c.shards[s][r] = Some(tokio::task::block_in_place(|| c.start_shard(s, r)));
        } else {
            stops += 1;
            c.shards[s][r].as_ref().unwrap().signal("STOP");
            tokio::time::sleep(hold).await;
            c.shards[s][r].as_ref().unwrap().signal("CONT");
        }
        tokio::time::sleep(Duration::from_millis(300 + rng.below(700) as u64)).await;
    }
    // Writes go on a little while everything is up, then stop; the repairs finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    done.store(true, Ordering::Release);
    for task in tasks {
        task.await.unwrap();
    }
    let took = wait_in_sync(&store, Duration::from_secs(90)).await;

    // The checker.
    let ops = std::mem::take(&mut *ops.lock().unwrap());
    let shards = identical_replicas(&store).await;
    let mut held = BTreeMap::new();
    for (address, live) in &shards {
        held.extend(texts(address, live.clone()).await);
    }
    let loaded: BTreeMap<String, String> = loaded_docs.iter().map(|d| (d.id.clone(), d.text.clone())).collect();
    let mut violations = Vec::new();
    let every: BTreeSet<&String> = loaded.keys().chain(ops.iter().flat_map(|o| &o.ids)).collect();
    for id in &every {
        if let Err(e) = check_id(id, held.get(*id), &ops, (loaded.get(*id).cloned(), loaded_at)) {
            violations.push(e);
        }
    }
    for mut router in routers.iter().cloned() {
        for i in 0..POOL {
            let id = format!("d{i}");
            let got = router
                .get(GetRequest { id: id.clone(), ids: vec![] })
                .await
                .map(|r| r.into_inner().document.unwrap().text);
            if got.as_ref().ok() != held.get(&id) {
                violations.push(format!("{id}: the router reads {got:?}, the replicas hold {:?}", held.get(&id)));
            }
        }
        let stats = router.stats(ClusterStatsRequest {}).await.unwrap().into_inner();
        assert_eq!(stats.documents, held.len() as u64, "Stats counts what the replicas hold");
    }
    for query in ["日本の富士山", "京都の寿司", "書き手の文書"] {
        let first = routers[0].clone().search(request(query, 50, Some(false))).await.unwrap().into_inner();
        for n in 0..20 {
            let again = routers[n % 2].clone().search(request(query, 50, Some(false))).await.unwrap().into_inner();
            assert_eq!(common::ids(&again.hits), common::ids(&first.hits), "{query}: answer {n} differs");
        }
    }
    let metric =
        |name: &str| -> f64 { ["router", "router-2"].iter().map(|r| sample(&scrape(&c.metrics[*r]), name)).sum() };
    let (acked, failed) = (ops.iter().filter(|o| o.acked).count(), ops.iter().filter(|o| !o.acked).count());
    let deletes = ops.iter().filter(|o| o.acked && o.texts.is_none()).count();
    let (repairs, marked) = (metric("jacolbert_router_repairs_total"), metric("jacolbert_router_marked_stale_total"));
    println!(
        "writes acknowledged {acked} (deletes {deletes}), failed {failed}; replicas killed {kills}, frozen {stops}; \
         marked stale {marked}, repairs run {repairs}, in sync {took:?} after the writes stopped; searches {:?}; \
         documents {}",
        answers.lock().unwrap(),
        held.len()
    );
    assert!(violations.is_empty(), "{} violations: {violations:#?}", violations.len());
    assert!(acked > 100 && deletes > 10, "too few writes acknowledged to tell anything");
    assert!(kills > 0 && stops > 0 && repairs > 0.0, "the nemesis did not bite");
}

/// Reads through the router for `time`: every live id found, every deleted one not, and a
/// search for everything complete and exact. Returns how many reads ran.
async fn reads_exact(
    router: &mut SearchClient<Channel>,
    live: &BTreeSet<String>,
    gone: &[String],
    time: Duration,
) -> usize {
    let (started, mut reads) = (Instant::now(), 0);
    while started.elapsed() < time {
        for id in live.iter().step_by(7) {
            let got = router.get(GetRequest { id: id.clone(), ids: vec![] }).await;
            assert!(got.is_ok(), "{id} not read: {got:?}");
        }
        for id in gone {
            let got = router.get(GetRequest { id: id.clone(), ids: vec![] }).await.unwrap_err();
            assert_eq!(got.code(), tonic::Code::NotFound, "{id}: {got:?}");
        }
        let answer = router.search(request("日本", live.len() as u32 + 20, Some(false))).await.unwrap().into_inner();
        let found: BTreeSet<String> = answer.hits.into_iter().map(|h| h.id).collect();
        assert_eq!(&found, live, "a search saw a replica's gaps");
        reads += live.len() / 7 + gone.len() + 1;
    }
    reads
}

fn replica_command(args: &[&str]) -> std::process::Output {
    jacolbert().arg("replica").args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_replica_a_lost_data_directory_and_a_replaced_node() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let store = etcd.url("single");
    let mut c = Cluster::start_on_store(dir.path(), 1, 2, &store);
    let mut router = c.client().await;
    let all = documents(100);
    router.upsert(UpsertRequest { documents: all[..60].to_vec() }).await.unwrap();
    let (first, second) = (c.shard_addresses[0][0].clone(), c.shard_addresses[0][1].clone());

    // One of two replicas dead: writes and deletes are acknowledged (write_quorum 1), and the
    // dead one is marked stale first.
    drop(c.shards[0][1].take());
    router.upsert(UpsertRequest { documents: all[60..].to_vec() }).await.expect("a write with one replica dead");
    let gone: Vec<String> = (0..5).map(|i| format!("d{i}")).collect();
    let deleted =
        router.delete(DeleteRequest { ids: gone.clone(), version: 0, filter: None }).await.unwrap().into_inner();
    assert_eq!(deleted.deleted, 5);
    assert_eq!(replica_state(&store, &second), "stale");
    // Back, it misses 40 documents and 5 deletes; reads never see that, before and while it
    // is repaired.
    c.shards[0][1] = Some(c.start_shard(0, 1));
    let live: BTreeSet<String> = (5..100).map(|i| format!("d{i}")).collect();
    let reads = reads_exact(&mut router, &live, &gone, Duration::from_secs(3)).await;
    let repaired = wait_in_sync(&store, Duration::from_secs(30)).await;
    assert_eq!(identical_replicas(&store).await[0].1.len(), live.len());
    println!("dead replica: {reads} reads exact while it came back; in sync {repaired:?} later");

    // A replica whose data directory is lost comes back empty under another store identity: it
    // answers no read, is marked stale, repaired, and only then serves.
    let known = cluster_status(&store)["shards"][0]["replicas"][0]["store"].clone();
    assert!(known.is_string(), "the store of an in-sync replica is recorded: {known}");
    drop(c.shards[0][0].take());
    std::fs::remove_dir_all(c.dir.join("shard-0-0")).unwrap();
    c.shards[0][0] = Some(c.start_shard(0, 0));
    let reads = reads_exact(&mut router, &live, &gone, Duration::from_secs(3)).await;
    wait_in_sync(&store, Duration::from_secs(30)).await;
    let now = cluster_status(&store)["shards"][0]["replicas"][0]["store"].clone();
    assert!(now.is_string() && now != known, "the recreated store is recorded: {known} then {now}");
    assert_eq!(identical_replicas(&store).await[0].1.len(), live.len());
    println!("lost data directory: {reads} reads exact while it was repaired");

    // A node replaced: a new empty replica is added (joining until repaired), the old one
    // removed; the last replica in sync cannot be.
    let third = c.start_extra_replica(0);
    let out = replica_command(&["add", "--cluster-store", &store, "--shard", "0", &third]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = replica_command(&["add", "--cluster-store", &store, "--shard", "0", &third]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already a replica"));
    let nowhere = replica_command(&["add", "--cluster-store", &store, "--shard", "7", &third]);
    assert!(!nowhere.status.success() && String::from_utf8_lossy(&nowhere.stderr).contains("there is no shard 7"));
    reads_exact(&mut router, &live, &gone, Duration::from_secs(1)).await;
    wait_in_sync(&store, Duration::from_secs(30)).await;
    for address in [&first, &second] {
        let out = replica_command(&["remove", "--cluster-store", &store, "--shard", "0", address]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(replica_state(&store, &first), "removed");
    let last = replica_command(&["remove", "--cluster-store", &store, "--shard", "0", &third]);
    assert!(!last.status.success() && String::from_utf8_lossy(&last.stderr).contains("last replica"));
    drop(c.shards[0][0].take());
    drop(c.shards[0][1].take());
    reads_exact(&mut router, &live, &gone, Duration::from_secs(1)).await;
    let stats = router.stats(ClusterStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.documents, live.len() as u64);
    assert_eq!(identical_replicas(&store).await[0].1.len(), live.len());

    // The last replica in sync loses its data: there is nothing to repair it from, so it goes
    // on serving (empty, under its new store) rather than leaving the shard unreadable.
    let before = cluster_status(&store)["shards"][0]["replicas"][2]["store"].clone();
    drop(c.shards[0][2].take());
    std::fs::remove_dir_all(c.dir.join("shard-0-2")).unwrap();
    c.shards[0][2] = Some(c.start_shard(0, 2));
    let started = Instant::now();
    while cluster_status(&store)["shards"][0]["replicas"][2]["store"] == before {
        assert!(started.elapsed() < Duration::from_secs(20), "the new store was never recorded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(replica_state(&store, &third), "in_sync");
    let answer = router.search(request("日本", 10, Some(false))).await.unwrap().into_inner();
    assert_eq!((answer.hits.len(), answer.partial), (0, false));
}
