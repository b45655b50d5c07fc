//! A shard growing through its gRPC service retrains in the background (Jepsen-style: a writer
//! upserting without pause, a nemesis that SIGKILLs the node while a retraining runs, then a
//! checker): after the restart every acknowledged document is there and is found by a search
//! with its own vectors, the index serves on the codec the manifest names, and a retraining
//! asked for through `Shard.Retrain` completes with the same answers.

mod common;

use std::time::{Duration, Instant};

use common::{free_address, start};
use proto::v1::shard_client::ShardClient;
use proto::v1::{
    Document, Dtype, EncodedDocument, GetRequest, RetrainRequest, ShardSearchRequest, ShardStats, ShardUpsertRequest,
    StatsRequest,
};
use proto::Matrix;
use shard_node::synthetic::{Collection, Spec};
use tonic::transport::Channel;

const DIM: usize = 32;

fn bounded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(20));
    request
}

fn tensor(values: &[f32]) -> Option<proto::v1::Tensor> {
    Some(Matrix { rows: values.len() / DIM, dim: DIM, values: values.to_vec() }.to_tensor(Dtype::F32))
}

fn upsert(data: &Collection, range: std::ops::Range<usize>) -> ShardUpsertRequest {
    let documents = range
        .map(|i| EncodedDocument {
            document: Some(Document { id: format!("d{i}"), text: format!("text {i}"), metadata: String::new() }),
            vectors: tensor(data.doc(i)),
            version: 0,
        })
        .collect();
    ShardUpsertRequest { documents }
}

async fn stats(shard: &mut ShardClient<Channel>) -> ShardStats {
    shard.stats(bounded(StatsRequest {})).await.unwrap().into_inner()
}

/// The stats once no retraining runs and the codec is of generation `least` or later.
async fn settled(shard: &mut ShardClient<Channel>, least: u32) -> ShardStats {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = stats(shard).await;
        if !now.retraining && now.codec_generation >= least {
            return now;
        }
        assert!(Instant::now() < deadline, "no retraining finished: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every acknowledged document: there, with its text, and first among the hits of a search
/// with its own vectors. Returns how many were checked.
async fn check(shard: &mut ShardClient<Channel>, data: &Collection, acked: usize) -> usize {
    for i in 0..acked {
        let id = format!("d{i}");
        let doc = shard.get(bounded(GetRequest { id: id.clone(), ..Default::default() })).await;
        let doc = doc.unwrap_or_else(|e| panic!("{id} was acknowledged but is lost: {e}")).into_inner();
        assert_eq!(doc.document.unwrap().text, format!("text {i}"));
        let search = ShardSearchRequest { query: tensor(data.doc(i)), k: 3, ..Default::default() };
        let hits = shard.search(bounded(search)).await.unwrap().into_inner().hits;
        assert_eq!(hits.first().map(|h| h.id.as_str()), Some(id.as_str()), "a search with {id}'s own vectors");
    }
    acked
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_killed_while_it_retrains_in_the_background_loses_no_acknowledged_document() {
    let data = Collection::generate(&Spec {
        docs: 12_000,
        tokens_per_doc: 30,
        centres: 512,
        dim: DIM,
        seed: 41,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {:?}\nnumber = 0\n[index]\ndim = {DIM}\ntrain_tokens = 3000\nretrain_growth = 2.0\n[index.train]\niterations = 20\n",
        dir.path().join("shard").to_str().unwrap()
    );
    let (address, metrics) = (free_address(), free_address());
    let mut node = start(dir.path(), "shard", "shard", &config, &address, &metrics);
    let url = format!("http://{address}");
    let mut shard = ShardClient::connect(url.clone()).await.unwrap();

    // The writer: batches of 50, until a retraining is seen running; then two more batches
    // written while it runs and, if it still runs, the kill (k-means is given 20 iterations
    // so that a retraining lasts seconds, and the kill lands in it).
    let (mut acked, mut seen_retraining, mut generations) = (0, None, Vec::new());
    let started = Instant::now();
    while acked + 50 <= data.len() {
        shard.upsert(bounded(upsert(&data, acked..acked + 50))).await.unwrap();
        acked += 50;
        let now = stats(&mut shard).await;
        generations.push(now.codec_generation);
        match (now.retraining, seen_retraining) {
            (true, None) => seen_retraining = Some(acked),
            (true, Some(at)) if acked >= at + 100 => break,
            (false, Some(_)) => seen_retraining = None,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(started.elapsed() < Duration::from_secs(240), "no retraining seen after {acked} documents");
    }
    let seen = seen_retraining.expect("the shard never retrained as it grew");
    let before = stats(&mut shard).await;
    assert!(before.retraining, "the retraining ended before the kill; make the collection larger");
    node.signal("KILL");
    let _ = node.0.wait();
    drop(node);
    println!(
        "acknowledged {acked} documents; killed during the retraining seen at {seen} (generation {} of {} \
         centroids serving); generations seen: {:?}",
        before.codec_generation,
        before.centroids,
        {
            generations.dedup();
            generations
        }
    );

    let node = start(dir.path(), "shard", "shard", &config, &address, &metrics);
    let mut shard = ShardClient::connect(url).await.unwrap();
    let after = stats(&mut shard).await;
    assert_eq!(after.documents, acked as u64, "{after:?}");
    // The codec serving at the kill serves again (the manifest named it), or a newer one if a
    // retraining since the restart already finished; never an older one.
    let old = before.codec_generation;
    assert!(after.codec_generation >= old, "{before:?} then {after:?}");
    let checked = check(&mut shard, &data, acked).await;

    // Still outgrown, the shard retrains by itself after the restart; then one asked for
    // through `Shard.Retrain` starts (a second request while it runs starts nothing), and
    // the new generation serves the same documents.
    let itself = settled(&mut shard, old + 1).await;
    assert!(shard.retrain(bounded(RetrainRequest {})).await.unwrap().into_inner().started);
    assert!(!shard.retrain(bounded(RetrainRequest {})).await.unwrap().into_inner().started);
    settled(&mut shard, itself.codec_generation + 1).await;
    let retrained = stats(&mut shard).await;
    assert_eq!(retrained.documents, acked as u64);
    let checked_again = check(&mut shard, &data, acked).await;
    println!(
        "after the restart: {checked} of {acked} acknowledged documents found; retrained by itself to generation \
         {}, then on request to generation {} ({} centroids): {checked_again} found",
        itself.codec_generation, retrained.codec_generation, retrained.centroids
    );
    drop(node);
}
