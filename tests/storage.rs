//! Storage faults through a shard process: its data on a small tmpfs the test mounts (CI runs as
//! root; where mounting is not allowed the test says so and passes), filled through the gRPC
//! service until writes are refused. The refusal is RESOURCE_EXHAUSTED naming the store; reads,
//! searches and health go on; every call is bounded; freeing space lets writes resume without a
//! restart; after a restart every acknowledged document is there. And a write that panics
//! (a failpoint) fails alone, the shard serving on.

mod common;

use std::time::Duration;

use common::{free_address, start_with_env};
use proto::v1::shard_client::ShardClient;
use proto::v1::{
    Document, EncodedDocument, GetRequest, SearchParams, ShardSearchRequest, ShardUpsertRequest, StatsRequest, Tensor,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const DIM: usize = 128;
const TOKENS: usize = 200;

/// Document `i`: 200 tokens of pseudo-random values (100 KB of f32).
fn document(id: &str, i: usize) -> EncodedDocument {
    let mut state = i as u64 * 2654435761 + 1;
    let values: Vec<f32> = (0..TOKENS * DIM)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let data = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    let vectors = Tensor { shape: vec![TOKENS as u32, DIM as u32], dtype: proto::v1::Dtype::F32 as i32, data };
    EncodedDocument {
        document: Some(Document { id: id.into(), text: format!("文書{i}"), metadata: String::new() }),
        vectors: Some(vectors),
        version: 0,
    }
}

fn bounded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(10));
    request
}

