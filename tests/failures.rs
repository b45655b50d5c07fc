//! Failures across separate processes (`jacolbert encoder|shard|router` on 127.0.0.1): a shard
//! killed with SIGKILL under load, a replica killed, a shard that stalls (SIGSTOP) past the
//! caller's deadline; one of two encoders killed; and restarts.

mod common;

use std::time::{Duration, Instant};

use common::{documents, ids, request, Cluster};
use proto::v1::search_client::SearchClient;
use proto::v1::UpsertRequest;
use tonic::transport::Channel;
use tonic::Code;

async fn load_documents(client: &mut SearchClient<Channel>, n: usize) {
    for batch in documents(n).chunks(40) {
        client.upsert(UpsertRequest { documents: batch.to_vec() }).await.unwrap();
    }
}

/// Sends `count` searches for `query` one after another, 10 ms apart, in the background.
fn load(
    client: &SearchClient<Channel>,
    query: &'static str,
    count: usize,
) -> tokio::task::JoinHandle<Vec<Result<proto::v1::SearchResponse, tonic::Status>>> {
    let client = client.clone();
    tokio::spawn(async move {
        let mut answers = Vec::new();
        for _ in 0..count {
            answers.push(client.clone().search(request(query, 10, None)).await.map(|r| r.into_inner()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answers
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_shard_gives_partial_answers_and_a_restart_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 1, "");
    let mut client = c.client().await;
    // Every node answers the standard health check.
    for address in c.shard_addresses.iter().flatten().chain([&c.router]) {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(endpoint.connect().await.unwrap());
        let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
        assert_eq!(status.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    }
    load_documents(&mut client, 120).await;
    let full = client.search(request("日本の富士山", 120, None)).await.unwrap().into_inner();
    assert_eq!((full.shards_ok, full.hits.len()), (3, 120));

    // Concurrent load while shard 1 is killed with SIGKILL: every search still answers.
    let during = load(&client, "桜と沖縄", 40);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dead = 1;
    drop(c.shards[dead][0].take());
    for answer in during.await.unwrap() {
        let shards_ok = answer.map(|a| a.shards_ok);
        assert!(matches!(shards_ok, Ok(2) | Ok(3)), "{shards_ok:?}");
    }
    let partial = client.search(request("日本の富士山", 20, None)).await.unwrap().into_inner();
    assert_eq!((partial.shards_ok, partial.partial, partial.failures.len()), (2, true, 1));
    assert_eq!(partial.failures[0].shard, dead as u32);
    let survivors: Vec<&str> =
        full.hits.iter().filter(|h| h.shard != dead as u32).take(20).map(|h| h.id.as_str()).collect();
    assert_eq!(partial.hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), survivors);
    let strict = client.search(request("日本の富士山", 20, Some(false))).await.unwrap_err();
    assert_eq!(strict.code(), Code::Unavailable, "{strict:?}");

    // Restart it on its data: full answers again, nothing lost.
    c.shards[dead][0] = Some(c.start_shard(dead, 0));
    let start = Instant::now();
    let restored = loop {
        let answer = client.search(request("日本の富士山", 120, None)).await.unwrap().into_inner();
        if answer.shards_ok == 3 || start.elapsed() > Duration::from_secs(10) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(restored.shards_ok, 3);
    assert_eq!(ids(&restored.hits), ids(&full.hits));
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_one_of_two_replicas_loses_no_answer_and_no_hit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 2, "");
    let mut client = c.client().await;
    load_documents(&mut client, 120).await;
    let want = client.search(request("桜と沖縄", 10, None)).await.unwrap().into_inner();
    assert_eq!((want.shards_ok, want.hits.len()), (3, 10));

    let during = load(&client, "桜と沖縄", 40);
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(c.shards[1][0].take());
    for answer in during.await.unwrap() {
        let answer = answer.unwrap();
        assert_eq!((answer.shards_ok, answer.partial), (3, false));
        assert_eq!(ids(&answer.hits), ids(&want.hits));
    }

    // The restarted replica has everything: with the other one killed, answers stay whole.
    c.shards[1][0] = Some(c.start_shard(1, 0));
    drop(c.shards[1][1].take());
    for _ in 0..6 {
        let answer = client.search(request("桜と沖縄", 10, None)).await.unwrap().into_inner();
        assert_eq!((answer.shards_ok, ids(&answer.hits)), (3, ids(&want.hits)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_shard_times_out_within_the_callers_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 1, "");
    let mut client = c.client().await;
    load_documents(&mut client, 60).await;
    let stalled = c.shards[2][0].as_ref().unwrap();
    stalled.signal("STOP");
    let deadline = Duration::from_millis(1000);
    for _ in 0..3 {
        let mut call = tonic::Request::new(request("桜と沖縄", 10, None));
        call.set_timeout(deadline);
        let start = Instant::now();
        let answer = client.search(call).await.unwrap().into_inner();
        let took = start.elapsed();
        // The router answers at the deadline less its margin; 300 ms more covers scheduling.
        assert!(took < deadline + Duration::from_millis(300), "answered after {took:?}");
        assert_eq!((answer.timed_out, answer.partial, answer.shards_ok), (true, true, 2));
        assert_eq!(answer.failures[0].shard, 2);
        assert!(answer.hits.iter().all(|h| h.shard != 2));
    }
    stalled.signal("CONT");
    let answer = client.search(request("桜と沖縄", 10, None)).await.unwrap().into_inner();
    assert_eq!((answer.timed_out, answer.shards_ok), (false, 3));
}

/// Polls the router's metrics until `series` reads `want`, for at most 10 s; its last value.
fn wait_for_sample(c: &Cluster, series: &str, want: f64) -> f64 {
    let start = Instant::now();
    loop {
        let value = common::sample(&common::scrape(&c.metrics["router"]), series);
        if value == want || start.elapsed() > Duration::from_secs(10) {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_encoder_is_skipped_and_takes_load_again_once_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start_with_encoders(dir.path(), 2);
    let mut client = c.client().await;
    load_documents(&mut client, 40).await;
    let want = client.search(request("桜と沖縄", 10, None)).await.unwrap().into_inner();

    // SIGKILL encoder 1 under search load: every search still answers, with the same hits.
    let during = load(&client, "桜と沖縄", 60);
    tokio::time::sleep(Duration::from_millis(150)).await;
    drop(c.encoders[1].take());
    let answers = during.await.unwrap();
    for answer in &answers {
        let answer = answer.as_ref().unwrap();
        assert_eq!(ids(&answer.hits), ids(&want.hits));
    }
    assert_eq!(wait_for_sample(&c, "jacolbert_router_encoders_down", 1.0), 1.0, "the dead encoder is marked down");
    let failures = common::sample(&common::scrape(&c.metrics["router"]), "jacolbert_router_encoder_failures_total");
    // Once it is marked down no call goes to it: more searches add no failure.
    for _ in 0..10 {
        client.search(request("桜と沖縄", 10, None)).await.unwrap();
    }
    let text = common::scrape(&c.metrics["router"]);
    assert_eq!(common::sample(&text, "jacolbert_router_encoder_failures_total"), failures);
    println!(
        "{} searches under the kill, all answered; encoder failures {failures}, retries {}",
        answers.len(),
        common::sample(&text, "jacolbert_router_encoder_retries_total")
    );

    // Restarted on its address, it is found serving and takes searches again.
    c.encoders[1] = Some(c.start_encoder(1));
    assert_eq!(wait_for_sample(&c, "jacolbert_router_encoders_down", 0.0), 0.0, "the restarted encoder is up");
    for _ in 0..20 {
        let answer = client.search(request("桜と沖縄", 10, None)).await.unwrap().into_inner();
        assert_eq!(ids(&answer.hits), ids(&want.hits));
    }
    let batches = common::sample(&common::scrape(&c.metrics["encoder-1"]), "jacolbert_encoder_batches_total");
    assert!(batches >= 5.0, "the restarted encoder ran {batches} batches of 20 searches");
}
