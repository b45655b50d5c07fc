//! A whole cluster on loopback ports in one process: an encoder (tiny-lexical), three shards
//! and the router. Writes, reads, placement, a dead shard (partial answers, or UNAVAILABLE when
//! partial answers are refused) and bad requests.

use std::path::PathBuf;
use std::sync::Arc;

use encoder_node::model::{ColbertModel, EncodeOptions};
use encoder_node::service::{BatchConfig, EncoderService};
use proto::v1::encoder_server::EncoderServer;
use proto::v1::search_client::SearchClient;
use proto::v1::search_server::SearchServer;
use proto::v1::shard_client::ShardClient;
use proto::v1::shard_server::ShardServer;
use proto::v1::{DeleteRequest, Document, GetRequest, SearchRequest, UpsertRequest};
use router::placement::shard_of;
use router::{Router, RouterConfig};
use shard_node::service::ShardService;
use shard_node::shard::{Shard, ShardConfig};
use tokio::sync::oneshot;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::Code;

const TEXTS: [&str; 12] = [
    "富士山は日本で最も高い山である。",
    "東京都は日本の首都で、人口が最も多い。",
    "梅雨は初夏に雨が多く降る季節である。",
    "寿司は酢飯と魚を組み合わせた日本料理である。",
    "新幹線は日本の高速鉄道である。",
    "京都には多くの寺院と神社がある。",
    "北海道は冬に雪が多く、寒い地域である。",
    "将棋は二人で行う盤上の遊戯である。",
    "桜は春に咲く花で、花見が行われる。",
    "沖縄は南にある島々で、海が美しい。",
    "相撲は日本の伝統的な格闘技である。",
    "俳句は五七五の音からなる短い詩である。",
];

/// Starts services on a loopback port; the sender stops them.
async fn spawn(routes: Routes) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(Server::builder().add_routes(routes).serve_with_incoming_shutdown(incoming, async {
        let _ = stopped.await;
    }));
    (address, stop)
}

fn doc(i: usize, text: &str) -> Document {
    Document { id: format!("doc-{i}"), text: text.to_string(), metadata: String::new() }
}

