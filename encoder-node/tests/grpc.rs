//! The Encoder gRPC service on a loopback port, with the tiny-lexical checkpoint: what it
//! returns is what the model computes directly; bad requests and a full queue get their codes.

use std::path::PathBuf;
use std::sync::Arc;

use encoder_node::model::{ColbertModel, EncodeOptions};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use encoder_node::service::{BatchConfig, EncoderService, Metrics};
use proto::v1::encoder_client::EncoderClient;
use proto::v1::encoder_server::EncoderServer;
use proto::v1::{Dtype, EncodeRequest, InfoRequest, ScoreRequest};
use proto::Matrix;
use tonic::Code;

fn model() -> Arc<ColbertModel> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-lexical");
    Arc::new(ColbertModel::load(&dir, None, EncodeOptions::default()).unwrap())
}

async fn serve(model: Arc<ColbertModel>, config: BatchConfig) -> EncoderClient<tonic::transport::Channel> {
    serve_watched(model, config).await.0
}

/// `serve`, with the encoder's counters.
async fn serve_watched(
    model: Arc<ColbertModel>,
    config: BatchConfig,
) -> (EncoderClient<tonic::transport::Channel>, Metrics) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = EncoderService::start(model, config);
    let metrics = service.metrics();
    let service = EncoderServer::new(service);
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(
        tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            // As the nodes serve (cli/src/roles.rs): without it each answer waits for a
            // delayed ACK, some 40 ms.
            |s| s.inspect(|s| s.set_nodelay(true).unwrap()),
        ),
    ));
    (EncoderClient::connect(format!("http://{addr}")).await.unwrap(), metrics)
}

