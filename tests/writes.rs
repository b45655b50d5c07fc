//! Writes and bad requests through the router, with every node a separate process: upsert,
//! replace, delete and get; documents land on the shard placement names; a table of bad
//! requests gets the right codes and changes nothing; `jacolbert index` resumes.

mod common;

use common::{documents, ids, jacolbert, request, Cluster};
use proto::v1::shard_client::ShardClient;
use proto::v1::{
    ClusterStatsRequest, DeleteRequest, Document, Dtype, GetRequest, ShardSearchRequest, Tensor, UpsertRequest,
};
use std::process::Stdio;
use tonic::Code;

async fn shard_client(address: &str) -> ShardClient<tonic::transport::Channel> {
    ShardClient::connect(format!("http://{address}")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_replace_delete_get_land_where_placement_says() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 1, "");
    let mut client = c.client().await;
    let docs = documents(60);
    let written = client.upsert(UpsertRequest { documents: docs.clone() }).await.unwrap().into_inner();
    assert_eq!((written.written, written.replaced), (60, 0));

    // Each document is on the shard jump consistent hashing names, and only there.
    let mut shards = Vec::new();
    for replicas in &c.shard_addresses {
        shards.push(shard_client(&replicas[0]).await);
    }
    for d in &docs {
        let home = router::placement::shard_of(&d.id, 3);
        for (s, shard) in shards.iter_mut().enumerate() {
            let got = shard.get(GetRequest { id: d.id.clone(), ids: vec![] }).await;
            assert_eq!(got.is_ok(), s == home, "{} on shard {s} (placement: {home}): {got:?}", d.id);
        }
    }

    // Replace: the new text is what Get returns and what search scores.
    let before = client.search(request("俳句", 60, None)).await.unwrap().into_inner();
    let new = Document {
        id: "d0".into(), text: "俳句は季語を含む短い詩である。".into(), metadata: "{\"v\":2}".into()
    };
    let home = &mut shards[router::placement::shard_of("d0", 3)];
    let version = |shard: &mut ShardClient<_>| {
        let mut shard = shard.clone();
        async move {
            let export = shard.export(proto::v1::ExportRequest { ids: vec!["d0".into()] }).await.unwrap();
            export.into_inner().documents[0].version
        }
    };
    let first = version(home).await;
    let replaced = client.upsert(UpsertRequest { documents: vec![new.clone()] }).await.unwrap().into_inner();
    assert_eq!((replaced.written, replaced.replaced), (1, 1));
    // The router stamps every write with a version from its clock, and they grow.
    let second = version(home).await;
    assert!(first > 0 && second > first, "versions {first} then {second}");
    let got = client.get(GetRequest { id: "d0".into(), ids: vec![] }).await.unwrap().into_inner().document.unwrap();
    assert_eq!(got, new);
    let after = client.search(request("俳句", 60, None)).await.unwrap().into_inner();
    let score = |hits: &[proto::v1::Hit]| hits.iter().find(|h| h.id == "d0").unwrap().score;
    assert!(score(&after.hits) > score(&before.hits) + 0.5, "{} vs {}", score(&after.hits), score(&before.hits));

    // Delete: gone from Get and from answers; an unknown id deletes nothing.
    let deleted =
        client.delete(DeleteRequest { ids: vec!["d0".into(), "nope".into()], version: 0, filter: None }).await.unwrap();
    assert_eq!(deleted.into_inner().deleted, 1);
    assert_eq!(client.get(GetRequest { id: "d0".into(), ids: vec![] }).await.unwrap_err().code(), Code::NotFound);
    let answer = client.search(request("俳句", 60, None)).await.unwrap().into_inner();
    assert_eq!(answer.hits.len(), 59);
    assert!(answer.hits.iter().all(|h| h.id != "d0"));
    let stats = client.stats(ClusterStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.documents, stats.shards_ok), (59, 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_codes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, 1, "");
    let mut client = c.client().await;
    client.upsert(UpsertRequest { documents: documents(30) }).await.unwrap();
    let stats_before = client.stats(ClusterStatsRequest {}).await.unwrap().into_inner();
    let answer_before = client.search(request("富士山と京都", 30, None)).await.unwrap().into_inner();

    // Through the router: (what, status, code, a word the message must contain).
    let mut statuses = Vec::new();
    for (what, query, k, word) in [
        ("empty query", " ".to_string(), 5, "empty"),
        ("1 MB query", "あ".repeat(350_000), 5, "4096"),
        ("k = 0", "山".to_string(), 0, "k"),
        ("k = 100000", "山".to_string(), 100_000, "1000"),
    ] {
        statuses.push((what, client.search(request(&query, k, None)).await.unwrap_err(), Code::InvalidArgument, word));
    }
    let unknown = client.get(GetRequest { id: "no-such-id".into(), ids: vec![] }).await.unwrap_err();
    statuses.push(("unknown id", unknown, Code::NotFound, "no-such-id"));
    let empty = client.upsert(UpsertRequest { documents: vec![] }).await.unwrap_err();
    statuses.push(("empty upsert", empty, Code::InvalidArgument, "document"));

    // Straight to a shard: tensors that do not match their shape, or the shard's dim.
    let mut shard = shard_client(&c.shard_addresses[0][0]).await;
    let tensor = |shape: Vec<u32>, bytes: usize| Tensor { shape, dtype: Dtype::F32 as i32, data: vec![0u8; bytes] };
    for (what, query, word) in [
        ("malformed tensor bytes", tensor(vec![32, 128], 32 * 128 * 4 - 3), "bytes"),
        ("wrong dims", tensor(vec![32, 64], 32 * 64 * 4), "128"),
    ] {
        let search = ShardSearchRequest { query: Some(query), k: 10, ..Default::default() };
        statuses.push((what, shard.search(search).await.unwrap_err(), Code::InvalidArgument, word));
    }

    for (what, status, code, word) in &statuses {
        assert_eq!(status.code(), *code, "{what}: {status:?}");
        assert!(status.message().contains(word), "{what}: {:?} does not name {word:?}", status.message());
    }
    assert_eq!(client.stats(ClusterStatsRequest {}).await.unwrap().into_inner(), stats_before);
    let answer_after = client.search(request("富士山と京都", 30, None)).await.unwrap().into_inner();
    assert_eq!(ids(&answer_after.hits), ids(&answer_before.hits));
}