fn query(text: &str, k: u32) -> SearchRequest {
    SearchRequest {
        query: text.into(),
        k,
        filter_ids: vec![],
        params: None,
        allow_partial: None,
        include: None,
        filter: None,
        explain: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_writes_reads_and_survives_a_dead_shard() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-lexical");
    let model = Arc::new(ColbertModel::load(&dir, None, EncodeOptions::default()).unwrap());
    let dim = model.dim();
    let (encoder, _keep_encoder) =
        spawn(Routes::new(EncoderServer::new(EncoderService::start(model.clone(), BatchConfig::default())))).await;
    let data = tempfile::tempdir().unwrap();
    let (mut shards, mut stops) = (Vec::new(), Vec::new());
    for s in 0..3 {
        let config = ShardConfig { dim, train_tokens: 1 << 30, ..Default::default() };
        let shard = Shard::open(&data.path().join(format!("shard-{s}")), config).unwrap();
        let (address, stop) = spawn(Routes::new(ShardServer::new(ShardService::new(shard, s, dim)))).await;
        shards.push(address);
        stops.push(Some(stop));
    }
    let replicas: Vec<Vec<String>> = shards.iter().map(|a| vec![a.clone()]).collect();
    let router = Router::new(&[encoder], &replicas, RouterConfig::default()).await.unwrap();
    let (address, _keep_router) = spawn(Routes::new(SearchServer::new(router))).await;
    let mut client = SearchClient::connect(format!("http://{address}")).await.unwrap();

    let documents: Vec<Document> = TEXTS.iter().enumerate().map(|(i, t)| doc(i, t)).collect();
    let written = client.upsert(UpsertRequest { documents }).await.unwrap().into_inner();
    assert_eq!((written.written, written.replaced), (12, 0));
    // Each document is on the shard placement names, and only there.
    for i in 0..TEXTS.len() {
        let id = format!("doc-{i}");
        for (s, address) in shards.iter().enumerate() {
            let mut shard = ShardClient::connect(format!("http://{address}")).await.unwrap();
            let found = shard.get(GetRequest { id: id.clone(), ids: vec![] }).await;
            assert_eq!(found.is_ok(), s == shard_of(&id, 3), "{id} on shard {s}");
        }
    }
    // The merged answer is exhaustive MaxSim's ranking (the shards are untrained, so exact;
    // vectors travel as f16, so the oracle rounds them the same way).
    let f16 = |v: &[f32]| v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect::<Vec<f32>>();
    let oracle = |q: &str, texts: &[&str]| {
        let qv = f16(&model.encode_queries(&[q]).unwrap()[0].vectors);
        let mut scored: Vec<(String, f32)> = model
            .encode_documents(texts)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("doc-{i}"), kernels::cpu::maxsim(&qv, &f16(&d.vectors), dim).unwrap()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    };
    let want = oracle("富士山はどんな山か", &TEXTS);
    let answer = client.search(query("富士山はどんな山か", 3)).await.unwrap().into_inner();
    assert_eq!((answer.shards_total, answer.shards_ok, answer.partial), (3, 3, false));
    for (hit, (id, score)) in answer.hits.iter().zip(&want) {
        assert_eq!(&hit.id, id);
        assert!((hit.score - score).abs() < 1e-4, "{hit:?} vs {score}");
    }
    let all = client.search(query("日本", 12)).await.unwrap().into_inner().hits;
    assert_eq!(all.len(), 12);
    assert!(all.windows(2).all(|w| w[0].score > w[1].score || (w[0].score == w[1].score && w[0].id < w[1].id)));

    // A batch answers each search as Search does; Rerank scores texts exactly; Stats adds up.
    let batch =
        proto::v1::SearchBatchRequest { requests: vec![query("富士山はどんな山か", 3), query("日本", 12)] };
    let answers = client.search_batch(batch).await.unwrap().into_inner().responses;
    assert_eq!(
        answers[0].hits.iter().map(|h| &h.id).collect::<Vec<_>>(),
        answer.hits.iter().map(|h| &h.id).collect::<Vec<_>>()
    );
    assert_eq!(answers[1].hits.len(), 12);
    let rerank = proto::v1::RerankRequest {
        query: "富士山はどんな山か".into(),
        texts: TEXTS[..3].iter().map(|t| t.to_string()).collect(),
        explain: false,
    };
    let scores = client.rerank(rerank).await.unwrap().into_inner().scores;
    let q = model.encode_queries(&["富士山はどんな山か"]).unwrap().remove(0).vectors;
    for (score, d) in scores.iter().zip(model.encode_documents(&TEXTS[..3]).unwrap()) {
        let want = kernels::cpu::maxsim(&q, &d.vectors, dim).unwrap();
        assert!((score - want).abs() < 1e-4, "{score} vs {want}");
    }
    let stats = client.stats(proto::v1::ClusterStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.documents, stats.shards_ok, stats.shards.len()), (12, 3, 3));

    // Replace, get, delete through the router.
    let replacement = doc(0, "俳句は季語を含む短い詩である。");
    let r = client.upsert(UpsertRequest { documents: vec![replacement.clone()] }).await.unwrap().into_inner();
    assert_eq!((r.written, r.replaced), (1, 1));
    assert_eq!(
        client.get(GetRequest { id: "doc-0".into(), ids: vec![] }).await.unwrap().into_inner().document.unwrap(),
        replacement
    );
    let new_score = client.search(query("俳句", 12)).await.unwrap().into_inner().hits;
    let replaced_score = new_score.iter().find(|h| h.id == "doc-0").unwrap().score;
    let mut texts = TEXTS;
    texts[0] = "俳句は季語を含む短い詩である。";
    let want = oracle("俳句", &texts);
    assert!((replaced_score - want.iter().find(|(id, _)| id == "doc-0").unwrap().1).abs() < 1e-4);
    assert_eq!(
        client
            .delete(DeleteRequest { ids: vec!["doc-1".into(), "nope".into()], version: 0, filter: None })
            .await
            .unwrap()
            .into_inner()
            .deleted,
        1
    );
    assert_eq!(client.get(GetRequest { id: "doc-1".into(), ids: vec![] }).await.unwrap_err().code(), Code::NotFound);

    // Bad requests.
    for (what, request, code) in [
        ("empty query", query("  ", 5), Code::InvalidArgument),
        ("1 MB query", query(&"あ".repeat(350_000), 5), Code::InvalidArgument),
        ("k = 0", query("山", 0), Code::InvalidArgument),
        ("k = 100000", query("山", 100_000), Code::InvalidArgument),
    ] {
        let status = client.search(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
    }
    assert_eq!(client.upsert(UpsertRequest { documents: vec![] }).await.unwrap_err().code(), Code::InvalidArgument);

    // A dead shard: partial answers with the survivors' top-k, or UNAVAILABLE if refused.
    let dead = 1usize;
    stops[dead].take().unwrap().send(()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let everything = client.search(query("日本", 12)).await.unwrap().into_inner();
    assert_eq!((everything.shards_ok, everything.partial), (2, true));
    assert_eq!(everything.failures.len(), 1);
    assert_eq!(everything.failures[0].shard, dead as u32);
    let survivors: Vec<String> = all
        .iter()
        .filter(|h| h.id != "doc-0" && h.id != "doc-1" && shard_of(&h.id, 3) != dead)
        .map(|h| h.id.clone())
        .collect();
    let mut got: Vec<String> = everything.hits.iter().map(|h| h.id.clone()).collect();
    got.sort();
    let mut want = survivors;
    want.sort();
    // doc-0 was replaced (still present, other text), so it may be among the survivors too.
    got.retain(|id| id != "doc-0");
    assert_eq!(got, want);
    let strict = SearchRequest { allow_partial: Some(false), ..query("日本", 5) };
    assert_eq!(client.search(strict).await.unwrap_err().code(), Code::Unavailable);
}

/// A shard that answers nothing in time: every search sleeps past any test deadline.
#[derive(Clone)]
struct Stalled;

#[tonic::async_trait]
impl proto::v1::shard_server::Shard for Stalled {
    async fn search(
        &self,
        _: tonic::Request<proto::v1::ShardSearchRequest>,
    ) -> Result<tonic::Response<proto::v1::ShardSearchResponse>, tonic::Status> {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        Ok(tonic::Response::new(Default::default()))
    }
    async fn upsert(
        &self,
        _: tonic::Request<proto::v1::ShardUpsertRequest>,
    ) -> Result<tonic::Response<proto::v1::UpsertResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("stalled"))
    }
    async fn delete(
        &self,
        _: tonic::Request<DeleteRequest>,
    ) -> Result<tonic::Response<proto::v1::DeleteResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("stalled"))
    }
    async fn get(
        &self,
        _: tonic::Request<GetRequest>,
    ) -> Result<tonic::Response<proto::v1::GetResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("stalled"))
    }
    async fn stats(
        &self,
        _: tonic::Request<proto::v1::StatsRequest>,
    ) -> Result<tonic::Response<proto::v1::ShardStats>, tonic::Status> {
        Err(tonic::Status::unimplemented("stalled"))
    }
    async fn list(
        &self,
        _: tonic::Request<proto::v1::ListRequest>,
    ) -> Result<tonic::Response<proto::v1::ListResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("stalled"))
    }
    async fn export(
        &self,
        _: tonic::Request<proto::v1::ExportRequest>,
    ) -> Result<tonic::Response<proto::v1::ExportResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("stalled"))
    }
    async fn list_versions(
        &self,
        _: tonic::Request<proto::v1::ListRequest>,
    ) -> Result<tonic::Response<proto::v1::ListVersionsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("stalled"))
    }
    async fn retrain(
        &self,
        _: tonic::Request<proto::v1::RetrainRequest>,
    ) -> Result<tonic::Response<proto::v1::RetrainResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("stalled"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_hide_a_dead_one_and_a_stalled_shard_times_out_within_the_deadline() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-lexical");
    let model = Arc::new(ColbertModel::load(&dir, None, EncodeOptions::default()).unwrap());
    let dim = model.dim();
    let (encoder, _keep_encoder) =
        spawn(Routes::new(EncoderServer::new(EncoderService::start(model, BatchConfig::default())))).await;
    let data = tempfile::tempdir().unwrap();
    // Two shards, two replicas each.
    let (mut replicas, mut stops) = (vec![Vec::new(), Vec::new()], Vec::new());
    for s in 0..2 {
        for r in 0..2 {
            let config = ShardConfig { dim, train_tokens: 1 << 30, ..Default::default() };
            let shard = Shard::open(&data.path().join(format!("shard-{s}-{r}")), config).unwrap();
            let (address, stop) = spawn(Routes::new(ShardServer::new(ShardService::new(shard, s, dim)))).await;
            replicas[s as usize].push(address);
            stops.push(Some(stop));
        }
    }
    let router = Router::new(std::slice::from_ref(&encoder), &replicas, RouterConfig::default()).await.unwrap();
    let (address, _keep_router) = spawn(Routes::new(SearchServer::new(router))).await;
    let mut client = SearchClient::connect(format!("http://{address}")).await.unwrap();
    let documents: Vec<Document> = TEXTS.iter().enumerate().map(|(i, t)| doc(i, t)).collect();
    client.upsert(UpsertRequest { documents }).await.unwrap();
    let full = client.search(query("日本", 12)).await.unwrap().into_inner();
    assert_eq!((full.shards_ok, full.hits.len()), (2, 12));
    // Kill one replica of each shard: every answer is still whole, round robin or not.
    stops[1].take().unwrap().send(()).unwrap();
    stops[2].take().unwrap().send(()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for _ in 0..6 {
        let answer = client.search(query("日本", 12)).await.unwrap().into_inner();
        assert_eq!((answer.shards_ok, answer.partial), (2, false), "{:?}", answer.failures);
        let ids = |a: &proto::v1::SearchResponse| a.hits.iter().map(|h| (h.id.clone(), h.score)).collect::<Vec<_>>();
        assert_eq!(ids(&answer), ids(&full));
    }

    // A stalled shard: the answer comes within the caller's deadline (plus a margin), partial
    // and timed out, with the other shard's hits.
    let (stalled, _keep_stalled) = spawn(Routes::new(ShardServer::new(Stalled))).await;
    let live = replicas[0].clone();
    let config = RouterConfig { max_concurrent: 1, max_queue_ms: 0, ..Default::default() };
    let router = Router::new(&[encoder], &[live, vec![stalled]], config).await.unwrap();
    let (address, _keep) = spawn(Routes::new(SearchServer::new(router))).await;
    let mut client = SearchClient::connect(format!("http://{address}")).await.unwrap();
    let mut request = tonic::Request::new(query("日本", 12));
    request.set_timeout(std::time::Duration::from_millis(500));
    let started = std::time::Instant::now();
    let in_flight = tokio::spawn({
        let mut client = client.clone();
        async move { client.search(request).await }
    });
    // While that search waits on the stalled shard, the router (limit: 1 in flight) refuses more.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let refused = client.search(query("日本", 3)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let answer = in_flight.await.unwrap().unwrap().into_inner();
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_millis(800), "{took:?}");
    assert_eq!((answer.shards_ok, answer.partial, answer.timed_out), (1, true, true));
    assert_eq!(answer.failures[0].code, "DeadlineExceeded");
    assert!(!answer.hits.is_empty() && answer.hits.iter().all(|h| h.shard == 0));
}