fn texts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn encoder_service_returns_the_models_vectors() {
    let model = model();
    let mut client = serve(model.clone(), BatchConfig::default()).await;
    let queries = ["東京都の人口は？", "富士山の高さ"];
    let docs = ["東京都は日本の首都である。", "富士山は日本一高い山だ。", "猫"];
    let got = client.encode_queries(EncodeRequest { texts: texts(&queries), dtype: 0 }).await.unwrap().into_inner();
    let want = model.encode_queries(&queries).unwrap();
    for (tensor, want) in got.embeddings.iter().zip(&want) {
        assert_eq!(Matrix::from_tensor(Some(tensor)).unwrap().values, want.vectors);
    }
    // Concurrent document requests are batched together and still get their own rows.
    let mut calls = Vec::new();
    for d in docs {
        let mut c = client.clone();
        calls.push(tokio::spawn(
            async move { c.encode_documents(EncodeRequest { texts: texts(&[d]), dtype: 0 }).await },
        ));
    }
    let want = model.encode_documents(&docs).unwrap();
    for (call, want) in calls.into_iter().zip(&want) {
        let got = call.await.unwrap().unwrap().into_inner();
        let m = Matrix::from_tensor(got.embeddings.first()).unwrap();
        assert_eq!(m.values.len(), want.vectors.len());
        assert!(m.values.iter().zip(&want.vectors).all(|(a, b)| (a - b).abs() < 1e-5));
    }
    let half =
        client.encode_queries(EncodeRequest { texts: texts(&queries[..1]), dtype: Dtype::F16 as i32 }).await.unwrap();
    assert_eq!(half.into_inner().embeddings[0].dtype, Dtype::F16 as i32);
    let scores = client
        .score(ScoreRequest { query: queries[0].into(), texts: texts(&docs), explain: false })
        .await
        .unwrap()
        .into_inner();
    let q = &model.encode_queries(&queries[..1]).unwrap()[0].vectors;
    for (s, d) in scores.scores.iter().zip(&want) {
        assert!((s - kernels::cpu::maxsim(q, &d.vectors, model.dim()).unwrap()).abs() < 1e-4);
    }
    assert_eq!(client.info(InfoRequest {}).await.unwrap().into_inner().dim as usize, model.dim());

    for (what, request) in [
        ("no texts", EncodeRequest { texts: vec![], dtype: 0 }),
        ("a 1 MB text", EncodeRequest { texts: vec!["あ".repeat(350_000)], dtype: 0 }),
        ("too many texts", EncodeRequest { texts: vec!["a".into(); 10_000], dtype: 0 }),
    ] {
        let status = client.encode_queries(request).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_is_resource_exhausted() {
    // Room for one request's texts: while one runs, a burst must overflow the queue.
    let config = BatchConfig { queue_texts: 8, window_us: 1_000, max_texts: 8, ..Default::default() };
    let client = serve(model(), config).await;
    let mut calls = Vec::new();
    for _ in 0..64 {
        let mut c = client.clone();
        calls.push(tokio::spawn(async move {
            c.encode_documents(EncodeRequest { texts: texts(&["猫"; 8]), dtype: 0 }).await
        }));
    }
    let mut codes = Vec::new();
    for call in calls {
        codes.push(call.await.unwrap().map(|_| Code::Ok).unwrap_or_else(|s| s.code()));
    }
    assert!(codes.iter().all(|c| matches!(c, Code::Ok | Code::ResourceExhausted)), "{codes:?}");
    assert!(codes.contains(&Code::ResourceExhausted), "{codes:?}");
    assert!(codes.contains(&Code::Ok), "{codes:?}");
}

/// A paragraph long enough that a document forward pass takes a while even on the tiny model.
fn paragraph(i: usize) -> String {
    format!("{i}番目の段落。東京都は日本の首都であり、人口は約千四百万人である。").repeat(6)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_pass_shares_the_cores_with_at_most_one_step_of_a_document_pass() {
    let config = BatchConfig { document_chunk: 2, max_texts: 64, ..Default::default() };
    let (client, metrics) = serve_watched(model(), config).await;
    let ask = |i: usize| {
        let mut c = client.clone();
        async move {
            let t = Instant::now();
            let texts = vec![format!("{i}番目の質問：東京都の人口は？")];
            c.encode_queries(EncodeRequest { texts, dtype: 0 }).await.unwrap();
            t.elapsed()
        }
    };
    let mut idle = Vec::new();
    for i in 0..10 {
        idle.push(ask(i).await);
    }
    idle.sort();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Four bulk loaders, each sending 32 long documents at a time without pause.
    let loaders: Vec<_> = (0..4)
        .map(|l| {
            let (mut c, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(Ordering::SeqCst) {
                    let texts = (0..32).map(|i| paragraph(l * 1000 + i)).collect();
                    c.encode_documents(EncodeRequest { texts, dtype: 0 }).await.unwrap();
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let chunks = || metrics.counters.document_chunks.load(Ordering::SeqCst);
    let (mut waits, started) = (Vec::new(), chunks());
    for i in 0..30 {
        waits.push(ask(i).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Steps of document passes (one op of one layer each) that ran while a query pass was
    // gathered and ran: at most the one running as it arrived. The client's wait adds the gRPC
    // hops, slow on a loaded machine, so it is printed, not judged.
    let worst = metrics.counters.query_overlap_steps.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let mut batches = 0;
    for l in loaders {
        batches += l.await.unwrap();
    }
    let ran = chunks() - started;
    let steps = metrics.counters.document_steps.load(Ordering::SeqCst);
    waits.sort();
    println!(
        "30 queries beside {batches} document batches ({ran} chunks): at most {worst} document steps ran while \
         one query pass did; client waits p50 {:?}, max {:?} (idle p50 {:?})",
        waits[15], waits[29], idle[5]
    );
    assert!(ran >= 30, "the loaders kept the encoder busy: {ran} chunks");
    assert!(steps >= ran * 5, "document passes pause after every step: {steps} steps in {ran}+ chunks");
    assert!(worst <= 1, "{worst} steps of document passes ran while one query pass did");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_deadline_passes_while_it_waits_is_not_run() {
    let config = BatchConfig { document_chunk: 8, max_texts: 8, ..Default::default() };
    let (client, metrics) = serve_watched(model(), config).await;
    let ahead: Vec<_> = (0..12)
        .map(|r| {
            let mut c = client.clone();
            let texts = (0..8).map(|i| paragraph(r * 10 + i)).collect();
            tokio::spawn(async move { c.encode_documents(EncodeRequest { texts, dtype: 0 }).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut late = tonic::Request::new(EncodeRequest { texts: vec![paragraph(999)], dtype: 0 });
    late.set_timeout(Duration::from_millis(5));
    let status = client.clone().encode_documents(late).await.unwrap_err();
    // The client gives up at its deadline (tonic says Cancelled), or the encoder answers first.
    assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
    for call in ahead {
        call.await.unwrap().unwrap();
    }
    // The batcher reaches the late request after the others and drops it unrun.
    let until = Instant::now() + Duration::from_secs(10);
    while metrics.counters.expired.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metrics.counters.expired.load(Ordering::SeqCst), 1);
    assert_eq!(metrics.counters.batch_texts.load(Ordering::SeqCst), 12 * 8, "the late text was never encoded");
    assert_eq!(metrics.queued(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_query_cache_answers_repeated_queries_with_the_models_vectors() {
    let model = model();
    let (mut client, metrics) =
        serve_watched(model.clone(), BatchConfig { query_cache: 2, ..Default::default() }).await;
    let cache = metrics.cache.clone().expect("a cache of 2");
    let ask = |text: &str| {
        let request = EncodeRequest { texts: texts(&[text]), dtype: 0 };
        let mut c = client.clone();
        async move { Matrix::from_tensor(c.encode_queries(request).await.unwrap().into_inner().embeddings.first()).unwrap() }
    };
    let (a, b, c) = ("東京都の人口は？", "富士山の高さ", "猫の鳴き声");
    let first = ask(a).await;
    let again = ask(a).await;
    assert_eq!(first.values, model.encode_queries(&[a]).unwrap()[0].vectors);
    assert_eq!(again.values, first.values, "a hit gives what the model gave");
    let counts = || (cache.hits.load(Ordering::SeqCst), cache.misses.load(Ordering::SeqCst));
    assert_eq!(counts(), (1, 1));
    // The key is the input ids: a text NFKC makes the same (an ASCII "?" for "？") hits.
    ask("東京都の人口は?").await;
    assert_eq!(counts(), (2, 1));
    ask(b).await;
    ask(c).await;
    assert_eq!((cache.len(), counts()), (2, (2, 3)));
    ask(a).await;
    assert_eq!(counts(), (2, 4), "a was the least recently used and went");
    // Two texts in one request: a cached, b gone since (c was used later).
    let both = client.encode_queries(EncodeRequest { texts: texts(&[a, b]), dtype: 0 }).await.unwrap().into_inner();
    assert_eq!(
        Matrix::from_tensor(both.embeddings.get(1)).unwrap().values,
        model.encode_queries(&[b]).unwrap()[0].vectors
    );
    assert_eq!(counts(), (3, 5));
}