/// Mounts a tmpfs of `mb` MiB at `at`; the reason when it cannot.
fn mount(at: &std::path::Path, mb: usize) -> Result<(), String> {
    std::fs::create_dir_all(at).unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs", at.to_str().unwrap()])
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").args(["-l", self.0.to_str().unwrap()]).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_and_a_panicking_write_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    if let Err(why) = mount(&disk, 48) {
        println!("skipped: cannot mount a tmpfs here ({why})");
        return;
    }
    let _mounted = Mounted(disk.clone());
    let ballast = disk.join("ballast");
    std::fs::write(&ballast, vec![1u8; 12 << 20]).unwrap();
    let data = disk.join("shard");
    let config = format!(
        "data_dir = {:?}\nnumber = 0\n[index]\ndim = {DIM}\ntrain_tokens = 1000000000\nmin_free_bytes = {}\n",
        data.to_str().unwrap(),
        4 << 20
    );
    let (address, metrics) = (free_address(), free_address());
    let env = [("JACOLBERT_FAILPOINT", "panic-on-upsert:boom")];
    let start = || start_with_env(dir.path(), "shard", "shard", &config, &address, &metrics, &env);
    let mut node = start();
    let url = format!("http://{address}");
    let mut shard = ShardClient::connect(url.clone()).await.unwrap();
    let health_of = |url: String| async move {
        let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
        tonic_health::pb::health_client::HealthClient::new(channel)
    };
    let mut health = health_of(url.clone()).await;
    let serving = |mut h: tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>| async move {
        let check = tonic_health::pb::HealthCheckRequest { service: "jacolbert.v1.Shard".into() };
        h.check(bounded(check)).await.unwrap().into_inner().status
    };

    // A write that panics fails alone: the next write, a search and health are fine.
    let boom = shard.upsert(bounded(ShardUpsertRequest { documents: vec![document("boom", 0)] })).await.unwrap_err();
    assert_eq!(boom.code(), Code::Internal, "{boom:?}");
    assert!(boom.message().contains("failpoint"), "{}", boom.message());
    let mut acked = Vec::new();
    shard.upsert(bounded(ShardUpsertRequest { documents: vec![document("d0", 0)] })).await.unwrap();
    acked.push("d0".to_string());
    assert_eq!(serving(health.clone()).await, ServingStatus::Serving as i32);

    // Fill the disk: each batch 1 MB, until the shard refuses.
    let mut refusal = None;
    for batch in 0..80 {
        let ids: Vec<String> = (0..10).map(|j| format!("d{}", 1 + batch * 10 + j)).collect();
        let documents = ids.iter().enumerate().map(|(j, id)| document(id, 1 + batch * 10 + j)).collect();
        match shard.upsert(bounded(ShardUpsertRequest { documents })).await {
            Ok(_) => acked.extend(ids),
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
    }
    let refusal = refusal.expect("the disk never filled");
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(
        refusal.message().contains(data.to_str().unwrap()) && refusal.message().contains("bytes free"),
        "{}",
        refusal.message()
    );
    println!("{} documents acknowledged before the refusal: {}", acked.len(), refusal.message());

    // Reads go on, every call bounded; health says serving.
    let query = document("q", 3).vectors;
    for exact in [false, true] {
        let params = Some(SearchParams { exact, ..Default::default() });
        let search = ShardSearchRequest { query: query.clone(), k: 5, params, ..Default::default() };
        let hits = shard.search(bounded(search)).await.unwrap().into_inner().hits;
        assert_eq!(hits.len(), 5);
    }
    assert_eq!(shard.stats(bounded(StatsRequest {})).await.unwrap().into_inner().documents as usize, acked.len());
    shard.get(bounded(GetRequest { id: "d0".into(), ids: vec![] })).await.unwrap();
    assert_eq!(serving(health.clone()).await, ServingStatus::Serving as i32);
    let again = shard.upsert(bounded(ShardUpsertRequest { documents: vec![document("late", 9)] })).await.unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted);

    // Space back: writes resume without a restart.
    std::fs::remove_file(&ballast).unwrap();
    shard.upsert(bounded(ShardUpsertRequest { documents: vec![document("late", 9)] })).await.unwrap();
    acked.push("late".into());

    // After a restart (SIGKILL), every acknowledged document is there.
    drop(node);
    node = start();
    let mut shard = ShardClient::connect(url).await.unwrap();
    for chunk in acked.chunks(100) {
        let got = shard.get(bounded(GetRequest { id: String::new(), ids: chunk.to_vec() })).await.unwrap().into_inner();
        assert!(got.missing.is_empty(), "lost after the restart: {:?}", got.missing);
    }
    assert_eq!(shard.stats(bounded(StatsRequest {})).await.unwrap().into_inner().documents as usize, acked.len());
    health = health_of(format!("http://{address}")).await;
    assert_eq!(serving(health).await, ServingStatus::Serving as i32);
    drop(node);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_refused_at_open_stays_up_not_serving_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shard");
    {
        let config = shard_node::shard::ShardConfig { dim: DIM, ..Default::default() };
        let shard = shard_node::shard::Shard::open(&data, config).unwrap();
        let doc = |i: usize| {
            let d = document(&format!("d{i}"), i);
            let tensor = d.vectors.unwrap();
            let vectors = tensor.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            let document = d.document.unwrap();
            shard_node::shard::NewDocument {
                doc: shard_node::store::Document { id: document.id, text: document.text, metadata: String::new() },
                vectors,
                version: 0,
            }
        };
        shard.upsert((0..5).map(doc).collect()).unwrap();
    }
    // The store as sled might bring it back after damage: older than what was acknowledged
    // (the watermark beside it says 9 writes were durable).
    let mut mark = 9u64.to_le_bytes().to_vec();
    mark.extend(crc32fast::hash(&mark).to_le_bytes());
    std::fs::write(data.join("jacolbert.watermark"), mark).unwrap();
    let config = format!("data_dir = {:?}\nnumber = 0\n[index]\ndim = {DIM}\n", data.to_str().unwrap());
    let (address, metrics) = (free_address(), free_address());
    let _node = start_with_env(dir.path(), "shard", "refused", &config, &address, &metrics, &[]);
    let url = format!("http://{address}");
    let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = tonic_health::pb::HealthCheckRequest { service: "jacolbert.v1.Shard".into() };
    let status = health.check(bounded(check)).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::NotServing as i32);
    let mut shard = ShardClient::connect(url).await.unwrap();
    let refused = shard.stats(bounded(StatsRequest {})).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("sled recovered an older state") && refused.message().contains("--salvage"),
        "{}",
        refused.message()
    );
}
