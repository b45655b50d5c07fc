//! `POST /v1/<method>`: the router's public RPCs with the proto3 JSON mapping (pbjson). A call
//! becomes an in-process gRPC request to the same tower stack the gRPC port serves (metrics,
//! the rate limit, API keys, the service), so both ports answer alike by construction: one
//! check of keys and limits, one trace span per call, continuing the caller's `traceparent`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::codegen::http::{self, header, HeaderMap, HeaderValue, StatusCode};
use tonic::{Code, Status};
use tower::ServiceExt;
use tracing::Instrument;

use proto::v1;

/// One public RPC: its name under `/v1/`, its gRPC service and method, and its messages.
pub struct Method {
    pub name: &'static str,
    pub service: &'static str,
    pub rpc: &'static str,
    /// The JSON body to the request's protobuf bytes.
    request: fn(&[u8]) -> Result<Vec<u8>, String>,
    /// The reply's protobuf bytes to JSON.
    response: fn(&[u8]) -> Result<Vec<u8>, String>,
}

impl Method {
    pub fn path(&self) -> String {
        format!("/jacolbert.v1.{}/{}", self.service, self.rpc)
    }
}

fn method<Q, R>(name: &'static str, service: &'static str, rpc: &'static str) -> Method
where
    Q: Message + DeserializeOwned,
    R: Message + Default + Serialize,
{
    Method { name, service, rpc, request: from_json::<Q>, response: to_json::<R> }
}

/// Every RPC of the router's `Search` and `Admin` services (a test checks none is missing).
pub fn methods() -> Vec<Method> {
    vec![
        method::<v1::SearchRequest, v1::SearchResponse>("search", "Search", "Search"),
        method::<v1::SearchBatchRequest, v1::SearchBatchResponse>("search_batch", "Search", "SearchBatch"),
        method::<v1::RerankRequest, v1::RerankResponse>("rerank", "Search", "Rerank"),
        method::<v1::ClusterStatsRequest, v1::ClusterStats>("stats", "Search", "Stats"),
        method::<v1::UpsertRequest, v1::UpsertResponse>("upsert", "Search", "Upsert"),
        method::<v1::DeleteRequest, v1::DeleteResponse>("delete", "Search", "Delete"),
        method::<v1::GetRequest, v1::GetResponse>("get", "Search", "Get"),
        method::<v1::AddShardRequest, v1::AddShardResponse>("add_shard", "Admin", "AddShard"),
        method::<v1::RemoveShardRequest, v1::AddShardResponse>("remove_shard", "Admin", "RemoveShard"),
        method::<v1::RetrainShardsRequest, v1::RetrainShardsResponse>("retrain", "Admin", "Retrain"),
        method::<v1::ClusterStatusRequest, v1::ClusterStatus>("status", "Admin", "Status"),
    ]
}

/// The message's name as the proto file spells it (`SearchRequest`), for messages.
fn short_name<T>() -> &'static str {
    std::any::type_name::<T>().rsplit("::").next().unwrap_or("message")
}

fn from_json<T: Message + DeserializeOwned>(json: &[u8]) -> Result<Vec<u8>, String> {
    // An empty body is the empty message, as `{}` is.
    let json: &[u8] = if json.iter().all(u8::is_ascii_whitespace) { b"{}" } else { json };
    let message: T = serde_json::from_slice(json)
        .map_err(|e| format!("the body is not a {} in proto3 JSON: {e}", short_name::<T>()))?;
    Ok(message.encode_to_vec())
}

fn to_json<T: Message + Default + Serialize>(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let message = T::decode(bytes).map_err(|e| format!("the reply is not a {}: {e}", short_name::<T>()))?;
    serde_json::to_vec(&message).map_err(|e| e.to_string())
}

/// The headers a JSON call passes on to the gRPC stack: the API key, the trace context, and
/// the deadline (`grpc-timeout`, as gRPC spells it: e.g. `2S`, `500m`).
const FORWARDED: [&str; 4] = ["authorization", "traceparent", "tracestate", "grpc-timeout"];

