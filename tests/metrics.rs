//! Each node's Prometheus endpoint, scraped before and after traffic: request counts and
//! latency histograms by RPC and code, the router's shard failures, the encoder's batches,
//! the shard's documents.

mod common;

use common::{documents, request, sample, scrape, Cluster};
use proto::v1::UpsertRequest;

const SEARCH_OK: &str = "jacolbert_rpc_requests_total{rpc=\"/jacolbert.v1.Search/Search\",code=\"Ok\"}";
const SEARCH_BAD: &str = "jacolbert_rpc_requests_total{rpc=\"/jacolbert.v1.Search/Search\",code=\"InvalidArgument\"}";
const SEARCH_TIMED: &str = "jacolbert_rpc_duration_seconds_count{rpc=\"/jacolbert.v1.Search/Search\",code=\"Ok\"}";

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_with_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 2, 1, "");
    let before = scrape(&c.metrics["router"]);
    assert_eq!(sample(&before, SEARCH_OK), 0.0);

    let mut client = c.client().await;
    client.upsert(UpsertRequest { documents: documents(20) }).await.unwrap();
    for _ in 0..3 {
        client.search(request("富士山", 5, None)).await.unwrap();
    }
    client.search(request("", 5, None)).await.unwrap_err();

    let router = scrape(&c.metrics["router"]);
    assert_eq!(sample(&router, SEARCH_OK), 3.0, "{router}");
    assert_eq!(sample(&router, SEARCH_BAD), 1.0, "{router}");
    assert_eq!(sample(&router, SEARCH_TIMED), 3.0, "{router}");
    let inf = "jacolbert_rpc_duration_seconds_bucket{rpc=\"/jacolbert.v1.Search/Search\",code=\"Ok\",le=\"+Inf\"}";
    assert_eq!(sample(&router, inf), 3.0);
    assert_eq!(sample(&router, "jacolbert_router_shard_failures_total"), 0.0);

    let encoder = scrape(&c.metrics["encoder"]);
    assert!(sample(&encoder, "jacolbert_encoder_batches_total") >= 2.0, "{encoder}");
    assert!(sample(&encoder, "jacolbert_encoder_batch_texts_total") >= 23.0, "{encoder}");
    assert_eq!(sample(&encoder, "jacolbert_encoder_queue_depth"), 0.0);

    let docs: f64 = (0..2)
        .map(|s| {
            sample(&scrape(&c.metrics[&format!("shard-{s}-0")]), &format!("jacolbert_shard_documents{{shard=\"{s}\"}}"))
        })
        .sum();
    assert_eq!(docs, 20.0);

    // A dead shard shows as failures at the router.
    drop(c.shards[1][0].take());
    let answer = client.search(request("富士山", 5, None)).await.unwrap().into_inner();
    assert!(answer.partial);
    let router = scrape(&c.metrics["router"]);
    assert_eq!(sample(&router, "jacolbert_router_shard_failures_total"), 1.0, "{router}");
    assert_eq!(sample(&router, SEARCH_OK), 4.0);
}
