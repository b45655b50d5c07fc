//! The router's HTTP/JSON API (`http_listen`) against a cluster of separate processes: it
//! answers as the gRPC port does (same hits and scores), with the same API keys and the same
//! rate limit (one bucket for both ports), clear statuses for bad calls, `Admin.Status`, the
//! OpenAPI description, the console's files and the metrics.

mod common;

use common::{documents, free_address, http, post, request, wait_listening, with_key, Cluster, KEYS};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_json_api_answers_as_grpc_with_the_same_keys_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let web = free_address();
    // 40 requests a second, a second of burst: the calls below stay under it until the end.
    let c = Cluster::start_with_http(dir.path(), 2, &web, "max_requests_per_second = 40\n", KEYS, "");
    wait_listening(&web);
    let mut client = c.client().await;

    // Writes over JSON: the documents as proto3 JSON.
    let docs: Vec<_> =
        documents(24).iter().map(|d| json!({"id": d.id, "text": d.text, "metadata": "{\"n\": 1}"})).collect();
    let (status, body) = post(&web, "/v1/upsert", Some("rw-secret"), json!({"documents": docs}));
    assert_eq!(status, 200, "{body}");

    // The same search over both ports: the same hits, scores and texts.
    let (status, body) = post(
        &web,
        "/v1/search",
        Some("ro-secret"),
        json!({"query": "富士山", "k": 5, "include": {"text": true}, "explain": true}),
    );
    assert_eq!(status, 200, "{body}");
    let mut grpc_request = request("富士山", 5, None);
    grpc_request.include = Some(proto::v1::Include { text: true, metadata: false });
    let grpc = client.search(with_key(grpc_request, "ro-secret")).await.unwrap().into_inner();
    let hits = body["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5);
    for (json_hit, hit) in hits.iter().zip(&grpc.hits) {
        assert_eq!(json_hit["id"], hit.id.as_str());
        assert_eq!(json_hit["score"].as_f64().unwrap() as f32, hit.score, "scores survive JSON exactly");
        assert_eq!(json_hit["document"]["text"], hit.document.as_ref().unwrap().text.as_str());
        assert_eq!(json_hit["explanation"]["matches"].as_array().unwrap().len(), 32, "one match per query token");
    }
    assert_eq!(body["shardsOk"], 2);

    // The same keys: none, a wrong one, and a read-only key on a write.
    let (status, body) = post(&web, "/v1/search", None, json!({"query": "x", "k": 1}));
    assert_eq!((status, body["code"].as_str()), (401, Some("Unauthenticated")), "{body}");
    let (status, _) = post(&web, "/v1/search", Some("guess"), json!({"query": "x", "k": 1}));
    assert_eq!(status, 401);
    let (status, body) = post(&web, "/v1/upsert", Some("ro-secret"), json!({"documents": docs}));
    assert_eq!((status, body["code"].as_str()), (403, Some("PermissionDenied")), "{body}");

    // Bad calls say what is wrong.
    let (status, body) = post(&web, "/v1/search", Some("ro-secret"), json!({"query": "x", "k": "many"}));
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("not a SearchRequest in proto3 JSON"), "{body}");
    let (status, body) = post(&web, "/v1/search", Some("ro-secret"), json!({"query": "x", "k": 0}));
    assert_eq!((status, body["code"].as_str()), (400, Some("InvalidArgument")), "{body}");
    let (status, body) = post(&web, "/v1/find", Some("ro-secret"), json!({}));
    assert_eq!(status, 404);
    assert!(body["message"].as_str().unwrap().contains("search, search_batch"), "{body}");
    let (status, _) = http(&web, "GET", "/v1/search", &[], "");
    assert_eq!(status, 405);
    let (status, body) = post(&web, "/v1/get", Some("ro-secret"), json!({"ids": ["d3", "nope"]}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["documents"][0]["id"], "d3");

    // What the console reads: the cluster's status, the API's description, its own files.
    let (status, body) = post(&web, "/v1/status", Some("ro-secret"), json!({}));
    assert_eq!(status, 200, "{body}");
    let shards = body["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    let held: u64 = shards
        .iter()
        .map(|s| {
            let replica = &s["replicas"][0];
            assert_eq!(replica["state"], "in_sync", "{s}");
            replica["stats"]["documents"].as_str().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(held, 24);
    assert_eq!(body["encoders"][0]["healthy"], true);
    let (status, openapi) = http(&web, "GET", "/v1/openapi.json", &[], "");
    assert_eq!(status, 200);
    let openapi: serde_json::Value = serde_json::from_str(&openapi).unwrap();
    assert!(openapi["paths"]["/v1/search"]["post"].is_object());
    let (status, page) = http(&web, "GET", "/", &[], "");
    assert!(status == 200 && page.contains("/console.js"), "{status} {page}");
    let (status, metrics) = http(&web, "GET", "/metrics", &[], "");
    assert!(status == 200 && metrics.contains("rpc=\"/jacolbert.v1.Search/Search\""), "{metrics}");

    // One bucket for both ports: 60 calls at once over HTTP exhaust it, and gRPC calls right
    // after find it empty (a bucket of its own would take 40 at once).
    let statuses: Vec<u16> = (0..60).map(|_| post(&web, "/v1/stats", Some("ro-secret"), json!({})).0).collect();
    assert!(statuses.contains(&429), "60 calls at once against 40/s: {statuses:?}");
    let mut limited = 0;
    for _ in 0..20 {
        let answer = client.stats(with_key(proto::v1::ClusterStatsRequest {}, "ro-secret")).await;
        limited += answer.is_err_and(|s| s.code() == tonic::Code::ResourceExhausted) as usize;
    }
    assert!(limited > 0, "gRPC calls right after the HTTP port emptied the bucket: none limited");
}
