//! End to end with one process per node on 127.0.0.1: an encoder (tiny-lexical), three shards
//! and the router, started as `jacolbert encoder|shard|router`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::v1::search_client::SearchClient;
use proto::v1::{Document, SearchRequest, UpsertRequest};
use tonic::Code;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn jacolbert() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jacolbert"));
    c.env("RUST_LOG", "warn").stdout(Stdio::null());
    c
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A node process, killed when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_ready(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(args: &[&str], port: u16) -> Node {
    let node = Node(jacolbert().args(args).args(["--port", &port.to_string()]).spawn().unwrap());
    wait_ready(port);
    node
}

fn start_shard(dir: &Path, number: usize, port: u16) -> Node {
    let data = dir.join(format!("shard-{number}"));
    start(&["shard", "--data-dir", data.to_str().unwrap(), "--dim", "128", "--number", &number.to_string()], port)
}

struct Cluster {
    router: u16,
    shard_ports: Vec<u16>,
    shards: Vec<Option<Node>>,
    _others: Vec<Node>,
}

fn cluster(dir: &Path, shards: usize) -> Cluster {
    let model = fixtures().join("models/tiny-lexical");
    let encoder_port = free_port();
    let encoder = start(&["encoder", "--model", model.to_str().unwrap()], encoder_port);
    let shard_ports: Vec<u16> = (0..shards).map(|_| free_port()).collect();
    let nodes = shard_ports.iter().enumerate().map(|(s, &p)| Some(start_shard(dir, s, p))).collect();
    let router_port = free_port();
    let mut args = vec!["router".to_string(), "--encoder".into(), format!("127.0.0.1:{encoder_port}")];
    for p in &shard_ports {
        args.extend(["--shard".into(), format!("127.0.0.1:{p}")]);
    }
    let router = start(&args.iter().map(String::as_str).collect::<Vec<_>>(), router_port);
    Cluster { router: router_port, shard_ports, shards: nodes, _others: vec![encoder, router] }
}

#[test]
fn jsquad_through_three_shard_processes_matches_exhaustive_maxsim() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), 3);
    let jsquad = fixtures().join("jsquad/jsquad-valid-v1.1.json");
    let out = jacolbert()
        .args(["eval-jsquad", "--model", "unused", "--json", "--jsquad", jsquad.to_str().unwrap()])
        .args(["--router", &format!("127.0.0.1:{}", c.router)])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (key, want) in [("r@1", 0.624), ("r@5", 0.738), ("r@10", 0.778)] {
        let got = report[key].as_f64().unwrap();
        assert!((got - want).abs() <= 0.01, "{key}: {got} vs PyLate's {want}");
    }
}

fn request(query: &str, k: u32, allow_partial: Option<bool>) -> SearchRequest {
    SearchRequest { query: query.into(), k, filter_ids: vec![], params: None, allow_partial }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_shard_gives_partial_answers_and_a_restart_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cluster(dir.path(), 3);
    let mut client = SearchClient::connect(format!("http://127.0.0.1:{}", c.router)).await.unwrap();
    // Every node answers the standard health check.
    for port in c.shard_ports.iter().chain([&c.router]) {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(endpoint.connect().await.unwrap());
        let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
        assert_eq!(status.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    }
    let texts = ["富士山", "東京都", "梅雨", "寿司", "新幹線", "京都", "北海道", "将棋", "桜", "沖縄", "相撲", "俳句"];
    let documents: Vec<Document> = (0..120)
        .map(|i| Document {
            id: format!("d{i}"),
            text: format!("{}は日本の{}である。番号{i}", texts[i % 12], texts[(i / 12) % 12]),
            metadata: String::new(),
        })
        .collect();
    for batch in documents.chunks(40) {
        client.upsert(UpsertRequest { documents: batch.to_vec() }).await.unwrap();
    }
    let full = client.search(request("日本の富士山", 120, None)).await.unwrap().into_inner();
    assert_eq!((full.shards_ok, full.hits.len()), (3, 120));

    // Concurrent load while shard 1 is killed with SIGKILL: every search still answers.
    let load = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..40 {
                answers
                    .push(client.clone().search(request("桜と沖縄", 10, None)).await.map(|r| r.into_inner().shards_ok));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dead = 1;
    drop(c.shards[dead].take());
    for answer in load.await.unwrap() {
        assert!(matches!(answer, Ok(2) | Ok(3)), "{answer:?}");
    }
    let partial = client.search(request("日本の富士山", 20, None)).await.unwrap().into_inner();
    assert_eq!((partial.shards_ok, partial.partial, partial.failures.len()), (2, true, 1));
    assert_eq!(partial.failures[0].shard, dead as u32);
    let survivors: Vec<&str> =
        full.hits.iter().filter(|h| h.shard != dead as u32).take(20).map(|h| h.id.as_str()).collect();
    assert_eq!(partial.hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), survivors);
    let strict = client.search(request("日本の富士山", 20, Some(false))).await.unwrap_err();
    assert_eq!(strict.code(), Code::Unavailable);

    // Restart it on its data: full answers again, nothing lost.
    c.shards[dead] = Some(start_shard(dir.path(), dead, c.shard_ports[dead]));
    let start = Instant::now();
    let restored = loop {
        let answer = client.search(request("日本の富士山", 120, None)).await.unwrap().into_inner();
        if answer.shards_ok == 3 || start.elapsed() > Duration::from_secs(10) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(restored.shards_ok, 3);
    let ids = |hits: &[proto::v1::Hit]| hits.iter().map(|h| (h.id.clone(), h.score)).collect::<Vec<_>>();
    assert_eq!(ids(&restored.hits), ids(&full.hits));
}
