//! One trace per query across processes: an OTLP trace collector (the OTLP TraceService over
//! tonic) runs in this test on loopback; every node exports to it; a search that carries a
//! caller's `traceparent` must come back as one tree of spans under the caller's span:
//! router.search → the encoder's encoder.encode and every shard's shard.search, plus
//! router.merge; and the same for a search over the router's HTTP port.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{documents, request, Cluster};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use proto::v1::UpsertRequest;

/// A span as collected: its service and its attributes by key.
#[derive(Debug, Clone)]
struct Collected {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, Value>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Collected>>>);

fn attributes(list: &[KeyValue]) -> HashMap<String, Value> {
    list.iter().filter_map(|kv| Some((kv.key.clone(), kv.value.as_ref()?.value.clone()?))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = attributes(&resource_spans.resource.map(|r| r.attributes).unwrap_or_default());
            let service = match resource.get("service.name") {
                Some(Value::StringValue(s)) => s.clone(),
                other => panic!("no service.name: {other:?}"),
            };
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Collected {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";
const HTTP_TRACE: &str = "5cf92f3577b34da6a3ce929d0e0e4737";

#[tokio::test(flavor = "multi_thread")]
async fn a_search_is_one_trace_under_the_callers_span_across_processes() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    // Inherited by the node processes (this binary has this one test).
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{address}"));
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");

    let dir = tempfile::tempdir().unwrap();
    let web = common::free_address();
    let c = Cluster::start_with_http(dir.path(), 3, &web, "", "", "");
    let mut client = c.client().await;
    client.upsert(UpsertRequest { documents: documents(30) }).await.unwrap();
    let mut search = tonic::Request::new(request("富士山と京都", 5, None));
    search.metadata_mut().insert("traceparent", format!("00-{TRACE}-{CALLER}-01").parse().unwrap());
    let answer = client.search(search).await.unwrap().into_inner();
    assert_eq!((answer.shards_ok, answer.hits.len()), (3, 5));

    // Wait for the nodes' batches: the router's, the encoder's and three shards'.
    let want = |spans: &[Collected]| {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        names.iter().filter(|&&n| n == "shard.search").count() == 3
            && ["router.search", "router.merge", "encoder.encode", "encoder.forward"].iter().all(|n| names.contains(n))
    };
    let start = Instant::now();
    let spans: Vec<Collected> = loop {
        let spans: Vec<Collected> =
            collector.0.lock().unwrap().iter().filter(|s| s.trace_id == TRACE).cloned().collect();
        if want(&spans) || start.elapsed() > Duration::from_secs(15) {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let all: Vec<(String, String, String)> =
        collector.0.lock().unwrap().iter().map(|s| (s.service.clone(), s.name.clone(), s.trace_id.clone())).collect();
    assert!(
        want(&spans),
        "spans of the trace: {:#?}; all: {all:#?}",
        spans.iter().map(|s| (&s.service, &s.name)).collect::<Vec<_>>()
    );

    // One tree: every span's parents lead to the caller's span.
    let by_id: HashMap<&str, &Collected> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let ancestors = |span: &Collected| {
        let mut names = Vec::new();
        let mut parent = span.parent.as_str();
        while let Some(p) = by_id.get(parent) {
            names.push(p.name.as_str());
            parent = p.parent.as_str();
        }
        (names, parent.to_string())
    };
    for span in &spans {
        let (_, root) = ancestors(span);
        assert_eq!(root, CALLER, "{} ({}) is not under the caller's span", span.name, span.service);
    }
    let find = |name: &'static str| spans.iter().filter(move |s| s.name == name);
    let router = find("router.search").next().unwrap();
    assert_eq!(router.service, "router");
    assert_eq!(router.attributes.get("k"), Some(&Value::IntValue(5)));
    assert_eq!(router.attributes.get("partial"), Some(&Value::BoolValue(false)));
    let encode = find("encoder.encode").next().unwrap();
    assert_eq!(encode.service, "encoder");
    assert!(ancestors(encode).0.contains(&"router.search"));
    assert!(matches!(encode.attributes.get("tokens"), Some(Value::IntValue(n)) if *n > 0));
    let forward = find("encoder.forward").next().unwrap();
    assert!(ancestors(forward).0.contains(&"encoder.encode"));
    let mut shards: Vec<i64> = find("shard.search")
        .map(|s| {
            assert_eq!(s.service, "shard");
            assert!(ancestors(s).0.contains(&"router.search"), "{s:?}");
            assert!(matches!(s.attributes.get("candidates"), Some(Value::IntValue(n)) if *n > 0));
            match s.attributes.get("shard") {
                Some(Value::IntValue(n)) => *n,
                other => panic!("shard attribute: {other:?}"),
            }
        })
        .collect();
    shards.sort();
    assert_eq!(shards, [0, 1, 2]);
    assert!(ancestors(find("router.merge").next().unwrap()).0.contains(&"router.search"));
    http_search_joins_the_callers_trace(&collector, &web).await;
}

/// A search over the HTTP port joins the caller's trace as a gRPC one does.
async fn http_search_joins_the_callers_trace(collector: &Collector, web: &str) {
    let traceparent = format!("traceparent: 00-{HTTP_TRACE}-{CALLER}-01");
    let body = r#"{"query": "富士山", "k": 3}"#;
    let (status, answer) = common::http(web, "POST", "/v1/search", &[&traceparent], body);
    assert_eq!(status, 200, "{answer}");
    let start = Instant::now();
    loop {
        let spans: Vec<Collected> =
            collector.0.lock().unwrap().iter().filter(|s| s.trace_id == HTTP_TRACE).cloned().collect();
        let router = spans.iter().find(|s| s.name == "router.search");
        let shards = spans.iter().filter(|s| s.name == "shard.search").count();
        if let Some(router) = router.filter(|_| shards == 3) {
            let mut parent = router.parent.as_str();
            while let Some(p) = spans.iter().find(|s| s.span_id == parent) {
                parent = p.parent.as_str();
            }
            assert_eq!(parent, CALLER, "the router's span is not under the caller's: {spans:#?}");
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "the HTTP search's spans: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