#[tokio::test(flavor = "multi_thread")]
async fn index_resumes_after_the_lines_the_router_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, 1, "");
    let line = |d: &Document| serde_json::json!({"id": d.id, "text": d.text}).to_string() + "\n";
    let docs = documents(100);
    // Line 70's text is over the encoder's 64 KiB per text: the run stops at its batch.
    let mut lines: Vec<String> = docs.iter().map(line).collect();
    let good_70 = lines[69].clone();
    lines[69] = line(&Document { text: "長".repeat(30_000), ..docs[69].clone() });
    let file = dir.path().join("docs.jsonl");
    std::fs::write(&file, lines.concat()).unwrap();
    let index = || {
        jacolbert()
            .args(["index", file.to_str().unwrap(), "--batch", "20", "--ack-target-ms", "0", "--router", &c.router])
            .stdout(Stdio::piped())
            .output()
            .unwrap()
    };
    let failed = index();
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("lines 61-80"), "{failed:?}");
    let mut client = c.client().await;
    assert_eq!(client.stats(ClusterStatsRequest {}).await.unwrap().into_inner().documents, 60);

    // Mend line 70 and run again: it starts after line 60.
    lines[69] = good_70;
    std::fs::write(&file, lines.concat()).unwrap();
    let resumed = index();
    assert!(resumed.status.success(), "{resumed:?}");
    let said = String::from_utf8_lossy(&resumed.stdout);
    assert!(said.contains("indexed 40 documents in 2 batches") && said.contains("skipped 60 lines"), "{said}");
    assert_eq!(client.stats(ClusterStatsRequest {}).await.unwrap().into_inner().documents, 100);
    assert!(!dir.path().join("docs.jsonl.progress").exists());
}

/// `jacolbert index FILE --router ROUTER` with `args` after; its output.
fn run_index(file: &std::path::Path, router: &str, args: &[&str]) -> std::process::Output {
    let mut index = jacolbert();
    index.args(["index", file.to_str().unwrap(), "--router", router]).args(args);
    index.stdout(Stdio::piped()).output().unwrap()
}

/// How many batches `jacolbert index` said it sent.
fn batches_sent(out: &std::process::Output) -> usize {
    let said = String::from_utf8_lossy(&out.stdout);
    let batches = said.split(" batches").next().and_then(|s| s.rsplit(' ').next()).and_then(|n| n.parse().ok());
    batches.unwrap_or_else(|| panic!("no batch count in {said:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn index_sizes_its_batches_from_the_acknowledgement_times() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, 1, "");
    let file = dir.path().join("docs.jsonl");
    let lines: Vec<String> =
        documents(120).iter().map(|d| serde_json::json!({"id": d.id, "text": d.text}).to_string() + "\n").collect();
    std::fs::write(&file, lines.concat()).unwrap();
    let fixed = run_index(&file, &c.router, &["--ack-target-ms", "0"]);
    assert!(fixed.status.success(), "{fixed:?}");
    assert_eq!(batches_sent(&fixed), 2, "fixed batches of 64");
    // No acknowledgement comes within 1 ms: batches shrink towards one document.
    let sized = run_index(&file, &c.router, &["--ack-target-ms", "1", "--restart"]);
    assert!(sized.status.success(), "{sized:?}");
    let batches = batches_sent(&sized);
    assert!(batches >= 40, "{batches} batches for 120 documents with a 1 ms target");
    let mut client = c.client().await;
    assert_eq!(client.stats(ClusterStatsRequest {}).await.unwrap().into_inner().documents, 120);
    println!("120 documents: 2 batches fixed, {batches} sized for 1 ms");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_past_the_routers_write_deadline_is_halved_then_named() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start_with(dir.path(), 2, 1, "", "[limits]\nwrite_deadline_ms = 300\n", "");
    let file = dir.path().join("docs.jsonl");
    let lines: Vec<String> =
        documents(20).iter().map(|d| serde_json::json!({"id": d.id, "text": d.text}).to_string() + "\n").collect();
    std::fs::write(&file, lines.concat()).unwrap();
    // An encoder that does not answer: every write passes the router's write deadline.
    let encoder = c.encoders[0].as_ref().unwrap();
    encoder.signal("STOP");
    let out = run_index(&file, &c.router, &[]);
    encoder.signal("CONT");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    // The probe of 8 halved to 1 document, which is still refused.
    assert!(said.contains("lines 1-1: DeadlineExceeded"), "{said}");
    assert!(said.contains("raise the router's [limits] write_deadline_ms"), "{said}");
    // Nothing was written, and the encoder serves again under a search's own deadline.
    let mut client = c.client().await;
    assert_eq!(client.stats(ClusterStatsRequest {}).await.unwrap().into_inner().documents, 0);
    client.search(request("富士山", 5, None)).await.unwrap();
}
