//! Request decoding on hostile bytes: every request message the services take, decoded from
//! random bytes (and from mutations of a valid encoding), never panics; a decoded tensor is
//! either a well-formed matrix or an error. Bounded: a fixed number of cases per run (CI).

use proptest::prelude::*;
use prost::Message;
use proto::v1::*;
use proto::Matrix;

/// Decodes `bytes` as every request type; checks any tensor they carry.
fn decode_all(bytes: &[u8]) {
    let _ = SearchRequest::decode(bytes);
    let _ = SearchBatchRequest::decode(bytes);
    let _ = RerankRequest::decode(bytes);
    let _ = UpsertRequest::decode(bytes);
    let _ = DeleteRequest::decode(bytes);
    let _ = GetRequest::decode(bytes);
    let _ = EncodeRequest::decode(bytes);
    let _ = ScoreRequest::decode(bytes);
    let _ = ListRequest::decode(bytes);
    let _ = ExportRequest::decode(bytes);
    let _ = AddShardRequest::decode(bytes);
    if let Ok(r) = ShardSearchRequest::decode(bytes) {
        check(r.query.as_ref());
    }
    if let Ok(r) = ShardUpsertRequest::decode(bytes) {
        r.documents.iter().for_each(|d| check(d.vectors.as_ref()));
    }
}

fn check(tensor: Option<&Tensor>) {
    if let Ok(m) = Matrix::from_tensor(tensor) {
        assert_eq!(m.values.len(), m.rows * m.dim);
        assert!(m.values.iter().all(|v| v.is_finite()));
    }
}

fn valid() -> Vec<u8> {
    let query = Matrix { rows: 2, dim: 4, values: vec![0.5; 8] }.to_tensor(Dtype::F16);
    ShardSearchRequest {
        query: Some(query),
        k: 10,
        filter_ids: vec!["a".into()],
        params: None,
        include: None,
        filter: None,
        explain: true,
    }
    .encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_requests_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = valid();
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        decode_all(&bytes);
    }

    #[test]
    fn tensors_of_any_shape_and_bytes_are_checked(
        shape in proptest::collection::vec(any::<u32>(), 0..4),
        dtype in -1i32..4,
        data in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        check(Some(&Tensor { shape, dtype, data }));
    }
}
