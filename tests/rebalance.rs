//! Adding a fourth shard to a running three-shard cluster (`jacolbert rebalance --router`, the
//! router's cluster state in a file), every node its own process, while searches and writes go
//! on: no answer misses or repeats a document, no write is lost, and afterwards every document
//! is where placement over four shards says. A router that keeps its state in memory refuses.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{documents, jacolbert, request, Cluster};
use proto::v1::shard_client::ShardClient;
use proto::v1::{ClusterStatsRequest, Document, GetRequest, UpsertRequest};

const DOCS: usize = 600;

#[tokio::test(flavor = "multi_thread")]
async fn a_fourth_shard_takes_its_documents_while_answers_stay_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file://{}", dir.path().join("cluster.json").display());
    let mut c = Cluster::start_on_store(dir.path(), 3, 1, &store);
    let mut client = c.client().await;
    for batch in documents(DOCS).chunks(100) {
        client.upsert(UpsertRequest { documents: batch.to_vec() }).await.unwrap();
    }
    let everything: BTreeSet<String> = (0..DOCS).map(|i| format!("d{i}")).collect();
    let new_shard = c.start_unlisted_shard();

    // Searches for every document, and rewrites of a few, until the move is over.
    let done = Arc::new(AtomicBool::new(false));
    let searches = {
        let (client, done) = (client.clone(), done.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !done.load(Ordering::Acquire) {
                let answer = client.clone().search(request("日本の富士山", DOCS as u32, None)).await.unwrap();
                answers.push(answer.into_inner());
            }
            answers
        })
    };
    let writes = {
        let (client, done) = (client.clone(), done.clone());
        tokio::spawn(async move {
            let mut version = 0;
            while !done.load(Ordering::Acquire) {
                version += 1;
                let documents = (0..8)
                    .map(|i| Document {
                        id: format!("d{i}"),
                        text: format!("版{version}の文書{i}"),
                        metadata: String::new(),
                    })
                    .collect();
                client.clone().upsert(UpsertRequest { documents }).await.unwrap();
            }
            version
        })
    };
    let router = c.router.clone();
    let out = tokio::task::spawn_blocking(move || {
        jacolbert().args(["rebalance", "--router", &router, "--add-shard", &new_shard]).output().unwrap()
    })
    .await
    .unwrap();
    done.store(true, Ordering::Release);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let moving: BTreeSet<&String> = everything.iter().filter(|id| router::placement::shard_of(id, 4) == 3).collect();
    let said = String::from_utf8_lossy(&out.stdout);
    let moved: usize = said
        .strip_prefix("added shard 3 of 4; moved ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    // The rewritten documents may have reached the new shard by their rewrite instead.
    let rewritten = moving.iter().filter(|id| id[1..].parse::<usize>().unwrap() < 8).count();
    assert!((moving.len() - rewritten..=moving.len()).contains(&moved), "moved {moved} of {}", moving.len());

    let answers = searches.await.unwrap();
    assert!(!answers.is_empty());
    for answer in &answers {
        let ids: Vec<&String> = answer.hits.iter().map(|h| &h.id).collect();
        let unique: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
        assert_eq!((ids.len(), answer.partial), (DOCS, false), "an answer missed or repeated documents");
        assert_eq!(unique, everything);
    }
    assert!(answers.iter().any(|a| a.shards_total == 4));

    // The last rewrite of each rewritten document is what Get returns, once.
    let version = writes.await.unwrap();
    for i in 0..8 {
        let got =
            client.get(GetRequest { id: format!("d{i}"), ids: vec![] }).await.unwrap().into_inner().document.unwrap();
        assert_eq!(got.text, format!("版{version}の文書{i}"));
    }
    // Every document where placement over four shards says, and only there.
    let stats = client.stats(ClusterStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.documents, stats.shards_ok, stats.shards.len()), (DOCS as u64, 4, 4));
    assert_eq!(stats.shards[3].documents, moving.len() as u64);
    for (s, address) in c.shard_addresses.iter().map(|r| &r[0]).enumerate() {
        let mut shard = ShardClient::connect(format!("http://{address}")).await.unwrap();
        for id in &everything {
            let here = shard.get(GetRequest { id: id.clone(), ids: vec![] }).await.is_ok();
            assert_eq!(here, router::placement::shard_of(id, 4) == s, "{id} on shard {s}");
        }
    }
}

/// A move kept in a router's memory would die with it half-done: such a router refuses one.
#[test]
fn a_router_without_a_cluster_store_refuses_to_move() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 2, 1, "");
    let new_shard = c.start_unlisted_shard();
    let out = jacolbert().args(["rebalance", "--router", &c.router, "--add-shard", &new_shard]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("keeps the cluster state in memory only"), "{err}");
}