/// What `/v1/*` answers: a JSON body and its status.
pub type Reply = http::Response<Full<Bytes>>;

/// Runs `method` with the JSON `body` through `stack` (the node's gRPC services and layers).
pub async fn call<S: super::Stack>(stack: S, method: &Method, headers: &HeaderMap, body: &[u8]) -> Reply {
    let message = match (method.request)(body) {
        Ok(message) => message,
        Err(e) => return error(&Status::invalid_argument(e)),
    };
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0); // not compressed
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = method.path().parse().expect("an RPC path is a URI");
    let forwarded = request.headers_mut();
    forwarded.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    forwarded.insert(header::TE, HeaderValue::from_static("trailers"));
    for name in FORWARDED {
        if let Some(value) = headers.get(name) {
            forwarded.insert(name, value.clone());
        }
    }
    let span = proto::trace::server_span(&request);
    let request = request.map(|()| tonic::body::Body::new(Full::new(Bytes::from(framed))));
    let answer = async {
        let Ok(response) = stack.oneshot(request).await;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await?;
        // Errors come as headers alone (a trailers-only answer) or as trailers after no message.
        let trailers = collected.trailers().cloned().unwrap_or_default();
        for map in [&trailers, &parts.headers] {
            if let Some(status) = Status::from_header_map(map).filter(|s| s.code() != Code::Ok) {
                return Err(status);
            }
        }
        let bytes = collected.to_bytes();
        let payload = bytes.get(5..).filter(|_| bytes[0] == 0).ok_or_else(|| Status::internal("a malformed reply"))?;
        (method.response)(payload).map_err(Status::internal)
    };
    match answer.instrument(span).await {
        Ok(json) => json_reply(StatusCode::OK, json),
        Err(status) => error(&status),
    }
}

pub fn json_reply(status: StatusCode, json: Vec<u8>) -> Reply {
    let mut reply = http::Response::new(Full::new(Bytes::from(json)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

/// `{"code": "InvalidArgument", "message": …}` (the gRPC code's name, as `ShardFailure.code`
/// spells it) with the HTTP status Google's HTTP mapping gives that code.
pub fn error(status: &Status) -> Reply {
    let json = serde_json::json!({"code": format!("{:?}", status.code()), "message": status.message()});
    json_reply(http_status(status.code()), json.to_string().into_bytes())
}

fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a status code"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_rpc_has_a_json_method() {
        let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut served: Vec<String> = set.file[0]
            .service
            .iter()
            .filter(|s| matches!(s.name(), "Search" | "Admin"))
            .flat_map(|s| s.method.iter().map(move |m| format!("{}/{}", s.name(), m.name())))
            .collect();
        let mut listed: Vec<String> = methods().iter().map(|m| format!("{}/{}", m.service, m.rpc)).collect();
        served.sort();
        listed.sort();
        assert_eq!(served, listed);
    }

    #[test]
    fn json_bodies_convert_both_ways_and_bad_ones_say_what_was_expected() {
        let search = methods().into_iter().find(|m| m.name == "search").unwrap();
        let bytes = (search.request)(r#"{"query": "東京", "k": 5, "include": {"text": true}}"#.as_bytes()).unwrap();
        let request = v1::SearchRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!((request.query.as_str(), request.k), ("東京", 5));
        assert!(request.include.unwrap().text);
        assert_eq!((search.request)(b"").unwrap(), Vec::<u8>::new(), "an empty body is the empty message");
        let bad = (search.request)(br#"{"k": "many"}"#).unwrap_err();
        assert!(bad.starts_with("the body is not a SearchRequest in proto3 JSON"), "{bad}");
        let reply = v1::SearchResponse { took_micros: 12, ..Default::default() }.encode_to_vec();
        let json: serde_json::Value = serde_json::from_slice(&(search.response)(&reply).unwrap()).unwrap();
        assert_eq!(json["tookMicros"], "12", "64-bit integers are strings in proto3 JSON");
    }

    #[test]
    fn codes_map_to_http_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        let reply = error(&Status::not_found("no document \"x\""));
        assert_eq!(reply.status(), StatusCode::NOT_FOUND);
    }
}
