//! The Encoder gRPC service on a loopback port, with the tiny-lexical checkpoint: what it
//! returns is what the model computes directly; bad requests and a full queue get their codes.

use std::path::PathBuf;
use std::sync::Arc;

use encoder_node::model::{ColbertModel, EncodeOptions};
use encoder_node::service::{BatchConfig, EncoderService};
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = EncoderServer::new(EncoderService::start(model, config));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    EncoderClient::connect(format!("http://{addr}")).await.unwrap()
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
    let scores =
        client.score(ScoreRequest { query: queries[0].into(), texts: texts(&docs) }).await.unwrap().into_inner();
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
    // One waiting request at most and one request per batch: while a batch runs, a burst must
    // overflow the queue.
    let config = BatchConfig { queue: 1, window_us: 1_000, max_texts: 8, ..Default::default() };
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
