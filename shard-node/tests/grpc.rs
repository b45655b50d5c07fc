//! The Shard gRPC service on a real loopback port: writes, reads, search, and a table of bad
//! requests that each get the right status and change nothing.

use proto::v1::shard_client::ShardClient;
use proto::v1::shard_server::ShardServer;
use proto::v1::{
    DeleteRequest, Document, Dtype, EncodedDocument, GetRequest, SearchParams, ShardSearchRequest, ShardUpsertRequest,
    StatsRequest, Tensor,
};
use proto::Matrix;
use shard_node::service::ShardService;
use shard_node::shard::{Shard, ShardConfig};
use shard_node::synthetic::{Collection, Spec};
use tonic::Code;

const DIM: usize = 32;

async fn serve(dir: &std::path::Path) -> ShardClient<tonic::transport::Channel> {
    let shard = Shard::open(dir, ShardConfig { dim: DIM, train_tokens: 3000, ..Default::default() }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ShardServer::new(ShardService::new(shard, 4, DIM));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    ShardClient::connect(format!("http://{addr}")).await.unwrap()
}

fn tensor(values: &[f32]) -> Option<Tensor> {
    Some(Matrix { rows: values.len() / DIM, dim: DIM, values: values.to_vec() }.to_tensor(Dtype::F32))
}

fn search(query: Option<Tensor>, k: u32) -> ShardSearchRequest {
    ShardSearchRequest { query, k, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn shard_service_end_to_end_and_bad_requests() {
    let data = Collection::generate(&Spec {
        docs: 150,
        tokens_per_doc: 40,
        centres: 64,
        dim: DIM,
        seed: 5,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut client = serve(dir.path()).await;
    let documents: Vec<EncodedDocument> = (0..data.len())
        .map(|i| EncodedDocument {
            document: Some(Document { id: format!("d{i}"), text: format!("text {i}"), metadata: "{}".into() }),
            vectors: tensor(data.doc(i)),
            version: 10,
        })
        .collect();
    for batch in documents.chunks(50) {
        let r = client.upsert(ShardUpsertRequest { documents: batch.to_vec() }).await.unwrap().into_inner();
        assert_eq!((r.written, r.replaced), (50, 0));
    }
    let stats = client.stats(StatsRequest {}).await.unwrap().into_inner();
    assert!(stats.trained && stats.documents == 150, "{stats:?}");

    let (target, q) = &data.queries(1, 8, 0.2, 3)[0];
    let hits = client.search(search(tensor(q), 5)).await.unwrap().into_inner().hits;
    assert_eq!(hits.len(), 5);
    assert_eq!((hits[0].id.as_str(), hits[0].shard), (format!("d{target}").as_str(), 4));
    // Exact mode agrees on the best hit; f16 queries are accepted.
    let exact =
        ShardSearchRequest { params: Some(SearchParams { exact: true, ..Default::default() }), ..search(tensor(q), 5) };
    assert_eq!(client.search(exact).await.unwrap().into_inner().hits[0].id, hits[0].id);
    let half = Matrix { rows: q.len() / DIM, dim: DIM, values: q.clone() }.to_tensor(Dtype::F16);
    assert_eq!(client.search(search(Some(half), 5)).await.unwrap().into_inner().hits[0].id, hits[0].id);

    let got = client.get(GetRequest { id: "d7".into(), ids: vec![] }).await.unwrap().into_inner().document.unwrap();
    assert_eq!(got.text, "text 7");
    // Versions: an older write or delete changes nothing; exports carry the version; a
    // delete's tombstone refuses a copy of the document it deleted.
    let old = EncodedDocument { version: 9, ..documents[7].clone() };
    let old = EncodedDocument { document: Some(Document { text: "older".into(), ..old.document.unwrap() }), ..old };
    let r = client.upsert(ShardUpsertRequest { documents: vec![old] }).await.unwrap().into_inner();
    assert_eq!(r.written, 0, "an older write applied");
    let stale_delete = DeleteRequest { ids: vec!["d7".into()], version: 9, filter: None };
    assert_eq!(client.delete(stale_delete).await.unwrap().into_inner().deleted, 0);
    let target_id = format!("d{target}");
    let exported = client.export(proto::v1::ExportRequest { ids: vec![target_id.clone()] }).await.unwrap();
    let exported = exported.into_inner().documents;
    assert_eq!((exported.len(), exported[0].version), (1, 10));
    let delete = DeleteRequest { ids: vec![target_id.clone(), "nope".into()], version: 11, filter: None };
    assert_eq!(client.delete(delete).await.unwrap().into_inner().deleted, 1);
    let copy = ShardUpsertRequest { documents: exported };
    assert_eq!(client.upsert(copy).await.unwrap().into_inner().written, 0, "a deleted document came back");
    let after = client.search(search(tensor(q), 5)).await.unwrap().into_inner().hits;
    assert!(after.iter().all(|h| h.id != target_id));
    // The versions list has the tombstone (and the unknown id's) among the documents; a read
    // that names another store is refused, one that names this one answers.
    let page = |after: &str| proto::v1::ListRequest { after: after.into(), limit: 1000 };
    let listed = client.list_versions(page("")).await.unwrap().into_inner();
    let entry = |id: &str| listed.entries.iter().find(|e| e.id == id).cloned();
    assert_eq!(entry(&target_id).map(|e| (e.version, e.deleted)), Some((11, true)));
    assert_eq!(entry("nope").map(|e| (e.version, e.deleted)), Some((11, true)));
    assert_eq!(entry("d7").map(|e| (e.version, e.deleted)), Some((10, false)));
    assert_eq!(listed.entries.iter().filter(|e| !e.deleted).count(), data.len() - 1);
    let store = client.stats(StatsRequest {}).await.unwrap().into_inner().store;
    assert_eq!(store, listed.store);
    let naming = |store: &str| {
        let mut request = tonic::Request::new(GetRequest { id: "d7".into(), ids: vec![] });
        request.metadata_mut().insert(proto::STORE_HEADER, store.parse().unwrap());
        request
    };
    assert!(client.get(naming(&store)).await.is_ok());
    let refused = client.get(naming("0123456789abcdef")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        client.list_versions(proto::v1::ListRequest { after: "".into(), limit: 0 }).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );

    // Bad requests: each its status; nothing stored changes.
    let before = client.stats(StatsRequest {}).await.unwrap().into_inner();
    let good = tensor(q).unwrap();
    let malformed = Tensor { data: good.data[..good.data.len() - 3].to_vec(), ..good.clone() };
    let wrong_dim = Tensor { shape: vec![16, 16], ..good.clone() };
    let cases: Vec<(&str, ShardSearchRequest)> = vec![
        ("no query", search(None, 5)),
        ("empty query", search(tensor(&[]), 5)),
        ("malformed bytes", search(Some(malformed), 5)),
        ("wrong dims", search(Some(wrong_dim), 5)),
        ("k = 0", search(tensor(q), 0)),
        ("k = 100000", search(tensor(q), 100_000)),
        ("huge query", search(tensor(&vec![0.1; DIM * 2000]), 5)),
    ];
    for (what, request) in cases {
        let status = client.search(request).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(!status.message().is_empty());
    }
    let no_doc = EncodedDocument { document: None, vectors: tensor(data.doc(0)), version: 0 };
    let nan_doc = EncodedDocument { vectors: tensor(&[f32::NAN; DIM]), ..documents[0].clone() };
    for (what, batch) in [("empty batch", vec![]), ("no document", vec![no_doc]), ("NaN vectors", vec![nan_doc])] {
        let status = client.upsert(ShardUpsertRequest { documents: batch }).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    let status = client.get(GetRequest { id: "unknown".into(), ids: vec![] }).await.expect_err("unknown id");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(client.stats(StatsRequest {}).await.unwrap().into_inner(), before);
}
