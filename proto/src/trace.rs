//! W3C trace context across gRPC hops. A client call made with [`traced`] carries the current
//! span's context as `traceparent` metadata; a server's per-request span ([`server_span`])
//! continues the caller's trace. Both go through the process's global propagator (the binary
//! sets the W3C one) and reach OpenTelemetry through `tracing-opentelemetry`; with no
//! OpenTelemetry layer installed they cost next to nothing and carry nothing.

use opentelemetry::propagation::{Extractor, Injector};
use tonic::codegen::http;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Metadata<'a>(&'a mut MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(&value)) {
            self.0.insert(key, value);
        }
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A request for `message` carrying the current span's trace context.
pub fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Metadata(request.metadata_mut()))
    });
    request
}

/// The span a server opens around each request: named after the RPC (`/jacolbert.v1.Search/Search`
/// → `Search/Search`), a child of the caller's span when the request carries its context.
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    let name = path.rsplit_once('.').map_or(path, |(_, rpc)| rpc);
    let span = tracing::info_span!("grpc", otel.name = name, otel.kind = "server", rpc.path = path);
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
    let _ = span.set_parent(parent);
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn trace_context_goes_out_in_metadata_and_comes_back_from_headers() {
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", traceparent.parse().unwrap());
        let context = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(&headers)));
        let span = context.span();
        assert_eq!(span.span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let mut metadata = MetadataMap::new();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut Metadata(&mut metadata)));
        assert_eq!(metadata.get("traceparent").unwrap(), traceparent);
    }
}
