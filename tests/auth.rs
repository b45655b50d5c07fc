//! API keys and limits at the router, every node its own process: no key or a wrong one is
//! UNAUTHENTICATED, a read-only key may search and read but not write, a read-write key may do
//! everything, and health checks need no key; past its rate limit the router answers
//! RESOURCE_EXHAUSTED, and an oversized message is refused.

mod common;

use common::{documents, request, with_key, Cluster};
use proto::v1::admin_client::AdminClient;
use proto::v1::{AddShardRequest, DeleteRequest, Document, GetRequest, UpsertRequest};
use tonic::Code;

use common::KEYS;

#[tokio::test(flavor = "multi_thread")]
async fn keys_decide_who_may_read_and_write() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start_with(dir.path(), 2, 1, "", KEYS, "");
    let mut client = c.client().await;
    let upsert = || UpsertRequest { documents: documents(10) };

    let refused = client.search(request("富士山", 5, None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let wrong = client.search(with_key(request("富士山", 5, None), "rw-secre")).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");

    client.upsert(with_key(upsert(), "rw-secret")).await.unwrap();
    let answer = client.search(with_key(request("富士山", 5, None), "ro-secret")).await.unwrap().into_inner();
    assert_eq!(answer.hits.len(), 5);
    client.get(with_key(GetRequest { id: "d1".into(), ids: vec![] }, "ro-secret")).await.unwrap();

    for denied in [
        client.upsert(with_key(upsert(), "ro-secret")).await.map(|_| ()),
        client
            .delete(with_key(DeleteRequest { ids: vec!["d1".into()], version: 0, filter: None }, "ro-secret"))
            .await
            .map(|_| ()),
    ] {
        assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    }
    let mut admin = AdminClient::connect(format!("http://{}", c.router)).await.unwrap();
    let add = admin.add_shard(with_key(AddShardRequest { replicas: vec!["127.0.0.1:1".into()] }, "ro-secret")).await;
    assert_eq!(add.unwrap_err().code(), Code::PermissionDenied);
    // Nothing the refused writes asked for happened.
    client.get(with_key(GetRequest { id: "d1".into(), ids: vec![] }, "rw-secret")).await.unwrap();

    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", c.router)).unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(endpoint.connect().await.unwrap());
    let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(status.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_routers_rate_and_message_limits_hold() {
    let dir = tempfile::tempdir().unwrap();
    // max_requests_per_second and max_message_bytes are top-level keys: they go first.
    let c = Cluster::start_with_router_keys(dir.path(), "max_requests_per_second = 5\nmax_message_bytes = 65536\n");
    let mut client = c.client().await;
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(client.get(GetRequest { id: "none".into(), ids: vec![] }).await.unwrap_err());
    }
    let limited: Vec<_> = codes.iter().filter(|s| s.code() == Code::ResourceExhausted).collect();
    assert!(limited.len() >= 10, "{codes:?}");
    assert!(limited[0].message().contains("5 requests/s"), "{:?}", limited[0]);

    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", c.router)).unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(endpoint.connect().await.unwrap());
    for _ in 0..10 {
        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    }

    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let big = Document { id: "big".into(), text: "長".repeat(30_000), metadata: String::new() };
    let refused = client.upsert(UpsertRequest { documents: vec![big] }).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
}
